"""Likes, and the jobs that flush the Redis counters into the posts and reconcile them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, or_, select, update

from yijing.extensions import db, redis_client
from yijing.models import (
    Comment,
    CommentStatus,
    CounterFlush,
    Post,
    PostLike,
)
from yijing.models.base import utcnow
from yijing.services.feed.common import FLUSH_RECORD_RETENTION, RECONCILE_WINDOW, _k_counter
from yijing.services.feed.detail import _forget_details, _read_detail, live_post
from yijing.sql import insert_ignore

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


@dataclass(frozen=True, slots=True)
class LikeState:
    """Whether the user now likes the post, and its live like count."""

    liked: bool
    like_count: int


def like(post_id: int, user_id: int) -> LikeState:
    """Like a live post; liking again changes nothing (one row per user: ON CONFLICT DO NOTHING)."""
    live_post(post_id)
    inserted = insert_ignore(
        db.session(), PostLike, {"post_id": post_id, "user_id": user_id, "created_at": utcnow()}
    )
    db.session.commit()
    counts = _read_detail(post_id, like_delta=1 if inserted else 0)
    return LikeState(liked=True, like_count=counts["like_count"])


def unlike(post_id: int, user_id: int) -> LikeState:
    """Take a like back; taking it back twice changes nothing."""
    live_post(post_id)
    deleted = db.session.execute(
        PostLike.__table__.delete().where(PostLike.post_id == post_id, PostLike.user_id == user_id)
    ).rowcount
    db.session.commit()
    counts = _read_detail(post_id, like_delta=-1 if deleted else 0)
    return LikeState(liked=False, like_count=counts["like_count"])


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
