"""Dialect-aware statements that the ORM does not offer portably."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, model: type, values: dict[str, Any] | list[dict[str, Any]]) -> int:
    """INSERT … ON CONFLICT DO NOTHING in the session's transaction; returns rows inserted."""
    dialect = session.get_bind().dialect.name
    table = model.__table__
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(values).on_conflict_do_nothing()
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise NotImplementedError(dialect)
    # Without preserve_rowcount SQLAlchemy 2.1 + psycopg report -1 for an INSERT, which reads as "inserted".
    return session.execute(stmt, execution_options={"preserve_rowcount": True}).rowcount or 0
