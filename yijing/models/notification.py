"""The notification outbox: one row per event and recipient, written with the change itself."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    INBOX_ONLY = "inbox_only"
    FAILED = "failed"


class Notification(TimestampMixin, db.Model):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_status_created", "status", "created_at"),
        Index("ix_notifications_user_read", "user_id", "read_at", "id"),
        # Only rows still to deliver: what the sweeper scans, small in steady state.
        Index(
            "ix_notifications_pending_sweep",
            "sweep_after",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(48))
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    page: Mapped[str | None] = mapped_column(String(255))
    dedupe_key: Mapped[str] = mapped_column(String(191), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Delivery bookkeeping (see yijing.services.delivery).
    # A retry is not tried before this instant (None: as soon as possible).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The sweeper re-enqueues a pending row once this instant has passed (the relay's enqueue was lost,
    # the worker died, the retry job vanished with Redis).
    sweep_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A worker's claim: nobody else sends the row before this instant.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # The template a consent was reserved for (set before the send; kept on a retry).
    template_id: Mapped[str | None] = mapped_column(String(64))
    wechat_msgid: Mapped[str | None] = mapped_column(String(32))
    # WeChat's errcode for the last failure (None for network errors and HTTP statuses).
    error_code: Mapped[int | None] = mapped_column(Integer)
    # Written for an anonymous reporter (released from a :class:`SealedEnvelope`): staff views never
    # show who it is for, and it is purged soon after delivery (see yijing.services.sealed).
    sealed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class SealedEnvelope(db.Model):
    """Something due to an anonymous reporter (a notification, points), encrypted, held back.

    The row carries no user id and no clue id in clear, and no creation time: only when it may be
    released. A job opens the due envelopes in batches, so that what reaches the tables that name
    users is written at a batch time some minutes after the event, not next to it.
    """

    __tablename__ = "sealed_envelopes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    release_after: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    payload_enc: Mapped[str] = mapped_column(Text)
