"""The job module's names, for code in ``workers/`` and older imports: see :mod:`yijing.jobs`."""

from __future__ import annotations

from yijing.jobs import (
    ALL,
    DEFAULT,
    DISPATCH,
    NOTIFY,
    REPORTS,
    JobSpec,
    Retry,
    enqueue,
    enqueue_after_commit,
    enqueue_many,
    get_queue,
    job_id,
    queue_name,
)

__all__ = [
    "ALL",
    "DEFAULT",
    "DISPATCH",
    "NOTIFY",
    "REPORTS",
    "JobSpec",
    "Retry",
    "enqueue",
    "enqueue_after_commit",
    "enqueue_many",
    "get_queue",
    "job_id",
    "queue_name",
]
