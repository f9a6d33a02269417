"""Reading the feed: pages cached in Redis per (scope, kind), built by one UNION ALL on a miss; the
first page of each reader's view also kept rendered (:func:`first_page`)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Row, Select, and_, func, select, tuple_, union_all

from yijing.config import settings
from yijing.errors import InvalidInput
from yijing.extensions import db, redis_client, redis_key
from yijing.models import (
    Jurisdiction,
    JurisdictionLevel,
    Post,
    PostStatus,
)
from yijing.models.base import utcnow
from yijing.models.feed import LIVE_STATUSES
from yijing.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, encode_cursor
from yijing.policies import Principal
from yijing.services import auth as auth_service
from yijing.services.feed.common import CACHE_SIZE, CITY, SUMMARY_CHARS, Scope, _k_page, _k_rendered, _k_ver
from yijing.services.feed.scopes import _scope_ids, reader_scopes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeedJurisdiction:
    """The scope a post was published in (city or district)."""

    id: int
    name: str
    level: str


@dataclass(frozen=True, slots=True)
class FeedItem:
    """A post as the feed lists it: a summary of the body and the stored counts."""

    id: int
    kind: str
    title: str
    summary: str
    images: list[str]
    jurisdiction: FeedJurisdiction
    pinned: bool
    published_at: datetime
    view_count: int
    like_count: int
    comment_count: int

    @property
    def sort_key(self) -> tuple[bool, datetime, int]:
        return (self.pinned, self.published_at, self.id)


#: Renders a first page for the rendered cache: the blueprint's schema dump, as the response bytes.
Render = Callable[[Page[FeedItem]], bytes]


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


def _item(row: Any) -> FeedItem:
    return FeedItem(
        id=row.id,
        kind=row.kind,
        title=row.title,
        summary=" ".join((row.summary or "").split()),
        images=list(row.images or []),
        jurisdiction=FeedJurisdiction(row.jurisdiction_id, row.jurisdiction_name, row.jurisdiction_level),
        pinned=bool(row.pinned),
        published_at=row.published_at,
        view_count=row.view_count,
        like_count=row.like_count,
        comment_count=row.comment_count,
    )


def _cached(item: FeedItem) -> dict[str, Any]:
    """An item as a scope's page cache keeps it (internal to this module, not a response)."""
    return {
        "id": item.id,
        "kind": item.kind,
        "title": item.title,
        "summary": item.summary,
        "images": item.images,
        "jurisdiction": [item.jurisdiction.id, item.jurisdiction.name, item.jurisdiction.level],
        "pinned": item.pinned,
        "published_at": item.published_at.isoformat(),
        "view_count": item.view_count,
        "like_count": item.like_count,
        "comment_count": item.comment_count,
    }


def _from_cache(data: dict[str, Any]) -> FeedItem:
    return FeedItem(
        **{
            **data,
            "jurisdiction": FeedJurisdiction(*data["jurisdiction"]),
            "published_at": datetime.fromisoformat(data["published_at"]),
        }
    )


def _decode_feed_cursor(cursor: str) -> list[Any]:
    values = decode_cursor(cursor, 3, (bool, datetime, int))
    pinned, published_at, post_id = values
    if not isinstance(pinned, bool) or not isinstance(published_at, datetime) or not isinstance(post_id, int):
        raise InvalidInput(
            "分页游标 cursor 无效，请从第一页重新加载", code="invalid_cursor", fields={"cursor": ["无效"]}
        )
    return values


@dataclass(frozen=True, slots=True)
class _ScopePage:
    items: list[FeedItem]
    complete: bool
    #: When the cached page must go: the page cache TTL, or the next scheduled post of the scope.
    expires_ms: int


