"""On site: check-in and check-out inside the geofence, and track points while on patrol.

Geofence: the distance from the phone's location to the task's place (or to its route, when it
has one, whichever is nearer) may be at most ``geofence_radius_m + TASK_GEOFENCE_TOLERANCE_M +
min(accuracy, TASK_GEOFENCE_MAX_ACCURACY_M)``: a phone that admits a poor fix gets that much more
room, but never more than the cap.

Time: check-in opens ``TASK_CHECKIN_EARLY_MINUTES`` before the start and closes at the end;
check-out is possible until the task is closed (``TASK_CLOSE_GRACE_MINUTES`` after the end).
Service minutes count only the part inside the window (see
:func:`yijing.services.tasks.lifecycle.service_minutes`); completing writes the task's points once.

A retried check-in or check-out (with or without ``Idempotency-Key``) finds the assignment already
moved and returns it unchanged: nothing is counted twice.

Track points: each carries the phone's clock; a point is kept when it lies within
[check-in − TASK_TRACK_SKEW_SECONDS, now + skew] and inside the task's window (and before the
check-out, plus the skew). Points already stored (same assignment, same time) are skipped by the
unique constraint, so a phone re-sending a batch after a dropped connection stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db
from yijing.geo import distance_to_route_m, haversine_m
from yijing.models import Assignment, AssignmentStatus, Task, TrackPoint
from yijing.models.base import utcnow
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Principal
from yijing.services import tasks as task_service
from yijing.services.tasks import LIVE, config, local_text, move_assignment, move_task
from yijing.sql import insert_ignore

A = AssignmentStatus
MAX_TRACK_BATCH = 500


def distance_to_site(task: Task, lat: float, lng: float) -> float:
    """Metres from the point to the task's place, or to its route if that is nearer."""
    distance = haversine_m(lat, lng, task.lat, task.lng)
    along = distance_to_route_m(lat, lng, task.route or [])
    return distance if along is None else min(distance, along)


def allowed_distance(task: Task, accuracy_m: float | None) -> float:
    cfg = config()
    slack = min(max(accuracy_m or 0.0, 0.0), float(cfg.task_geofence_max_accuracy_m))
    return task.geofence_radius_m + cfg.task_geofence_tolerance_m + slack


def _metres(value: float) -> str:
    return f"{value / 1000:.1f} 公里" if value >= 1000 else f"{round(value)} 米"


def _check_geofence(task: Task, lat: float, lng: float, accuracy_m: float | None, what: str) -> float:
    distance = distance_to_site(task, lat, lng)
    allowed = allowed_distance(task, accuracy_m)
    if distance > allowed:
        message = (
            f"您距离任务地点约 {_metres(distance)}，超出{what}范围（{_metres(allowed)}以内），"
            f"请到达现场后再{what}"
        )
        raise InvalidInput(
            message,
            code="outside_geofence",
            fields={"location": [message]},
        )
    return round(distance, 1)


def _mine(user_id: int, task_id: int) -> tuple[Assignment, Task]:
    assignment = db.session.scalar(
        select(Assignment)
        .where(Assignment.task_id == task_id, Assignment.user_id == user_id)
        .order_by(Assignment.id.desc())
        .limit(1)
    )
    if assignment is None:
        raise NotFound("您没有参与该任务", code="assignment_not_found")
    return assignment, assignment.task


def _location(lat: float, lng: float, accuracy_m: float | None, distance_m: float) -> dict[str, Any]:
    return {"lat": lat, "lng": lng, "accuracy_m": accuracy_m, "distance_m": distance_m}


def check_in(user_id: int, task_id: int, lat: float, lng: float, accuracy_m: float | None) -> Assignment:
    """Check in on site, inside the geofence and the time window."""
    assignment, task = _mine(user_id, task_id)
    if assignment.status in (A.CHECKED_IN, A.COMPLETED):
        return assignment  # a retry: the first check-in stands
    if assignment.status != A.ACCEPTED:
        label = task_service.ASSIGNMENT_STATUS_LABELS.get(assignment.status, assignment.status)
        raise Conflict(f"请先接受任务再签到（当前：{label}）", code="not_accepted")
    if task.status not in LIVE:
        raise Conflict("该任务已结束或已取消，不能签到", code="task_not_open")
    now = utcnow()
    opens = task.starts_at - timedelta(minutes=config().task_checkin_early_minutes)
    if now < opens:
        raise Conflict(
            f"任务 {local_text(task.starts_at)} 开始，{local_text(opens)} 起可以签到", code="checkin_not_open"
        )
    if now > task.ends_at:
        raise Conflict("任务时间已过，不能再签到", code="task_ended")
    distance = _check_geofence(task, lat, lng, accuracy_m, "签到")
    # Lock order: the task row first (when it starts now), then the assignment.
    move_task(task, task_service.S.IN_PROGRESS, expect=[task_service.S.PUBLISHED])
    location = _location(lat, lng, accuracy_m, distance)
    if not move_assignment(
        assignment,
        A.CHECKED_IN,
        expect=[A.ACCEPTED],
        checkin_at=now,
        **{f"checkin_{k}": v for k, v in location.items()},
    ):
        db.session.rollback()
        db.session.refresh(assignment)
        if assignment.status in (A.CHECKED_IN, A.COMPLETED):
            return assignment
        raise Conflict("任务状态已变化，请刷新后重试", code="bad_status")
    db.session.commit()
    return assignment


