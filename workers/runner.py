"""Running RQ workers and the periodic-job scheduler inside the Flask app context."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rq import SimpleWorker, Worker
from rq.cron import CronScheduler

from workers import queues, schedule
from yijing.extensions import db, redis_client

log = logging.getLogger(__name__)


class AppContextMixin:
    """Every job starts and ends with a clean database session."""

    def perform_job(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        db.session.remove()
        try:
            return super().perform_job(*args, **kwargs)  # type: ignore[misc]
        finally:
            db.session.remove()


class AppSimpleWorker(AppContextMixin, SimpleWorker):
    """Runs jobs in the worker process: ~4× cheaper per job than forking (see docs/performance.md)."""


class AppForkWorker(AppContextMixin, Worker):
    """Forks per job: isolates a crashing job at ~12 ms of CPU each."""

    def main_work_horse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        db.engine.dispose(close=False)  # the child never uses the parent's connections
        return super().main_work_horse(*args, **kwargs)


def run_worker(
    names: Sequence[str] = queues.ALL, *, burst: bool = False, with_scheduler: bool = True, fork: bool = False
) -> bool:
    """Work the named queues in priority order (the order of ``names``)."""
    worker_class = AppForkWorker if fork else AppSimpleWorker
    worker = worker_class([queues.get_queue(n) for n in names], connection=redis_client())
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")


def run_cron() -> None:
    """Enqueue periodic jobs. Run one per deployment; the jobs are idempotent anyway."""
    scheduler = CronScheduler(connection=redis_client(), logging_level="INFO")
    for entry in schedule.PERIODIC_JOBS:
        scheduler.register(
            entry.func,
            queue_name=queues.queue_name(entry.queue),
            interval=entry.interval,
            job_timeout=entry.timeout,
            failure_ttl=24 * 3600,
        )
    scheduler.start()
