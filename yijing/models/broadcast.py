"""Mass alerts: the desk sends one notification to everyone in a scope; a worker fans it out."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime


class BroadcastStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class BroadcastAudience(StrEnum):
    VOLUNTEERS = "volunteers"  # volunteers of the jurisdiction's subtree
    RESIDENTS = "residents"  # users whose home jurisdiction lies in the subtree
    ON_DUTY = "on_duty"  # volunteers on duty within a radius of a point (a snapshot taken when sent)


OPEN_STATUSES = frozenset({BroadcastStatus.QUEUED, BroadcastStatus.RUNNING})


class Broadcast(TimestampMixin, db.Model):
    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_status", "status", "heartbeat_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    audience: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(48), default="alert")
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text, default="")
    page: Mapped[str | None] = mapped_column(String(255))
    center_lat: Mapped[float | None] = mapped_column(Float)
    center_lng: Mapped[float | None] = mapped_column(Float)
    radius_m: Mapped[int | None] = mapped_column(Integer)
    # Recipients fixed when the broadcast was created (the on-duty audience);
    # None: resolved while fanning out.
    target_user_ids: Mapped[list[int] | None] = mapped_column(JSON)
    rate_per_minute: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=BroadcastStatus.QUEUED)
    total: Mapped[int | None] = mapped_column(Integer)
    written: Mapped[int] = mapped_column(Integer, default=0)
    # The fan-out walks recipients by user id: the last user id written.
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    error: Mapped[str | None] = mapped_column(Text)
