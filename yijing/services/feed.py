"""The 24-hour police station feed: posts by police units, read mostly from Redis.

Who sees what
    A post's scope is the city or one district. A reader sees the city's posts plus one district's:
    the ``district_id`` filter when given, else the logged-in user's home district
    (``users.home_jurisdiction_id`` resolved upwards; ``PUT /api/v1/me/district`` sets it).
    A post's detail is public once it is live, whatever its scope.

Visibility
    A post is live when its status is ``published``, or ``scheduled`` with ``published_at <= now``:
    the read path filters on the time itself, so a scheduled post is never shown early and is shown
    on time even when the publishing job (:func:`publish_due`) is late. The job then flips the status,
    invalidates caches and requests the alert push.

Feed pages (``GET /api/v1/feed``)
    Redis holds, per (scope, kind filter), the first :data:`CACHE_SIZE` items and a version number.
    A reader fetches the versions and pages of its one or two scopes in one MGET and merges them (the
    city's keys are named ``city``, so an anonymous reader needs nothing else). Items are cached in wire
    format, so a hit decodes JSON and sorts at most 2 × 20 items and runs no schema dump. A page
    counts only when its stored version equals the current one; writers INCR the versions of exactly the
    (scope, kind) pairs a change touches, after the commit. A reader that built a page from a snapshot
    taken before a change writes it under the old version, so it is never served after the change. A page
    also expires when the next scheduled post of its scope falls due. On a miss, the missing scopes are
    built by one UNION ALL statement: one backward range scan of ``ix_posts_feed`` per scope, stopping
    after the page. Later pages (a cursor) are one such statement too.

Post detail (``GET /api/v1/feed/{id}``)
    One Lua call returns the cached detail and the pending counter deltas and counts the view. A miss is
    one primary-key query; the result is stored with SET NX so that it never overwrites what a writer
    stored. Writers store the fresh detail (or a tombstone when it is withdrawn) after their commit, so a
    withdrawn post is gone at once even if a reader was rebuilding it; the counter flush only deletes the
    details of the posts it touched.

Counters
    Views: HINCRBY into a Redis hash; :func:`flush_counters` claims the hash atomically (RENAME into a
    "flushing" hash that carries a batch id), applies it to ``posts.view_count`` in one transaction that
    also records the batch id (unique), then deletes the claimed hash only if it still holds that batch.
    A crash before the commit leaves the claimed hash to the next run; after the commit, the next run
    finds the batch recorded and only deletes it: a view is neither lost nor counted twice.
    Likes: the truth is one ``post_likes`` row per (post, user) under a unique constraint, inserted with
    ON CONFLICT DO NOTHING — liking twice, or a burst of concurrent likes, is exactly one like per user,
    with no lock on the post row. A Redis delta (+1/-1, only when a row was inserted/deleted) makes the
    shown count live; the flush recomputes ``posts.like_count`` from the rows (idempotent), and
    :func:`reconcile_counts` recomputes recent posts hourly, so losing Redis loses nothing.
    Comments: ``posts.comment_count`` changes in the transaction that makes a comment visible or not.
    Shown counts are the stored ones plus the pending deltas: exact at rest, off by a few for a moment
    around a flush. Feed items carry the stored counts (refreshed with the page).
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import Row, Select, and_, bindparam, func, or_, select, tuple_, union_all, update

from yijing import cache, jobs, policies
from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db, redis_client, redis_key
from yijing.models import (
    Comment,
    CommentStatus,
    CounterFlush,
    Jurisdiction,
    JurisdictionLevel,
    Post,
    PostKind,
    PostLike,
    PostStatus,
    User,
    UserKind,
)
from yijing.models.base import utcnow
from yijing.models.feed import LIVE_STATUSES
from yijing.models.jurisdiction import LEVEL_LABELS
from yijing.models.media import Media, MediaPurpose
from yijing.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, SortKey, decode_cursor, encode_cursor, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, jurisdictions, outbox
from yijing.services import auth as auth_service
from yijing.services import media as media_service
from yijing.sql import insert_ignore, text_matches

log = logging.getLogger(__name__)

#: Items kept per cached (scope, kind) page; a first page of up to this many (the mini-program asks
#: for the default 20) is answered from Redis. Larger pages decode and sort more on every hit.
CACHE_SIZE = DEFAULT_LIMIT
SUMMARY_CHARS = 120
MAX_IMAGES = 9
TOMBSTONE = "-"
TOMBSTONE_TTL = 60
AREA_TTL = 3600
#: Desk-created kinds; ``qa`` posts come from answered messages.
DESK_KINDS = tuple(k.value for k in PostKind if k != PostKind.QA)
SCOPE_LEVELS = (JurisdictionLevel.CITY.value, JurisdictionLevel.DISTRICT.value)
ALERT_BATCH = 1000
ALERT_BATCHES_PER_JOB = 20
#: A requested alert push still not done after this long is requested again.
ALERT_RETRY_AFTER = timedelta(minutes=15)
RECONCILE_WINDOW = timedelta(days=30)
#: Flush batch ids are kept this long (a claimed batch is retried within minutes).
FLUSH_RECORD_RETENTION = timedelta(days=7)

#: A feed scope as the cache names it: :data:`CITY` or a district's jurisdiction id.
Scope = str | int
CITY = "city"

_IMAGE_URL = re.compile(r"^https?://[^\s]{1,490}$")


# --------------------------------------------------------------------------------------------------
# Redis keys and scripts


def _k_page(scope: Scope, kind: str | None) -> str:
    return redis_key("feed", "page", scope, kind or "*")


def _k_ver(scope: Scope, kind: str | None) -> str:
    return redis_key("feed", "ver", scope, kind or "*")


def _k_post(post_id: int) -> str:
    return redis_key("feed", "post", post_id)


def _k_counter(name: str, flushing: bool = False) -> str:
    return redis_key("feed", name, "flushing") if flushing else redis_key("feed", name)


# KEYS: detail, views, views flushing, likes, likes flushing. ARGV: post id, "1" to count a view, tombstone,
# like delta. Returns nil on a miss, {tombstone} for a post that is not live, else {detail, v, v', l, l'}.
_DETAIL_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
if v == ARGV[3] then return {v} end
if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[2], ARGV[1], 1) end
if ARGV[4] ~= '0' then redis.call('HINCRBY', KEYS[4], ARGV[1], ARGV[4]) end
return {v,
  redis.call('HGET', KEYS[2], ARGV[1]) or '0', redis.call('HGET', KEYS[3], ARGV[1]) or '0',
  redis.call('HGET', KEYS[4], ARGV[1]) or '0', redis.call('HGET', KEYS[5], ARGV[1]) or '0'}
"""

