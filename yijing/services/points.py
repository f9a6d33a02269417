"""The points ledger: append-only, one entry per source event, balance derived from it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from yijing.extensions import db
from yijing.models import PointsEntry
from yijing.models.base import utcnow
from yijing.sql import insert_ignore


def award(user_id: int, amount: int, *, reason: str, source_key: str, at: datetime | None = None) -> bool:
    """Add an entry in the caller's transaction; a replayed ``source_key`` adds nothing.

    The ledger of a cancelled account is closed: nothing is added to it.
    """
    from yijing.models import User

    cancelled = db.session.scalar(select(User.cancelled_at).where(User.id == user_id))
    if cancelled is not None:
        return False
    return bool(
        insert_ignore(
            db.session(),
            PointsEntry,
            {
                "user_id": user_id,
                "amount": amount,
                "reason": reason,
                "source_key": source_key,
                "created_at": at or utcnow(),
            },
        )
    )


def balance(user_id: int) -> int:
    total = db.session.scalar(
        select(func.coalesce(func.sum(PointsEntry.amount), 0)).where(PointsEntry.user_id == user_id)
    )
    return int(total or 0)
