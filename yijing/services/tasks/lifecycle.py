"""A task's window: starting and closing it, completing an assignment with its minutes and
points, and the reminders before a task and before an invitation's deadline."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from yijing.extensions import db
from yijing.models import Assignment, DispatchMode, Task
from yijing.models.base import utcnow
from yijing.services import outbox, points, task_index
from yijing.services.tasks.common import (
    LIVE,
    A,
    S,
    config,
    local_text,
    move_assignment,
    move_task,
    notification_data,
    task_page,
)


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
