"""Periodic jobs: what runs, on which queue, how often. Each is idempotent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers import comments, feed, maintenance, queues


@dataclass(frozen=True)
class PeriodicJob:
    func: Callable[..., Any]
    queue: str
    interval: int
    timeout: int = 300


PERIODIC_JOBS: list[PeriodicJob] = [
    PeriodicJob(maintenance.purge_idempotency_records, queues.DEFAULT, interval=3600),
    PeriodicJob(feed.publish_due, queues.DEFAULT, interval=30, timeout=120),
    PeriodicJob(feed.flush_counters, queues.DEFAULT, interval=60, timeout=120),
    PeriodicJob(feed.reconcile_counts, queues.REPORTS, interval=3600, timeout=600),
    PeriodicJob(comments.sweep_pending_comments, queues.DEFAULT, interval=300, timeout=120),
]
