"""Dialect-aware statements that the ORM does not offer portably."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, model: type, values: dict[str, Any] | list[dict[str, Any]]) -> int:
    """INSERT … ON CONFLICT DO NOTHING in the session's transaction; returns rows inserted.

    Counted with RETURNING: drivers report ``rowcount`` for this statement unreliably (-1).
    """
    dialect = session.get_bind().dialect.name
    table = model.__table__
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(values).on_conflict_do_nothing()
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise NotImplementedError(dialect)
    primary_key = next(iter(table.primary_key.columns))
    return len(session.execute(stmt.returning(primary_key)).all())
