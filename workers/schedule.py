"""Periodic jobs: what runs, on which queue, how often. Each is idempotent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers import maintenance, notifications, queues


@dataclass(frozen=True)
class PeriodicJob:
    func: Callable[..., Any]
    queue: str
    interval: int
    timeout: int = 300


PERIODIC_JOBS: list[PeriodicJob] = [
    PeriodicJob(maintenance.purge_idempotency_records, queues.DEFAULT, interval=3600),
    # Rows left pending (Redis outage, a worker killed mid-batch, a deploy) and stalled fan-outs.
    PeriodicJob(notifications.sweep, queues.NOTIFY, interval=60, timeout=120),
]
