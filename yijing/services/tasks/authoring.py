"""The desk writes a task: create (as a draft, or published at once), edit within what its
state allows, publish, cancel."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput
from yijing.extensions import db
from yijing.models import Assignment, DispatchMode, Task
from yijing.models.base import utcnow
from yijing.policies import Principal
from yijing.services import audit, outbox, task_index
from yijing.services.tasks.board import TaskRow, row_for
from yijing.services.tasks.common import (
    LIVE,
    A,
    S,
    _jurisdiction_for,
    _status_label,
    enqueue_dispatch,
    load_for_staff,
    local_text,
    move_assignment,
    move_task,
    notification_data,
    ring_hint,
    task_page,
)
from yijing.services.tasks.lifecycle import complete_assignment

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
        enqueue_dispatch(task.id, 0, at=None, hint=ring_hint(task))


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
