"""Feed jobs: scheduled publication, counter flushes, the alert push."""

from __future__ import annotations

from rq import Retry

from yijing import jobs
from yijing.services import feed


def publish_due() -> list[int]:
    """Publish scheduled posts whose time has come (periodic)."""
    return feed.publish_due()


def flush_counters() -> dict[str, int]:
    """Move view counts from Redis to the database exactly once; recount liked posts (periodic)."""
    return feed.flush_counters()


def reconcile_counts() -> int:
    """Recount likes and comments of recent posts from their rows (periodic)."""
    return feed.reconcile_counts()


def broadcast_alert(post_id: int, after_user_id: int = 0) -> int | None:
    """Write the alert's outbox rows in batches; a long fan-out goes on in a follow-up job.

    Simple on purpose: the notifications issue (mass fan-out) may replace it. Running it twice writes
    nothing twice (one dedupe key per post and user).
    """
    cursor = feed.fan_out_alert(post_id, after_user_id)
    if cursor is not None:
        jobs.enqueue(
            jobs.JobSpec(
                queue=jobs.NOTIFY,
                func="workers.feed.broadcast_alert",
                args=(post_id, cursor),
                job_id=f"feed-alert-{post_id}-after-{cursor}",
                timeout=600,
                retry=Retry(max=3, interval=[30, 120, 600]),
            )
        )
    return cursor
