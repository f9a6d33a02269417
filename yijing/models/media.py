"""Uploaded images: re-encoded, stripped of metadata, stored under a random key."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime


class MediaPurpose(StrEnum):
    CLUE = "clue"  # private: the reporter and the staff who may triage the clue
    FEED = "feed"  # public once published


class Media(TimestampMixin, db.Model):
    __tablename__ = "media"
    __table_args__ = (Index("ix_media_attached_created", "attached_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The id the API shows: random and unguessable (128 bits).
    key: Mapped[str] = mapped_column(String(32), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    # NULL once attached to an anonymous clue: the photo must not point back to its reporter.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    content_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    # Set when a clue or a feed post takes the image; unattached uploads are purged after a while.
    attached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