# Claim the pending counter hash for a flush. KEYS: pending, flushing. ARGV: a new batch id.
# A batch left by a crashed run is claimed again, with its batch id.
_CLAIM_LUA = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return false end
  redis.call('RENAME', KEYS[1], KEYS[2])
end
redis.call('HSETNX', KEYS[2], '__batch__', ARGV[1])
return redis.call('HGETALL', KEYS[2])
"""

# Delete the claimed hash only if it still holds our batch. KEYS: flushing. ARGV: batch id.
_RELEASE_LUA = """
if redis.call('HGET', KEYS[1], '__batch__') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _config() -> Any:
    return current_app.config["YIJING"]


# --------------------------------------------------------------------------------------------------
# Scopes


def _area(jurisdiction_id: int) -> dict[str, Any]:
    """``{"city", "district", "level"}`` of a jurisdiction (ids of its city and district ancestors)."""
    cached = cache.get_json("feed", "area", jurisdiction_id)
    if cached is not None:
        return cached
    node = db.session.get(Jurisdiction, jurisdiction_id)
    if node is None:
        raise NotFound("辖区不存在", code="jurisdiction_not_found")
    ids = jurisdictions.path_ids(node.path)
    levels = dict(
        db.session.execute(select(Jurisdiction.id, Jurisdiction.level).where(Jurisdiction.id.in_(ids))).all()
    )
    area = {
        "city": next((i for i in ids if levels.get(i) == JurisdictionLevel.CITY), None),
        "district": next((i for i in ids if levels.get(i) == JurisdictionLevel.DISTRICT), None),
        "level": node.level,
    }
    cache.set_json(area, AREA_TTL, "feed", "area", jurisdiction_id)
    return area


def _city_id() -> int | None:
    cached = cache.get_json("feed", "city")
    if cached is not None:
        return cached or None
    city = db.session.scalar(
        select(Jurisdiction.id)
        .where(Jurisdiction.level == JurisdictionLevel.CITY)
        .order_by(Jurisdiction.id)
        .limit(1)
    )
    # No city yet (the tree is not imported): remember that only briefly.
    cache.set_json(city or 0, AREA_TTL if city else 10, "feed", "city")
    return city


def district_of(jurisdiction_id: int) -> int | None:
    """The district a jurisdiction lies in (itself when it is one), or None (the city, or none)."""
    return _area(jurisdiction_id)["district"]


def require_district(district_id: int, field: str = "district_id") -> dict[str, Any]:
    """The area of a district-level jurisdiction; 422 naming ``field`` for anything else."""
    try:
        area = _area(district_id)
    except NotFound:
        raise InvalidInput(
            "所选辖区不存在", code="invalid_district", fields={field: ["辖区不存在"]}
        ) from None
    if area["level"] != JurisdictionLevel.DISTRICT:
        raise InvalidInput(
            "请选择一个区（旗县）", code="invalid_district", fields={field: ["应为区（旗县）一级的辖区"]}
        )
    return area


