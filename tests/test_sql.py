"""Dialect-aware statements: INSERT … ON CONFLICT DO NOTHING counts what it inserted on both backends;
``read_rows`` reads outside a transaction when none is open, inside it otherwise."""

from __future__ import annotations

from yijing.extensions import db
from yijing.models import IdempotencyRecord
from yijing.models.base import utcnow
from yijing.sql import insert_ignore, insert_ignore_returning, read_rows


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


def test_read_rows_outside_a_transaction_leaves_the_session_without_one_and_inside_sees_its_writes(app_ctx):
    from sqlalchemy import bindparam, func, select

    count = (
        select(func.count())
        .select_from(IdempotencyRecord)
        .where(IdempotencyRecord.scope == bindparam("scope"))
    )
    session = db.session()
    db.session.add(IdempotencyRecord(**_values("a")))
    db.session.commit()
    assert not session.in_transaction()
    assert read_rows(session, count, {"scope": "s"})[0][0] == 1
    assert not session.in_transaction()  # its own connection, in autocommit, handed back at once

    db.session.add(IdempotencyRecord(**_values("b")))
    db.session.flush()  # written in the session's transaction, not committed
    assert read_rows(session, count, {"scope": "s"})[0][0] == 2
    db.session.rollback()
    assert read_rows(session, count, {"scope": "s"})[0][0] == 1
