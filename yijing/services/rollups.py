"""Maintaining the report rollups (``daily_stats``, ``volunteer_days``) from the raw tables.

A day is a local (Asia/Shanghai) calendar day. What counts on which day, and for which node:

* tasks (not drafts: ``published_at`` set) and their assignments — the task's jurisdiction, the
  local day the task starts; assignments' figures are by the task's kind;
* newly approved volunteers — the volunteer's community, the day of the decision
  (``decided_at``) for volunteers whose status is ``approved`` now;
* clues — the clue's jurisdiction, the day it was reported; outcome is its current status; the
  time to the first public answer (the first staff step with a note the reporter sees, or the
  first desk message) as a histogram in whole minutes (``clue_answer_min``, dimension = minutes),
  from which the median over any period is exact to the minute;
* nearby dispatches — the task's jurisdiction, the local day the task starts: how many
  (``nearby_dispatched``) and histograms in whole seconds from the first ring to the first
  acceptance (``resp_accept_s``) and to the first check-in (``resp_checkin_s``), from which the
  median and the 90th percentile over any period are exact to the second;
* ``volunteer_days`` — completed assignments per volunteer and task day, keyed to the volunteer's
  community.

Each ``daily_stats`` row is the total of its node's whole subtree (the node's own figures and all
its descendants'), so a figure of any node, a city or a community, reads that node's rows only.

Statuses change after the day (a task completes, a clue is resolved weeks later), so a day is
always recomputed whole: delete its rows and insert the fresh ones in one transaction. The worker
refreshes the last ``REPORT_ROLLUP_DAYS`` days periodically; ``flask yijing rollup`` rebuilds any
range (e.g. nightly for the last quarter, or after an import).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, delete, func, insert, literal, select, union_all

from yijing import cache, telemetry
from yijing.extensions import db
from yijing.models import (
    Assignment,
    AssignmentStatus,
    Clue,
    ClueEvent,
    ClueMessage,
    DailyStat,
    DispatchMode,
    DispatchRing,
    Jurisdiction,
    Task,
    TaskStatus,
    Volunteer,
    VolunteerDay,
    VolunteerStatus,
)
from yijing.models.clue import MessageSender
from yijing.services import jurisdictions
from yijing.sql import analyze

SHANGHAI = ZoneInfo("Asia/Shanghai")

# metric -> what it counts (documentation for the API and the export headers).
METRICS: dict[str, str] = {
    "task_published": "发布任务数",
    "task_filled": "满员任务数",
    "task_completed": "完成任务数",
    "task_cancelled": "取消任务数",
    "checkins": "签到人次",
    "no_shows": "缺勤人次",
    "served": "完成服务人次",
    "service_minutes": "服务时长（分钟）",
    "vol_approved": "新批准义警",
    "clue_reported": "上报线索",
    "clue_outcome": "线索处理结果",
    "clue_valid": "有效线索",
    "clue_judged": "已判定线索",
    "clue_answer_min": "首次公开答复用时（分钟）",
    "nearby_dispatched": "就近派单任务数",
    "resp_accept_s": "派单到首位接单用时（秒）",
    "resp_checkin_s": "派单到首位签到用时（秒）",
}


def local_today() -> date:
    return datetime.now(SHANGHAI).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants where local ``day`` starts and the next one starts."""
    start = datetime.combine(day, time(0), tzinfo=SHANGHAI).astimezone(UTC)
    return start, start + timedelta(days=1)