def reader_scopes(
    user_id: int | None, district_id: int | None, profile: Mapping[str, Any] | None = None
) -> list[Scope]:
    """The scopes a reader sees: the city, and the chosen district or the user's home district.

    The city is named :data:`CITY` rather than by id, so that an anonymous first page needs no look-up.
    ``profile`` is the user's profile when the request already loaded it (saves reading it again).
    """
    if district_id is not None:
        require_district(district_id)
        return [CITY, district_id]
    if user_id is not None and profile is None:
        profile = auth_service.profile(user_id)
    home = profile["home_jurisdiction"] if profile is not None else None
    if not home or home["level"] == JurisdictionLevel.CITY:
        return [CITY]
    if home["level"] == JurisdictionLevel.DISTRICT:
        return [CITY, home["id"]]
    district = _area(home["id"])["district"]
    return [CITY, district] if district else [CITY]


def _scope_ids(scopes: Sequence[Scope]) -> dict[Scope, int]:
    """Scope → jurisdiction id (the city's looked up); a scope that does not exist is left out."""
    ids: dict[Scope, int] = {}
    for scope in scopes:
        scope_id = _city_id() if scope == CITY else scope
        if isinstance(scope_id, int):
            ids[scope] = scope_id
    return ids


def _scopes_of(jurisdiction_ids: Iterable[int]) -> list[Scope]:
    """The cache names of these scopes (the city's is :data:`CITY`)."""
    city = _city_id()
    return [CITY if jid == city else jid for jid in jurisdiction_ids]


def set_home_district(user_id: int, district_id: int, actor: Actor) -> dict[str, Any]:
    """Follow a district: it becomes the user's home, unless the home already lies inside it."""
    require_district(district_id)
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("用户不存在", code="user_not_found")
    if user.home_jurisdiction_id is None or district_of(user.home_jurisdiction_id) != district_id:
        user.home_jurisdiction_id = district_id
        audit.record(actor, "user.home_district", "user", user_id, data={"district_id": district_id})
        db.session.commit()
        auth_service.forget_principal(user_id)
    return auth_service.me(user_id)


# --------------------------------------------------------------------------------------------------
# Reading: the feed


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
            ttl_ms = _config().feed_page_cache_ttl * 1000
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


# --------------------------------------------------------------------------------------------------
# Reading: one post


def _post_core(post: Post, jurisdiction: Jurisdiction) -> dict[str, Any]:
    """What readers and the desk both see of a post."""
    return {
        "id": post.id,
        "kind": post.kind,
        "title": post.title,
        "body": post.body,
        "images": list(post.images or []),
        "jurisdiction": {"id": jurisdiction.id, "name": jurisdiction.name, "level": jurisdiction.level},
        "pinned": bool(post.pinned),
        "view_count": post.view_count,
        "like_count": post.like_count,
        "comment_count": post.comment_count,
    }


def _detail_json(post: Post, jurisdiction: Jurisdiction) -> dict[str, Any]:
    """The cached detail: times as text so it goes to Redis and back unchanged."""
    return {
        **_post_core(post, jurisdiction),
        "published_at": post.published_at.isoformat() if post.published_at else None,
        "updated_at": post.updated_at.isoformat() if post.updated_at else None,
    }


def _is_live(post: Post, now: datetime) -> bool:
    return post.status in LIVE_STATUSES and post.published_at is not None and post.published_at <= now


def _cache_entry(post: Post, jurisdiction: Jurisdiction, now: datetime) -> tuple[str, int]:
    """What the detail key holds for this post, and for how many milliseconds."""
    if _is_live(post, now):
        return json.dumps(
            _detail_json(post, jurisdiction), ensure_ascii=False
        ), _config().feed_post_cache_ttl * 1000
    ttl_ms = TOMBSTONE_TTL * 1000
    if post.status == PostStatus.SCHEDULED and post.published_at is not None:
        ttl_ms = min(ttl_ms, math.ceil((post.published_at - now).total_seconds() * 1000))
    return TOMBSTONE, max(ttl_ms, 1)


def _load_posts(post_ids: Iterable[int]) -> list[tuple[Post, Jurisdiction]]:
    ids = sorted(set(post_ids))
    if not ids:
        return []
    rows = db.session.execute(
        select(Post, Jurisdiction)
        .join(Jurisdiction, Jurisdiction.id == Post.jurisdiction_id)
        .where(Post.id.in_(ids))
    ).all()
    return [(row[0], row[1]) for row in rows]


def refresh_details(post_ids: Iterable[int]) -> None:
    """After a commit: store the fresh detail (or a tombstone) of each post, overwriting what is cached."""
    now = utcnow()
    entries = [(_k_post(p.id), *_cache_entry(p, j, now)) for p, j in _load_posts(post_ids)]
    if not entries:
        return
    try:
        pipe = redis_client().pipeline(transaction=False)
        for key, value, ttl_ms in entries:
            pipe.set(key, value, px=ttl_ms)
        pipe.execute()
    except RedisError as exc:
        log.warning("feed detail refresh failed; the TTL bounds staleness", extra={"error": str(exc)})


def _forget_details(post_ids: Iterable[int]) -> None:
    keys = [_k_post(i) for i in set(post_ids)]
    if not keys:
        return
    try:
        redis_client().delete(*keys)
    except RedisError as exc:
        log.warning("feed detail invalidation failed", extra={"error": str(exc)})


