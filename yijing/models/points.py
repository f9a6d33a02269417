"""The points ledger: append-only, one entry per source event."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin


class PointsEntry(TimestampMixin, db.Model):
    __tablename__ = "points_ledger"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(48))
    # e.g. "task:42:assignment:7" — the unique key makes a replay a no-op.
    source_key: Mapped[str] = mapped_column(String(191), unique=True)
