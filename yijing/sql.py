"""Dialect-aware statements that the ORM does not offer portably."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Insert, Row, Table, bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable


def insert_ignore(session: Session, model: type, values: dict[str, Any] | list[dict[str, Any]]) -> int:
    """INSERT … ON CONFLICT DO NOTHING in the session's transaction; returns rows inserted.

    Counted with RETURNING: psycopg 3 reports ``rowcount`` -1 for this statement on PostgreSQL.
    """
    primary_key = next(iter(model.__table__.primary_key.columns)).name
    return len(insert_ignore_returning(session, model, values, primary_key))


def insert_ignore_returning(
    session: Session, model: type, values: dict[str, Any] | list[dict[str, Any]], column: str = "id"
) -> list[Any]:
    """Like :func:`insert_ignore`; returns ``column`` of the rows inserted (a conflict returns nothing)."""
    rows = values if isinstance(values, list) else [values]
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    table = model.__table__
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise NotImplementedError(dialect)
    # Parameters as a list: one cached statement, batched by SQLAlchemy's "insertmanyvalues"
    # (a multi-row VALUES built with .values(list) would be compiled anew for every call).
    return list(session.execute(stmt.returning(table.c[column]), rows).scalars())


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_many_ignore_returning(
    session: Session, model: type, rows: list[dict[str, Any]], column: str = "id"
) -> list[Any]:
    """:func:`insert_ignore_returning` for a batch of rows with the same keys (the order of the
    answer is not promised).

    On PostgreSQL the rows go as one array per column, ``INSERT … SELECT … FROM unnest(…)``: the
    SQL text is the same for any number of rows, so psycopg prepares it once, where the multi-row
    VALUES of "insertmanyvalues" is parsed anew on every call and, past 50 parameters, never
    prepared. Elsewhere (SQLite): :func:`insert_ignore_returning`.
    """
    if len(rows) < 2 or not is_postgresql(session):
        return insert_ignore_returning(session, model, rows, column)
    columns = tuple(rows[0])
    arrays = {f"u_{key}": [row[key] for row in rows] for key in columns}
    return list(session.execute(_unnest_insert(model.__table__, columns, column), arrays).scalars())


@functools.lru_cache(maxsize=32)
def _unnest_insert(table: Table, columns: tuple[str, ...], returning: str) -> Insert:
    """PostgreSQL: ``INSERT INTO table (columns) SELECT * FROM unnest(:u_<column>, …) ON CONFLICT DO
    NOTHING RETURNING <returning>``, one array parameter ``u_<column>`` per column (typed as the
    column's array, so the rows' values are bound as the column would bind them; the columns'
    Python-side defaults fill the others). Built once per shape."""
    source = (
        func.unnest(*(bindparam(f"u_{key}", type_=postgresql.ARRAY(table.c[key].type)) for key in columns))
        .table_valued(*columns)
        .render_derived()
    )
    return (
        postgresql.insert(table)
        .from_select(list(columns), select(*source.c))
        .on_conflict_do_nothing()
        .returning(table.c[returning])
    )


def analyze(session: Session, *models: type) -> None:
    """Refresh the planner's statistics after a bulk load, so the next query does not plan for the
    empty tables it saw before (a report query went from 44 s to 80 ms on generated data)."""
    session.commit()
    for model in models:
        session.execute(text(f"ANALYZE {model.__table__.name}"))
    session.commit()


def vacuum_analyze(session: Session, *models: type) -> None:
    """:func:`analyze`, and on PostgreSQL a VACUUM of the tables too: a freshly written table's
    visibility map is empty, so until it is vacuumed its covering indexes are read with a heap
    fetch per row instead of by index-only scans (a city summary's rollup reads: 2.5× slower)."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        analyze(session, *models)
        return
    session.commit()
    with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for model in models:
            conn.execute(text(f"VACUUM (ANALYZE) {model.__table__.name}"))


def work_mem(session: Session, megabytes: int) -> None:
    """Give this transaction's sorts and hash tables ``megabytes`` of memory (PostgreSQL only).

    Report aggregates over hundreds of thousands of rollup rows otherwise spill to disk with the
    default 4 MB (a city summary's sums: 0.9 s sorting on disk, 0.26 s hashed in memory).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{int(megabytes)}MB'"))


def text_matches(q: str | None, *columns: Any) -> Any:
    """A WHERE clause for a staff search box: every word of ``q`` appears (case-insensitively) in
    one of ``columns``; ``None`` when ``q`` is blank. ``%`` and ``_`` in the words match themselves."""
    from sqlalchemy import and_, func, or_

    words = (q or "").split()[:8]
    if not words:
        return None
    return and_(
        *(
            or_(*(func.lower(column).contains(word.lower(), autoescape=True) for column in columns))
            for word in words
        )
    )


def read_rows(session: Session, statement: Executable, params: Mapping[str, Any]) -> Sequence[Row[Any]]:
    """The rows of one read-only statement, at the Core level (no ORM processing of the rows).

    Outside a transaction it runs on a connection of its own in autocommit mode, handed back to
    the pool at once: no BEGIN and ROLLBACK round trips (one statement reads one snapshot
    anyway), and the session stays without a connection. Inside the session's transaction it
    runs there, seeing what the transaction wrote.
    """
    if session.in_transaction():
        return session.connection().execute(statement, params).all()
    with session.get_bind(clause=statement).connect() as conn:  # type: ignore[arg-type]
        return conn.execution_options(isolation_level="AUTOCOMMIT").execute(statement, params).all()
