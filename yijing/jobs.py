"""What a job is, and how services hand one to RQ: the one module services use for background work.

Services describe work as a :class:`JobSpec` (a dotted function path in ``workers/`` and plain
arguments) and hand it over with :func:`enqueue_after_commit`; they never import ``workers``.
``workers/`` imports services, never the reverse, so there is no import cycle between the layers.

Queues are named by purpose; workers take them in this order, so urgent dispatch goes ahead of
ordinary notifications, which go ahead of housekeeping and reports.

Both queue names and job ids carry the deployment's ``QUEUE_PREFIX``: two deployments sharing one
Redis neither read each other's queues nor refuse each other's jobs as duplicates.

One ``after_commit`` hook on the Session enqueues what a transaction registered; a rollback drops it.
Something that must be computed at commit time (the outbox's delivery batches) registers a callable
that returns the specs.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry
from rq.scripts import UNIQUE_SCHEDULE_SCRIPT
from sqlalchemy import event
from sqlalchemy.orm import Session

from yijing.extensions import redis_client

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
    "enqueue_committed",
    "enqueue_many",
    "get_queue",
    "job_id",
    "pending",
    "queue_name",
]

log = logging.getLogger(__name__)

DISPATCH = "dispatch"
NOTIFY = "notify"
DEFAULT = "default"
REPORTS = "reports"
ALL = (DISPATCH, NOTIFY, DEFAULT, REPORTS)

_AFTER_COMMIT_KEY = "yijing_after_commit_jobs"


def _prefix() -> str:
    return current_app.config["YIJING"].queue_prefix


def queue_name(name: str) -> str:
    """The Redis-side queue name (with ``QUEUE_PREFIX`` so test runs and deployments don't mix)."""
    return _prefix() + name


def job_id(name: str) -> str:
    """The Redis-side id of a job named ``name`` (with ``QUEUE_PREFIX``, like the queues)."""
    return _prefix() + name


def get_queue(name: str) -> Queue:
    return Queue(queue_name(name), connection=redis_client())


@dataclass(frozen=True)
class JobSpec:
    """A job to enqueue: a dotted function path and plain arguments."""

    queue: str
    func: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Deterministic name of the job (without the prefix, which ``enqueue`` adds): a job with this id
    # still kept in Redis is not enqueued twice.
    job_id: str | None = None
    timeout: int = 60
    retry: Retry | None = None
    failure_ttl: int = 7 * 24 * 3600
    result_ttl: int = 3600
    # Seconds to wait before the job becomes runnable (RQ's scheduler, which workers run, moves it to
    # the queue when due); 0 enqueues now.
    delay: int = 0
    # Run no earlier than this (aware) time: RQ's scheduler (``with_scheduler``) enqueues it then.
    at: datetime | None = None


def enqueue(spec: JobSpec) -> None:
    """Enqueue now, at ``spec.at`` or after ``spec.delay``. Raises RedisError.

    A job with a ``job_id`` that still exists in Redis (queued, scheduled, running, or finished or
    failed within its result/failure TTL) is not added twice.
    """
    q = get_queue(spec.queue)
    rq_id = job_id(spec.job_id) if spec.job_id is not None else None
    when = spec.at or (datetime.now(UTC) + timedelta(seconds=spec.delay) if spec.delay > 0 else None)
    try:
        if when is not None:
            q.enqueue_at(
                when,
                spec.func,
                args=spec.args,
                kwargs=spec.kwargs,
                job_timeout=spec.timeout,
                retry=spec.retry,
                failure_ttl=spec.failure_ttl,
                result_ttl=spec.result_ttl,
                job_id=rq_id,
                unique=rq_id is not None,
            )
            return
        q.enqueue_call(
            spec.func,
            args=spec.args,
            kwargs=spec.kwargs,
            timeout=spec.timeout,
            retry=spec.retry,
            failure_ttl=spec.failure_ttl,
            result_ttl=spec.result_ttl,
            job_id=rq_id,
            unique=rq_id is not None,
        )
    except DuplicateJobError:
        log.debug("job already queued", extra={"job_id": rq_id})


def enqueue_many(specs: Iterable[JobSpec]) -> None:
    """Enqueue jobs in one round trip: those without delay by queue (RQ's ``enqueue_many``), those
    scheduled with a job id through RQ's own unique-schedule script, all in one pipeline (a
    dispatch ring's invitations and its next ring: one round trip, not two). Anything else (a
    job with an id to run now, a delayed job without one) goes on its own. Raises RedisError."""
    pipe = redis_client().pipeline()
    by_queue: dict[str, list[JobSpec]] = {}
    scheduled: dict[int, str] = {}  # the position of a unique schedule's answer in the pipeline → job id
    for spec in specs:
        if spec.job_id is None and spec.delay <= 0 and spec.at is None:
            by_queue.setdefault(spec.queue, []).append(spec)
        elif spec.job_id is not None and (spec.at is not None or spec.delay > 0):
            position = len(pipe)
            scheduled[position] = _schedule_unique(pipe, spec)
        else:
            enqueue(spec)
    for name, group in by_queue.items():
        get_queue(name).enqueue_many(
            [
                Queue.prepare_data(
                    s.func,
                    args=s.args,
                    kwargs=s.kwargs,
                    timeout=s.timeout,
                    retry=s.retry,
                    failure_ttl=s.failure_ttl,
                    result_ttl=s.result_ttl,
                )
                for s in group
            ],
            pipeline=pipe,
        )
    if not len(pipe):
        return
    answers = pipe.execute()
    for position, rq_id in scheduled.items():
        if answers[position] == 0:
            log.debug("job already queued", extra={"job_id": rq_id})


def _schedule_unique(pipe: Pipeline, spec: JobSpec) -> str:
    """What ``Queue.enqueue_at(…, job_id=…, unique=True)`` does (RQ's ``schedule_unique_job``: one
    script that refuses an id still kept, saves the job and adds it to the scheduled registry), queued
    on ``pipe`` instead of sent at once; the script answers 0 for a duplicate. Returns the job id."""
    q = get_queue(spec.queue)
    when = spec.at or datetime.now(UTC) + timedelta(seconds=spec.delay)
    job = q.create_job(
        spec.func,
        args=spec.args,
        kwargs=spec.kwargs,
        timeout=spec.timeout,
        result_ttl=spec.result_ttl,
        failure_ttl=spec.failure_ttl,
        job_id=job_id(spec.job_id or ""),
        status=JobStatus.SCHEDULED,
        retry=spec.retry,
    )
    fields: list[object] = []
    for key, value in job.to_dict().items():
        if value is not None:
            fields += [key, value if isinstance(value, bytes | str) else str(value)]
    pipe.eval(
        UNIQUE_SCHEDULE_SCRIPT,
        3,
        job.key,
        ScheduledJobRegistry(queue=q).key,
        q.redis_queues_keys,
        job.id,
        job.ttl if job.ttl is not None else -1,
        calendar.timegm(when.utctimetuple()),
        q.key,
        *fields,
    )
    return job.id


Pending = JobSpec | Callable[[], Iterable[JobSpec]]


def enqueue_after_commit(session: Session, spec: Pending) -> None:
    """Enqueue once the session's transaction commits; dropped on rollback.

    ``spec`` is a job, or a callable run at commit time that returns the jobs (for work collected
    over the transaction, such as the outbox's delivery batches). A failure to reach Redis is logged,
    not raised: the data is committed and a sweeper picks up whatever was not enqueued.
    """
    pending(session).append(spec)


def pending(session: Session) -> list[Pending]:
    """What the session's open transaction has registered so far (to add to it)."""
    return session.info.setdefault(_AFTER_COMMIT_KEY, [])


@event.listens_for(Session, "after_commit")
def _flush_jobs(session: Session) -> None:
    registered: list[Pending] = session.info.pop(_AFTER_COMMIT_KEY, [])
    if not registered:
        return
    specs: list[JobSpec] = []
    for item in registered:
        specs.extend([item] if isinstance(item, JobSpec) else item())
    enqueue_committed(specs)


def enqueue_committed(specs: list[JobSpec]) -> None:
    """Enqueue the jobs of data already committed (:func:`enqueue_many`), logging rather than
    raising a failure to reach Redis: the data is committed and a sweeper picks up whatever was
    not enqueued. What the after-commit hook does, for a writer that commits without the Session."""
    if not specs:
        return
    try:
        enqueue_many(specs)
    except RedisError as exc:
        log.warning(
            "enqueue after commit failed; the sweeper will retry",
            extra={"jobs": len(specs), "funcs": sorted({s.func for s in specs}), "error": str(exc)},
        )


@event.listens_for(Session, "after_rollback")
def _drop_jobs(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT_KEY, None)
