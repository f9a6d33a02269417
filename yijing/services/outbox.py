"""Writing notifications to the outbox in the caller's transaction, and relaying them after the commit.

An event produces its row exactly once (the unique ``dedupe_key``), in the same commit as the change
that caused it. Every row written in a transaction is remembered on the session; once the transaction
commits, one delivery job per batch of rows is enqueued (``workers.notifications.deliver``, through
:mod:`yijing.jobs`). If Redis
is down at that moment the rows stay ``pending`` and the sweeper enqueues them later; a rollback
drops them with the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from yijing import jobs
from yijing.extensions import db
from yijing.models import Notification, NotificationStatus
from yijing.models.base import utcnow
from yijing.sql import insert_ignore_returning, insert_many_ignore_returning

log = logging.getLogger(__name__)


def _row(
    user_id: int,
    kind: str,
    *,
    title: str,
    dedupe_key: str,
    body: str,
    data: dict[str, Any] | None,
    page: str | None,
    now: datetime,
    sweep_after: datetime,
    sealed: bool = False,
) -> dict[str, Any]:
    return {
        "sealed": sealed,
        "user_id": user_id,
        "kind": kind,
        "title": title[:100],
        "body": body,
        "data": data or {},
        "page": page,
        "dedupe_key": dedupe_key,
        "status": NotificationStatus.PENDING,
        "attempts": 0,
        "created_at": now,
        "sweep_after": sweep_after,
    }


def row(
    user_id: int,
    kind: str,
    *,
    title: str,
    dedupe_key: str,
    body: str = "",
    data: dict[str, Any] | None = None,
    page: str | None = None,
    now: datetime,
    sealed: bool = False,
    urgent: bool | None = None,
) -> dict[str, Any]:
    """The values of one outbox row, for a caller that inserts rows itself (then
    :func:`register_for_delivery`); ``sealed`` for an anonymous reporter (yijing.services.sealed),
    ``urgent`` as in :func:`notify`."""
    urgent = is_urgent(kind) if urgent is None else urgent
    return _row(
        user_id,
        kind,
        title=title,
        dedupe_key=dedupe_key,
        body=body,
        data=data,
        page=page,
        now=now,
        sweep_after=_sweep_after(now, urgent),
        sealed=sealed,
    )


def _sweep_after(now: datetime, urgent: bool = False) -> datetime:
    """When the sweeper may take the row if its delivery job never ran: soon for urgent rows (within the
    dispatch ring timeout), after ``NOTIFY_SWEEP_GRACE`` for the rest."""
    config = current_app.config["YIJING"]
    grace = min(config.notify_sweep_grace, urgent_lease(config)) if urgent else config.notify_sweep_grace
    return now + timedelta(seconds=grace)


def urgent_lease(config: Any) -> int:
    """The claim lease of urgent rows (dispatch invitations): a quarter of the ring timeout, so that a
    worker killed mid-batch hands them over well before the next ring is due."""
    return max(1, min(config.notify_claim_lease, config.dispatch_ring_timeout_seconds // 4))


def notify(
    user_id: int,
    kind: str,
    *,
    title: str,
    dedupe_key: str,
    body: str = "",
    data: dict[str, Any] | None = None,
    page: str | None = None,
    urgent: bool | None = None,
) -> bool:
    """Write one outbox row; False when ``dedupe_key`` already made one (the event is known).

    ``urgent`` sends it on the dispatch queue, ahead of ordinary notifications (default: the template's
    ``urgent`` setting for ``kind``). Delivery is enqueued when the caller's transaction commits.
    """
    session = db.session()
    urgent = is_urgent(kind) if urgent is None else urgent
    ids = insert_ignore_returning(
        session,
        Notification,
        row(
            user_id,
            kind,
            title=title,
            dedupe_key=dedupe_key,
            body=body,
            data=data,
            page=page,
            now=utcnow(),
            urgent=urgent,
        ),
    )
    if not ids:
        return False
    register_for_delivery(session, ids, urgent=urgent)
    return True


def notify_many(rows: list[dict[str, Any]], *, urgent: bool = False) -> list[int]:
    """Write many outbox rows in one INSERT (fan-out; on PostgreSQL one prepared statement with an
    array per column, :func:`yijing.sql.insert_many_ignore_returning`); each dict holds ``notify``'s
    arguments.

    Returns the ids of the rows inserted (a known ``dedupe_key`` inserts nothing).
    """
    if not rows:
        return []
    session = db.session()
    ids = insert_many_ignore_returning(session, Notification, rows_of(rows, urgent=urgent))
    register_for_delivery(session, ids, urgent=urgent)
    return ids


def rows_of(messages: list[dict[str, Any]], *, urgent: bool = False) -> list[dict[str, Any]]:
    """The outbox rows of many messages (each dict holds ``notify``'s arguments), for a caller that
    inserts them itself and then has them delivered (:func:`delivery_specs`)."""
    now = utcnow()
    sweep_after = _sweep_after(now, urgent)
    return [
        _row(
            r["user_id"],
            r["kind"],
            title=r["title"],
            dedupe_key=r["dedupe_key"],
            body=r.get("body", ""),
            data=r.get("data"),
            page=r.get("page"),
            now=now,
            sweep_after=sweep_after,
        )
        for r in messages
    ]


def is_urgent(kind: str) -> bool:
    """Whether ``kind``'s template sends it ahead of ordinary notifications (dispatch invitations)."""
    template = current_app.config["YIJING"].wechat_templates.for_kind(kind)
    return bool(template and template.urgent)


DELIVER = "workers.notifications.deliver"
# Infrastructure failures (database gone mid-batch): RQ runs the batch again; rows it already finished
# are skipped by the claim.
DELIVER_RETRY = jobs.Retry(max=3, interval=[10, 60, 300])
DELIVER_FAILURE_TTL = 7 * 24 * 3600


def job_timeout(config: Any) -> int:
    """The RQ timeout of a delivery job: it stops starting sends before its lease ends."""
    return int(config.notify_claim_lease + 3 * config.wechat_timeout + 30)


def delivery_specs(ids: Sequence[int], *, urgent: bool = False, delay: int = 0) -> list[jobs.JobSpec]:
    """Delivery jobs for ``ids``, one per batch (``NOTIFY_BATCH_SIZE``), urgent ones on the dispatch queue.

    Delivery jobs carry no job id: RQ's ``unique`` ids would refuse a re-enqueue while a finished or
    failed job of that id is still kept, and the database claim already makes duplicates harmless.
    """
    config = current_app.config["YIJING"]
    size = config.notify_batch_size
    ids = list(ids)
    return [
        jobs.JobSpec(
            queue=jobs.DISPATCH if urgent else jobs.NOTIFY,
            func=DELIVER,
            args=(ids[start : start + size],),
            kwargs={"urgent": True} if urgent else {},
            timeout=job_timeout(config),
            retry=DELIVER_RETRY,
            failure_ttl=DELIVER_FAILURE_TTL,
            result_ttl=300,
            delay=delay,
        )
        for start in range(0, len(ids), size)
    ]


class _DeliveryBatches:
    """The rows a transaction wrote, turned into delivery jobs when it commits (dropped on rollback)."""

    def __init__(self) -> None:
        self.rows: dict[bool, list[int]] = {False: [], True: []}

    def __call__(self) -> list[jobs.JobSpec]:
        return delivery_specs(self.rows[False]) + delivery_specs(self.rows[True], urgent=True)


def register_for_delivery(session: Session, ids: list[int], *, urgent: bool = False) -> None:
    """Enqueue delivery of these rows once ``session``'s transaction commits (in batches)."""
    if not ids:
        return
    batches = next((p for p in jobs.pending(session) if isinstance(p, _DeliveryBatches)), None)
    if batches is None:
        batches = _DeliveryBatches()
        jobs.enqueue_after_commit(session, batches)
    batches.rows[urgent].extend(ids)
