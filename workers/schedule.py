"""Periodic jobs: what runs, on which queue, how often. Each is idempotent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers import clues, comments, duty, feed, maintenance, media, notifications, privacy, reports
from workers import tasks as task_jobs
from yijing import jobs

#: How often urgent outbox rows are swept: with the urgent lease (a quarter of
#: DISPATCH_RING_TIMEOUT_SECONDS), a dead worker's invitations go out again within the ring timeout.
URGENT_SWEEP_SECONDS = 15


@dataclass(frozen=True)
class PeriodicJob:
    func: Callable[..., Any]
    queue: str
    interval: int
    timeout: int = 300


PERIODIC_JOBS: list[PeriodicJob] = [
    PeriodicJob(maintenance.purge_idempotency_records, jobs.DEFAULT, interval=3600),
    PeriodicJob(clues.sweep, jobs.DEFAULT, interval=300),
    PeriodicJob(media.purge_orphans, jobs.DEFAULT, interval=3600),
    # Searches already skip stale entries; this removes them and marks them off duty in the database.
    PeriodicJob(duty.evict_stale, jobs.DEFAULT, interval=60, timeout=120),
    PeriodicJob(feed.publish_due, jobs.DEFAULT, interval=30, timeout=120),
    PeriodicJob(feed.flush_counters, jobs.DEFAULT, interval=60, timeout=120),
    PeriodicJob(feed.reconcile_counts, jobs.REPORTS, interval=3600, timeout=600),
    PeriodicJob(comments.sweep_pending_comments, jobs.DEFAULT, interval=300, timeout=120),
    # Rows left pending (Redis outage, a worker killed mid-batch, a deploy) and stalled fan-outs.
    PeriodicJob(notifications.sweep, jobs.NOTIFY, interval=60, timeout=120),
    # Urgent rows (dispatch invitations) of a dead worker: taken over within the ring timeout.
    PeriodicJob(notifications.sweep_urgent, jobs.DISPATCH, interval=URGENT_SWEEP_SECONDS, timeout=60),
    # Patrol tasks. The sweep is the fallback for nearby-dispatch rings whose delayed job was lost.
    PeriodicJob(task_jobs.sweep_dispatches, jobs.DISPATCH, interval=30, timeout=120),
    PeriodicJob(task_jobs.expire_invitations, jobs.DEFAULT, interval=60, timeout=120),
    PeriodicJob(task_jobs.send_reminders, jobs.DEFAULT, interval=60, timeout=120),
    PeriodicJob(task_jobs.close_finished_tasks, jobs.DEFAULT, interval=60, timeout=300),
    # The open-task list reads a Redis index: rebuilt when Redis lost it, drift corrected.
    PeriodicJob(task_jobs.repair_task_index, jobs.DEFAULT, interval=60, timeout=300),
    PeriodicJob(task_jobs.generate_occurrences, jobs.DEFAULT, interval=3600, timeout=600),
    # Report rollups: the recent days recomputed whole (statuses change after the day).
    PeriodicJob(reports.refresh_recent, jobs.REPORTS, interval=900, timeout=1800),
    PeriodicJob(reports.refresh_quarter, jobs.REPORTS, interval=86400, timeout=3600),
    # Personal information (issue 13): anonymous reporters' envelopes released in batches, account
    # cancellations past their cooling-off period, and the retention schedule, daily.
    PeriodicJob(privacy.release_sealed, jobs.NOTIFY, interval=60, timeout=120),
    PeriodicJob(privacy.carry_out_cancellations, jobs.DEFAULT, interval=86400, timeout=3600),
    PeriodicJob(privacy.enforce_retention, jobs.DEFAULT, interval=86400, timeout=3600),
    # Exports whose job was lost (on default: the reports queue may be busy with the very exports).
    PeriodicJob(reports.sweep_exports, jobs.DEFAULT, interval=300, timeout=120),
]
