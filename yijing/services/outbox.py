"""Writing notifications to the outbox in the caller's transaction, and relaying them after the commit.

An event produces its row exactly once (the unique ``dedupe_key``), in the same commit as the change
that caused it. Every row written in a transaction is remembered on the session; once the transaction
commits, one delivery job per batch of rows is enqueued (``workers.notifications.deliver``). If Redis
is down at that moment the rows stay ``pending`` and the sweeper enqueues them later; a rollback
drops them with the rows.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

# Imported here, not in the listener below: importing it registers Session listeners, and SQLAlchemy
# refuses a listener added while it is running the after_commit listeners.
import workers.queues  # noqa: F401
from yijing.extensions import db
from yijing.models import Notification, NotificationStatus
from yijing.models.base import utcnow
from yijing.sql import insert_ignore_returning

log = logging.getLogger(__name__)

_NEW_ROWS_KEY = "yijing_outbox_new_rows"


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
) -> dict[str, Any]:
    """The values of one outbox row, for a caller that inserts rows itself (then
    :func:`register_for_delivery`); ``sealed`` for an anonymous reporter (yijing.services.sealed)."""
    return _row(
        user_id,
        kind,
        title=title,
        dedupe_key=dedupe_key,
        body=body,
        data=data,
        page=page,
        now=now,
        sweep_after=_sweep_after(now),
        sealed=sealed,
    )


def _sweep_after(now: datetime) -> datetime:
    return now + timedelta(seconds=current_app.config["YIJING"].notify_sweep_grace)


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
    now = utcnow()
    session = db.session()
    ids = insert_ignore_returning(
        session,
        Notification,
        _row(
            user_id,
            kind,
            title=title,
            dedupe_key=dedupe_key,
            body=body,
            data=data,
            page=page,
            now=now,
            sweep_after=_sweep_after(now),
        ),
    )
    if not ids:
        return False
    register_for_delivery(session, ids, urgent=_is_urgent(kind) if urgent is None else urgent)
    return True


def notify_many(rows: list[dict[str, Any]], *, urgent: bool = False) -> list[int]:
    """Write many outbox rows in one INSERT (fan-out); each dict holds ``notify``'s arguments.

    Returns the ids of the rows inserted (a known ``dedupe_key`` inserts nothing).
    """
    if not rows:
        return []
    now = utcnow()
    sweep_after = _sweep_after(now)
    values = [
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
        for r in rows
    ]
    session = db.session()
    ids = insert_ignore_returning(session, Notification, values)
    register_for_delivery(session, ids, urgent=urgent)
    return ids


def _is_urgent(kind: str) -> bool:
    template = current_app.config["YIJING"].wechat_templates.for_kind(kind)
    return bool(template and template.urgent)


def register_for_delivery(session: Session, ids: list[int], *, urgent: bool = False) -> None:
    """Enqueue delivery of these rows once ``session``'s transaction commits."""
    if not ids:
        return
    # Loaded now rather than inside the after_commit listener (see the import of workers.queues).
    import workers.notifications  # noqa: F401

    pending: dict[bool, list[int]] = session.info.setdefault(_NEW_ROWS_KEY, {})
    pending.setdefault(urgent, []).extend(ids)


@event.listens_for(Session, "after_commit")
def _relay_after_commit(session: Session) -> None:
    pending: dict[bool, list[int]] | None = session.info.pop(_NEW_ROWS_KEY, None)
    if not pending:
        return
    from workers import notifications

    try:
        notifications.enqueue_delivery(pending.get(False, []), urgent_ids=pending.get(True, []))
    except RedisError as exc:
        count = sum(len(v) for v in pending.values())
        log.warning(
            "enqueueing notifications failed; the sweeper will pick them up",
            extra={"rows": count, "error": str(exc)},
        )


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_NEW_ROWS_KEY, None)
