"""What every part of tasks shares: the two state machines and the only way to move
them (:func:`move_task` / :func:`move_assignment`), their labels, look-ups, and what a task's
notifications show."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from rq import Retry
from sqlalchemy import Update, select, update

from yijing import jobs, policies
from yijing.config import Config
from yijing.errors import NotFound
from yijing.extensions import db
from yijing.jobs import JobSpec
from yijing.localtime import local
from yijing.models import (
    Assignment,
    AssignmentStatus,
    DispatchMode,
    Jurisdiction,
    Task,
    TaskStatus,
    Volunteer,
)
from yijing.models.base import utcnow
from yijing.models.task import KIND_LABELS
from yijing.policies import Permission, Principal
from yijing.services import jurisdictions
from yijing.states import StateMachine

A = AssignmentStatus
S = TaskStatus

TASK_FLOW: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.PUBLISHED, S.CANCELLED}),
    S.PUBLISHED: frozenset({S.IN_PROGRESS, S.COMPLETED, S.UNSERVED, S.CANCELLED}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.UNSERVED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.UNSERVED: frozenset(),
    S.CANCELLED: frozenset(),
}

ASSIGNMENT_FLOW: dict[str, frozenset[str]] = {
    A.INVITED: frozenset({A.ACCEPTED, A.DECLINED, A.EXPIRED, A.CANCELLED}),
    A.ACCEPTED: frozenset({A.CHECKED_IN, A.CANCELLED, A.NO_SHOW}),
    A.CHECKED_IN: frozenset({A.COMPLETED}),
    A.DECLINED: frozenset({A.INVITED, A.ACCEPTED}),
    A.EXPIRED: frozenset({A.INVITED, A.ACCEPTED}),
    A.CANCELLED: frozenset({A.INVITED, A.ACCEPTED}),
    A.COMPLETED: frozenset(),
    A.NO_SHOW: frozenset(),
}

# A task volunteers can still take or serve on.
LIVE = (S.PUBLISHED, S.IN_PROGRESS)

TASK_STATUS_LABELS = {
    S.DRAFT: "草稿",
    S.PUBLISHED: "已发布",
    S.IN_PROGRESS: "进行中",
    S.COMPLETED: "已完成",
    S.UNSERVED: "无人服务",
    S.CANCELLED: "已取消",
}
ASSIGNMENT_STATUS_LABELS = {
    A.INVITED: "待回复",
    A.ACCEPTED: "已接受",
    A.DECLINED: "已拒绝",
    A.EXPIRED: "邀请已过期",
    A.CANCELLED: "已取消",
    A.CHECKED_IN: "已签到",
    A.COMPLETED: "已完成",
    A.NO_SHOW: "未到岗",
}
TASK_STATES = StateMachine("任务", TASK_FLOW, TASK_STATUS_LABELS)
ASSIGNMENT_STATES = StateMachine("报名", ASSIGNMENT_FLOW, ASSIGNMENT_STATUS_LABELS)
MODE_LABELS = {DispatchMode.OPEN: "公开报名", DispatchMode.ASSIGNED: "指派", DispatchMode.NEARBY: "就近调度"}


def config() -> Config:
    return current_app.config["YIJING"]


TASK_PAGE = "pages/task/detail/index"


def task_page(task_id: int) -> str:
    """The mini-program page of a task (the one its subscribe-message templates name)."""
    return f"{TASK_PAGE}?id={task_id}"


def notification_data(task: Task, assignment: Assignment | None = None, **extra: Any) -> dict[str, Any]:
    """What a task's subscribe messages show: its title, start time and place (and the ids)."""
    data: dict[str, Any] = {
        "task_id": task.id,
        "task_title": task.title,
        "starts_at": task.starts_at.isoformat(),
        "place": task.address or jurisdictions.get(task.jurisdiction_id).name,
    }
    if assignment is not None:
        data["assignment_id"] = assignment.id
    data.update(extra)
    return data


