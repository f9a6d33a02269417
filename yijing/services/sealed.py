"""What is due to an anonymous reporter, sealed and held back so that nothing points at the clue.

A notification or points for the reporter of an anonymous clue must name the user (it has to reach
them), and a row naming the user written in the same transaction as the clue's event would carry
the event's timestamp: anyone who reads both tables could join them on time. So the clue's
transaction writes only a :class:`SealedEnvelope` (the user id and the content encrypted, no clue
id, no creation time, a release instant drawn at random between ``SEALED_DELAY_MIN_SECONDS`` and
``SEALED_DELAY_MAX_SECONDS`` ahead), and :func:`release_due` (a periodic job) opens every envelope
that is due in one batch: the notification and points rows it writes carry the batch's time, with
envelopes from other clues and other minutes beside them. Notifications released this way are
``sealed``: staff views never show whom they are for, and the retention job deletes them
``RETAIN_SEALED_NOTIFICATION_DAYS`` after delivery.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select

from yijing import pii
from yijing.extensions import db
from yijing.models import Notification, SealedEnvelope
from yijing.models.base import utcnow
from yijing.services import outbox, points
from yijing.sql import insert_ignore_returning

log = logging.getLogger(__name__)

ENVELOPE_CONTEXT = "sealed.envelope"
NOTIFY = "notify"
POINTS = "points"


def _release_after(now: datetime) -> datetime:
    config = current_app.config["YIJING"]
    low, high = config.sealed_delay_min_seconds, config.sealed_delay_max_seconds
    return now + timedelta(seconds=low + secrets.randbelow(high - low + 1))


def _seal(payload: dict[str, Any]) -> None:
    envelope = SealedEnvelope(
        release_after=_release_after(utcnow()),
        payload_enc=pii.encrypt(json.dumps(payload, ensure_ascii=False), context=ENVELOPE_CONTEXT),
    )
    db.session.add(envelope)


def notify(
    user_id: int,
    kind: str,
    *,
    title: str,
    body: str,
    dedupe_key: str,
    page: str | None,
    data: dict[str, Any] | None = None,
) -> None:
    """Seal a notification for an anonymous reporter in the caller's transaction.

    A ``changed_at`` in ``data`` is replaced by the release batch's time: the exact time of the clue's
    event would tie the released row to the clue."""
    _seal(
        {
            "type": NOTIFY,
            "user_id": user_id,
            "kind": kind,
            "title": title,
            "body": body,
            "dedupe_key": dedupe_key,
            "page": page,
            "data": data or {},
        }
    )


def award(user_id: int, amount: int, *, reason: str, source_key: str) -> None:
    """Seal points for an anonymous reporter in the caller's transaction."""
    _seal({"type": POINTS, "user_id": user_id, "amount": amount, "reason": reason, "source_key": source_key})


def release_due(*, now: datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """Open the envelopes that are due, write what they hold (all with one timestamp), delete them.

    Idempotent: the notification's dedupe key and the points' source key make a replay write nothing.
    """
    now = now or utcnow()
    query = select(SealedEnvelope).where(SealedEnvelope.release_after <= now).order_by(SealedEnvelope.id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    envelopes = db.session.scalars(query.limit(limit)).all()
    released = {NOTIFY: 0, POINTS: 0}
    if not envelopes:
        db.session.rollback()
        return released
    batch_time = now
    notification_rows: list[dict[str, Any]] = []
    for envelope in envelopes:
        payload = json.loads(pii.decrypt(envelope.payload_enc, context=ENVELOPE_CONTEXT))
        if payload["type"] == NOTIFY:
            notification_rows.append(payload)
        elif payload["type"] == POINTS and points.award(
            payload["user_id"],
            payload["amount"],
            reason=payload["reason"],
            source_key=payload["source_key"],
            at=batch_time,
        ):
            released[POINTS] += 1
    if notification_rows:
        ids = insert_ignore_returning(
            db.session(),
            Notification,
            [
                outbox.row(
                    p["user_id"],
                    p["kind"],
                    title=p["title"],
                    dedupe_key=p["dedupe_key"],
                    body=p["body"],
                    data=_released_data(p.get("data") or {}, batch_time),
                    page=p["page"],
                    now=batch_time,
                    sealed=True,
                )
                for p in notification_rows
            ],
        )
        outbox.register_for_delivery(db.session(), ids)
        released[NOTIFY] = len(ids)
    db.session.execute(delete(SealedEnvelope).where(SealedEnvelope.id.in_([e.id for e in envelopes])))
    db.session.commit()
    log.info("sealed envelopes released", extra={"envelopes": len(envelopes), **released})
    return released


def _released_data(data: dict[str, Any], batch_time: datetime) -> dict[str, Any]:
    if "changed_at" in data:
        return {**data, "changed_at": batch_time.isoformat()}
    return data
