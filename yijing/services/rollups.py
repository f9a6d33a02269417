"""Maintaining the report rollups (``daily_stats``, ``volunteer_days``, ``active_counts``) from the
raw tables.

A day is a local (Asia/Shanghai) calendar day. Every figure counts an event on the day it happened,
by the state it left behind, so a day's figures are final once the day is over: a later change
(a volunteer suspended, a clue resolved, a task closed) counts on its own day and never rewrites
an earlier one. What counts on which day, and for which node:

* scheduled tasks (``task_published``) — published tasks (not drafts) whose window starts on the
  day, by the task's jurisdiction and kind;
* ended tasks — tasks closed on the day after their window (``closed_at``): ``task_completed``
  (someone served: status ``completed``), ``task_unserved`` (nobody checked in: status
  ``unserved``), ``task_filled`` (the volunteers who served reached the slots); published tasks
  cancelled on the day (``cancelled_at``): ``task_cancelled``;
* the assignments of the tasks ended on the day (closed or cancelled; their figures are final
  then): ``checkins`` (checked in), ``no_shows`` (accepted, never checked in), ``served``
  (completed) and ``service_minutes``, by the task's kind;
* newly approved volunteers — the volunteer's home (grid or community, fixed once approved), the
  day of the first approval (``approved_at``), whatever their status now;
* clues — ``clue_reported`` on the day reported; ``clue_outcome`` (by status), ``clue_judged``
  (resolved with a verdict) and ``clue_valid`` on the day the clue was closed (``closed_at``; a
  closed clue never moves again); the time to the first public answer (the first staff step
  with a note the reporter sees, or the first desk message) on the day of that answer, as a
  histogram in whole minutes (``clue_answer_min``), from which the median over any period is
  exact to the minute;
* nearby dispatches ended on the day (closed or cancelled): how many (``nearby_dispatched``) and
  histograms in whole seconds from the first ring to the first acceptance (``resp_accept_s``)
  and to the first check-in (``resp_checkin_s``), from which the median and the 90th percentile
  over any period are exact to the second;
* ``volunteer_days`` — completed assignments per volunteer of the tasks ended on the day, keyed to
  the volunteer's community (fixed once approved);
* ``active_counts`` — the same volunteers (active: served in a task ended on the day) counted for
  their home's node and each ancestor, by the day each was last active before (``prev_day``;
  ``NEVER`` when not before). A volunteer is active in a period [a, b] when one of the period's
  rows has a previous day before a, so distinct active volunteers (and those of the period
  before, and those in both) are sums over a node's rows, not a distinct count over
  ``volunteer_days``. The previous day is read from the earlier days' ``volunteer_days`` rows: a
  range is rebuilt in day order, and a mended old day can change the next active day of its
  volunteers (``--check`` finds those). Migration 0015 filled it for the days before it existed.

Each ``daily_stats`` row is the total of its node's whole subtree (the node's own figures and all
its descendants'), so a figure of any node, a city or a community, reads that node's rows only.
The histograms (:data:`HISTOGRAMS`) are subtree totals too, one ``daily_histograms`` row per node,
day and histogram holding its distinct values and their counts: a city's 30 days are a few
hundred rows rather than a row per value (a city's day of response times holds hundreds of
distinct seconds).

A day is always recomputed whole: delete its rows and insert the fresh ones in one transaction,
under a PostgreSQL advisory lock on the day, so overlapping rebuilds of the same day (the
15-minute job, the daily quarter job and any number of ``flask yijing rollup`` runs) take turns
and each leaves the day whole. The worker refreshes the last ``REPORT_ROLLUP_DAYS`` days every
15 minutes and the quarter before them daily; since a day's raw rows stop changing once the day
is over, older days stay equal to them. What can still change an old day — a hand edit, an
import, a community moved in the tree — is found by ``flask yijing rollup --check`` (compares
any range with the raw rows, rebuilds nothing, fails when a day differs) and mended by
``flask yijing rollup --from … --to …``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, insert, literal, select, text, union_all

from yijing import cache, telemetry
from yijing.config import settings
from yijing.extensions import db, redis_client

# local_day and local_today are re-exported: reports, jobs and the CLI read them from here.
from yijing.localtime import day_bounds, local_day, local_today  # noqa: F401
from yijing.models import (
    ActiveCount,
    Assignment,
    AssignmentStatus,
    Clue,
    ClueEvent,
    ClueMessage,
    DailyHistogram,
    DailyStat,
    DispatchMode,
    DispatchRing,
    Jurisdiction,
    Task,
    TaskStatus,
    Volunteer,
    VolunteerDay,
)
from yijing.models.clue import OPEN_STATUSES as CLUE_OPEN_STATUSES
from yijing.models.clue import MessageSender
from yijing.models.report import NEVER
from yijing.models.task import ENDED_STATUSES
from yijing.services import jurisdictions
from yijing.sql import analyze, vacuum_analyze

# metric -> what it counts (documentation for the API and the export headers).
METRICS: dict[str, str] = {
    "task_published": "发布任务数",
    "task_filled": "满员任务数",
    "task_completed": "完成任务数",
    "task_unserved": "无人服务任务数",
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


def _aware(moment: datetime) -> datetime:
    """A UTC time read through an aggregate (``min``) may come back naive on SQLite."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Histograms: whole minutes or seconds, counted per value (``daily_histograms``, not ``daily_stats``).