def local_text(dt: datetime) -> str:
    """``11月26日 07:30`` in Asia/Shanghai, for messages people read."""
    shown = local(dt)
    return f"{shown.month}月{shown.day}日 {shown:%H:%M}"


# -- the state machines ---------------------------------------------------------------------------


def _check_flow(machine: StateMachine, expect: Iterable[str], to: str) -> list[str]:
    expected = list(expect)
    for status in expected:
        machine.require(status, to)
    return expected


def move_task(task: Task, to: TaskStatus, *, expect: Iterable[str] | None = None, **values: Any) -> bool:
    """Move ``task`` to ``to`` if its status (in the database) is still one of ``expect``
    (default: its current status). False, with ``task`` refreshed, when another change won."""
    expected = _check_flow(TASK_STATES, expect or [task.status], to)
    result = db.session.execute(
        update(Task)
        .where(Task.id == task.id, Task.status.in_(expected))
        .values(status=to, updated_at=utcnow(), **values)
    )
    if result.rowcount == 1:
        return True
    db.session.refresh(task)
    return False


def move_assignment(
    assignment: Assignment, to: AssignmentStatus, *, expect: Iterable[str] | None = None, **values: Any
) -> bool:
    """Move ``assignment`` to ``to`` if its status is still one of ``expect`` (default: its
    current status). False, with ``assignment`` refreshed, when another change won."""
    expected = _check_flow(ASSIGNMENT_STATES, expect or [assignment.status], to)
    result = db.session.execute(_assignment_move(assignment.id, expected, to, values))
    if result.rowcount == 1:
        return True
    db.session.refresh(assignment)
    return False


def moved_assignment(
    assignment_id: int, to: AssignmentStatus, *, expect: Iterable[str], **values: Any
) -> Assignment | None:
    """Like :func:`move_assignment` for an assignment known by its id and status (not loaded):
    the row as written (``UPDATE … RETURNING``, loaded into the session), or None when another
    change won."""
    expected = _check_flow(ASSIGNMENT_STATES, expect, to)
    statement = _assignment_move(assignment_id, expected, to, values).returning(Assignment)
    return db.session.scalars(statement).first()


def _assignment_move(assignment_id: int, expected: list[str], to: str, values: dict[str, Any]) -> Update:
    return (
        update(Assignment)
        .where(Assignment.id == assignment_id, Assignment.status.in_(expected))
        .values(status=to, updated_at=utcnow(), **values)
    )


# -- look-ups -----------------------------------------------------------------------------------


def get_task(task_id: int, *, for_update: bool = False) -> Task:
    stmt = select(Task).where(Task.id == task_id)
    if for_update:
        stmt = stmt.with_for_update()
    task = db.session.scalar(stmt)
    if task is None:
        raise NotFound("任务不存在", code="task_not_found")
    return task


def load_for_staff(principal: Principal, task_id: int, *, for_update: bool = False) -> Task:
    """The task, if the staff member manages tasks in its jurisdiction (404 / 403 otherwise)."""
    task = get_task(task_id, for_update=for_update)
    policies.require(principal, Permission.TASK_MANAGE, task.jurisdiction.path)
    return task


def my_volunteer(user_id: int) -> Volunteer | None:
    """The user's open volunteer record (pending, approved or suspended), if any."""
    return db.session.scalar(select(Volunteer).where(Volunteer.open_user_id == user_id))


def _status_label(status: str) -> str:
    return TASK_STATUS_LABELS.get(status, status)


def _jurisdiction_for(principal: Principal, jurisdiction_id: int) -> Jurisdiction:
    item = jurisdictions.get(jurisdiction_id)
    policies.require(principal, Permission.TASK_MANAGE, item.path)
    return item


