"""The jobs of publication: scheduled posts made public, and the alert pushed in batches."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update

from yijing.extensions import db
from yijing.models import (
    Jurisdiction,
    JurisdictionLevel,
    Post,
    PostKind,
    PostStatus,
    User,
    UserKind,
)
from yijing.models.base import utcnow
from yijing.models.feed import LIVE_STATUSES
from yijing.services import outbox
from yijing.services.feed.common import ALERT_BATCH, ALERT_BATCHES_PER_JOB, ALERT_RETRY_AFTER, POST_PAGE
from yijing.services.feed.desk import _get_post, bump_pages, request_alert_broadcast
from yijing.services.feed.detail import _is_live, _load_posts, refresh_details

log = logging.getLogger(__name__)


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