def _cached_pages(scopes: Sequence[Scope], kind: str | None, now: datetime) -> list[_ScopePage]:
    """The first page of each scope, from Redis where valid, built in one statement where not."""
    keys = [k for s in scopes for k in (_k_ver(s, kind), _k_page(s, kind))]
    try:
        values = redis_client().mget(keys)
        redis_ok = True
    except RedisError as exc:
        log.warning("feed cache read failed, using the database", extra={"error": str(exc)})
        values, redis_ok = [None] * len(keys), False
    now_ms = int(now.timestamp() * 1000)
    ttl_ms = settings().feed_page_cache_ttl * 1000
    pages: dict[Scope, _ScopePage] = {}
    versions: dict[Scope, int] = {}
    for i, scope in enumerate(scopes):
        version = int(values[2 * i] or 0)
        versions[scope] = version
        raw = values[2 * i + 1]
        if raw is not None:
            page = json.loads(raw)
            if page.get("v") == version and "expires_ms" in page:
                items = [_from_cache(item) for item in page["items"]]
                pages[scope] = _ScopePage(items, page["complete"], page["expires_ms"])
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
            scope_ttl_ms = ttl_ms
            if next_at is not None:
                scope_ttl_ms = min(ttl_ms, math.ceil((next_at - now).total_seconds() * 1000))
            scope_ttl_ms = max(scope_ttl_ms, 1)
            items = [_item(r) for r in scope_rows[:CACHE_SIZE]]
            page = _ScopePage(items, len(scope_rows) <= CACHE_SIZE, now_ms + scope_ttl_ms)
            pages[scope] = page
            value = {
                "v": versions[scope],
                "complete": page.complete,
                "expires_ms": page.expires_ms,
                "items": [_cached(item) for item in page.items],
            }
            to_store.append((_k_page(scope, kind), json.dumps(value, ensure_ascii=False), scope_ttl_ms))
        if redis_ok:
            try:
                pipe = redis_client().pipeline(transaction=False)
                for key, value, px in to_store:
                    pipe.set(key, value, px=px)
                pipe.execute()
            except RedisError as exc:
                log.warning("feed cache write failed", extra={"error": str(exc)})
    return [pages.get(s, _ScopePage([], True, now_ms + ttl_ms)) for s in scopes]


def _merge(pages: Sequence[_ScopePage], limit: int, now: datetime) -> Page[FeedItem]:
    """The first ``limit`` items of the scopes' cached pages together, pinned first, newest first."""
    items = sorted(
        (item for page in pages for item in page.items if item.published_at <= now),
        key=lambda item: item.sort_key,
        reverse=True,
    )
    has_more = len(items) > limit or not all(page.complete for page in pages)
    shown = items[:limit]
    next_cursor = encode_cursor(list(shown[-1].sort_key)) if has_more and shown else None
    return Page(items=shown, next_cursor=next_cursor)


