"""Patrol-task jobs: occurrences of recurring tasks, nearby dispatch rings, invitation expiry,
reminders, and closing tasks after their window (which marks no-shows). Each is idempotent."""

from __future__ import annotations

from typing import Any

from yijing.services import dispatch, task_index, tasks


def generate_occurrences(series_id: int | None = None) -> int:
    """Create upcoming occurrences of one series (or of every active series)."""
    return tasks.generate_occurrences(series_id)


def advance_dispatch(task_id: int, after_ring: int, hint: dict[str, Any] | list[Any] | None = None) -> int:
    """Send the nearby-dispatch ring after ``after_ring`` if the task still needs volunteers
    (scheduled DISPATCH_RING_TIMEOUT_SECONDS after the previous ring); ``hint``: the task as the
    job saw it, as :meth:`yijing.services.tasks.RingHint.as_job` wrote it (a job enqueued before
    hints has none, and one enqueued before they said all of this has a list: the ring reads its
    task first)."""
    return dispatch.advance(task_id, after_ring, tasks.RingHint.of_job(hint) if hint else None)


def sweep_dispatches() -> int:
    """Send every ring that is due: the fallback for a lost or late scheduled job."""
    return dispatch.sweep()


def expire_invitations() -> int:
    """Unanswered invitations past their deadline become expired."""
    return dispatch.expire_invitations()


def send_reminders() -> int:
    """Outbox reminders before a task starts and before an invitation's deadline."""
    return tasks.send_reminders()


def close_finished_tasks() -> int:
    """Start tasks whose window began; close those whose window ended (marking no-shows)."""
    return tasks.close_finished_tasks()


def repair_task_index() -> int:
    """Rebuild the Redis index of open tasks if Redis lost it and correct entries that drifted
    from the database; returns how many entries were written or removed."""
    result = task_index.repair()
    return result.written + result.removed
