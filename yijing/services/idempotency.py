"""Idempotency keys: a replayed key returns the first answer and creates nothing new."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from yijing.errors import Conflict, InvalidInput
from yijing.extensions import db
from yijing.models import IdempotencyRecord
from yijing.models.base import utcnow
from yijing.sql import insert_ignore

# A claim whose request never finished (the process died) may be taken over after this long.
STALE_CLAIM = timedelta(seconds=60)


@dataclass(frozen=True)
class Claim:
    """Either ours to run (``record_id``) or an answer to replay (``status`` and ``body``)."""

    record_id: int | None = None
    status: int | None = None
    body: str | None = None

    @property
    def is_replay(self) -> bool:
        return self.status is not None


def claim(scope: str, key: str, endpoint: str, request_hash: str) -> Claim:
    """Claim ``key`` for this request in a transaction of its own."""
    if not key or len(key) > 128 or not key.isprintable():
        raise InvalidInput(
            "Idempotency-Key 应为 1 到 128 个可见字符", fields={"Idempotency-Key": ["长度或字符不符合要求"]}
        )
    now = utcnow()
    inserted = insert_ignore(
        db.session(),
        IdempotencyRecord,
        {"scope": scope, "key": key, "endpoint": endpoint, "request_hash": request_hash, "created_at": now},
    )
    record = db.session.scalar(
        select(IdempotencyRecord).where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
    )
    db.session.commit()
    assert record is not None
    if inserted:
        return Claim(record_id=record.id)
    if record.endpoint != endpoint or record.request_hash != request_hash:
        raise InvalidInput(
            "这个 Idempotency-Key 已用于另一个请求，请为新的请求换一个",
            code="idempotency_key_reused",
        )
    if record.response_status is not None:
        return Claim(record_id=record.id, status=record.response_status, body=record.response_body)
    if now - record.created_at < STALE_CLAIM:
        raise Conflict("同一请求正在处理中，请稍候再查看结果", code="request_in_progress")
    taken = db.session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record.id, IdempotencyRecord.created_at == record.created_at)
        .values(created_at=now)
    ).rowcount
    db.session.commit()
    if not taken:
        raise Conflict("同一请求正在处理中，请稍候再查看结果", code="request_in_progress")
    return Claim(record_id=record.id)


def complete(record_id: int, status: int, body: str) -> None:
    db.session.rollback()
    db.session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id)
        .values(response_status=status, response_body=body)
    )
    db.session.commit()


def release(record_id: int) -> None:
    """Forget a claim whose request failed in a way worth retrying."""
    db.session.rollback()
    db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
    db.session.commit()


def retention() -> timedelta:
    """How long stored answers are kept (``RETAIN_IDEMPOTENCY_HOURS``): phones retry within minutes."""
    return timedelta(hours=current_app.config["YIJING"].retain_idempotency_hours)


def purge_expired() -> int:
    """Delete stored answers older than :func:`retention` (a scheduled job calls this)."""
    deleted = db.session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - retention())
    ).rowcount
    db.session.commit()
    return deleted or 0
