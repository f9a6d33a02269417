"""Clues (线索): reports by residents and volunteers, their timeline, the pseudonymous thread.

An anonymous clue has no clear link to its reporter: ``reporter_enc`` holds the user id encrypted
(:mod:`yijing.pii`, context ``clue.reporter``) and ``reporter_index`` a keyed blind index of it so
that the reporter can list their own clues. A named clue has ``reporter_id``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime, utcnow


class ClueCategory(StrEnum):
    SUSPICIOUS_PERSON = "suspicious_person"
    SUSPICIOUS_VEHICLE = "suspicious_vehicle"
    FRAUD = "fraud"
    DRUGS = "drugs"
    GAMBLING = "gambling"
    SAFETY_HAZARD = "safety_hazard"
    DISPUTE = "dispute"
    OTHER = "other"


CATEGORY_LABELS = {
    ClueCategory.SUSPICIOUS_PERSON: "可疑人员",
    ClueCategory.SUSPICIOUS_VEHICLE: "可疑车辆",
    ClueCategory.FRAUD: "诈骗",
    ClueCategory.DRUGS: "涉毒",
    ClueCategory.GAMBLING: "涉赌",
    ClueCategory.SAFETY_HAZARD: "安全隐患",
    ClueCategory.DISPUTE: "矛盾纠纷",
    ClueCategory.OTHER: "其他",
}


class ClueStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    INVESTIGATING = "investigating"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    TRANSFERRED = "transferred"


STATUS_LABELS = {
    ClueStatus.SUBMITTED: "待受理",
    ClueStatus.ACCEPTED: "已受理",
    ClueStatus.INVESTIGATING: "核查中",
    ClueStatus.RESOLVED: "已办结",
    ClueStatus.REJECTED: "不予采纳",
    ClueStatus.DUPLICATE: "重复线索",
    ClueStatus.TRANSFERRED: "已移交",
}

OPEN_STATUSES = frozenset({ClueStatus.SUBMITTED, ClueStatus.ACCEPTED, ClueStatus.INVESTIGATING})


class TransferTarget(StrEnum):
    ALARM_110 = "110"
    HOTLINE_12345 = "12345"


class ContentFlag(StrEnum):
    """The text check's verdict; ``skipped`` when WeChat could not check it (the desk reads it)."""

    PASS = "pass"
    REVIEW = "review"
    RISKY = "risky"
    SKIPPED = "skipped"


class ClueEventKind(StrEnum):
    SUBMITTED = "submitted"
    STATUS = "status"
    ASSIGNED = "assigned"
    URGENCY = "urgency"
    DUPLICATE_LINKED = "duplicate_linked"
    CONTENT_FLAGGED = "content_flagged"


class MessageSender(StrEnum):
    DESK = "desk"
    REPORTER = "reporter"


class Clue(TimestampMixin, db.Model):
    __tablename__ = "clues"
    __table_args__ = (
        Index("ix_clues_queue", "status", "priority", "created_at"),
        Index("ix_clues_category_created", "category", "created_at"),
        Index("ix_clues_created", "created_at"),
        Index("ix_clues_closed", "closed_at"),  # the reports count an outcome on its day
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    category: Mapped[str] = mapped_column(String(24))
    description: Mapped[str] = mapped_column(Text)
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=ClueStatus.SUBMITTED)
    # 1 = urgent (happening now), 0 = normal: the queue shows urgent clues first, oldest first.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    is_anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    reporter_enc: Mapped[str | None] = mapped_column(String(255))
    reporter_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # Keyed hash of the anonymous tracking code (the code is shown once, never stored).
    tracking_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Keyed hash of (reporter, Idempotency-Key) and a digest of the submitted content.
    submit_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    submit_digest: Mapped[str | None] = mapped_column(String(64))
    photo_count: Mapped[int] = mapped_column(Integer, default=0)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("clues.id"))
    transfer_target: Mapped[str | None] = mapped_column(String(8))
    transfer_reference: Mapped[str | None] = mapped_column(String(64))
    valid: Mapped[bool | None] = mapped_column(Boolean)
    content_flag: Mapped[str | None] = mapped_column(String(16))
    content_label: Mapped[int | None] = mapped_column(Integer)
    content_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duplicates_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CluePhoto(db.Model):
    __tablename__ = "clue_photos"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    clue_id: Mapped[int] = mapped_column(ForeignKey("clues.id", ondelete="CASCADE"), index=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"), unique=True)
    position: Mapped[int] = mapped_column(Integer)


class ClueEvent(TimestampMixin, db.Model):
    """One step of the timeline. ``public_note`` is shown to the reporter, ``internal_note`` to staff only."""

    __tablename__ = "clue_events"
    __table_args__ = (
        Index("ix_clue_events_clue", "clue_id", "id"),
        Index("ix_clue_events_created", "created_at"),  # the reports' day of the first answer
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    clue_id: Mapped[int] = mapped_column(ForeignKey("clues.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(24))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    public_note: Mapped[str | None] = mapped_column(Text)
    internal_note: Mapped[str | None] = mapped_column(Text)
    # Staff member who acted; NULL for the reporter and for the system.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ClueMessage(TimestampMixin, db.Model):
    """The pseudonymous thread: the desk asks, the reporter answers (never named to staff)."""

    __tablename__ = "clue_messages"
    __table_args__ = (
        Index("ix_clue_messages_clue", "clue_id", "id"),
        Index("ix_clue_messages_created", "created_at"),  # the reports' day of the first answer
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    clue_id: Mapped[int] = mapped_column(ForeignKey("clues.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(16))
    # The staff member for desk messages; always NULL for the reporter's.
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    # Keyed hash of (clue, Idempotency-Key) for the reporter's retried posts.
    submit_key: Mapped[str | None] = mapped_column(String(64), unique=True)


class ClueDuplicateCandidate(TimestampMixin, db.Model):
    """A possible duplicate found by the matching job (both directions are stored)."""

    __tablename__ = "clue_duplicate_candidates"
    __table_args__ = (UniqueConstraint("clue_id", "candidate_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    clue_id: Mapped[int] = mapped_column(ForeignKey("clues.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("clues.id", ondelete="CASCADE"))
    distance_m: Mapped[int] = mapped_column(Integer)


class CannedReply(TimestampMixin, db.Model):
    """A public reply the desk can pick and edit; visible in its jurisdiction's subtree."""

    __tablename__ = "clue_canned_replies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    title: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