def _counter_keys(post_id: int) -> list[str]:
    return [
        _k_post(post_id),
        _k_counter("views"),
        _k_counter("views", flushing=True),
        _k_counter("likes"),
        _k_counter("likes", flushing=True),
    ]


def _read_detail(post_id: int, *, count_view: bool = False, like_delta: int = 0) -> dict[str, Any]:
    """The live post's detail with live counts; NotFound when it is not live.

    ``count_view`` counts a view; ``like_delta`` (±1, after a committed like or unlike) moves the
    pending like count, in the same round trip.
    """
    redis_ok = True
    try:
        script = redis_client().register_script(_DETAIL_LUA)
        args = [post_id, "1" if count_view else "0", TOMBSTONE, str(like_delta)]
        result = script(keys=_counter_keys(post_id), args=args)
    except RedisError as exc:
        # A like's delta is lost with it: the flush or the hourly recount sets the count from the rows.
        log.warning("feed detail read failed, using the database", extra={"error": str(exc)})
        result, redis_ok = None, False
    if result:
        raw = result[0].decode() if isinstance(result[0], bytes) else result[0]
        if raw == TOMBSTONE:
            raise NotFound("该内容不存在或已撤回", code="post_not_found")
        data = json.loads(raw)
        deltas = [int(x) for x in result[1:]]
    else:
        now = utcnow()
        loaded = _load_posts([post_id])
        if not loaded:
            raise NotFound("该内容不存在或已撤回", code="post_not_found")
        post, jurisdiction = loaded[0]
        value, ttl_ms = _cache_entry(post, jurisdiction, now)
        deltas = [0, 0, 0, 0]
        if redis_ok:
            try:
                pipe = redis_client().pipeline(transaction=False)
                pipe.set(_k_post(post_id), value, px=ttl_ms, nx=True)
                if value != TOMBSTONE:
                    if count_view:
                        pipe.hincrby(_k_counter("views"), str(post_id), 1)
                    if like_delta:
                        pipe.hincrby(_k_counter("likes"), str(post_id), like_delta)
                    for key in _counter_keys(post_id)[1:]:
                        pipe.hget(key, str(post_id))
                answers = pipe.execute()
                if value != TOMBSTONE:
                    deltas = [int(x or 0) for x in answers[-4:]]
            except RedisError as exc:
                log.warning("feed detail cache write failed", extra={"error": str(exc)})
        if value == TOMBSTONE:
            raise NotFound("该内容不存在或已撤回", code="post_not_found")
        data = json.loads(value)
    data["view_count"] += deltas[0] + deltas[1]
    data["like_count"] = max(data["like_count"] + deltas[2] + deltas[3], 0)
    data["published_at"] = datetime.fromisoformat(data["published_at"])
    data["updated_at"] = datetime.fromisoformat(data["updated_at"]) if data["updated_at"] else None
    return data


def post_detail(post_id: int, user_id: int | None) -> dict[str, Any]:
    """A live post with its view, like and comment counts; counts this view."""
    data = _read_detail(post_id, count_view=True)
    if user_id is not None:
        data["liked"] = (
            db.session.scalar(
                select(PostLike.id).where(PostLike.post_id == post_id, PostLike.user_id == user_id)
            )
            is not None
        )
    return data


def live_post(post_id: int) -> dict[str, Any]:
    """The live post's detail (NotFound otherwise), without counting a view."""
    return _read_detail(post_id, count_view=False)


# --------------------------------------------------------------------------------------------------
# Likes


def like(post_id: int, user_id: int) -> dict[str, Any]:
    """Like a live post; liking again changes nothing (one row per user: ON CONFLICT DO NOTHING)."""
    live_post(post_id)
    inserted = insert_ignore(
        db.session(), PostLike, {"post_id": post_id, "user_id": user_id, "created_at": utcnow()}
    )
    db.session.commit()
    counts = _read_detail(post_id, like_delta=1 if inserted else 0)
    return {"liked": True, "like_count": counts["like_count"]}


def unlike(post_id: int, user_id: int) -> dict[str, Any]:
    """Take a like back; taking it back twice changes nothing."""
    live_post(post_id)
    deleted = db.session.execute(
        PostLike.__table__.delete().where(PostLike.post_id == post_id, PostLike.user_id == user_id)
    ).rowcount
    db.session.commit()
    counts = _read_detail(post_id, like_delta=-1 if deleted else 0)
    return {"liked": False, "like_count": counts["like_count"]}


# --------------------------------------------------------------------------------------------------
# Counters: flush and reconcile (jobs)


def _claim(name: str) -> tuple[str, dict[int, int]] | None:
    script = redis_client().register_script(_CLAIM_LUA)
    answer = script(keys=[_k_counter(name), _k_counter(name, flushing=True)], args=[uuid.uuid4().hex])
    if not answer:
        return None
    fields = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in zip(answer[::2], answer[1::2], strict=True)
    }
    batch = fields.pop("__batch__")
    deltas = {int(k): int(v) for k, v in fields.items() if int(v) != 0}
    return batch, deltas