def check_out(user_id: int, task_id: int, lat: float, lng: float, accuracy_m: float | None) -> Assignment:
    """Check out inside the geofence: service minutes and points, once."""
    assignment, task = _mine(user_id, task_id)
    if assignment.status == A.COMPLETED:
        return assignment  # a retry: minutes and points stay as they were
    if assignment.status != A.CHECKED_IN:
        label = task_service.ASSIGNMENT_STATUS_LABELS.get(assignment.status, assignment.status)
        raise Conflict(f"请先签到再签退（当前：{label}）", code="not_checked_in")
    distance = _check_geofence(task, lat, lng, accuracy_m, "签退")
    now = utcnow()
    if not task_service.complete_assignment(
        assignment, task, now, auto=False, location=_location(lat, lng, accuracy_m, distance)
    ):
        db.session.rollback()
        db.session.refresh(assignment)
        if assignment.status == A.COMPLETED:
            return assignment
        raise Conflict("任务状态已变化，请刷新后重试", code="bad_status")
    db.session.commit()
    return assignment


@dataclass(frozen=True, slots=True)
class RejectedPoint:
    """A track point not stored: its index in the batch and why."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class TrackUpload:
    """What became of a batch of track points."""

    stored: int
    duplicates: int
    rejected: list[RejectedPoint]


def upload_track(user_id: int, task_id: int, points: Sequence[dict[str, Any]]) -> TrackUpload:
    """Store a batch of track points; returns how many were stored, were already there, or were
    refused (with the index and the reason)."""
    if len(points) > MAX_TRACK_BATCH:
        raise InvalidInput(f"每批最多 {MAX_TRACK_BATCH} 个轨迹点", fields={"points": ["过多"]})
    assignment, task = _mine(user_id, task_id)
    if assignment.status not in (A.CHECKED_IN, A.COMPLETED) or assignment.checkin_at is None:
        raise Conflict("签到后才能上传轨迹", code="not_checked_in")
    now = utcnow()
    skew = timedelta(seconds=config().task_track_skew_seconds)
    earliest = max(
        assignment.checkin_at, task.starts_at - timedelta(minutes=config().task_checkin_early_minutes)
    )
    earliest -= skew
    latest = min(now, task.ends_at, assignment.checkout_at or now) + skew
    rows: dict[datetime, dict[str, Any]] = {}
    rejected: list[RejectedPoint] = []
    for index, point in enumerate(points):
        at: datetime = point["recorded_at"]
        if at < earliest:
            rejected.append(RejectedPoint(index, "早于签到时间或任务开始时间"))
        elif at > latest:
            rejected.append(RejectedPoint(index, "晚于当前时间、签退时间或任务结束时间"))
        else:
            rows.setdefault(
                at,
                {
                    "assignment_id": assignment.id,
                    "recorded_at": at,
                    "lat": point["lat"],
                    "lng": point["lng"],
                    "accuracy_m": point.get("accuracy_m"),
                    "received_at": now,
                },
            )
    stored = insert_ignore(db.session(), TrackPoint, list(rows.values())) if rows else 0
    db.session.commit()
    return TrackUpload(stored=stored, duplicates=len(points) - len(rejected) - stored, rejected=rejected)


def track_for_staff(
    principal: Principal, task_id: int, assignment_id: int | None, *, cursor: str | None, limit: int
) -> Page[TrackPoint]:
    """Track points of a task (or of one volunteer on it), in the order they were recorded."""
    task = task_service.load_for_staff(principal, task_id)
    stmt = (
        select(TrackPoint)
        .join(Assignment, Assignment.id == TrackPoint.assignment_id)
        .where(Assignment.task_id == task.id)
    )
    if assignment_id is not None:
        stmt = stmt.where(TrackPoint.assignment_id == assignment_id)
    return paginate(
        stmt,
        [SortKey(TrackPoint.recorded_at), SortKey(TrackPoint.id)],
        lambda p: [p.recorded_at, p.id],
        cursor=cursor,
        limit=limit,
    )