HISTOGRAMS = ("clue_answer_min", "resp_accept_s", "resp_checkin_s")

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


class _Day:
    """The figures of one Baotou day being counted: ``add`` sums a value under (node, metric, dimension)."""

    def __init__(self, day: date) -> None:
        self.day = day
        self.start, self.end = day_bounds(day)
        self.stats: dict[tuple[int, str, str], int] = {}

    def add(self, jid: int, metric: str, dim: str | None, value: int | None) -> None:
        if value:
            key = (jid, metric, dim or "")
            self.stats[key] = self.stats.get(key, 0) + int(value)

    def within(self, column: Any) -> Any:
        return (column >= self.start) & (column < self.end)

    def closed(self) -> Any:
        """Tasks closed on the day (their window over: completed or unserved)."""
        return Task.status.in_(ENDED_STATUSES) & self.within(Task.closed_at)

    def ended(self) -> Any:
        """Tasks closed on the day and published tasks cancelled on the day."""
        cancelled = (
            (Task.status == TaskStatus.CANCELLED)
            & self.within(Task.cancelled_at)
            & Task.published_at.is_not(None)
        )
        return self.closed() | cancelled


_ONE = literal(1)
_DONE = Assignment.status == AssignmentStatus.COMPLETED


def _day_rows(day: date, ancestry: Ancestry) -> list[tuple[Any, list[dict]]]:
    """The rows that hold ``day``'s figures, by rollup model: ``daily_stats`` and
    ``daily_histograms`` rows, per-volunteer service rows and ``active_counts`` rows.

    Each figure is counted once, on the day its fact became final (a task's window closed, a clue
    closed, a volunteer first approved, a first answer given), so a past day's rows never change
    and the reports add up days without counting anything twice. A figure counts for its node and
    every ancestor (see :func:`_subtree_totals`), so any node's figure is read from its own rows.
    """
    figures = _Day(day)
    _task_figures(figures)
    _assignment_figures(figures)
    _volunteer_figures(figures)
    _clue_figures(figures)
    _answer_figures(figures)
    _dispatch_figures(figures)
    volunteer_rows, active = _volunteer_rows(figures)
    stats, histograms = _subtree_totals(figures, ancestry)
    return [
        (DailyStat, stats),
        (DailyHistogram, histograms),
        (VolunteerDay, volunteer_rows),
        (ActiveCount, _active_rows(day, active, ancestry)),
    ]


