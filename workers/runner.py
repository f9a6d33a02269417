"""Running RQ workers and the periodic-job scheduler inside the Flask app context."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from flask import current_app
from redis.exceptions import RedisError
from rq import SimpleWorker, Worker

from workers import schedule
from workers.leader import LeaderCronScheduler
from yijing import jobs, replica
from yijing.extensions import db, redis_client

log = logging.getLogger(__name__)


class AppContextMixin:
    """Every job starts and ends with a clean database session; a stop signal is remembered."""

    # Set by SIGINT/SIGTERM. RQ marks an idle worker's stop only by raising out of its loop, so
    # without this flag run_worker could not tell "asked to stop" from "quit on an error".
    stop_signalled = False

    def request_stop(self, signum, frame):  # type: ignore[no-untyped-def]
        self.stop_signalled = True
        return super().request_stop(signum, frame)  # type: ignore[misc]

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
        replica.dispose_in_child(current_app)
        return super().main_work_horse(*args, **kwargs)


def run_worker(
    names: Sequence[str] = jobs.ALL, *, burst: bool = False, with_scheduler: bool = True, fork: bool = False
) -> bool:
    """Work the named queues in priority order (the order of ``names``).

    RQ's worker quits on an unexpected error, such as its Redis master failing over while it records
    a job's end; unless it was asked to stop (or runs in burst mode), a fresh worker takes its place
    a second later, on whatever master the Sentinels name then. The rows of the job in hand are
    claimed in the outbox and come back through the sweeper.
    """
    worker_class = AppForkWorker if fork else AppSimpleWorker
    while True:
        worker = None
        try:
            worker = worker_class([jobs.get_queue(n) for n in names], connection=redis_client())
            worked = worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
        except RedisError as exc:  # Redis unreachable while starting or cleaning up
            if burst:
                raise
            log.warning("worker stopped: Redis unreachable", extra={"error": str(exc)})
            worked = False
        if burst or (worker is not None and worker.stop_signalled):
            return worked
        log.warning("worker quit unexpectedly; starting a new one in 1 s")
        time.sleep(1)


def cron_scheduler() -> LeaderCronScheduler:
    """The periodic-job scheduler with every job of ``schedule.PERIODIC_JOBS`` registered."""
    config = current_app.config["YIJING"]
    scheduler = LeaderCronScheduler(
        redis_client(),
        key_prefix=config.redis_prefix + config.queue_prefix,
        lease_ttl=config.cron_leader_ttl,
        logging_level="INFO",
    )
    for entry in schedule.PERIODIC_JOBS:
        scheduler.register(
            entry.func,
            queue_name=jobs.queue_name(entry.queue),
            interval=entry.interval,
            job_timeout=entry.timeout,
            failure_ttl=24 * 3600,
        )
    return scheduler


def run_cron() -> None:
    """Enqueue periodic jobs. One scheduler leads at a time (see ``workers.leader``): a second one
    started by mistake, or kept as a standby on another host, enqueues nothing until it leads."""
    cron_scheduler().start()
