"""The points ledger: append-only, one entry per source event, balance derived from it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from yijing.extensions import db
from yijing.models import PointsEntry
from yijing.models.base import utcnow
from yijing.pagination import DEFAULT_LIMIT, Page, SortKey, paginate
from yijing.sql import insert_ignore

#: What each reason reads as in the mini-program.
REASON_LABELS = {
    "task_completed": "完成巡防任务",
    "clue_valid": "举报线索经核实有效",
}
# Source keys that name what earned the points (an anonymous clue's key is a keyed hash: it names nothing).
_SOURCES = (
    (re.compile(r"clue:(\d+):valid"), "clue_id"),
    (re.compile(r"task:(\d+):assignment:\d+"), "task_id"),
)


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


def reason_label(entry: PointsEntry) -> str:
    """What the entry's reason reads as in the mini-program."""
    return REASON_LABELS.get(entry.reason, entry.reason)


def source_id(entry: PointsEntry, kind: str) -> int | None:
    """The id of the clue (``kind`` "clue_id") or task ("task_id") that earned the entry, if its
    source key names one."""
    for pattern, key in _SOURCES:
        match = pattern.fullmatch(entry.source_key)
        if match and key == kind:
            return int(match.group(1))
    return None


@dataclass(frozen=True, slots=True)
class Ledger:
    """A user's balance and one page of their entries, newest first."""

    balance: int
    items: list[PointsEntry]
    next_cursor: str | None


def ledger(user_id: int, *, cursor: str | None, limit: int = DEFAULT_LIMIT) -> Ledger:
    """The user's balance and their ledger, newest first: what each of their points was earned for
    (completed tasks, clues confirmed valid, an anonymous clue's too)."""
    page: Page[PointsEntry] = paginate(
        select(PointsEntry).where(PointsEntry.user_id == user_id),
        [SortKey(PointsEntry.created_at, True), SortKey(PointsEntry.id, True)],
        lambda e: [e.created_at, e.id],
        cursor=cursor,
        limit=limit,
    )
    return Ledger(balance=balance(user_id), items=list(page.items), next_cursor=page.next_cursor)
