"""Reading the feed: pages cached in Redis per (scope, kind), built by one UNION ALL on a miss."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Row, Select, and_, func, select, tuple_, union_all

from yijing.config import settings
from yijing.errors import InvalidInput
from yijing.extensions import db, redis_client
from yijing.models import (
    Jurisdiction,
    Post,
    PostStatus,
)
from yijing.models.base import utcnow
from yijing.models.feed import LIVE_STATUSES
from yijing.models.jurisdiction import LEVEL_LABELS
from yijing.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, encode_cursor
from yijing.services.feed.common import CACHE_SIZE, SUMMARY_CHARS, Scope, _k_page, _k_ver
from yijing.services.feed.scopes import _scope_ids, reader_scopes

log = logging.getLogger(__name__)


def _live(now: datetime) -> Any:
    return and_(Post.status.in_(LIVE_STATUSES), Post.published_at <= now)


_ITEM_COLUMNS = (
    Post.id,
    Post.kind,
    Post.title,
    func.substr(Post.body, 1, SUMMARY_CHARS).label("summary"),
    Post.images,
    Post.jurisdiction_id,
    Post.pinned,
    Post.published_at,
    Post.view_count,
    Post.like_count,
    Post.comment_count,
    Jurisdiction.name.label("jurisdiction_name"),
    Jurisdiction.level.label("jurisdiction_level"),
)


def _next_scheduled(scope: int, kind: str | None, now: datetime) -> Select[Any]:
    stmt = select(func.min(Post.published_at)).where(
        Post.status == PostStatus.SCHEDULED, Post.published_at > now, Post.jurisdiction_id == scope
    )
    return stmt.where(Post.kind == kind) if kind else stmt


def _scope_select(
    scope: int, kind: str | None, now: datetime, after: Sequence[Any] | None, limit: int, with_next: bool
) -> Select[Any]:
    columns: list[Any] = list(_ITEM_COLUMNS)
    if with_next:
        columns.append(_next_scheduled(scope, kind, now).scalar_subquery().label("next_at"))
    stmt = (
        select(*columns)
        .join(Jurisdiction, Jurisdiction.id == Post.jurisdiction_id)
        .where(Post.jurisdiction_id == scope, _live(now))
    )
    if kind:
        stmt = stmt.where(Post.kind == kind)
    if after is not None:
        stmt = stmt.where(tuple_(Post.pinned, Post.published_at, Post.id) < tuple_(*after))
    return stmt.order_by(Post.pinned.desc(), Post.published_at.desc(), Post.id.desc()).limit(limit)


def _fetch(
    scopes: Sequence[int],
    kind: str | None,
    now: datetime,
    *,
    after: Sequence[Any] | None = None,
    limit: int,
    with_next: bool = False,
) -> list[Row[Any]]:
    """Up to ``limit`` live items per scope, in one statement (UNION ALL of per-scope index scans)."""
    selects = [_scope_select(s, kind, now, after, limit, with_next) for s in scopes]
    if len(selects) == 1:
        return list(db.session.execute(selects[0]).all())
    compound = union_all(*(select(*s.subquery().c) for s in selects))
    return list(db.session.execute(compound).all())


def _item(row: Any) -> dict[str, Any]:
    summary = " ".join((row.summary or "").split())
    return {
        "id": row.id,
        "kind": row.kind,
        "title": row.title,
        "summary": summary,
        "images": list(row.images or []),
        "jurisdiction": {
            "id": row.jurisdiction_id,
            "name": row.jurisdiction_name,
            "level": row.jurisdiction_level,
            "level_label": LEVEL_LABELS.get(row.jurisdiction_level, row.jurisdiction_level),
        },
        "pinned": bool(row.pinned),
        "published_at": row.published_at.isoformat(),
        "view_count": row.view_count,
        "like_count": row.like_count,
        "comment_count": row.comment_count,
    }


def _sort_key(item: dict[str, Any]) -> tuple[bool, datetime, int]:
    return (item["pinned"], datetime.fromisoformat(item["published_at"]), item["id"])


def _decode_feed_cursor(cursor: str) -> list[Any]:
    values = decode_cursor(cursor, 3, (bool, datetime, int))
    pinned, published_at, post_id = values
    if not isinstance(pinned, bool) or not isinstance(published_at, datetime) or not isinstance(post_id, int):
        raise InvalidInput(
            "分页游标 cursor 无效，请从第一页重新加载", code="invalid_cursor", fields={"cursor": ["无效"]}
        )
    return values


def _cached_pages(
    scopes: Sequence[Scope], kind: str | None, now: datetime
) -> list[tuple[list[dict[str, Any]], bool]]:
    """The first page of each scope, from Redis where valid, built in one statement where not."""
    keys = [k for s in scopes for k in (_k_ver(s, kind), _k_page(s, kind))]
    try:
        values = redis_client().mget(keys)
        redis_ok = True
    except RedisError as exc:
        log.warning("feed cache read failed, using the database", extra={"error": str(exc)})
        values, redis_ok = [None] * len(keys), False
    pages: dict[Scope, tuple[list[dict[str, Any]], bool]] = {}
    versions: dict[Scope, int] = {}
    for i, scope in enumerate(scopes):
        version = int(values[2 * i] or 0)
        versions[scope] = version
        raw = values[2 * i + 1]
        if raw is not None:
            page = json.loads(raw)
            if page.get("v") == version:
                pages[scope] = (page["items"], page["complete"])
    missing = _scope_ids([s for s in scopes if s not in pages])
    if missing:
        rows = _fetch(list(missing.values()), kind, now, limit=CACHE_SIZE + 1, with_next=True)
        by_id: dict[int, list[Any]] = {jid: [] for jid in missing.values()}
        for row in rows:
            by_id[row.jurisdiction_id].append(row)
        to_store = []
        for scope, scope_id in missing.items():
            scope_rows = by_id[scope_id]
            next_at = (
                scope_rows[0].next_at
                if scope_rows
                else db.session.scalar(_next_scheduled(scope_id, kind, now))
            )
            items = [_item(r) for r in scope_rows[:CACHE_SIZE]]
            complete = len(scope_rows) <= CACHE_SIZE
            pages[scope] = (items, complete)
            ttl_ms = settings().feed_page_cache_ttl * 1000
            if next_at is not None:
                ttl_ms = min(ttl_ms, math.ceil((next_at - now).total_seconds() * 1000))
            value = {"v": versions[scope], "complete": complete, "items": items}
            to_store.append((_k_page(scope, kind), json.dumps(value, ensure_ascii=False), max(ttl_ms, 1)))
        if redis_ok:
            try:
                pipe = redis_client().pipeline(transaction=False)
                for key, value, ttl_ms in to_store:
                    pipe.set(key, value, px=ttl_ms)
                pipe.execute()
            except RedisError as exc:
                log.warning("feed cache write failed", extra={"error": str(exc)})
    return [pages.get(s, ([], True)) for s in scopes]


def feed(
    user_id: int | None,
    *,
    profile: Mapping[str, Any] | None = None,
    district_id: int | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[dict[str, Any]]:
    """A page of the reader's feed: pinned posts first, then newest first.

    Items are in their wire format already (``published_at`` an ISO 8601 string), the shape
    ``FeedItemSchema`` documents: the hottest read of the system skips a second serialisation.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    scopes = reader_scopes(user_id, district_id, profile)
    now = utcnow()
    if cursor is None and limit <= CACHE_SIZE:
        keyed: list[tuple[tuple[bool, datetime, int], dict[str, Any]]] = []
        complete = True
        for items, scope_complete in _cached_pages(scopes, kind, now):
            keyed.extend((_sort_key(item), item) for item in items)
            complete = complete and scope_complete
        keyed = [pair for pair in keyed if pair[0][1] <= now]
        has_more = len(keyed) > limit or not complete
    else:
        after = _decode_feed_cursor(cursor) if cursor else None
        ids = list(_scope_ids(scopes).values())
        rows = _fetch(ids, kind, now, after=after, limit=limit + 1) if ids else []
        keyed = [(_sort_key(item), item) for item in map(_item, rows)]
        has_more = len(keyed) > limit
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    page = keyed[:limit]
    next_cursor = encode_cursor(list(page[-1][0])) if has_more and page else None
    return Page(items=[item for _key, item in page], next_cursor=next_cursor)