@dataclass(frozen=True, slots=True)
class RingHint:
    """The task as the job that sends a nearby ring saw it (:func:`ring_hint`): where to search
    (place, categories, slots, how many were on it) and what the invitations' messages say
    (title, place, times, skills). With it, on PostgreSQL, the ring searches the GEO index and
    then sends itself in one statement without reading the task first
    (:mod:`yijing.services.dispatch`). The row decides, never the hint: that statement sends the
    ring only if the task still is what the hint says; a task edited since is read and searched
    again, never a ring sent to the wrong place or a message with an old title."""

    lat: float
    lng: float
    categories: tuple[str, ...]
    slots: int
    on_task: int
    skills: tuple[str, ...]
    title: str
    address: str
    jurisdiction_id: int
    starts_at: datetime
    ends_at: datetime

    def as_job(self) -> dict[str, Any]:
        """Plain values for the job's arguments (``RingHint.of_job`` reads them back)."""
        return {
            "lat": self.lat,
            "lng": self.lng,
            "categories": list(self.categories),
            "slots": self.slots,
            "on_task": self.on_task,
            "skills": list(self.skills),
            "title": self.title,
            "address": self.address,
            "jurisdiction_id": self.jurisdiction_id,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
        }

    @classmethod
    def of_job(cls, values: Any) -> RingHint | None:
        """The hint a job carries; None for a job enqueued before hints said all of this (a list
        of the place, categories, slots and count): such a ring reads its task first."""
        if not isinstance(values, dict):
            return None
        return cls(
            lat=values["lat"],
            lng=values["lng"],
            categories=tuple(values["categories"]),
            slots=values["slots"],
            on_task=values["on_task"],
            skills=tuple(values["skills"]),
            title=values["title"],
            address=values["address"],
            jurisdiction_id=values["jurisdiction_id"],
            starts_at=datetime.fromisoformat(values["starts_at"]),
            ends_at=datetime.fromisoformat(values["ends_at"]),
        )


def ring_hint(task: Any, on_task: int = 0) -> RingHint:
    """The hint of a task (a Task, or a row with the same attributes) with ``on_task`` on it."""
    return RingHint(
        lat=float(task.lat),
        lng=float(task.lng),
        categories=tuple(task.categories or ()),
        slots=task.slots,
        on_task=on_task,
        skills=tuple(task.skills or ()),
        title=task.title,
        address=task.address,
        jurisdiction_id=task.jurisdiction_id,
        starts_at=task.starts_at,
        ends_at=task.ends_at,
    )


def enqueue_dispatch(
    task_id: int, after_ring: int, *, at: datetime | None, resume: bool = False, hint: RingHint | None = None
) -> None:
    """After the commit: send the ring after ``after_ring`` now (``at`` None) or at ``at``
    (:func:`dispatch_job`)."""
    job = dispatch_job(task_id, after_ring, at=at, resume=resume, hint=hint)
    jobs.enqueue_after_commit(db.session(), job)


def dispatch_job(
    task_id: int, after_ring: int, *, at: datetime | None, resume: bool = False, hint: RingHint | None = None
) -> JobSpec:
    """The job that sends the ring after ``after_ring``, now (``at`` None) or at ``at``, with
    where to search (``hint``) when the caller has the task at hand.

    The job id is deterministic per ring, so a ring is scheduled once; a resumed dispatch (a slot
    freed after the task was full) gets an id of its own, since the ring's earlier job may still
    be kept as finished. The ring number's compare-and-set makes any duplicate run a no-op.
    """
    job_id = f"task-dispatch-{task_id}-{after_ring + 1}"
    if resume:
        job_id += f"-resume-{int(utcnow().timestamp() * 1000)}"
    return JobSpec(
        queue=jobs.DISPATCH,
        func="workers.tasks.advance_dispatch",
        args=(task_id, after_ring),
        kwargs={"hint": hint.as_job()} if hint is not None else {},
        job_id=job_id,
        timeout=60,
        retry=Retry(max=3, interval=[5, 15, 30]),
        at=at,
    )


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)
