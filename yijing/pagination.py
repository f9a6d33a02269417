"""Cursor (keyset) pagination: stable under inserts, one indexed query per page."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_

from yijing.errors import InvalidInput
from yijing.extensions import db

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class SortKey:
    """A column (or expression) of the ordering and its direction."""

    column: ColumnElement[Any]
    descending: bool = False


def encode_cursor(values: Sequence[Any]) -> str:
    tagged = [{"dt": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(tagged, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    bad = InvalidInput("分页游标无效，请从第一页重新加载", code="invalid_cursor", fields={"cursor": ["无效"]})
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (ValueError, TypeError):
        raise bad from None
    if not isinstance(values, list) or len(values) != size:
        raise bad
    try:
        return [datetime.fromisoformat(v["dt"]) if isinstance(v, dict) else v for v in values]
    except (KeyError, ValueError, TypeError):
        raise bad from None


def _after(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the ordering given by ``keys``."""
    clauses = []
    for i, key in enumerate(keys):
        equal_before = [keys[j].column == values[j] for j in range(i)]
        beyond = key.column < values[i] if key.descending else key.column > values[i]
        clauses.append(and_(*equal_before, beyond))
    return or_(*clauses)


def paginate(
    stmt: Select[Any],
    keys: Sequence[SortKey],
    cursor_values: Callable[[Any], Sequence[Any]],
    *,
    cursor: str | None,
    limit: int = DEFAULT_LIMIT,
    scalars: bool = True,
) -> Page[Any]:
    """Run ``stmt`` ordered by ``keys`` from ``cursor``; the last key must be unique (an id)."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        stmt = stmt.where(_after(keys, decode_cursor(cursor, len(keys))))
    stmt = stmt.order_by(*(k.column.desc() if k.descending else k.column.asc() for k in keys))
    stmt = stmt.limit(limit + 1)
    result = db.session.execute(stmt)
    rows = list(result.scalars() if scalars else result.all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(list(cursor_values(rows[-1]))) if has_more and rows else None
    return Page(items=rows, next_cursor=next_cursor)
