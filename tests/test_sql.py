"""Dialect-aware statements: INSERT … ON CONFLICT DO NOTHING counts what it inserted on both backends;
``read_rows`` reads outside a transaction when none is open, inside it otherwise."""

from __future__ import annotations

from yijing.extensions import db
from yijing.models import IdempotencyRecord
from yijing.models.base import utcnow
from yijing.sql import insert_ignore, insert_ignore_returning, insert_many_ignore_returning, read_rows


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


def test_insert_many_ignore_returning_writes_the_rows_as_given(app_ctx):
    """Several rows at once: on PostgreSQL one array per column through ``unnest`` (the same SQL
    text for any number of rows, so psycopg prepares it once), elsewhere a batched INSERT; either
    way every value is stored as given (times, NULLs), a known key inserts nothing, and the ids
    of the rows inserted come back."""
    from sqlalchemy import event, select

    session = db.session()
    insert_ignore(session, IdempotencyRecord, _values("known"))
    statements: list[str] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    rows = [{**_values(k), "response_status": None, "response_body": None} for k in ("x", "known", "y")]
    rows[2].update(response_status=201, response_body='{"ok": true}')
    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        ids = insert_many_ignore_returning(session, IdempotencyRecord, rows)
        more = insert_many_ignore_returning(
            session, IdempotencyRecord, [{**row, "key": f"{row['key']}-2"} for row in rows + rows[:2]]
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert len(ids) == 2 and len(more) == 3  # "x-2" twice: the second is a conflict
    stored = {
        r.key: r for r in db.session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.id.in_(ids)))
    }
    assert sorted(stored) == ["x", "y"]
    for row in (rows[0], rows[2]):
        got = stored[row["key"]]
        assert (got.request_hash, got.response_status, got.response_body) == (
            row["request_hash"],
            row["response_status"],
            row["response_body"],
        )
        assert got.created_at == row["created_at"]
    if db.engine.dialect.name == "postgresql":
        assert len(statements) == 2 and statements[0] == statements[1] and "unnest" in statements[0]
    db.session.commit()


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