def _task_figures(f: _Day) -> None:
    """Tasks scheduled on the day, and those that ended on it (completed, unserved, filled, cancelled)."""
    # Scheduled: published tasks whose window starts on the day (a task is published before its
    # window starts and its window never moves once published, so a past day never gains one).
    for jid, kind, count in db.session.execute(
        select(Task.jurisdiction_id, Task.kind, func.count())
        .where(f.within(Task.starts_at), Task.published_at.is_not(None))
        .group_by(Task.jurisdiction_id, Task.kind)
    ):
        f.add(jid, "task_published", kind, count)

    # Ended: tasks closed on the day (their window over: completed or unserved) and published
    # tasks cancelled on the day, with the assignments as the close left them (final by then).
    closed = f.closed()
    served_per_task = (
        select(Assignment.task_id, func.count().label("served"))
        .join(Task, Task.id == Assignment.task_id)
        .where(closed, _DONE)
        .group_by(Assignment.task_id)
        .subquery()
    )
    for jid, kind, completed, unserved, filled, n_cancelled in db.session.execute(
        select(
            Task.jurisdiction_id,
            Task.kind,
            func.sum(case((Task.status == TaskStatus.COMPLETED, _ONE), else_=0)),
            func.sum(case((Task.status == TaskStatus.UNSERVED, _ONE), else_=0)),
            func.sum(
                case(
                    (closed & (func.coalesce(served_per_task.c.served, 0) >= Task.slots), _ONE),
                    else_=0,
                )
            ),
            func.sum(case((Task.status == TaskStatus.CANCELLED, _ONE), else_=0)),
        )
        .outerjoin(served_per_task, served_per_task.c.task_id == Task.id)
        .where(f.ended())
        .group_by(Task.jurisdiction_id, Task.kind)
    ):
        f.add(jid, "task_completed", kind, completed)
        f.add(jid, "task_unserved", kind, unserved)
        f.add(jid, "task_filled", kind, filled)
        f.add(jid, "task_cancelled", kind, n_cancelled)


def _assignment_figures(f: _Day) -> None:
    """Check-ins, no-shows, people served and minutes of service of the tasks ended on the day."""
    assignment_rows = db.session.execute(
        select(
            Task.jurisdiction_id,
            Task.kind,
            func.sum(case((Assignment.checkin_at.is_not(None), _ONE), else_=0)),
            func.sum(case((Assignment.status == AssignmentStatus.NO_SHOW, _ONE), else_=0)),
            func.sum(case((_DONE, _ONE), else_=0)),
            func.sum(case((_DONE, func.coalesce(Assignment.service_minutes, 0)), else_=0)),
        )
        .join(Task, Task.id == Assignment.task_id)
        .where(f.ended())
        .group_by(Task.jurisdiction_id, Task.kind)
    )
    for jid, kind, checkins, no_shows, served, minutes in assignment_rows:
        f.add(jid, "checkins", kind, checkins)
        f.add(jid, "no_shows", kind, no_shows)
        f.add(jid, "served", kind, served)
        f.add(jid, "service_minutes", kind, minutes)


def _volunteer_figures(f: _Day) -> None:
    """Newly approved: first approved on the day, whatever became of them since."""
    for jid, category, count in db.session.execute(
        select(Volunteer.jurisdiction_id, Volunteer.category, func.count())
        .where(f.within(Volunteer.approved_at))
        .group_by(Volunteer.jurisdiction_id, Volunteer.category)
    ):
        f.add(jid, "vol_approved", category, count)


def _clue_figures(f: _Day) -> None:
    """Clues reported on the day, and the outcomes of those closed on it."""
    for jid, category, count in db.session.execute(
        select(Clue.jurisdiction_id, Clue.category, func.count())
        .where(f.within(Clue.created_at))
        .group_by(Clue.jurisdiction_id, Clue.category)
    ):
        f.add(jid, "clue_reported", category, count)
    # Outcomes: clues closed on the day, by the status they closed with (a closed clue never
    # moves again); judged = resolved with a verdict on its validity.
    for jid, status, valid, count in db.session.execute(
        select(Clue.jurisdiction_id, Clue.status, Clue.valid, func.count())
        .where(f.within(Clue.closed_at), Clue.status.not_in(CLUE_OPEN_STATUSES))
        .group_by(Clue.jurisdiction_id, Clue.status, Clue.valid)
    ):
        f.add(jid, "clue_outcome", status, count)
        if valid is not None:
            f.add(jid, "clue_judged", "", count)
        if valid:
            f.add(jid, "clue_valid", "", count)


