"""The points ledger: append-only, one entry per source event."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin


class PointsEntry(TimestampMixin, db.Model):
    __tablename__ = "points_ledger"
    # A user's entries by time, with the amount: a balance and the points leaderboard over a period
    # read the index alone on PostgreSQL.
    __table_args__ = (
        Index("ix_points_ledger_user_created", "user_id", "created_at", postgresql_include=["amount"]),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(48))
    # e.g. "task:42:assignment:7" — the unique key makes a replay a no-op.
    source_key: Mapped[str] = mapped_column(String(191), unique=True)