def _aware(moment: datetime) -> datetime:
    """A UTC time read through an aggregate (``min``) may come back naive on SQLite."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


# Bumped after every rebuilt day: cached report figures keyed by it are retired at once.
ROLLUP_VERSION = ("reports", "rollup-version")


def days(first: date, last: date) -> Iterator[date]:
    current = first
    while current <= last:
        yield current
        current += timedelta(days=1)


Ancestry = dict[int, list[int]]


def _ancestry() -> Ancestry:
    """Each jurisdiction's id with its ancestors' ids, read off the materialised paths."""
    return {
        jid: jurisdictions.path_ids(path)
        for jid, path in db.session.execute(select(Jurisdiction.id, Jurisdiction.path))
    }


def _day_rows(day: date, ancestry: Ancestry) -> tuple[list[dict], list[dict]]:
    start, end = day_bounds(day)
    stats: dict[tuple[int, str, str], int] = {}

    def add(jid: int, metric: str, dim: str | None, value: int | None) -> None:
        if value:
            key = (jid, metric, dim or "")
            stats[key] = stats.get(key, 0) + int(value)

    in_day = (Task.starts_at >= start) & (Task.starts_at < end) & Task.published_at.is_not(None)
    one = literal(1)
    task_rows = db.session.execute(
        select(
            Task.jurisdiction_id,
            Task.kind,
            func.count(),
            func.sum(case((Task.filled >= Task.slots, one), else_=0)),
            func.sum(case((Task.status == TaskStatus.COMPLETED, one), else_=0)),
            func.sum(case((Task.status == TaskStatus.CANCELLED, one), else_=0)),
        )
        .where(in_day)
        .group_by(Task.jurisdiction_id, Task.kind)
    )
    for jid, kind, published, filled, completed, cancelled in task_rows:
        add(jid, "task_published", kind, published)
        add(jid, "task_filled", kind, filled)
        add(jid, "task_completed", kind, completed)
        add(jid, "task_cancelled", kind, cancelled)

    done = Assignment.status == AssignmentStatus.COMPLETED
    assignment_rows = db.session.execute(
        select(
            Task.jurisdiction_id,
            Task.kind,
            func.sum(case((Assignment.checkin_at.is_not(None), one), else_=0)),
            func.sum(case((Assignment.status == AssignmentStatus.NO_SHOW, one), else_=0)),
            func.sum(case((done, one), else_=0)),
            func.sum(case((done, func.coalesce(Assignment.service_minutes, 0)), else_=0)),
        )
        .join(Task, Task.id == Assignment.task_id)
        .where(in_day)
        .group_by(Task.jurisdiction_id, Task.kind)
    )
    for jid, kind, checkins, no_shows, served, minutes in assignment_rows:
        add(jid, "checkins", kind, checkins)
        add(jid, "no_shows", kind, no_shows)
        add(jid, "served", kind, served)
        add(jid, "service_minutes", kind, minutes)

    approved_rows = db.session.execute(
        select(Volunteer.community_id, Volunteer.category, func.count())
        .where(
            Volunteer.status == VolunteerStatus.APPROVED,
            Volunteer.decided_at >= start,
            Volunteer.decided_at < end,
        )
        .group_by(Volunteer.community_id, Volunteer.category)
    )
    for jid, category, count in approved_rows:
        add(jid, "vol_approved", category, count)

    clue_day = (Clue.created_at >= start) & (Clue.created_at < end)
    for jid, category, status, valid, count in db.session.execute(
        select(Clue.jurisdiction_id, Clue.category, Clue.status, Clue.valid, func.count())
        .where(clue_day)
        .group_by(Clue.jurisdiction_id, Clue.category, Clue.status, Clue.valid)
    ):
        add(jid, "clue_reported", category, count)
        add(jid, "clue_outcome", status, count)
        if valid is not None:
            add(jid, "clue_judged", "", count)
        if valid:
            add(jid, "clue_valid", "", count)

    day_clues = select(Clue.id).where(clue_day)
    first_note = (
        select(ClueEvent.clue_id.label("clue_id"), func.min(ClueEvent.created_at).label("at"))
        .where(
            ClueEvent.clue_id.in_(day_clues),
            ClueEvent.public_note.is_not(None),
            ClueEvent.actor_id.is_not(None),
        )
        .group_by(ClueEvent.clue_id)
    )
    first_message = (
        select(ClueMessage.clue_id.label("clue_id"), func.min(ClueMessage.created_at).label("at"))
        .where(ClueMessage.clue_id.in_(day_clues), ClueMessage.sender == MessageSender.DESK)
        .group_by(ClueMessage.clue_id)
    )
    answers = union_all(first_note, first_message).subquery()
    for jid, created, answered in db.session.execute(
        select(Clue.jurisdiction_id, Clue.created_at, func.min(answers.c.at))
        .join(answers, answers.c.clue_id == Clue.id)
        .group_by(Clue.id, Clue.jurisdiction_id, Clue.created_at)
    ):
        minutes = max(0, int((_aware(answered) - _aware(created)).total_seconds() // 60))
        add(jid, "clue_answer_min", str(minutes), 1)

    # Nearby dispatches: from the first ring to the first acceptance / check-in, whole seconds.
    nearby = (Task.starts_at >= start) & (Task.starts_at < end) & (Task.dispatch_mode == DispatchMode.NEARBY)
    first_ring = (
        select(DispatchRing.task_id, func.min(DispatchRing.created_at).label("sent"))
        .join(Task, Task.id == DispatchRing.task_id)
        .where(nearby)
        .group_by(DispatchRing.task_id)
        .subquery()
    )
    firsts = (
        select(
            Assignment.task_id,
            func.min(Assignment.accepted_at).label("accepted"),
            func.min(Assignment.checkin_at).label("checkin"),
        )
        .join(Task, Task.id == Assignment.task_id)
        .where(nearby)
        .group_by(Assignment.task_id)
        .subquery()
    )
    for jid, sent, accepted, checkin in db.session.execute(
        select(Task.jurisdiction_id, first_ring.c.sent, firsts.c.accepted, firsts.c.checkin)
        .select_from(first_ring)
        .join(Task, Task.id == first_ring.c.task_id)
        .outerjoin(firsts, firsts.c.task_id == first_ring.c.task_id)
    ):
        add(jid, "nearby_dispatched", "", 1)
        if accepted is not None:
            add(jid, "resp_accept_s", str(max(0, int((_aware(accepted) - _aware(sent)).total_seconds()))), 1)
        if checkin is not None:
            add(jid, "resp_checkin_s", str(max(0, int((_aware(checkin) - _aware(sent)).total_seconds()))), 1)

    # Every figure counts for its node and for each of the node's ancestors: a node's row is the
    # total of its whole subtree, so a figure of any node is read from that node's rows alone.
    totals: dict[tuple[int, str, str], int] = defaultdict(int)
    for (jid, metric, dim), value in stats.items():
        for node_id in ancestry.get(jid, (jid,)):
            totals[(node_id, metric, dim)] += value
    stat_rows = [
        {"jurisdiction_id": jid, "day": day, "metric": metric, "dimension": dim, "value": value}
        for (jid, metric, dim), value in totals.items()
    ]
    volunteer_rows = [
        {
            "volunteer_id": vid,
            "day": day,
            "community_id": community_id,
            "completed": completed,
            "service_minutes": int(minutes or 0),
        }
        for vid, community_id, completed, minutes in db.session.execute(
            select(
                Assignment.volunteer_id,
                Volunteer.community_id,
                func.count(),
                func.sum(func.coalesce(Assignment.service_minutes, 0)),
            )
            .join(Task, Task.id == Assignment.task_id)
            .join(Volunteer, Volunteer.id == Assignment.volunteer_id)
            .where(in_day, done)
            .group_by(Assignment.volunteer_id, Volunteer.community_id)
        )
    ]
    return stat_rows, volunteer_rows


def rebuild_day(day: date, ancestry: Ancestry | None = None) -> int:
    """Recompute one day's rollup rows (one transaction). Returns the number of rows written."""
    stat_rows, volunteer_rows = _day_rows(day, ancestry if ancestry is not None else _ancestry())
    db.session.execute(delete(DailyStat).where(DailyStat.day == day))
    db.session.execute(delete(VolunteerDay).where(VolunteerDay.day == day))
    # Core INSERTs (executemany): no ORM bookkeeping for thousands of rows per day.
    if stat_rows:
        db.session.execute(insert(DailyStat.__table__), stat_rows)
    if volunteer_rows:
        db.session.execute(insert(VolunteerDay.__table__), volunteer_rows)
    db.session.commit()
    cache.bump(*ROLLUP_VERSION)
    telemetry.mark_rollup_refreshed()
    return len(stat_rows) + len(volunteer_rows)


def rebuild(first: date, last: date, progress: Callable[[date], None] | None = None) -> int:
    """Recompute every day of a range (``progress`` is told each day done), then refresh the
    planner's statistics of the rollup tables."""
    ancestry = _ancestry()
    written = 0
    for day in days(first, last):
        written += rebuild_day(day, ancestry)
        if progress:
            progress(day)
    analyze(db.session(), DailyStat, VolunteerDay)
    return written