def _answer_figures(f: _Day) -> None:
    """First public answers given on the day, in whole minutes from the report.

    The first answer is the first staff step with a note the reporter sees, or the first desk
    message, whichever came first.
    """
    public_step = ClueEvent.public_note.is_not(None) & ClueEvent.actor_id.is_not(None)
    desk_message = ClueMessage.sender == MessageSender.DESK
    answered_today = union_all(
        select(ClueEvent.clue_id).where(f.within(ClueEvent.created_at), public_step),
        select(ClueMessage.clue_id).where(f.within(ClueMessage.created_at), desk_message),
    ).subquery()
    candidates = select(answered_today.c.clue_id)
    answers = union_all(
        select(ClueEvent.clue_id.label("clue_id"), func.min(ClueEvent.created_at).label("at"))
        .where(ClueEvent.clue_id.in_(candidates), public_step)
        .group_by(ClueEvent.clue_id),
        select(ClueMessage.clue_id.label("clue_id"), func.min(ClueMessage.created_at).label("at"))
        .where(ClueMessage.clue_id.in_(candidates), desk_message)
        .group_by(ClueMessage.clue_id),
    ).subquery()
    for jid, created, answered in db.session.execute(
        select(Clue.jurisdiction_id, Clue.created_at, func.min(answers.c.at))
        .join(answers, answers.c.clue_id == Clue.id)
        .group_by(Clue.id, Clue.jurisdiction_id, Clue.created_at)
    ):
        if not f.start <= _aware(answered) < f.end:
            continue  # answered before this day: counted on its first answer's day
        minutes = max(0, int((_aware(answered) - _aware(created)).total_seconds() // 60))
        f.add(jid, "clue_answer_min", str(minutes), 1)


def _dispatch_figures(f: _Day) -> None:
    """Nearby dispatches ended on the day: from the first ring to the first acceptance / check-in,
    whole seconds."""
    nearby = f.ended() & (Task.dispatch_mode == DispatchMode.NEARBY)
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
        f.add(jid, "nearby_dispatched", "", 1)
        if accepted is not None:
            f.add(
                jid, "resp_accept_s", str(max(0, int((_aware(accepted) - _aware(sent)).total_seconds()))), 1
            )
        if checkin is not None:
            f.add(
                jid, "resp_checkin_s", str(max(0, int((_aware(checkin) - _aware(sent)).total_seconds()))), 1
            )


def _seconds(since: datetime, until: datetime) -> int:
    """Whole seconds from ``since`` to ``until`` (never negative)."""
    return max(0, int((_aware(until) - _aware(since)).total_seconds()))


def _subtree_totals(f: _Day, ancestry: Ancestry) -> tuple[list[dict], list[dict]]:
    """Every figure counts for its node and for each of the node's ancestors: a node's row is the
    total of its whole subtree, so a figure of any node is read from that node's rows alone. The
    ``daily_stats`` rows, then the ``daily_histograms`` rows (a histogram's dimension is its value)."""
    totals: dict[tuple[int, str, str], int] = defaultdict(int)
    for (jid, metric, dim), value in f.stats.items():
        for node_id in ancestry.get(jid, (jid,)):
            totals[(node_id, metric, dim)] += value
    stats, histograms = [], defaultdict(list)
    for (jid, metric, dim), value in totals.items():
        if metric in HISTOGRAMS:
            histograms[(jid, metric)].append((int(dim), value))
        else:
            stats.append(
                {"jurisdiction_id": jid, "day": f.day, "metric": metric, "dimension": dim, "value": value}
            )
    histogram_rows = []
    for (jid, metric), pairs in histograms.items():
        values, counts = zip(*sorted(pairs), strict=True)
        histogram_rows.append(
            {
                "jurisdiction_id": jid,
                "day": f.day,
                "metric": metric,
                "bins": list(values),
                "counts": list(counts),
            }
        )
    return stats, histogram_rows


def _volunteer_rows(f: _Day) -> tuple[list[dict], Counter[tuple[int, date]]]:
    """Service per volunteer on the day its task ended, keyed to the volunteer's community; and
    those volunteers counted by (home, day last active before), from the earlier days' rows."""
    previous = (
        select(func.max(VolunteerDay.day))
        .where(VolunteerDay.volunteer_id == Assignment.volunteer_id, VolunteerDay.day < f.day)
        .scalar_subquery()
    )
    rows: list[dict] = []
    active: Counter[tuple[int, date]] = Counter()
    for vid, community_id, home_id, completed, minutes, prev in db.session.execute(
        select(
            Assignment.volunteer_id,
            Volunteer.community_id,
            Volunteer.jurisdiction_id,
            func.count(),
            func.sum(func.coalesce(Assignment.service_minutes, 0)),
            previous,
        )
        .join(Task, Task.id == Assignment.task_id)
        .join(Volunteer, Volunteer.id == Assignment.volunteer_id)
        .where(f.ended(), _DONE)
        .group_by(Assignment.volunteer_id, Volunteer.community_id, Volunteer.jurisdiction_id)
    ):
        rows.append(
            {
                "volunteer_id": vid,
                "day": f.day,
                "community_id": community_id,
                "completed": completed,
                "service_minutes": int(minutes or 0),
            }
        )
        # SQLite hands an aggregate's date back as text.
        active[(home_id, NEVER if prev is None else date.fromisoformat(str(prev)))] += 1
    return rows, active


def _active_rows(day: date, active: Counter[tuple[int, date]], ancestry: Ancestry) -> list[dict]:
    """``active_counts`` rows: the day's active volunteers by previous day, for each node on the
    way from their home up to the root."""
    totals: Counter[tuple[int, date]] = Counter()
    for (home_id, prev), count in active.items():
        for node_id in ancestry.get(home_id, (home_id,)):
            totals[(node_id, prev)] += count
    return [
        {"jurisdiction_id": jid, "day": day, "prev_day": prev, "volunteers": count}
        for (jid, prev), count in totals.items()
    ]


# Key space of the advisory locks that serialise rebuilds of one day (the second key is the day).
ROLLUP_LOCK = 0x59_4A_52  # "YJR"


def _lock_day(day: date) -> None:
    """Wait for any other rebuild of ``day`` to commit, then hold the day until this transaction
    ends (PostgreSQL; SQLite has a single writer anyway)."""
    session = db.session()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :day)"), {"space": ROLLUP_LOCK, "day": day.toordinal()}
        )


