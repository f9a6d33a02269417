"""The desk's board: tasks with their counts of volunteers per status, one task, its people."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import selectinload

from yijing import policies
from yijing.extensions import db
from yijing.localtime import SHANGHAI
from yijing.models import Assignment, Jurisdiction, Task
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import jurisdictions
from yijing.services.tasks.common import _jurisdiction_for, load_for_staff
from yijing.sql import text_matches


@dataclass
class Counts:
    invited: int = 0
    accepted: int = 0
    declined: int = 0
    expired: int = 0
    cancelled: int = 0
    checked_in: int = 0
    completed: int = 0
    no_show: int = 0

    @property
    def arrived(self) -> int:
        """Checked in at some point: on site now or completed."""
        return self.checked_in + self.completed


@dataclass
class TaskRow:
    """A task with what the board shows beside it; attributes fall through to the task."""

    task: Task
    counts: Counts = field(default_factory=Counts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


def counts_for(task_ids: Sequence[int]) -> dict[int, Counts]:
    result: dict[int, Counts] = {tid: Counts() for tid in task_ids}
    if not task_ids:
        return result
    rows = db.session.execute(
        select(Assignment.task_id, Assignment.status, func.count())
        .where(Assignment.task_id.in_(task_ids))
        .group_by(Assignment.task_id, Assignment.status)
    ).all()
    for task_id, status, count in rows:
        if hasattr(result[task_id], status):
            setattr(result[task_id], status, count)
    return result


def _board_query(principal: Principal, filters: dict[str, Any]) -> Select[Any]:
    paths = policies.require_somewhere(principal, Permission.TASK_MANAGE)
    if filters.get("jurisdiction_id") is not None:
        root = _jurisdiction_for(principal, filters["jurisdiction_id"])
        paths = [root.path]
    stmt = (
        select(Task)
        .join(Jurisdiction, Jurisdiction.id == Task.jurisdiction_id)
        .where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
        .options(selectinload(Task.jurisdiction))
    )
    if filters.get("status"):
        stmt = stmt.where(Task.status.in_(filters["status"]))
    if filters.get("kind"):
        stmt = stmt.where(Task.kind.in_(filters["kind"]))
    if filters.get("dispatch_mode"):
        stmt = stmt.where(Task.dispatch_mode.in_(filters["dispatch_mode"]))
    if filters.get("series_id") is not None:
        stmt = stmt.where(Task.series_id == filters["series_id"])
    if (words := text_matches(filters.get("q"), Task.title, Task.address, Task.description)) is not None:
        stmt = stmt.where(words)
    if filters.get("day") is not None:
        day_start = datetime.combine(filters["day"], time(0), SHANGHAI)
        day_end = day_start + timedelta(days=1)
        stmt = stmt.where(Task.starts_at < day_end, Task.ends_at > day_start)
    return stmt


def board(principal: Principal, filters: dict[str, Any], *, cursor: str | None, limit: int) -> Page[TaskRow]:
    """Tasks in the staff member's jurisdiction, latest start first, with slots filled,
    check-ins and no-shows."""
    page = paginate(
        _board_query(principal, filters),
        [SortKey(Task.starts_at, descending=True), SortKey(Task.id, descending=True)],
        lambda t: [t.starts_at, t.id],
        cursor=cursor,
        limit=limit,
    )
    counts = counts_for([t.id for t in page.items])
    return Page(items=[TaskRow(t, counts[t.id]) for t in page.items], next_cursor=page.next_cursor)


def row_for(task: Task) -> TaskRow:
    return TaskRow(task, counts_for([task.id])[task.id])


def detail_for_staff(principal: Principal, task_id: int) -> TaskRow:
    return row_for(load_for_staff(principal, task_id))


def assignments_for_staff(
    principal: Principal, task_id: int, status: Sequence[str], *, cursor: str | None, limit: int
) -> Page[Assignment]:
    """Everyone invited to or on the task, in the order they came."""
    task = load_for_staff(principal, task_id)
    stmt = (
        select(Assignment)
        .where(Assignment.task_id == task.id)
        .options(selectinload(Assignment.volunteer), selectinload(Assignment.ring))
    )
    if status:
        stmt = stmt.where(Assignment.status.in_(status))
    return paginate(stmt, [SortKey(Assignment.id)], lambda a: [a.id], cursor=cursor, limit=limit)
