"""Writing (the desk): posts created, edited, published, pinned and withdrawn; the cache kept true."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import select

from yijing import jobs, policies
from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db, redis_client
from yijing.models import (
    Jurisdiction,
    Post,
    PostKind,
    PostStatus,
)
from yijing.models.base import utcnow
from yijing.models.feed import LIVE_STATUSES
from yijing.models.media import Media, MediaPurpose
from yijing.pagination import DEFAULT_LIMIT, Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, jurisdictions
from yijing.services import media as media_service
from yijing.services.feed.common import _IMAGE_URL, MAX_IMAGES, SCOPE_LEVELS, _k_ver
from yijing.services.feed.detail import _load_posts, refresh_details
from yijing.services.feed.pages import FeedJurisdiction, _live
from yijing.services.feed.scopes import _scopes_of
from yijing.sql import text_matches

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class DeskPost:
    """A post as the desk sees it: any status, with its publication, push and withdrawal details."""

    id: int
    kind: str
    title: str
    body: str
    images: list[str]
    jurisdiction: FeedJurisdiction
    pinned: bool
    view_count: int
    like_count: int
    comment_count: int
    status: str
    published_at: datetime | None
    push_requested: bool
    push_requested_at: datetime | None
    push_done_at: datetime | None
    author_id: int
    created_at: datetime
    updated_at: datetime | None
    withdrawn_at: datetime | None
    withdrawn_reason: str | None


def desk_view(post: Post, jurisdiction: Jurisdiction) -> DeskPost:
    """What the desk sees of a post."""
    return DeskPost(
        id=post.id,
        kind=post.kind,
        title=post.title,
        body=post.body,
        images=list(post.images or []),
        jurisdiction=FeedJurisdiction(id=jurisdiction.id, name=jurisdiction.name, level=jurisdiction.level),
        pinned=bool(post.pinned),
        view_count=post.view_count,
        like_count=post.like_count,
        comment_count=post.comment_count,
        status=_effective_status(post, utcnow()),
        published_at=post.published_at,
        push_requested=bool(post.push_requested),
        push_requested_at=post.push_requested_at,
        push_done_at=post.push_done_at,
        author_id=post.author_id,
        created_at=post.created_at,
        updated_at=post.updated_at,
        withdrawn_at=post.withdrawn_at,
        withdrawn_reason=post.withdrawn_reason,
    )


def create_post(principal: Principal, actor: Actor, data: dict[str, Any]) -> DeskPost:
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


def update_post(principal: Principal, actor: Actor, post_id: int, data: dict[str, Any]) -> DeskPost:
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
) -> DeskPost:
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


def set_pinned(principal: Principal, actor: Actor, post_id: int, pinned: bool) -> DeskPost:
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


def withdraw_post(principal: Principal, actor: Actor, post_id: int, reason: str) -> DeskPost:
    """Withdraw a post: it leaves the feed and its detail at once."""
    post, scope = _editable(principal, post_id)
    return _withdraw(post, scope, actor, reason)


def _withdraw(post: Post, scope: Jurisdiction, actor: Actor, reason: str) -> DeskPost:
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


def desk_get(principal: Principal, post_id: int) -> DeskPost:
    """One post in a scope where the staff member may publish."""
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
) -> Page[DeskPost]:
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
