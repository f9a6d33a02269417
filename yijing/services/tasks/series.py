"""Recurring series: a weekly open task whose occurrences a job creates ahead of time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from rq import Retry
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from yijing import jobs, policies
from yijing.actor import Actor
from yijing.errors import InvalidInput, NotFound
from yijing.extensions import db
from yijing.jobs import JobSpec
from yijing.localtime import SHANGHAI, local
from yijing.models import DispatchMode, Jurisdiction, Task, TaskSeries
from yijing.models.base import utcnow
from yijing.models.task import SeriesStatus
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, jurisdictions, task_index
from yijing.services.tasks.authoring import _cancel_task
from yijing.services.tasks.common import S, _jurisdiction_for, config
from yijing.sql import insert_ignore


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
