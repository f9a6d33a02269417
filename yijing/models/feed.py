"""The 24-hour police station feed: posts, likes, comments and their reports.

Read-path indexes (see ``yijing.services.feed``): a feed page is, per scope, one backward range
scan of ``ix_posts_feed`` (or ``ix_posts_feed_kind`` with a kind filter) that stops after the page;
``status`` is deliberately *not* a leading column, because a visible post is ``published`` or a
``scheduled`` one whose time has come (a leading ``status IN (…)`` would break the index order), and
the few drafts or withdrawn posts met on the way are filtered out. ``ix_posts_status_published``
serves the scheduled-publication job and the "next scheduled post of this scope" look-up.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime


class PostKind(StrEnum):
    NOTICE = "notice"  # 警情通报 / 通知
    ALERT = "alert"  # 紧急预警
    ANTI_FRAUD = "anti_fraud"  # 反诈提示
    WANTED = "wanted"  # 通缉 / 协查
    CASE_REPORT = "case_report"  # 案件通报
    QA = "qa"  # 群众留言的公开问答（由留言生成）


class PostStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"  # visible once ``published_at`` has passed, even before the job flips it
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"


#: Statuses that are visible when ``published_at <= now``.
LIVE_STATUSES = (PostStatus.SCHEDULED.value, PostStatus.PUBLISHED.value)


class Post(TimestampMixin, db.Model):
    __tablename__ = "posts"
    __table_args__ = (
        Index("ix_posts_feed", "jurisdiction_id", "pinned", "published_at", "id"),
        Index("ix_posts_feed_kind", "jurisdiction_id", "kind", "pinned", "published_at", "id"),
        Index("ix_posts_status_published", "status", "published_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    # Media references (ids of the media service, or URLs); see services.feed.validate_images.
    images: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The scope: a jurisdiction of level city or district.
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    status: Mapped[str] = mapped_column(String(16), default=PostStatus.DRAFT)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    # When it goes (or went) live; set when published or scheduled.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # An alert pushed to the scope: requested on publication, done when the fan-out finished.
    push_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    push_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    push_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_reason: Mapped[str | None] = mapped_column(Text)
    # Counters: views are flushed from Redis by a job; likes and comments are recomputed from
    # their rows (the truth) by the same job and by the reconcile job.
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    like_count: Mapped[int] = mapped_column(Integer, default=0)
    comment_count: Mapped[int] = mapped_column(Integer, default=0)


class PostLike(TimestampMixin, db.Model):
    """One row per (post, user): the unique constraint is what makes liking twice one like."""

    __tablename__ = "post_likes"
    __table_args__ = (UniqueConstraint("post_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class CounterFlush(TimestampMixin, db.Model):
    """A batch of Redis view counts applied to ``posts``: a retried flush applies nothing twice."""

    __tablename__ = "feed_counter_flushes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64), unique=True)


class CommentStatus(StrEnum):
    PENDING_CHECK = "pending_check"  # waiting for WeChat's content check; shown to nobody
    REVIEW = "review"  # uncertain verdict or reported: in the desk's moderation queue
    VISIBLE = "visible"
    HIDDEN = "hidden"


class Comment(TimestampMixin, db.Model):
    __tablename__ = "comments"
    __table_args__ = (
        Index("ix_comments_post_status", "post_id", "status", "id"),
        Index("ix_comments_status_created", "status", "created_at"),
        Index("ix_comments_user", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=CommentStatus.PENDING_CHECK)
    # WeChat's verdict (pass / review / risky) and label, or "error" when WeChat refused to check.
    check_suggest: Mapped[str | None] = mapped_column(String(16))
    check_label: Mapped[str | None] = mapped_column(String(32))
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Open (not yet handled) reports; reset when the desk decides.
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    moderation_reason: Mapped[str | None] = mapped_column(Text)
    moderated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    moderated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CommentReport(TimestampMixin, db.Model):
    """A user's report of a comment; one per (comment, user)."""

    __tablename__ = "comment_reports"
    __table_args__ = (UniqueConstraint("comment_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