def feed(
    user_id: int | None,
    *,
    profile: Mapping[str, Any] | None = None,
    district_id: int | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[FeedItem]:
    """A page of the reader's feed: pinned posts first, then newest first (``FeedItemSchema`` dumps it).

    ``profile`` is the reader's profile when the request loaded it already. The first page (no cursor)
    of up to :data:`CACHE_SIZE` items comes from the per-scope page cache; :func:`first_page` serves it
    rendered.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    scopes = reader_scopes(user_id, district_id, profile)
    now = utcnow()
    if cursor is None and limit <= CACHE_SIZE:
        return _merge(_cached_pages(scopes, kind, now), limit, now)
    after = _decode_feed_cursor(cursor) if cursor else None
    ids = list(_scope_ids(scopes).values())
    rows = _fetch(ids, kind, now, after=after, limit=limit + 1) if ids else []
    items = sorted(map(_item, rows), key=lambda item: item.sort_key, reverse=True)
    shown = items[:limit]
    next_cursor = encode_cursor(list(shown[-1].sort_key)) if len(items) > limit and shown else None
    return Page(items=shown, next_cursor=next_cursor)


def serves_rendered(cursor: str | None, limit: int) -> bool:
    """Whether :func:`first_page` answers this request: a first page the page cache holds."""
    return cursor is None and 1 <= limit <= CACHE_SIZE


def first_page(
    user_id: int | None,
    *,
    profile: Mapping[str, Any] | None = None,
    district_id: int | None = None,
    kind: str | None = None,
    limit: int = DEFAULT_LIMIT,
    render: Render,
) -> bytes:
    """The first feed page as response bytes: the hot cached read (yijing.web.rendered).

    Readers who see the same scopes (the city alone, or the city and one district) share one rendered
    page per (kind, limit). It is stored behind a line holding the versions of its scopes it was built
    from; one MGET reads the current versions with it, and it is served only when they still match, so
    a writer's version bump (:func:`~yijing.services.feed.desk.bump_pages`) retires it exactly like the
    scope pages. It expires with the earliest of its scope pages (the next scheduled post included). A
    miss merges the scope pages (:func:`feed`) and renders them with ``render``. The user's own part
    of the answer is only which district they see, so a logged-in hit costs the same MGET.
    """
    limit = max(1, min(limit, CACHE_SIZE))
    scopes = reader_scopes(user_id, district_id, profile)
    rendered_key = _k_rendered(scopes, kind, limit)
    try:
        values = redis_client().mget([*(_k_ver(s, kind) for s in scopes), rendered_key])
        redis_ok = True
    except RedisError as exc:
        log.warning("feed cache read failed, using the database", extra={"error": str(exc)})
        values, redis_ok = [None] * (len(scopes) + 1), False
    tag = ",".join(str(int(v or 0)) for v in values[:-1]).encode()
    raw = values[-1]
    if raw is not None:
        head, _, body = raw.partition(b"\n")
        if head == tag:
            return body
    now = utcnow()
    pages = _cached_pages(scopes, kind, now)
    body = render(_merge(pages, limit, now))
    if redis_ok:
        ttl_ms = min(page.expires_ms for page in pages) - int(now.timestamp() * 1000)
        try:
            redis_client().set(rendered_key, tag + b"\n" + body, px=max(ttl_ms, 1))
        except RedisError as exc:
            log.warning("feed cache write failed", extra={"error": str(exc)})
    return body


@dataclass(frozen=True, slots=True)
class ReaderFirstPage:
    """A logged-in reader's first page (:func:`reader_first_page`): who they are, and the bytes."""

    principal: Principal
    body: bytes


# The logged-in first page in one round trip: the token's entry, the principal's, the reader's scopes
# from its home (the city, or the city and the home district), and then :func:`first_page`'s MGET of
# those scopes' versions and the rendered page. A home below a district needs its area's look-up:
# the script then stops after the principal and the caller takes the usual path.
_TOKEN_AND_FIRST_PAGE = (
    auth_service.TOKEN_AND_PROFILE_LUA
    + """
local home = cjson.decode(profile)['home_jurisdiction']
local scopes
if type(home) ~= 'table' or home['level'] == ARGV[7] then
  scopes = {ARGV[6]}
elseif home['level'] == ARGV[8] then
  scopes = {ARGV[6], string.format('%d', home['id'])}
else
  return {token, profile}
end
local keys = {}
for i, scope in ipairs(scopes) do keys[i] = ARGV[2] .. scope .. ARGV[3] end
local joined = table.concat(scopes, '+')
keys[#keys + 1] = ARGV[4] .. joined .. ARGV[5]
local values = redis.call('MGET', unpack(keys))
local out = {token, profile, joined}
for i = 1, #keys do out[#out + 1] = values[i] or '' end
return out
"""
)


def reader_first_page(
    token: str, *, kind: str | None = None, limit: int = DEFAULT_LIMIT, render: Render
) -> ReaderFirstPage:
    """The bearer of ``token`` and their own first feed page (no ``district_id``), as response bytes.

    :func:`~yijing.services.auth.authenticate` and :func:`first_page` in one Redis round trip on a
    hit (one script: docs/performance.md, "Per-request overhead"). The scopes the script chose are
    checked against :func:`~yijing.services.feed.scopes.reader_scopes` of the principal, and the
    page's versions exactly as :func:`first_page` checks them; anything else takes the usual path
    (an invalid or expired token is the same 401 as ``authenticate``'s).
    """
    limit = max(1, min(limit, CACHE_SIZE))
    ver_prefix, ver_suffix = _k_ver("\0", kind).split("\0")
    rendered_prefix, rendered_suffix = _k_rendered(["\0"], kind, limit).split("\0")
    try:
        script = redis_client().register_script(_TOKEN_AND_FIRST_PAGE)
        values = script(
            keys=[redis_key("tok", auth_service.hash_token(token))],
            args=[
                redis_key("principal", ""),
                ver_prefix,
                ver_suffix,
                rendered_prefix,
                rendered_suffix,
                CITY,
                JurisdictionLevel.CITY.value,
                JurisdictionLevel.DISTRICT.value,
            ],
        )
    except RedisError as exc:
        log.warning("feed cache read failed, using the database", extra={"error": str(exc)})
        values = []
    values = [*values, None, None][: max(len(values), 2)]
    principal = auth_service.authenticate_cached(token, values[0], values[1])
    scopes = reader_scopes(principal.user_id, None, principal.profile)
    if len(values) == len(scopes) + 4 and values[2] == "+".join(str(s) for s in scopes).encode():
        tag = ",".join(str(int(v or 0)) for v in values[3:-1]).encode()
        head, _, body = values[-1].partition(b"\n")
        if values[-1] and head == tag:
            return ReaderFirstPage(principal, body)
    body = first_page(principal.user_id, profile=principal.profile, kind=kind, limit=limit, render=render)
    return ReaderFirstPage(principal, body)