def _release(name: str, batch: str) -> None:
    script = redis_client().register_script(_RELEASE_LUA)
    script(keys=[_k_counter(name, flushing=True)], args=[batch])


def _recount(post_ids: Sequence[int]) -> None:
    """Set like and comment counts from their rows (in the caller's transaction)."""
    for start in range(0, len(post_ids), 500):
        chunk = list(post_ids[start : start + 500])
        db.session.execute(
            update(Post)
            .where(Post.id.in_(chunk))
            .values(
                like_count=select(func.count(PostLike.id))
                .where(PostLike.post_id == Post.id)
                .scalar_subquery(),
                comment_count=select(func.count(Comment.id))
                .where(Comment.post_id == Post.id, Comment.status == CommentStatus.VISIBLE)
                .scalar_subquery(),
            )
            .execution_options(synchronize_session=False)
        )


def flush_counters() -> dict[str, int]:
    """Apply the views counted in Redis to the database exactly once, and recount liked posts."""
    flushed = {"views": 0, "liked_posts": 0}
    claimed = _claim("views")
    if claimed is not None:
        batch, deltas = claimed
        if insert_ignore(db.session(), CounterFlush, {"batch_id": f"views:{batch}", "created_at": utcnow()}):
            if deltas:
                table = Post.__table__
                db.session.execute(
                    update(table)
                    .where(table.c.id == bindparam("b_id"))
                    .values(view_count=table.c.view_count + bindparam("b_delta")),
                    [{"b_id": k, "b_delta": v} for k, v in sorted(deltas.items())],
                )
            flushed["views"] = sum(deltas.values())
        db.session.commit()
        _forget_details(deltas)
        _release("views", batch)
    claimed = _claim("likes")
    if claimed is not None:
        batch, deltas = claimed
        _recount(sorted(deltas))
        db.session.commit()
        flushed["liked_posts"] = len(deltas)
        _forget_details(deltas)
        _release("likes", batch)
    db.session.execute(
        CounterFlush.__table__.delete().where(CounterFlush.created_at < utcnow() - FLUSH_RECORD_RETENTION)
    )
    db.session.commit()
    return flushed


def reconcile_counts() -> int:
    """Recount likes and comments of recent posts from their rows (e.g. after Redis lost deltas)."""
    since = utcnow() - RECONCILE_WINDOW
    like_counts = select(func.count(PostLike.id)).where(PostLike.post_id == Post.id).scalar_subquery()
    comment_counts = (
        select(func.count(Comment.id))
        .where(Comment.post_id == Post.id, Comment.status == CommentStatus.VISIBLE)
        .scalar_subquery()
    )
    ids = list(
        db.session.scalars(
            select(Post.id).where(
                Post.published_at >= since,
                or_(Post.like_count != like_counts, Post.comment_count != comment_counts),
            )
        )
    )
    if ids:
        _recount(ids)
    db.session.commit()
    _forget_details(ids)
    return len(ids)


# --------------------------------------------------------------------------------------------------
# Writing (desk)


def bump_pages(pairs: Iterable[tuple[int, str]]) -> None:
    """After a commit: invalidate the cached pages of these (scope id, kind) pairs and the unfiltered ones."""
    pairs = list(pairs)
    scopes = _scopes_of(scope_id for scope_id, _kind in pairs)
    keys = sorted(
        {
            k
            for scope, (_id, kind) in zip(scopes, pairs, strict=True)
            for k in (_k_ver(scope, None), _k_ver(scope, kind))
        }
    )
    if not keys:
        return
    try:
        pipe = redis_client().pipeline(transaction=False)
        for key in keys:
            pipe.incr(key)
        pipe.execute()
    except RedisError as exc:
        log.warning("feed page invalidation failed; the TTL bounds staleness", extra={"error": str(exc)})


def _shows_in_pages(status: str) -> bool:
    return status in LIVE_STATUSES


def validate_images(images: Sequence[str] | None) -> list[str]:
    """Resolve image references to addresses: keys of uploaded feed images (``POST /api/v1/media``
    with purpose ``feed``) become their public URL; http(s) URLs are kept as they are."""
    images = list(images or [])
    if len(images) > MAX_IMAGES:
        raise InvalidInput(
            f"最多 {MAX_IMAGES} 张图片", code="too_many_images", fields={"images": [f"最多 {MAX_IMAGES} 张"]}
        )
    keys = [ref for ref in images if not _IMAGE_URL.match(ref)]
    found = (
        {
            item.key: item
            for item in db.session.scalars(
                select(Media).where(Media.key.in_(keys), Media.purpose == MediaPurpose.FEED)
            )
        }
        if keys
        else {}
    )
    bad = [str(i) for i, ref in enumerate(images) if not _IMAGE_URL.match(ref) and ref not in found]
    if bad:
        raise InvalidInput(
            "图片应为已上传的动态配图或 http(s) 地址，请重新上传",
            code="invalid_image",
            fields={"images": {i: ["图片不存在或不是动态配图"] for i in bad}},
        )
    return [media_service.public_url(found[ref]) if ref in found else ref for ref in images]


