"""Comment jobs: WeChat's content check, and the sweeper for checks that never finished."""

from __future__ import annotations

from yijing.services import comments


def check_comment(comment_id: int) -> str | None:
    """Check one pending comment with WeChat; raises (and RQ retries) while WeChat is unreachable."""
    return comments.check(comment_id)


def sweep_pending_comments() -> int:
    """Re-enqueue checks of comments left pending (periodic)."""
    return comments.sweep_pending()
