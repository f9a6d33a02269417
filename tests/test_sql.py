"""Dialect-aware statements: INSERT … ON CONFLICT DO NOTHING counts what it inserted on both backends."""

from __future__ import annotations

from yijing.extensions import db
from yijing.models import IdempotencyRecord
from yijing.models.base import utcnow
from yijing.sql import insert_ignore, insert_ignore_returning


def _values(key: str) -> dict:
    return {"scope": "s", "key": key, "endpoint": "e", "request_hash": "h", "created_at": utcnow()}


def test_insert_ignore_counts_inserted_rows(app_ctx):
    session = db.session()
    assert insert_ignore(session, IdempotencyRecord, _values("a")) == 1
    assert insert_ignore(session, IdempotencyRecord, _values("a")) == 0  # psycopg reports -1 here
    assert insert_ignore(session, IdempotencyRecord, [_values("a"), _values("b"), _values("c")]) == 2
    assert insert_ignore(session, IdempotencyRecord, []) == 0
    ids = insert_ignore_returning(session, IdempotencyRecord, [_values("c"), _values("d")])
    assert len(ids) == 1
    db.session.commit()
    assert db.session.query(IdempotencyRecord).count() == 4