def _scope_node(jurisdiction_id: int) -> Jurisdiction:
    node = db.session.get(Jurisdiction, jurisdiction_id)
    if node is None or node.level not in SCOPE_LEVELS:
        raise InvalidInput(
            "发布范围应为全市或某个区（旗县）",
            code="invalid_scope",
            fields={"jurisdiction_id": ["应为市或区（旗县）一级的辖区"]},
        )
    return node


def _get_post(post_id: int) -> tuple[Post, Jurisdiction]:
    loaded = _load_posts([post_id])
    if not loaded:
        raise NotFound("该内容不存在", code="post_not_found")
    return loaded[0]


def _effective_status(post: Post, now: datetime) -> str:
    if post.status == PostStatus.SCHEDULED and post.published_at is not None and post.published_at <= now:
        return PostStatus.PUBLISHED
    return post.status


def desk_view(post: Post, jurisdiction: Jurisdiction) -> dict[str, Any]:
    """What the desk sees of a post."""
    return {
        **_post_core(post, jurisdiction),
        "status": _effective_status(post, utcnow()),
        "published_at": post.published_at,
        "push_requested": bool(post.push_requested),
        "push_requested_at": post.push_requested_at,
        "push_done_at": post.push_done_at,
        "author_id": post.author_id,
        "created_at": post.created_at,
        "updated_at": post.updated_at,
        "withdrawn_at": post.withdrawn_at,
        "withdrawn_reason": post.withdrawn_reason,
    }


