"""Patrol tasks: the two state machines, the desk's life cycle of a task (create, edit while
draft, publish, cancel), recurring series, closing tasks after their window, reminders, and the
views of the board, of one task and of a volunteer's service.

State machines (every change goes through :func:`move_task` / :func:`move_assignment`, a
conditional UPDATE on the expected status, so two requests or jobs racing on the same row cannot
both win)::

    task        draft → published → in_progress → completed | unserved
                draft | published | in_progress → cancelled
                published → unserved                        (closed after a window nobody used)

A task closed after its window is ``completed`` when at least one volunteer served on it (checked
in, so the close checks them out with their minutes) and ``unserved`` when nobody did: the
reports, the desk board, the volunteer's history and the exports count the two apart.

    assignment  invited → accepted | declined | expired | cancelled
                accepted → checked_in | cancelled | no_show
                checked_in → completed
                declined | expired | cancelled → invited    (the desk invites again)
                declined | expired | cancelled → accepted   (an open task, signed up again)

Dispatch (open sign-up, invitations, nearby rings) lives in :mod:`yijing.services.dispatch`;
check-in, check-out and track points in :mod:`yijing.services.onsite`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import current_app
from rq import Retry
from sqlalchemy import Select, case, func, select, update
from sqlalchemy.orm import selectinload

from yijing import jobs, policies
from yijing.actor import Actor
from yijing.config import Config
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db
from yijing.jobs import JobSpec
from yijing.localtime import SHANGHAI, local
from yijing.models import (
    Assignment,
    AssignmentStatus,
    DispatchMode,
    Jurisdiction,
    Task,
    TaskSeries,
    TaskStatus,
    Volunteer,
)
from yijing.models.base import utcnow
from yijing.models.task import KIND_LABELS, SeriesStatus
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, jurisdictions, outbox, points, task_index
from yijing.sql import insert_ignore, text_matches
from yijing.states import StateMachine

log = logging.getLogger(__name__)

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

EDITABLE_FIELDS = (
    "kind",
    "title",
    "description",
    "jurisdiction_id",
    "lat",
    "lng",
    "address",
    "geofence_radius_m",
    "route",
    "starts_at",
    "ends_at",
    "slots",
    "categories",
    "skills",
    "points",
    "dispatch_mode",
)
MAX_WINDOW = timedelta(days=7)


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
    result = db.session.execute(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.status.in_(expected))
        .values(status=to, updated_at=utcnow(), **values)
    )
    if result.rowcount == 1:
        return True
    db.session.refresh(assignment)
    return False


def service_minutes(task: Task, checkin_at: datetime, checkout_at: datetime) -> int:
    """Whole minutes from check-in to check-out, counting only what lies inside the task window."""
    start = max(checkin_at, task.starts_at)
    end = min(checkout_at, task.ends_at)
    return max(0, int((end - start).total_seconds() // 60))


def points_source_key(task_id: int, assignment_id: int) -> str:
    return f"task:{task_id}:assignment:{assignment_id}"


def complete_assignment(
    assignment: Assignment, task: Task, at: datetime, *, auto: bool, location: dict[str, Any] | None = None
) -> bool:
    """checked_in → completed at ``at``: service minutes and, exactly once, the task's points
    (the ledger's unique source key makes any replay a no-op). In the caller's transaction."""
    if assignment.checkin_at is None:
        raise RuntimeError("a checked-in assignment without a check-in time")
    minutes = service_minutes(task, assignment.checkin_at, at)
    values: dict[str, Any] = {
        "checkout_at": at,
        "checkout_auto": auto,
        "service_minutes": minutes,
        "points_awarded": task.points,
    }
    if location:
        values.update({f"checkout_{k}": v for k, v in location.items()})
    if not move_assignment(assignment, A.COMPLETED, expect=[A.CHECKED_IN], **values):
        return False
    if task.points > 0:
        points.award(
            assignment.user_id,
            task.points,
            reason="task_completed",
            source_key=points_source_key(task.id, assignment.id),
        )
    return True


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


# -- creating, editing, publishing, cancelling ------------------------------------------------------


def _validate(values: dict[str, Any], *, publishing: bool) -> None:
    errors: dict[str, list[str]] = {}
    starts, ends = values["starts_at"], values["ends_at"]
    if ends <= starts:
        errors.setdefault("ends_at", []).append("结束时间应晚于开始时间")
    elif ends - starts > MAX_WINDOW:
        errors.setdefault("ends_at", []).append("单个任务时长不超过 7 天，长期任务请使用周期任务")
    if publishing and ends <= utcnow():
        errors.setdefault("ends_at", []).append("任务时间已过，请修改时间后再发布")
    if errors:
        raise InvalidInput(fields=errors)


def _jurisdiction_for(principal: Principal, jurisdiction_id: int) -> Jurisdiction:
    item = jurisdictions.get(jurisdiction_id)
    policies.require(principal, Permission.TASK_MANAGE, item.path)
    return item


def create_task(principal: Principal, data: dict[str, Any], actor: Actor) -> TaskRow:
    """Create a task as a draft (or publish it at once with ``publish``)."""
    publish_now = bool(data.get("publish"))
    _jurisdiction_for(principal, data["jurisdiction_id"])
    values = {k: data[k] for k in EDITABLE_FIELDS if k in data}
    values.setdefault("dispatch_mode", DispatchMode.OPEN)
    _validate(values, publishing=publish_now)
    task = Task(
        **values,
        created_by_id=principal.user_id,
        status=S.DRAFT,
        filled=0,
        dispatch_ring=0,
    )
    task.categories = sorted(set(task.categories or []))
    task.skills = sorted(set(task.skills or []))
    db.session.add(task)
    db.session.flush()
    audit.record(actor, "task.create", "task", task.id, data={"dispatch_mode": task.dispatch_mode})
    if publish_now:
        _publish(task, actor)
    db.session.commit()
    return row_for(task)


# What may still change once volunteers have seen a task: nothing that changes who may hold a place
# (kind, categories, skills, jurisdiction, dispatch mode) or what it earns. A nearby task keeps its
# place (its rings are drawn around it); a task under way keeps its start and its place.
PUBLISHED_EDITABLE = frozenset(
    {
        "title",
        "description",
        "address",
        "lat",
        "lng",
        "geofence_radius_m",
        "route",
        "starts_at",
        "ends_at",
        "slots",
    }
)
IN_PROGRESS_EDITABLE = frozenset({"title", "description", "ends_at", "slots"})
PLACE_FIELDS = frozenset({"lat", "lng", "route"})
# Changes the volunteers holding or invited to a place are told of.
NOTIFIED_FIELDS = frozenset({"address", "lat", "lng", "geofence_radius_m", "route", "starts_at", "ends_at"})


def _editable(task: Task) -> frozenset[str]:
    if task.status == S.DRAFT:
        return frozenset(EDITABLE_FIELDS)
    if task.status == S.PUBLISHED:
        if task.dispatch_mode == DispatchMode.NEARBY:
            return PUBLISHED_EDITABLE - PLACE_FIELDS
        return PUBLISHED_EDITABLE
    if task.status == S.IN_PROGRESS:
        return IN_PROGRESS_EDITABLE
    raise Conflict(
        f"{_status_label(task.status)}的任务不能再修改",
        code="task_not_editable",
    )


def _notify_changed(task: Task, fields: Sequence[str]) -> None:
    rows = db.session.scalars(
        select(Assignment)
        .where(Assignment.task_id == task.id, Assignment.status.in_([A.INVITED, A.ACCEPTED, A.CHECKED_IN]))
        .order_by(Assignment.id)
    ).all()
    stamp = int(task.updated_at.timestamp() * 1000) if task.updated_at else 0
    for assignment in rows:
        outbox.notify(
            assignment.user_id,
            "task.changed",
            title=f"任务有变更：{task.title}"[:100],
            body=f"时间 {local_text(task.starts_at)} – {local_text(task.ends_at)}，地点 {task.address or ''}",
            dedupe_key=f"task:{task.id}:changed:{stamp}:assignment:{assignment.id}",
            data=notification_data(task, assignment, fields=list(fields)),
            page=task_page(task.id),
        )


def update_task(principal: Principal, task_id: int, changes: dict[str, Any], actor: Actor) -> TaskRow:
    """Edit a task within what its state allows.

    A draft: anything. Published: its title, description, time, place and geofence (not the place of a
    nearby task, whose rings are drawn around it) and its slots (never below the places taken). Under
    way: its title, description, end and slots. Values equal to the current ones are ignored, so a form
    may send them all. Volunteers holding or invited to a place are told when its time or place changes.
    """
    task = load_for_staff(principal, task_id, for_update=True)
    allowed = _editable(task)
    values = {k: changes[k] for k in EDITABLE_FIELDS if k in changes}
    for key in ("categories", "skills"):
        if key in values:
            values[key] = sorted(set(values[key] or []))
    values = {k: v for k, v in values.items() if getattr(task, k) != v}
    locked = sorted(set(values) - allowed)
    if locked:
        raise InvalidInput(
            f"{_status_label(task.status)}的任务不能修改这些项；如需改动请取消后重新发布",
            code="task_field_locked",
            fields={k: ["发布后不能修改"] for k in locked},
        )
    if "jurisdiction_id" in values:
        _jurisdiction_for(principal, values["jurisdiction_id"])
    if "slots" in values and task.status != S.DRAFT and values["slots"] < task.filled:
        raise InvalidInput(fields={"slots": [f"名额不能少于已占用的 {task.filled} 个"]})
    merged = {"starts_at": task.starts_at, "ends_at": task.ends_at, **values}
    _validate(merged, publishing=task.status != S.DRAFT and ("ends_at" in values or "starts_at" in values))
    if not values:
        return row_for(task)
    for key, value in values.items():
        setattr(task, key, value)
    task.updated_at = utcnow()
    audit.record(actor, "task.update", "task", task.id, data={"fields": sorted(values)})
    task_index.refresh(task.id)
    if task.status != S.DRAFT and set(values) & NOTIFIED_FIELDS:
        _notify_changed(task, sorted(set(values) & NOTIFIED_FIELDS))
    db.session.commit()
    return row_for(task)


def _publish(task: Task, actor: Actor) -> None:
    now = utcnow()
    _validate({"starts_at": task.starts_at, "ends_at": task.ends_at}, publishing=True)
    values: dict[str, Any] = {"published_at": now}
    if task.dispatch_mode == DispatchMode.NEARBY:
        # The first ring goes out from the dispatch queue; the sweep catches a lost job.
        values["dispatch_next_at"] = now
    if not move_task(task, S.PUBLISHED, expect=[S.DRAFT], **values):
        raise Conflict(f"任务状态已变化（当前：{_status_label(task.status)}）", code="bad_status")
    audit.record(actor, "task.publish", "task", task.id)
    task_index.refresh(task.id)
    if task.dispatch_mode == DispatchMode.NEARBY:
        enqueue_dispatch(task.id, 0, at=None)


def enqueue_dispatch(task_id: int, after_ring: int, *, at: datetime | None, resume: bool = False) -> None:
    """After the commit: send the ring after ``after_ring`` now (``at`` None) or at ``at``.

    The job id is deterministic per ring, so a ring is scheduled once; a resumed dispatch (a slot
    freed after the task was full) gets an id of its own, since the ring's earlier job may still
    be kept as finished. The ring number's compare-and-set makes any duplicate run a no-op.
    """
    job_id = f"task-dispatch-{task_id}-{after_ring + 1}"
    if resume:
        job_id += f"-resume-{int(utcnow().timestamp() * 1000)}"
    jobs.enqueue_after_commit(
        db.session(),
        JobSpec(
            queue=jobs.DISPATCH,
            func="workers.tasks.advance_dispatch",
            args=(task_id, after_ring),
            job_id=job_id,
            timeout=60,
            retry=Retry(max=3, interval=[5, 15, 30]),
            at=at,
        ),
    )


def publish(principal: Principal, task_id: int, actor: Actor) -> TaskRow:
    """Publish a draft: open tasks become visible, nearby tasks start their first ring."""
    task = load_for_staff(principal, task_id, for_update=True)
    if task.status in LIVE:
        return row_for(task)
    if task.status != S.DRAFT:
        raise Conflict(f"只能发布草稿（当前：{_status_label(task.status)}）", code="task_not_draft")
    _publish(task, actor)
    db.session.commit()
    return row_for(task)


def _notify_cancelled(assignment: Assignment, task: Task, reason: str) -> None:
    outbox.notify(
        assignment.user_id,
        "task.cancelled",
        title=f"任务已取消：{task.title}"[:100],
        body=f"{local_text(task.starts_at)} 的任务已取消。取消原因：{reason}",
        dedupe_key=f"task:{task.id}:cancelled:assignment:{assignment.id}",
        data=notification_data(task, assignment, reason=reason),
        page=task_page(task.id),
    )


def _cancel_task(task: Task, reason: str, *, cancelled_by: str) -> None:
    """Cancel in the caller's transaction: every volunteer holding or invited to a place is told
    why; volunteers on site are checked out now with the minutes they served."""
    now = utcnow()
    if not move_task(
        task,
        S.CANCELLED,
        expect=[S.DRAFT, *LIVE],
        cancelled_at=now,
        cancel_reason=reason,
        dispatch_next_at=None,
    ):
        raise Conflict(f"任务状态已变化（当前：{_status_label(task.status)}）", code="bad_status")
    task_index.refresh(task.id)
    rows = db.session.scalars(
        select(Assignment)
        .where(Assignment.task_id == task.id, Assignment.status.in_([A.INVITED, A.ACCEPTED, A.CHECKED_IN]))
        .order_by(Assignment.id)
    ).all()
    for assignment in rows:
        if assignment.status == A.CHECKED_IN:
            moved = complete_assignment(assignment, task, now, auto=True)
        else:
            moved = move_assignment(
                assignment,
                A.CANCELLED,
                expect=[A.INVITED, A.ACCEPTED],
                cancelled_at=now,
                cancelled_by=cancelled_by,
                cancel_reason=reason,
            )
        if moved:
            _notify_cancelled(assignment, task, reason)


def cancel(principal: Principal, task_id: int, reason: str, actor: Actor) -> TaskRow:
    """Cancel a task with a reason that reaches every accepted (and invited) volunteer."""
    task = load_for_staff(principal, task_id, for_update=True)
    if task.status == S.CANCELLED:
        return row_for(task)
    if task.status in (S.COMPLETED, S.UNSERVED):
        raise Conflict("任务已结束，不能取消", code="task_closed")
    _cancel_task(task, reason, cancelled_by="task")
    audit.record(actor, "task.cancel", "task", task.id, reason=reason)
    db.session.commit()
    return row_for(task)


# -- the window: starting and closing -------------------------------------------------------------


def start_due_tasks(now: datetime | None = None) -> int:
    """published → in_progress once the window has started."""
    now = now or utcnow()
    result = db.session.execute(
        update(Task)
        .where(Task.status == S.PUBLISHED, Task.starts_at <= now)
        .values(status=S.IN_PROGRESS, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount or 0


def close_task(task_id: int, now: datetime | None = None) -> bool:
    """Close one task after its window: volunteers still on site are checked out at the end of
    the window, accepted volunteers who never checked in become no-shows, open invitations
    expire. The task ends ``completed`` when someone served on it (a completed assignment) and
    ``unserved`` when nobody did. Running it twice is harmless."""
    now = now or utcnow()
    task = db.session.scalar(select(Task).where(Task.id == task_id).with_for_update())
    if task is None or task.status not in LIVE:
        db.session.rollback()
        return False
    end = min(now, task.ends_at)
    rows = db.session.scalars(
        select(Assignment)
        .where(Assignment.task_id == task.id, Assignment.status.in_([A.INVITED, A.ACCEPTED, A.CHECKED_IN]))
        .order_by(Assignment.id)
    ).all()
    for assignment in rows:
        if assignment.status == A.CHECKED_IN:
            complete_assignment(assignment, task, end, auto=True)
        elif assignment.status == A.ACCEPTED:
            move_assignment(assignment, A.NO_SHOW, expect=[A.ACCEPTED])
        else:
            move_assignment(assignment, A.EXPIRED, expect=[A.INVITED])
    served = db.session.scalar(
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.task_id == task.id, Assignment.status == A.COMPLETED)
    )
    outcome = S.COMPLETED if served else S.UNSERVED
    closed = move_task(task, outcome, expect=list(LIVE), closed_at=now, dispatch_next_at=None)
    task_index.refresh(task.id)
    db.session.commit()
    return closed


def close_finished_tasks(now: datetime | None = None) -> int:
    """Start tasks whose window began; close those whose window ended more than
    TASK_CLOSE_GRACE_MINUTES ago (marking no-shows). Returns how many were closed."""
    now = now or utcnow()
    start_due_tasks(now)
    cutoff = now - timedelta(minutes=config().task_close_grace_minutes)
    due = db.session.scalars(
        select(Task.id).where(Task.status.in_(LIVE), Task.ends_at <= cutoff).order_by(Task.ends_at)
    ).all()
    db.session.rollback()
    return sum(1 for task_id in due if close_task(task_id, now))


# -- reminders ------------------------------------------------------------------------------------


def send_reminders(now: datetime | None = None) -> int:
    """Outbox rows for accepted volunteers before the task starts (TASK_REMINDER_LEAD_MINUTES),
    and for invitees before their invitation's deadline (TASK_INVITATION_REMINDER_MINUTES)."""
    now = now or utcnow()
    cfg = config()
    written = 0
    starting = db.session.execute(
        select(Assignment, Task)
        .join(Task, Task.id == Assignment.task_id)
        .where(
            Assignment.status == A.ACCEPTED,
            Assignment.reminded_at.is_(None),
            Task.status.in_(LIVE),
            Task.starts_at > now,
            Task.starts_at <= now + timedelta(minutes=cfg.task_reminder_lead_minutes),
        )
        .limit(1000)
    ).all()
    for assignment, task in starting:
        written += outbox.notify(
            assignment.user_id,
            "task.reminder",
            title=f"任务即将开始：{task.title}"[:100],
            body=f"{local_text(task.starts_at)} 开始，地点：{task.address or '见任务详情'}。"
            "到达现场后请签到。",
            dedupe_key=f"task:{task.id}:assignment:{assignment.id}:reminder:start",
            data=notification_data(task, assignment, type="start"),
            page=task_page(task.id),
        )
        assignment.reminded_at = now
    deadlines = db.session.execute(
        select(Assignment, Task)
        .join(Task, Task.id == Assignment.task_id)
        .where(
            Assignment.status == A.INVITED,
            Assignment.source == DispatchMode.ASSIGNED,
            Assignment.invite_reminded_at.is_(None),
            Assignment.invite_expires_at > now,
            Assignment.invite_expires_at <= now + timedelta(minutes=cfg.task_invitation_reminder_minutes),
            Task.status.in_(LIVE),
        )
        .limit(1000)
    ).all()
    for assignment, task in deadlines:
        assert assignment.invite_expires_at is not None
        written += outbox.notify(
            assignment.user_id,
            "task.reminder",
            title=f"任务邀请即将过期：{task.title}"[:100],
            body=f"请在 {local_text(assignment.invite_expires_at)} 前接受或拒绝邀请。",
            dedupe_key=f"task:{task.id}:assignment:{assignment.id}:invite:{assignment.invite_seq}:reminder",
            data=notification_data(
                task,
                assignment,
                type="invitation_deadline",
                expires_at=assignment.invite_expires_at.isoformat(),
            ),
            page=task_page(task.id),
        )
        assignment.invite_reminded_at = now
    db.session.commit()
    return written


# -- recurring series -----------------------------------------------------------------------------


def _parse_hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def occurrence_window(series: TaskSeries, day: date) -> tuple[datetime, datetime]:
    """The UTC window of the occurrence on ``day`` (local Asia/Shanghai times)."""
    start = datetime.combine(day, _parse_hhmm(series.start_time), SHANGHAI)
    end = datetime.combine(day, _parse_hhmm(series.end_time), SHANGHAI)
    if end <= start:  # a night patrol that ends after midnight
        end += timedelta(days=1)
    return start.astimezone(UTC), end.astimezone(UTC)


def create_series(principal: Principal, data: dict[str, Any], actor: Actor) -> TaskSeries:
    """A recurring open task; a job creates its occurrences ahead of time."""
    _jurisdiction_for(principal, data["jurisdiction_id"])
    errors: dict[str, list[str]] = {}
    if data.get("ends_on") and data["ends_on"] < data["starts_on"]:
        errors.setdefault("ends_on", []).append("结束日期应不早于开始日期")
    if data["start_time"] == data["end_time"]:
        errors.setdefault("end_time", []).append("结束时间应与开始时间不同")
    if errors:
        raise InvalidInput(fields=errors)
    series = TaskSeries(
        jurisdiction_id=data["jurisdiction_id"],
        created_by_id=principal.user_id,
        status=SeriesStatus.ACTIVE,
        kind=data["kind"],
        title=data["title"],
        description=data.get("description", ""),
        lat=data["lat"],
        lng=data["lng"],
        address=data.get("address", ""),
        geofence_radius_m=data["geofence_radius_m"],
        route=data.get("route"),
        slots=data["slots"],
        categories=sorted(set(data.get("categories") or [])),
        skills=sorted(set(data.get("skills") or [])),
        points=data.get("points", 0),
        weekdays=sorted(set(data["weekdays"])),
        start_time=data["start_time"],
        end_time=data["end_time"],
        starts_on=data["starts_on"],
        ends_on=data.get("ends_on"),
        skip_dates=sorted({d.isoformat() for d in data.get("skip_dates") or []}),
    )
    db.session.add(series)
    db.session.flush()
    audit.record(actor, "task_series.create", "task_series", series.id)
    jobs.enqueue_after_commit(
        db.session(),
        JobSpec(
            queue=jobs.DEFAULT,
            func="workers.tasks.generate_occurrences",
            args=(series.id,),
            job_id=f"task-series-generate-{series.id}",
            timeout=120,
            retry=Retry(max=3, interval=[10, 30, 60]),
        ),
    )
    db.session.commit()
    return series


def end_series(principal: Principal, series_id: int, reason: str, actor: Actor) -> TaskSeries:
    """Stop a series: no new occurrences; occurrences that have not started are cancelled."""
    series = db.session.get(TaskSeries, series_id)
    if series is None:
        raise NotFound("周期任务不存在", code="series_not_found")
    policies.require(principal, Permission.TASK_MANAGE, series.jurisdiction.path)
    if series.status == SeriesStatus.ENDED:
        return series
    now = utcnow()
    series.status = SeriesStatus.ENDED
    series.ended_at = series.updated_at = now
    upcoming = db.session.scalars(
        select(Task)
        .where(Task.series_id == series.id, Task.status == S.PUBLISHED, Task.starts_at > now)
        .with_for_update()
    ).all()
    for task in upcoming:
        _cancel_task(task, reason, cancelled_by="task")
    audit.record(actor, "task_series.end", "task_series", series.id, reason=reason)
    db.session.commit()
    return series


def _occurrence_values(series: TaskSeries, day: date, now: datetime) -> dict[str, Any] | None:
    starts_at, ends_at = occurrence_window(series, day)
    if ends_at <= now:
        return None
    return {
        "jurisdiction_id": series.jurisdiction_id,
        "series_id": series.id,
        "occurrence_date": day,
        "created_by_id": series.created_by_id,
        "kind": series.kind,
        "title": series.title,
        "description": series.description,
        "lat": series.lat,
        "lng": series.lng,
        "address": series.address,
        "geofence_radius_m": series.geofence_radius_m,
        "route": series.route,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "slots": series.slots,
        "filled": 0,
        "categories": list(series.categories or []),
        "skills": list(series.skills or []),
        "points": series.points,
        "dispatch_mode": DispatchMode.OPEN,
        "status": S.PUBLISHED,
        "published_at": now,
        "dispatch_ring": 0,
        "created_at": now,
    }


def generate_occurrences(series_id: int | None = None, now: datetime | None = None) -> int:
    """Create the occurrences of active series up to TASK_RECURRENCE_HORIZON_DAYS ahead
    (published open tasks, one per series and date). Running it twice creates nothing new."""
    now = now or utcnow()
    today = local(now).date()
    horizon = today + timedelta(days=config().task_recurrence_horizon_days)
    stmt = select(TaskSeries.id).where(TaskSeries.status == SeriesStatus.ACTIVE)
    if series_id is not None:
        stmt = stmt.where(TaskSeries.id == series_id)
    created = 0
    for sid in db.session.scalars(stmt.order_by(TaskSeries.id)).all():
        series = db.session.scalar(select(TaskSeries).where(TaskSeries.id == sid).with_for_update())
        if series is None or series.status != SeriesStatus.ACTIVE:
            db.session.rollback()
            continue
        last = min(horizon, series.ends_on) if series.ends_on else horizon
        day = max(series.starts_on, today)
        if series.generated_through is not None:
            day = max(day, series.generated_through + timedelta(days=1))
        skip = set(series.skip_dates or [])
        rows = []
        while day <= last:
            if day.isoweekday() in series.weekdays and day.isoformat() not in skip:
                values = _occurrence_values(series, day, now)
                if values is not None:
                    rows.append(values)
            day += timedelta(days=1)
        if rows:
            created += insert_ignore(db.session(), Task, rows)
            task_index.refresh_many(
                db.session.scalars(
                    select(Task.id).where(
                        Task.series_id == series.id,
                        Task.occurrence_date.in_([r["occurrence_date"] for r in rows]),
                    )
                )
            )
        if series.generated_through is None or last > series.generated_through:
            series.generated_through = last
        db.session.commit()
    return created


def list_series(principal: Principal, *, cursor: str | None, limit: int) -> Page[TaskSeries]:
    paths = policies.require_somewhere(principal, Permission.TASK_MANAGE)
    stmt = (
        select(TaskSeries)
        .join(Jurisdiction, Jurisdiction.id == TaskSeries.jurisdiction_id)
        .where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
        .options(selectinload(TaskSeries.jurisdiction))
    )
    return paginate(
        stmt,
        [SortKey(TaskSeries.id, descending=True)],
        lambda s: [s.id],
        cursor=cursor,
        limit=limit,
    )


# -- views ------------------------------------------------------------------------------------------


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
) -> dict[str, Any]:
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
    return {
        "volunteer": volunteer,
        "service": service_totals(volunteer_id=volunteer.id),
        "items": page.items,
        "next_cursor": page.next_cursor,
    }


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


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)
