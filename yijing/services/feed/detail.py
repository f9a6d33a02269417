"""Reading one post: the cached detail, the pending counter deltas and the view count in one Lua call."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select

from yijing.config import settings
from yijing.errors import NotFound
from yijing.extensions import db, redis_client
from yijing.models import (
    Jurisdiction,
    Post,
    PostLike,
    PostStatus,
)
from yijing.models.base import utcnow
from yijing.models.feed import LIVE_STATUSES
from yijing.services.feed.common import TOMBSTONE, TOMBSTONE_TTL, _k_counter, _k_post
from yijing.services.feed.pages import FeedJurisdiction

log = logging.getLogger(__name__)


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


def _post_core(post: Post, jurisdiction: Jurisdiction) -> dict[str, Any]:
    """What the cached detail holds of a post besides its times."""
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
        ), settings().feed_post_cache_ttl * 1000
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


@dataclass(frozen=True, slots=True)
class PostDetail:
    """A live post with its live counts (stored counts plus the pending Redis deltas)."""

    id: int
    kind: str
    title: str
    body: str
    images: list[str]
    jurisdiction: FeedJurisdiction
    pinned: bool
    published_at: datetime
    updated_at: datetime | None
    view_count: int
    like_count: int
    comment_count: int


@dataclass(frozen=True, slots=True)
class ReaderPostDetail(PostDetail):
    """The detail a logged-in reader sees: also whether they liked it (anonymous readers get no key)."""

    liked: bool


def post_detail(post_id: int, user_id: int | None) -> PostDetail:
    """A live post with its view, like and comment counts; counts this view."""
    data = _read_detail(post_id, count_view=True)
    data["jurisdiction"] = FeedJurisdiction(**data["jurisdiction"])
    if user_id is None:
        return PostDetail(**data)
    liked = (
        db.session.scalar(select(PostLike.id).where(PostLike.post_id == post_id, PostLike.user_id == user_id))
        is not None
    )
    return ReaderPostDetail(**data, liked=liked)


def live_post(post_id: int) -> None:
    """Raise NotFound unless the post is live (without counting a view)."""
    _read_detail(post_id, count_view=False)