def create_post(principal: Principal, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
    """Create a draft post in a scope where the staff member may publish."""
    scope = _scope_node(data["jurisdiction_id"])
    policies.require(principal, Permission.FEED_PUBLISH, scope.path)
    post = Post(
        kind=data["kind"],
        title=data["title"].strip(),
        body=data["body"],
        images=validate_images(data.get("images")),
        jurisdiction_id=scope.id,
        status=PostStatus.DRAFT,
        pinned=bool(data.get("pinned", False)),
        author_id=principal.user_id,
        view_count=0,
        like_count=0,
        comment_count=0,
        push_requested=False,
    )
    db.session.add(post)
    db.session.flush()
    audit.record(actor, "post.create", "post", post.id, data={"kind": post.kind, "jurisdiction_id": scope.id})
    db.session.commit()
    return desk_view(post, scope)


def _editable(principal: Principal, post_id: int) -> tuple[Post, Jurisdiction]:
    post, scope = _get_post(post_id)
    policies.require(principal, Permission.FEED_PUBLISH, scope.path)
    return post, scope


def update_post(principal: Principal, actor: Actor, post_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """Edit a post that is not withdrawn; its cached pages and detail are refreshed."""
    post, scope = _editable(principal, post_id)
    if post.status == PostStatus.WITHDRAWN:
        raise Conflict("已撤回的内容不能再修改", code="post_withdrawn")
    before = (post.jurisdiction_id, post.kind)
    if "jurisdiction_id" in data and data["jurisdiction_id"] != post.jurisdiction_id:
        scope = _scope_node(data["jurisdiction_id"])
        policies.require(principal, Permission.FEED_PUBLISH, scope.path)
        post.jurisdiction_id = scope.id
    if "kind" in data:
        if post.kind == PostKind.QA and data["kind"] != PostKind.QA:
            raise InvalidInput("问答内容不能改为其他类型", code="invalid_kind", fields={"kind": ["不能修改"]})
        if post.push_requested and data["kind"] != PostKind.ALERT:
            raise Conflict("已请求推送的预警不能改为其他类型", code="push_requested")
        post.kind = data["kind"]
    if "title" in data:
        post.title = data["title"].strip()
    if "body" in data:
        post.body = data["body"]
    if "images" in data:
        post.images = validate_images(data["images"])
    post.updated_at = utcnow()
    audit.record(actor, "post.edit", "post", post.id, data={"fields": sorted(data)})
    db.session.commit()
    if _shows_in_pages(post.status):
        bump_pages([before, (post.jurisdiction_id, post.kind)])
    refresh_details([post.id])
    return desk_view(post, scope)


#: The mini-program page of a post (the one its subscribe-message templates name).
POST_PAGE = "pages/feed/detail/index"


def request_alert_broadcast(post_id: int, *, attempt: str = "") -> None:
    """Ask for an alert to be pushed to its scope: a fan-out job enqueued after the caller's commit.

    The job (:func:`workers.feed.broadcast_alert`) writes outbox rows in batches; the notifications
    issue may replace it with its own fan-out. ``attempt`` makes a re-request's job id new.
    """
    post = db.session.get(Post, post_id)
    if post is None:
        raise NotFound("该内容不存在", code="post_not_found")
    post.push_requested = True
    if post.push_requested_at is None:
        post.push_requested_at = utcnow()
    jobs.enqueue_after_commit(
        db.session(),
        jobs.JobSpec(
            queue=jobs.NOTIFY,
            func="workers.feed.broadcast_alert",
            args=(post_id,),
            job_id=f"feed-alert-{post_id}{attempt}",
            timeout=600,
            retry=Retry(max=3, interval=[30, 120, 600]),
        ),
    )


def publish_post(
    principal: Principal, actor: Actor, post_id: int, *, publish_at: datetime | None, push: bool
) -> dict[str, Any]:
    """Publish a draft (or a scheduled post) now, or schedule it for ``publish_at``."""
    post, scope = _editable(principal, post_id)
    now = utcnow()
    if (
        post.status in (PostStatus.PUBLISHED, PostStatus.WITHDRAWN)
        or _effective_status(post, now) == PostStatus.PUBLISHED
    ):
        raise Conflict("该内容已发布或已撤回", code="post_not_publishable")
    if push and post.kind != PostKind.ALERT:
        raise InvalidInput(
            "只有紧急预警可以推送", code="push_not_alert", fields={"push": ["只有预警可以推送"]}
        )
    if publish_at is not None and publish_at.tzinfo is None:
        raise InvalidInput("时间应带时区", code="invalid_time", fields={"publish_at": ["应为带时区的时间"]})
    if publish_at is not None and publish_at > now:
        post.status = PostStatus.SCHEDULED
        post.published_at = publish_at
        post.push_requested = push
        audit.record(
            actor, "post.schedule", "post", post.id, data={"publish_at": publish_at.isoformat(), "push": push}
        )
    else:
        post.status = PostStatus.PUBLISHED
        post.published_at = now
        audit.record(actor, "post.publish", "post", post.id, data={"push": push})
        if push:
            request_alert_broadcast(post.id)
        else:
            post.push_requested = False
    post.updated_at = now
    db.session.commit()
    # A scheduled post changes its scope's "next scheduled" time, so its pages go too.
    bump_pages([(post.jurisdiction_id, post.kind)])
    refresh_details([post.id])
    return desk_view(post, scope)


def set_pinned(principal: Principal, actor: Actor, post_id: int, pinned: bool) -> dict[str, Any]:
    """Pin a post to the top of its scope's feed, or unpin it."""
    post, scope = _editable(principal, post_id)
    if post.status == PostStatus.WITHDRAWN:
        raise Conflict("已撤回的内容不能置顶", code="post_withdrawn")
    if bool(post.pinned) != pinned:
        post.pinned = pinned
        post.updated_at = utcnow()
        audit.record(actor, "post.pin" if pinned else "post.unpin", "post", post.id)
        db.session.commit()
        if _shows_in_pages(post.status):
            bump_pages([(post.jurisdiction_id, post.kind)])
        refresh_details([post.id])
    return desk_view(post, scope)


def withdraw_post(principal: Principal, actor: Actor, post_id: int, reason: str) -> dict[str, Any]:
    """Withdraw a post: it leaves the feed and its detail at once."""
    post, scope = _editable(principal, post_id)
    return _withdraw(post, scope, actor, reason)


def _withdraw(post: Post, scope: Jurisdiction, actor: Actor, reason: str) -> dict[str, Any]:
    """Withdraw and commit (with whatever else the caller's transaction holds)."""
    if post.status == PostStatus.WITHDRAWN:
        db.session.commit()
        return desk_view(post, scope)
    was_shown = _shows_in_pages(post.status)
    now = utcnow()
    post.status = PostStatus.WITHDRAWN
    post.withdrawn_at = now
    post.withdrawn_reason = reason
    post.updated_at = now
    audit.record(actor, "post.withdraw", "post", post.id, reason=reason)
    db.session.commit()
    if was_shown:
        bump_pages([(post.jurisdiction_id, post.kind)])
    refresh_details([post.id])  # a tombstone: a reader's stale rebuild (SET NX) cannot replace it
    return desk_view(post, scope)


def withdraw_system(post_id: int, actor: Actor, reason: str) -> None:
    """Withdraw a post without a staff check (e.g. a Q&A whose author took back their consent)."""
    post, scope = _get_post(post_id)
    _withdraw(post, scope, actor, reason)


def create_live_post(
    *, kind: str, title: str, body: str, jurisdiction_id: int, author_id: int, actor: Actor
) -> Post:
    """Add a post published now, in the caller's transaction (the caller commits, then calls
    :func:`after_publish`)."""
    now = utcnow()
    post = Post(
        kind=kind,
        title=title,
        body=body,
        images=[],
        jurisdiction_id=jurisdiction_id,
        status=PostStatus.PUBLISHED,
        pinned=False,
        published_at=now,
        updated_at=now,
        author_id=author_id,
        view_count=0,
        like_count=0,
        comment_count=0,
        push_requested=False,
    )
    db.session.add(post)
    db.session.flush()
    audit.record(actor, "post.publish", "post", post.id, data={"kind": kind})
    return post


def after_publish(post_id: int) -> None:
    """After the commit that published a post: invalidate its pages and store its detail."""
    post, _scope = _get_post(post_id)
    bump_pages([(post.jurisdiction_id, post.kind)])
    refresh_details([post_id])


def desk_get(principal: Principal, post_id: int) -> dict[str, Any]:
    post, scope = _editable(principal, post_id)
    return desk_view(post, scope)


def desk_list(
    principal: Principal,
    *,
    status: str | None = None,
    kind: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[dict[str, Any]]:
    """Posts in the staff member's scopes, newest first."""
    paths = policies.require_somewhere(principal, Permission.FEED_PUBLISH)
    stmt = (
        select(Post, Jurisdiction)
        .join(Jurisdiction, Jurisdiction.id == Post.jurisdiction_id)
        .where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
    )
    if status:
        now = utcnow()
        if status == PostStatus.PUBLISHED:
            stmt = stmt.where(_live(now))
        elif status == PostStatus.SCHEDULED:
            stmt = stmt.where(Post.status == PostStatus.SCHEDULED, Post.published_at > now)
        else:
            stmt = stmt.where(Post.status == status)
    if kind:
        stmt = stmt.where(Post.kind == kind)
    if (words := text_matches(q, Post.title, Post.body)) is not None:
        stmt = stmt.where(words)
    page = paginate(
        stmt, [SortKey(Post.id, True)], lambda row: [row[0].id], cursor=cursor, limit=limit, scalars=False
    )
    return Page(items=[desk_view(row[0], row[1]) for row in page.items], next_cursor=page.next_cursor)


# --------------------------------------------------------------------------------------------------
# Jobs: scheduled publication and the alert push


def publish_due(now: datetime | None = None) -> list[int]:
    """Publish the scheduled posts whose time has come; request their alert push. Idempotent."""
    now = now or utcnow()
    due = list(
        db.session.scalars(
            select(Post.id)
            .where(Post.status == PostStatus.SCHEDULED, Post.published_at <= now)
            .order_by(Post.published_at, Post.id)
            .limit(500)
        )
    )
    published = []
    for post_id in due:
        result = db.session.execute(
            update(Post)
            .where(Post.id == post_id, Post.status == PostStatus.SCHEDULED)
            .values(status=PostStatus.PUBLISHED)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:
            published.append(post_id)
    pairs = []
    for post, _scope in _load_posts(published):
        pairs.append((post.jurisdiction_id, post.kind))
        if post.push_requested and post.push_requested_at is None and post.kind == PostKind.ALERT:
            request_alert_broadcast(post.id)
    # Pushes requested but not finished for a while (lost job, Redis outage): request them again.
    stuck = db.session.scalars(
        select(Post.id).where(
            Post.status.in_(LIVE_STATUSES),
            Post.push_requested.is_(True),
            Post.push_done_at.is_(None),
            Post.push_requested_at < now - ALERT_RETRY_AFTER,
        )
    ).all()
    for post_id in stuck:
        request_alert_broadcast(post_id, attempt=f"-retry-{int(now.timestamp()) // 600}")
    db.session.commit()
    if published:
        log.info("scheduled posts published", extra={"post_ids": published})
        bump_pages(pairs)
        refresh_details(published)
    return published


def fan_out_alert(
    post_id: int, after_user_id: int = 0, max_batches: int = ALERT_BATCHES_PER_JOB
) -> int | None:
    """Write outbox rows for the alert's recipients after ``after_user_id``; the cursor to go on
    from, or None when done. City-wide: every active mini-program user; a district: those whose home
    lies in it. One dedupe key per (post, user): running it again writes nothing twice."""
    post, scope = _get_post(post_id)
    if not _is_live(post, utcnow()) or post.kind != PostKind.ALERT:
        return None  # withdrawn (or not yet live): stop
    summary = " ".join(post.body.split())[:60]
    cursor = after_user_id
    for _ in range(max_batches):
        stmt = select(User.id).where(User.kind == UserKind.WECHAT, User.is_active.is_(True), User.id > cursor)
        if scope.level != JurisdictionLevel.CITY:
            stmt = stmt.join(Jurisdiction, Jurisdiction.id == User.home_jurisdiction_id).where(
                Jurisdiction.path.startswith(scope.path, autoescape=True)
            )
        user_ids = list(db.session.scalars(stmt.order_by(User.id).limit(ALERT_BATCH)))
        for user_id in user_ids:
            outbox.notify(
                user_id,
                "feed.alert",
                title=f"紧急预警：{post.title}",
                body=summary,
                data={"post_id": post.id, "jurisdiction_name": scope.name},
                page=f"{POST_PAGE}?id={post.id}",
                dedupe_key=f"post:{post.id}:alert:{user_id}",
            )
        db.session.commit()
        if len(user_ids) < ALERT_BATCH:
            db.session.execute(
                update(Post)
                .where(Post.id == post_id, Post.push_done_at.is_(None))
                .values(push_done_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
            return None
        cursor = user_ids[-1]
    return cursor
