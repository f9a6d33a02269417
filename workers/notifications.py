"""Delivery jobs for the notification outbox, and the sweeper that keeps the queue and the table in line.

* ``deliver(ids)`` — one job per batch of rows (``NOTIFY_BATCH_SIZE``, default 100): a job costs ~3.6 ms of
  worker CPU and 57 Redis commands (docs/performance.md), a send far less. Running it twice is harmless:
  rows are claimed in the database and a row already sent is never sent again.
* ``sweep()`` — periodic: enqueues rows left pending (the relay's enqueue failed because Redis was down,
  a worker died mid-batch, a retry job was lost) and revives stalled mass-alert fan-outs.

The jobs themselves are described in ``yijing.services.outbox.delivery_specs``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

from rq import get_current_job

from yijing import jobs
from yijing.services import broadcasts, delivery, outbox

log = logging.getLogger(__name__)

DELIVER = outbox.DELIVER


def _worker_name() -> str:
    job = get_current_job()
    return f"{socket.gethostname()}:{os.getpid()}:{job.id if job else '-'}"


def enqueue_delivery(ids: Sequence[int], *, urgent_ids: Sequence[int] = (), delay: int = 0) -> int:
    """Enqueue delivery of outbox rows now (in bulk); returns the number of jobs. Raises RedisError."""
    specs = outbox.delivery_specs(ids, delay=delay) + outbox.delivery_specs(
        urgent_ids, urgent=True, delay=delay
    )
    jobs.enqueue_many(specs)
    return len(specs)


def deliver(ids: list[int], urgent: bool = False) -> dict[str, int]:
    """Send the given outbox rows (those still pending); schedule the retries they need."""
    report = delivery.deliver_batch(ids, worker=_worker_name(), urgent=urgent)
    for delay, retry_ids in sorted(report.retry.items()):
        ordinary, urgent = delivery.urgent_split(retry_ids)
        enqueue_delivery(ordinary, urgent_ids=urgent, delay=delay)
    if report.released:
        ordinary, urgent = delivery.urgent_split(report.released)
        enqueue_delivery(ordinary, urgent_ids=urgent)
    summary = {
        "claimed": len(report.claimed),
        "sent": len(report.sent),
        "inbox_only": len(report.inbox_only),
        "failed": len(report.failed),
        "retry": sum(len(v) for v in report.retry.values()),
        "released": len(report.released),
    }
    log.info("notifications delivered", extra=summary)
    return summary


def sweep() -> dict[str, int]:
    """Re-enqueue outbox rows left pending past their grace period, and stalled fan-outs."""
    ids = delivery.sweep()
    ordinary, urgent = delivery.urgent_split(ids)
    jobs = enqueue_delivery(ordinary, urgent_ids=urgent) if ids else 0
    revived = broadcasts.revive_stalled()
    for broadcast_id in revived:
        broadcasts.enqueue_fan_out(broadcast_id)
    if ids or revived:
        log.info("outbox swept", extra={"rows": len(ids), "jobs": jobs, "broadcasts": len(revived)})
    return {"rows": len(ids), "jobs": jobs, "broadcasts": len(revived)}


def sweep_urgent() -> dict[str, int]:
    """Re-enqueue urgent rows (dispatch invitations) left pending by a lost job or a dead worker
    (periodic, every ``URGENT_SWEEP_SECONDS`` on the dispatch queue)."""
    ids = delivery.sweep(urgent=True)
    jobs_count = enqueue_delivery([], urgent_ids=ids) if ids else 0
    if ids:
        log.info("urgent outbox rows swept", extra={"rows": len(ids), "jobs": jobs_count})
    return {"rows": len(ids), "jobs": jobs_count}
