"""Cursor (keyset) pagination: stable under inserts, one indexed query per page."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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


MAX_CURSOR_LENGTH = 512
_INT64 = (-(2**63), 2**63 - 1)


def bad_cursor() -> InvalidInput:
    return InvalidInput(
        "分页游标 cursor 无效，请从第一页重新加载",
        code="invalid_cursor",
        fields={"cursor": ["无效，请从第一页重新加载"]},
    )


def _scalar(value: Any, expected: type | None) -> Any:
    """One decoded cursor value, checked against the type its sort key holds; else the cursor is bad."""
    if isinstance(value, dict):
        if set(value) != {"dt"} or not isinstance(value["dt"], str) or len(value["dt"]) > 40:
            raise bad_cursor()
        value = datetime.fromisoformat(value["dt"])  # ValueError → bad cursor (caught by the caller)
        if value.tzinfo is None:  # times are UTC; a forged one without its offset is read as UTC
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)  # OverflowError at the ends of the calendar → bad cursor
        if not 1900 <= value.year <= 9000:
            raise bad_cursor()
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise bad_cursor()
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise bad_cursor()
    elif isinstance(value, str):
        if len(value) > 200 or "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
            raise bad_cursor()
    else:  # null, lists, objects of any other shape
        raise bad_cursor()
    if expected is None:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise bad_cursor()
    if not isinstance(value, expected):
        raise bad_cursor()
    return value


def decode_cursor(cursor: str, size: int, types: Sequence[type | None] | None = None) -> list[Any]:
    """The values a cursor carries, each a scalar of the type its sort key holds (``types``).

    A forged or garbled cursor (not base64 JSON, null, nested, out of range, of another type) is a
    422 ``invalid_cursor`` naming the field, never a database error.
    """
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        raise bad_cursor() from None
    if not isinstance(values, list) or len(values) != size:
        raise bad_cursor()
    expected = list(types) if types is not None else [None] * size
    try:
        return [_scalar(v, t) for v, t in zip(values, expected, strict=True)]
    except (KeyError, ValueError, TypeError, OverflowError):
        raise bad_cursor() from None


def _python_type(column: ColumnElement[Any]) -> type | None:
    column_type = getattr(column.type, "impl", column.type)  # a TypeDecorator: what it stores
    try:
        kind = column_type.python_type
    except (NotImplementedError, AttributeError):
        return None
    return kind if kind in (int, float, str, bool, datetime) else None


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
        types = [_python_type(k.column) for k in keys]
        stmt = stmt.where(_after(keys, decode_cursor(cursor, len(keys), types)))
    stmt = stmt.order_by(*(k.column.desc() if k.descending else k.column.asc() for k in keys))
    stmt = stmt.limit(limit + 1)
    result = db.session.execute(stmt)
    rows = list(result.scalars() if scalars else result.all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(list(cursor_values(rows[-1]))) if has_more and rows else None
    return Page(items=rows, next_cursor=next_cursor)