def rebuild_day(day: date, ancestry: Ancestry | None = None) -> int:
    """Recompute one day's rollup rows (one transaction). Returns the number of rows written.

    The day's lock is taken before the raw rows are read, so of two overlapping rebuilds the
    second reads after the first has committed and replaces its rows whole."""
    _lock_day(day)
    written = 0
    for model, new in _day_rows(day, ancestry if ancestry is not None else _ancestry()):
        db.session.execute(delete(model).where(model.day == day))
        # Core INSERTs (executemany): no ORM bookkeeping for thousands of rows per day.
        if new:
            db.session.execute(insert(model.__table__), new)
        written += len(new)
    db.session.commit()
    cache.bump(*ROLLUP_VERSION)
    telemetry.mark_rollup_refreshed(redis_client(), settings().redis_prefix)
    return written


def differing_days(first: date, last: date) -> list[date]:
    """The days of a range whose stored rollup rows differ from what the raw rows give now (a
    read-only check: nothing is rebuilt)."""
    ancestry = _ancestry()
    differ = []
    for day in days(first, last):
        tables = _day_rows(day, ancestry)
        stored = [
            _comparable(model, db.session.execute(_day_of(model, day)).mappings()) for model, _ in tables
        ]
        db.session.rollback()
        if any(_comparable(model, fresh) != old for (model, fresh), old in zip(tables, stored, strict=True)):
            differ.append(day)
    return differ


def _day_of(model: Any, day: date) -> Any:
    return select(*model.__table__.columns).where(model.day == day)


def _comparable(model: Any, rows: Any) -> list[tuple]:
    """Rows of a rollup table as sorted tuples of its columns (lists as tuples), to compare."""
    names = [column.name for column in model.__table__.columns]
    return sorted(
        tuple(tuple(value) if isinstance(value, list) else value for value in (row[name] for name in names))
        for row in rows
    )


def rebuild(
    first: date, last: date, progress: Callable[[date], None] | None = None, *, vacuum: bool = False
) -> int:
    """Recompute every day of a range (``progress`` is told each day done), then refresh the
    planner's statistics of the rollup tables.

    ``vacuum`` also vacuums them, for a bulk rebuild: the reports read the rollups by index-only
    scans, which need the visibility map a VACUUM sets (autovacuum does it in time for the
    periodic refreshes; a vacuum every 15 minutes would rescan the tables' indexes each time).
    """
    ancestry = _ancestry()
    written = 0
    for day in days(first, last):
        written += rebuild_day(day, ancestry)
        if progress:
            progress(day)
    (vacuum_analyze if vacuum else analyze)(
        db.session(), DailyStat, DailyHistogram, VolunteerDay, ActiveCount
    )
    return written
