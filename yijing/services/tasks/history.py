"""What a volunteer has served: totals, their history for the desk, their own tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import selectinload

from yijing import policies
from yijing.errors import NotFound
from yijing.extensions import db
from yijing.models import Assignment, Task, Volunteer
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services.tasks.common import A


@dataclass(frozen=True)
class ServiceTotals:
    tasks: int
    completed: int
    no_shows: int
    service_minutes: int
    points: int

    @property
    def service_hours(self) -> float:
        return round(self.service_minutes / 60, 1)


def service_totals(*, user_id: int | None = None, volunteer_id: int | None = None) -> ServiceTotals:
    """What a volunteer (or a user, across their applications) has served: one aggregate query."""
    stmt = select(
        func.count(Assignment.id),
        func.coalesce(func.sum(case((Assignment.status == A.COMPLETED, 1), else_=0)), 0),
        func.coalesce(func.sum(case((Assignment.status == A.NO_SHOW, 1), else_=0)), 0),
        func.coalesce(func.sum(Assignment.service_minutes), 0),
        func.coalesce(
            func.sum(case((Assignment.status == A.COMPLETED, Assignment.points_awarded), else_=0)), 0
        ),
    ).where(Assignment.status.in_([A.ACCEPTED, A.CHECKED_IN, A.COMPLETED, A.NO_SHOW]))
    if volunteer_id is not None:
        stmt = stmt.where(Assignment.volunteer_id == volunteer_id)
    if user_id is not None:
        stmt = stmt.where(Assignment.user_id == user_id)
    tasks_, completed, no_shows, minutes, points_ = db.session.execute(stmt).one()
    return ServiceTotals(int(tasks_), int(completed), int(no_shows), int(minutes), int(points_))


@dataclass(frozen=True, slots=True)
class VolunteerHistory:
    """One page of a volunteer's tasks, newest first, with their service totals."""

    volunteer: Volunteer
    service: ServiceTotals
    items: list[Assignment]
    next_cursor: str | None


def _history_query(*, user_id: int | None = None, volunteer_id: int | None = None) -> Select[Any]:
    stmt = select(Assignment).options(
        selectinload(Assignment.task).selectinload(Task.jurisdiction), selectinload(Assignment.volunteer)
    )
    if volunteer_id is not None:
        stmt = stmt.where(Assignment.volunteer_id == volunteer_id)
    if user_id is not None:
        stmt = stmt.where(Assignment.user_id == user_id)
    return stmt


def volunteer_history(
    principal: Principal, volunteer_id: int, *, cursor: str | None, limit: int
) -> VolunteerHistory:
    """A volunteer's tasks, newest first, and their service hours (staff of their jurisdiction)."""
    volunteer = db.session.get(Volunteer, volunteer_id)
    if volunteer is None:
        raise NotFound("义警不存在", code="volunteer_not_found")
    policies.require(principal, Permission.TASK_MANAGE, volunteer.home.path)
    page = paginate(
        _history_query(volunteer_id=volunteer.id),
        [SortKey(Assignment.id, descending=True)],
        lambda a: [a.id],
        cursor=cursor,
        limit=limit,
    )
    return VolunteerHistory(
        volunteer=volunteer,
        service=service_totals(volunteer_id=volunteer.id),
        items=page.items,
        next_cursor=page.next_cursor,
    )


def my_assignments(
    user_id: int, status: Sequence[str], *, cursor: str | None, limit: int
) -> Page[Assignment]:
    """The volunteer's own tasks (invitations, accepted, done), newest first."""
    stmt = _history_query(user_id=user_id)
    if status:
        stmt = stmt.where(Assignment.status.in_(status))
    return paginate(
        stmt, [SortKey(Assignment.id, descending=True)], lambda a: [a.id], cursor=cursor, limit=limit
    )


def my_service(user_id: int) -> ServiceTotals:
    return service_totals(user_id=user_id)
