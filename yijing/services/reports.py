"""Participation review: figures, series, coverage and leaderboards for a jurisdiction.

Period figures come from the rollups (see :mod:`yijing.services.rollups`): counts, service, clue
and response figures are sums over the ``daily_stats`` rows of the node itself (each row is its
subtree's total) for the period's days; so are the active volunteers and retention (sums over the
node's ``active_counts`` rows, which count each day's active volunteers by their previous active
day, instead of a distinct count over ``volunteer_days``). Two things are read live, each a
grouped, indexed query rather than a scan of the activity tables: the current volunteer counts by
status and category, and the coverage's teams (one row per community). A node's children are
computed with it, one query per figure: a district's streets, a street's communities, a
community's grids.

The summary is cached per node and period until the rollups change, as the JSON the endpoint
answers (:func:`summary_json`): a hit is one Redis round trip, with the node's path stored beside
the answer so that the permission is checked against the token's grants without a query. The
histograms' medians and percentiles are selected from the period's daily histograms without adding
them up (:func:`_quantiles`), and the rollup rows and the volunteers' counts are read by
index-only scans (migration 0014).

What each figure counts, and on which day, is documented on the response schemas in
``desk/reports.py`` (the OpenAPI document) and in the README; in short, every figure counts an event
on the Beijing-time day it happened (a task on the day it ended, a clue's outcome on the day it
was closed), so a past period's figures never change.
"""

from __future__ import annotations

import bisect
import logging
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from itertools import accumulate
from typing import Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    func,
    literal,
    select,
)

from yijing import cache, policies
from yijing.config import settings
from yijing.errors import InvalidInput, NotFound
from yijing.extensions import db, redis_client, redis_key
from yijing.models import (
    ActiveCount,
    DailyHistogram,
    DailyStat,
    Jurisdiction,
    JurisdictionLevel,
    PointsEntry,
    Team,
    Volunteer,
    VolunteerDay,
    VolunteerStatus,
)
from yijing.models.volunteer import OPEN_STATUSES
from yijing.policies import Permission, Principal
from yijing.replica import reads_from_replica
from yijing.services import auth as auth_service
from yijing.services import jurisdictions, rollups
from yijing.services.rollups import HISTOGRAMS, day_bounds, local_today
from yijing.sql import work_mem

T = TypeVar("T")
log = logging.getLogger(__name__)

ACTIVE_WINDOW_DAYS = 30
# Sort and hash memory for one report computation's transaction (see yijing.sql.work_mem).
REPORT_WORK_MEM_MB = 64


def period(first: date | None, last: date | None) -> tuple[date, date]:
    """The period asked for (both days included); the current month so far by default."""
    today = local_today()
    last = last or today
    first = first or last.replace(day=1)
    if first > last:
        raise InvalidInput(
            "日期范围不正确", code="invalid_period", fields={"from": ["开始日期应不晚于结束日期"]}
        )
    if (last - first).days + 1 > settings().report_max_days:
        raise InvalidInput(
            "日期范围过长",
            code="invalid_period",
            fields={"to": [f"一次最多查询 {settings().report_max_days} 天"]},
        )
    return first, last


def authorised_node(principal: Principal, jurisdiction_id: int | None) -> Jurisdiction:
    """The jurisdiction asked for (403 outside the principal's scope), or the principal's own."""
    paths = policies.require_somewhere(principal, Permission.REPORT_VIEW)
    if jurisdiction_id is None:
        node = db.session.scalar(select(Jurisdiction).where(Jurisdiction.path == paths[0]))
        if node is None:
            raise NotFound("辖区不存在", code="jurisdiction_not_found")
        return node
    node = db.session.get(Jurisdiction, jurisdiction_id)
    if node is None:
        raise NotFound("辖区不存在", code="jurisdiction_not_found")
    policies.require(principal, Permission.REPORT_VIEW, node.path)
    return node


@dataclass(frozen=True, slots=True)
class VolunteerFigures:
    """Volunteers now (by status, approved ones by category) and over the period."""

    by_status: dict[str, int]
    by_category: dict[str, int]
    newly_approved: int
    newly_approved_by_category: dict[str, int]
    active: int
    active_previous_period: int
    retained: int
    retention_rate: float | None


@dataclass(frozen=True, slots=True)
class KindFigures:
    """The task and service counts of one kind of task."""

    published: int
    filled: int
    completed: int
    unserved: int
    cancelled: int
    checkins: int
    no_shows: int
    service_minutes: int


@dataclass(frozen=True, slots=True)
class ServiceFigures:
    """Tasks and service of the period."""

    published: int
    ended: int
    completed: int
    unserved: int
    filled: int
    cancelled: int
    completion_rate: float | None
    fill_rate: float | None
    checkins: int
    no_shows: int
    no_show_rate: float | None
    served: int
    service_minutes: int
    service_hours: float
    by_kind: dict[str, KindFigures]


@dataclass(frozen=True, slots=True)
class ClueFigures:
    """Clues reported, closed and answered in the period."""

    reported: int
    by_category: dict[str, int]
    by_outcome: dict[str, int]
    valid: int
    judged: int
    valid_share: float | None
    answered: int
    answer_median_minutes: float | None


@dataclass(frozen=True, slots=True)
class ResponseFigures:
    """Nearby dispatches of the period: first ring → first acceptance / first check-in."""

    nearby_tasks: int
    accept_median_seconds: float | None
    accept_p90_seconds: float | None
    checkin_median_seconds: float | None
    checkin_p90_seconds: float | None


@dataclass(frozen=True, slots=True)
class Figures:
    """Every figure of one jurisdiction (its whole subtree) for a period."""

    jurisdiction: Jurisdiction
    volunteers: VolunteerFigures
    service: ServiceFigures
    clues: ClueFigures
    response: ResponseFigures


@dataclass(frozen=True, slots=True)
class Summary(Figures):
    """A jurisdiction's figures for a period with each report child's side by side."""

    first: date
    last: date
    children: list[Figures]


def _subtree_ids(node: Jurisdiction) -> Select[Any]:
    return select(Jurisdiction.id).where(jurisdictions.in_subtrees(Jurisdiction.path, [node.path]))


class _Groups:
    """A node and its report children, computed together: one grouped query per figure.

    :meth:`subtree` lists the jurisdictions inside the node with the child each lies under, and
    :meth:`key` is the column to group by.
    """

    def __init__(self, node: Jurisdiction, children: list[Jurisdiction]) -> None:
        self.node, self.children = node, children
        # A community's children are its grids: volunteers are placed by their home (a grid or
        # the community itself) rather than by their community.
        self.by_home = node.level == JurisdictionLevel.COMMUNITY and bool(children)

    def subtree(self) -> Any:
        """A CTE of the jurisdictions inside the node, ``jid`` with ``grp``: the id of the child
        it lies under (NULL for the node itself, and always when the node has no children).

        Materialised, so each jurisdiction's path is matched against the children once, not once
        per joined volunteer row.
        """
        whens = [
            (Jurisdiction.path.startswith(child.path, autoescape=True), child.id) for child in self.children
        ]
        grp = case(*whens, else_=None) if whens else literal(None, Integer)
        return (
            select(Jurisdiction.id.label("jid"), grp.label("grp"))
            .where(_in_node(self.node))
            .cte("subtree")
            .prefix_with("MATERIALIZED")
        )

    def key(self, subtree: Any) -> list[Any]:
        """The group column to select and group by (none when the node has no children)."""
        return [subtree.c.grp] if self.children else []

    def split(self, row: Any) -> tuple[int | None, Any]:
        return (row[0], row[1:]) if self.children else (None, row)

    def ids(self) -> list[int | None]:
        return [None, *(child.id for child in self.children)]


def _in_node(node: Jurisdiction) -> ColumnElement[bool]:
    return jurisdictions.in_subtrees(Jurisdiction.path, [node.path])


# metric -> dimension -> sum over the period
Sums = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class _Quantiles:
    """A histogram's count, median (as :func:`statistics.median`) and nearest-rank 90th percentile."""

    count: int = 0
    median: float | None = None
    p90: float | None = None


# A day's histogram as stored: its distinct values ascending, and how many had each.
Histogram = tuple[Sequence[int], Sequence[int]]


def _quantiles(histograms: Sequence[Histogram]) -> _Quantiles:
    """The count, median and 90th percentile of the values of several histograms together (a
    period's days), without adding them up.

    A city's 30 days of response times hold tens of thousands of (value, count) pairs, and adding
    them up value by value, in the database or here, cost more than the rest of the dashboard.
    What a quantile needs is the smallest value with at least *k* values at or below it; how many
    lie at or below a value is one bisection of each day's values (with its running counts), so a
    binary search over the values finds it in a few hundred bisections. The median is that of
    :func:`statistics.median` (the mean of the two middle values for an even count), the 90th
    percentile the nearest rank.
    """
    days = [(values, list(accumulate(counts))) for values, counts in histograms if values]
    total = sum(running[-1] for _, running in days)
    if not total:
        return _Quantiles()

    def at_most(value: int) -> int:
        return sum(running[i - 1] for values, running in days if (i := bisect.bisect_right(values, value)))

    def nth(rank: int) -> int:
        """The rank-th smallest value (1-based)."""
        low, high = min(values[0] for values, _ in days), max(values[-1] for values, _ in days)
        while low < high:
            middle = (low + high) // 2
            if at_most(middle) >= rank:
                high = middle
            else:
                low = middle + 1
        return low

    half = total // 2
    if total % 2:
        median = float(nth(half + 1))
    else:
        below = nth(half)
        median = float(below) if at_most(below) > half else (below + nth(half + 1)) / 2
    return _Quantiles(total, median, float(nth(max(1, math.ceil(0.9 * total)))))


def _stat_sums(groups: _Groups, first: date, last: date) -> dict[int | None, Sums]:
    """{child id: {metric: {dimension: sum}}}; None holds the node's. Rows are subtree totals, so
    this reads the rows of the node and its children only, whatever the level."""
    ids = [groups.node.id, *(child.id for child in groups.children)]
    rows = db.session.execute(
        select(DailyStat.jurisdiction_id, DailyStat.metric, DailyStat.dimension, func.sum(DailyStat.value))
        .where(
            DailyStat.jurisdiction_id.in_(ids),
            DailyStat.day >= first,
            DailyStat.day <= last,
        )
        .group_by(DailyStat.jurisdiction_id, DailyStat.metric, DailyStat.dimension)
    )
    sums: dict[int | None, Sums] = {gid: defaultdict(dict) for gid in groups.ids()}
    for jid, metric, dim, value in rows:
        if value:
            sums[None if jid == groups.node.id else jid][metric][dim] = int(value)
    return sums


def _stat_quantiles(groups: _Groups, first: date, last: date) -> dict[int | None, dict[str, _Quantiles]]:
    """{child id: {histogram metric: its quantiles over the period}}; None holds the node's. One
    read of the period's histograms of the node and its children (subtree totals, as the sums)."""
    ids = [groups.node.id, *(child.id for child in groups.children)]
    days: dict[tuple[int, str], list[Histogram]] = defaultdict(list)
    for jid, metric, values, counts in db.session.execute(
        select(
            DailyHistogram.jurisdiction_id, DailyHistogram.metric, DailyHistogram.bins, DailyHistogram.counts
        ).where(
            DailyHistogram.jurisdiction_id.in_(ids),
            DailyHistogram.day >= first,
            DailyHistogram.day <= last,
        )
    ):
        days[(jid, metric)].append((values, counts))
    quantiles: dict[int | None, dict[str, _Quantiles]] = {gid: {} for gid in groups.ids()}
    for (jid, metric), histograms in days.items():
        quantiles[None if jid == groups.node.id else jid][metric] = _quantiles(histograms)
    return quantiles


def _by(sums: Sums, metric: str) -> dict[str, int]:
    return dict(sorted(sums.get(metric, {}).items()))


def _total(sums: Sums, metric: str) -> int:
    return sum(sums.get(metric, {}).values())


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _activity(groups: _Groups, first: date, last: date) -> dict[int | None, tuple[int, int, int]]:
    """{child id: (active, active in the previous period of the same length, active in both)}.

    Sums over the nodes' ``active_counts`` rows (see :mod:`yijing.services.rollups`), which count
    the volunteers active on a day by the day each was last active before: a volunteer is active
    in a period once, on the first of its days, where the previous day lies before the period;
    and active in both periods when that previous day lies in the period before.
    """
    length = (last - first).days + 1
    prev_first = first - timedelta(days=length)
    current, since = ActiveCount.day >= first, ActiveCount.prev_day

    def total(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, ActiveCount.volunteers), else_=0)), 0)

    result: dict[int | None, tuple[int, int, int]] = dict.fromkeys(groups.ids(), (0, 0, 0))
    for jid, active, previous, both in db.session.execute(
        select(
            ActiveCount.jurisdiction_id,
            total(current & (since < first)),
            total(~current & (since < prev_first)),
            total(current & (since >= prev_first) & (since < first)),
        )
        .where(
            ActiveCount.jurisdiction_id.in_([groups.node.id, *(child.id for child in groups.children)]),
            ActiveCount.day >= prev_first,
            ActiveCount.day <= last,
        )
        .group_by(ActiveCount.jurisdiction_id)
    ):
        result[None if jid == groups.node.id else jid] = (int(active), int(previous), int(both))
    return result


def _response(sums: Sums, quantiles: dict[str, _Quantiles]) -> ResponseFigures:
    """Nearby dispatches of the period: first ring → first acceptance / first check-in."""
    accept = quantiles.get("resp_accept_s", _Quantiles())
    checkin = quantiles.get("resp_checkin_s", _Quantiles())
    return ResponseFigures(
        nearby_tasks=_total(sums, "nearby_dispatched"),
        accept_median_seconds=None if accept.median is None else round(accept.median, 1),
        accept_p90_seconds=accept.p90,
        checkin_median_seconds=None if checkin.median is None else round(checkin.median, 1),
        checkin_p90_seconds=checkin.p90,
    )


# (volunteers by status, approved volunteers by category) now
Snapshot = tuple[dict[str, int], dict[str, int]]


def _volunteer_snapshot(groups: _Groups) -> dict[int | None, Snapshot]:
    subtree = groups.subtree()
    key = groups.key(subtree)
    by_status: dict[int | None, dict[str, int]] = {gid: defaultdict(int) for gid in groups.ids()}
    by_category: dict[int | None, dict[str, int]] = {gid: defaultdict(int) for gid in groups.ids()}
    for row in db.session.execute(
        select(*key, Volunteer.status, Volunteer.category, func.count())
        .select_from(Volunteer)
        .join(
            subtree,
            subtree.c.jid == (Volunteer.jurisdiction_id if groups.by_home else Volunteer.community_id),
        )
        .group_by(*key, Volunteer.status, Volunteer.category)
    ):
        group, (status, category, count) = groups.split(row)
        for gid in {None, group}:
            by_status[gid][status] += count
            if status == VolunteerStatus.APPROVED:
                by_category[gid][category] += count
    return {
        gid: (dict(sorted(by_status[gid].items())), dict(sorted(by_category[gid].items())))
        for gid in groups.ids()
    }


_KIND_METRICS = {
    "published": "task_published",
    "filled": "task_filled",
    "completed": "task_completed",
    "unserved": "task_unserved",
    "cancelled": "task_cancelled",
    "checkins": "checkins",
    "no_shows": "no_shows",
    "service_minutes": "service_minutes",
}


def _assemble(
    node: Jurisdiction,
    sums: Sums,
    quantiles: dict[str, _Quantiles],
    activity: tuple[int, int, int],
    snapshot: Snapshot,
) -> Figures:
    """One node's report for a period, built from figures already summed (no query here).

    ``sums`` holds the period's ``daily_stats`` totals of the node's own rows ({metric: {dimension:
    value}}; a node's rows already include its whole subtree, see ``rollups``), ``quantiles`` the
    count, median and 90th percentile of its histograms over the period, ``activity`` the
    (active, active in the previous period, active in both) volunteer counts and ``snapshot`` the
    volunteers by status and category now. Kept apart from the queries so that the node and all its
    children are assembled from one query per figure (:func:`figures_with_children`).

    Rates are computed here, over the right denominator, and are None when it is zero (not 0, so a
    leader can tell "nothing happened" from "nobody came"): completion and fill over the tasks that
    ended (completed + unserved; cancelled tasks are counted apart), no-shows over the people
    expected (check-ins + no-shows), retention over the previous period's active volunteers, the
    valid share over the clues given a verdict. The median answer time is the median of the
    minute histogram ``clue_answer_min``.
    """
    active, active_previous, retained = activity
    by_status, by_category = snapshot
    answers = quantiles.get("clue_answer_min", _Quantiles())
    published = _total(sums, "task_published")
    completed, unserved = _total(sums, "task_completed"), _total(sums, "task_unserved")
    ended, filled = completed + unserved, _total(sums, "task_filled")
    checkins, no_shows = _total(sums, "checkins"), _total(sums, "no_shows")
    kinds = sorted(
        set().union(
            *(sums.get(metric, {}) for metric in ("task_published", "task_completed", "task_unserved"))
        )
        | set(sums.get("task_cancelled", {}))
        | set(sums.get("served", {}))
    )
    by_kind = {
        kind: KindFigures(
            **{field: sums.get(metric, {}).get(kind, 0) for field, metric in _KIND_METRICS.items()}
        )
        for kind in kinds
    }
    reported, judged = _total(sums, "clue_reported"), _total(sums, "clue_judged")
    valid = _total(sums, "clue_valid")
    return Figures(
        jurisdiction=node,
        volunteers=VolunteerFigures(
            by_status=by_status,
            by_category=by_category,
            newly_approved=_total(sums, "vol_approved"),
            newly_approved_by_category=_by(sums, "vol_approved"),
            active=active,
            active_previous_period=active_previous,
            retained=retained,
            retention_rate=_rate(retained, active_previous),
        ),
        service=ServiceFigures(
            published=published,
            ended=ended,
            completed=completed,
            unserved=unserved,
            filled=filled,
            cancelled=_total(sums, "task_cancelled"),
            completion_rate=_rate(completed, ended),
            fill_rate=_rate(filled, ended),
            checkins=checkins,
            no_shows=no_shows,
            no_show_rate=_rate(no_shows, checkins + no_shows),
            served=_total(sums, "served"),
            service_minutes=_total(sums, "service_minutes"),
            service_hours=round(_total(sums, "service_minutes") / 60, 1),
            by_kind=by_kind,
        ),
        clues=ClueFigures(
            reported=reported,
            by_category=_by(sums, "clue_reported"),
            by_outcome=_by(sums, "clue_outcome"),
            valid=valid,
            judged=judged,
            valid_share=_rate(valid, judged),
            answered=answers.count,
            answer_median_minutes=answers.median,
        ),
        response=_response(sums, quantiles),
    )


def figures_with_children(node: Jurisdiction, first: date, last: date) -> Summary:
    """Every figure of ``node`` and of each of its report children for the period.

    Each figure is one query for the node and all its children together (not one per child).
    """
    groups = _Groups(node, report_children(node))
    work_mem(db.session(), REPORT_WORK_MEM_MB)
    sums = _stat_sums(groups, first, last)
    quantiles = _stat_quantiles(groups, first, last)
    activity = _activity(groups, first, last)
    snapshot = _volunteer_snapshot(groups)
    own = _assemble(node, sums[None], quantiles[None], activity[None], snapshot[None])
    children = [
        _assemble(child, sums[child.id], quantiles[child.id], activity[child.id], snapshot[child.id])
        for child in groups.children
    ]
    return Summary(
        jurisdiction=own.jurisdiction,
        volunteers=own.volunteers,
        service=own.service,
        clues=own.clues,
        response=own.response,
        first=first,
        last=last,
        children=children,
    )


# Figures are cached per node and period until the rollups change (the version) or for this long
# (for the parts read live: the current volunteer counts and the points ledger).
FIGURES_CACHE_SECONDS = 120


@reads_from_replica
def summary_json(
    principal: Principal,
    jurisdiction_id: int | None,
    first: date | None,
    last: date | None,
    render: Callable[[Summary], bytes],
) -> bytes:
    """The summary of a node for a period as the JSON bytes ``render`` makes of it, cached.

    The dashboard's hot read, the one answer kept serialised (see docs/architecture.md, "From
    service result to JSON"): a hit costs one Redis round trip (MGET of the rollup version and the
    entry) and no database query. The node asked for is named by its id, or is the principal's own
    (the grants in the token's cache entry carry its id); the entry holds the rollup version it
    was computed at and the node's path, so the permission is checked against the principal's
    grants without looking the node up, and an entry of an older version is a miss. A miss
    computes, renders and stores it. :func:`summary_json_for_token` reads the same entry in the
    token's own round trip.
    """
    node_id = _summary_node_id(principal, jurisdiction_id)
    first, last = period(first, last)
    version, entry = cache.get_many(rollups.ROLLUP_VERSION, _summary_key(node_id, first, last))
    return _summary_served(principal, node_id, first, last, version, entry, render)


# The summary in the token's round trip: the token's cache entry, the principal's, then
# :func:`summary_json`'s MGET of the rollup version and the entry of the node asked for (ARGV[5]),
# or with none asked for, of the principal's own: the lowest path among its grants of the roles
# that may view reports (ARGV[6..]), which is its first scope (:func:`_summary_node_id` checks it).
_TOKEN_AND_SUMMARY = (
    auth_service.TOKEN_AND_PROFILE_LUA
    + """
local node = ARGV[5]
if node == '' then
  local roles, own = {}, nil
  for i = 6, #ARGV do roles[ARGV[i]] = true end
  for _, grant in ipairs(cjson.decode(profile)['grants']) do
    if roles[grant['role']] and (own == nil or grant['path'] < own['path']) then own = grant end
  end
  if own == nil then return {token, profile} end
  node = string.format('%d', own['jurisdiction']['id'])
end
local values = redis.call('MGET', ARGV[2], ARGV[3] .. node .. ARGV[4])
return {token, profile, node, values[1] or '', values[2] or ''}
"""
)
_REPORT_ROLES = tuple(sorted(str(role) for role in policies.ROLES_WITH[Permission.REPORT_VIEW]))


def summary_json_for_token(
    token: str,
    jurisdiction_id: int | None,
    first: date | None,
    last: date | None,
    render: Callable[[Summary], bytes],
    admit: auth_service.Admit,
) -> bytes:
    """:func:`summary_json` for the bearer of ``token``, authenticated in the same Redis round trip.

    One script reads the token's and the principal's cache entries and :func:`summary_json`'s
    rollup version and entry. The token is resolved from those two entries as
    :func:`~yijing.services.auth.authenticate` would (401 when bad, expired or revoked) and
    ``admit`` runs (the wrong audience, say) before anything else is looked at. The node the
    script read is then checked to be the one :func:`summary_json` would read for that principal,
    and the entry served under the same checks (version, scope); otherwise, and with Redis down,
    the usual path.
    """
    first, last = period(first, last)
    prefix, suffix = redis_key(*_summary_key("\0", first, last)).split("\0")
    asked = "" if jurisdiction_id is None else str(jurisdiction_id)
    try:
        script = redis_client().register_script(_TOKEN_AND_SUMMARY)
        values = script(
            keys=[redis_key("tok", auth_service.hash_token(token))],
            args=[
                redis_key("principal", ""),
                redis_key(*rollups.ROLLUP_VERSION),
                prefix,
                suffix,
                asked,
                *_REPORT_ROLES,
            ],
        )
    except RedisError as exc:
        log.warning("report cache read failed, using the database", extra={"error": str(exc)})
        values = []
    raw_token, raw_profile = [*values, None, None][:2]
    principal = auth_service.authenticate_cached(token, raw_token or None, raw_profile or None)
    admit(principal)
    node_id = _summary_node_id(principal, jurisdiction_id)
    if len(values) == 5 and values[2] == str(node_id).encode():
        return _summary_served(principal, node_id, first, last, values[3] or None, values[4] or None, render)
    version, entry = cache.get_many(rollups.ROLLUP_VERSION, _summary_key(node_id, first, last))
    return _summary_served(principal, node_id, first, last, version, entry, render)


def _summary_node_id(principal: Principal, jurisdiction_id: int | None) -> int:
    """The node a summary is asked for: ``jurisdiction_id``, or the principal's own (its first
    scope; 403 for a principal who may see no report)."""
    scope = policies.require_somewhere(principal, Permission.REPORT_VIEW)
    if jurisdiction_id is not None:
        return jurisdiction_id
    return next(grant.jurisdiction_id for grant in principal.grants if grant.path == scope[0])


def _summary_key(node_id: int | str, first: date, last: date) -> tuple[object, ...]:
    return ("reports", "summary-json", node_id, first.isoformat(), last.isoformat())


@reads_from_replica  # the token was resolved on the primary; the figures come from the replica
def _summary_served(
    principal: Principal,
    node_id: int,
    first: date,
    last: date,
    version: bytes | None,
    entry: bytes | None,
    render: Callable[[Summary], bytes],
) -> bytes:
    """The cached ``entry`` when it is of the current rollup ``version`` and within the principal's
    scope (403 otherwise); else the summary computed, rendered and stored."""
    if entry is not None:
        entry_version, path, body = entry.split(b"\n", 2)
        if int(entry_version) == int(version or 0):
            policies.require(principal, Permission.REPORT_VIEW, path.decode())
            return body
    node = authorised_node(principal, node_id)
    body = render(figures_with_children(node, first, last))
    entry = b"%d\n%s\n%s" % (int(version or 0), node.path.encode(), body)
    cache.set_bytes(entry, FIGURES_CACHE_SECONDS, *_summary_key(node_id, first, last))
    return body


def _cached(
    what: str, node: Jurisdiction, first: date, last: date, compute: Callable[[], T], *extra: str
) -> T:
    """``compute()``, cached per node, period and ``extra`` until the rollups change (their version
    is part of the key) or for FIGURES_CACHE_SECONDS (the parts read live)."""
    key = (
        "reports",
        what,
        cache.version(*rollups.ROLLUP_VERSION),
        *extra,
        node.id,
        first.isoformat(),
        last.isoformat(),
    )
    data = cache.get_json(*key)
    if data is None:
        data = compute()
        cache.set_json(data, FIGURES_CACHE_SECONDS, *key)
    return data


def report_children(node: Jurisdiction) -> list[Jurisdiction]:
    """The jurisdictions a node's figures break down into: a district's streets, a street's
    communities, a community's grids (none under a grid)."""
    if node.level == JurisdictionLevel.GRID:
        return []
    return list(jurisdictions.children(node.id))


# The counts every series point carries (metric name = key), then its derived figures.
SERIES_METRICS = (
    "task_published",
    "task_filled",
    "task_completed",
    "task_unserved",
    "task_cancelled",
    "checkins",
    "no_shows",
    "served",
    "service_minutes",
    "vol_approved",
    "clue_reported",
    "clue_judged",
    "clue_valid",
)
# key -> column title (the series export); counts first, in SERIES_METRICS order.
SERIES_FIELDS: dict[str, str] = {
    **{metric: rollups.METRICS[metric] for metric in SERIES_METRICS},
    "task_ended": "结束任务数",
    "completion_rate": "任务完成率",
    "fill_rate": "满员率",
    "no_show_rate": "缺勤率",
    "service_hours": "服务时长（小时）",
    "valid_share": "有效线索占比",
    "clues_answered": "已公开答复线索",
    "answer_median_minutes": "首次公开答复用时中位数（分钟）",
    "nearby_tasks": "就近派单任务",
    "accept_median_seconds": "接单用时中位数（秒）",
    "accept_p90_seconds": "接单用时P90（秒）",
    "checkin_median_seconds": "签到用时中位数（秒）",
    "checkin_p90_seconds": "签到用时P90（秒）",
    "active_volunteers": "活跃义警",
}


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One bucket of a series: its first and last day (ISO dates) and its figures, keyed by the
    names of :data:`SERIES_FIELDS`."""

    start: str
    end: str
    figures: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Series:
    """A node's figures per day, week or month of a period."""

    jurisdiction: Jurisdiction
    granularity: str
    first: date
    last: date
    points: list[SeriesPoint]


def _point(sums: Sums, histograms: dict[str, list[Histogram]]) -> dict[str, Any]:
    """One series point's figures (keyed by metric name) from its days' sums and histograms."""
    point: dict[str, Any] = {metric: _total(sums, metric) for metric in SERIES_METRICS}
    point["task_ended"] = point["task_completed"] + point["task_unserved"]
    point["completion_rate"] = _rate(point["task_completed"], point["task_ended"])
    point["fill_rate"] = _rate(point["task_filled"], point["task_ended"])
    point["no_show_rate"] = _rate(point["no_shows"], point["checkins"] + point["no_shows"])
    point["service_hours"] = round(point["service_minutes"] / 60, 1)
    point["valid_share"] = _rate(point["clue_valid"], point["clue_judged"])
    quantiles = {metric: _quantiles(histograms.get(metric, [])) for metric in HISTOGRAMS}
    point["clues_answered"] = quantiles["clue_answer_min"].count
    point["answer_median_minutes"] = quantiles["clue_answer_min"].median
    point.update(asdict(_response(sums, quantiles)))
    return point


def _bucket(day: date, granularity: str) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


@reads_from_replica
def series(
    principal: Principal,
    jurisdiction_id: int | None,
    first: date | None,
    last: date | None,
    granularity: str,
) -> Series:
    """Figures per day, ISO week (from Monday) or month; buckets are clipped to the period."""
    node = authorised_node(principal, jurisdiction_id)
    first, last = period(first, last)
    return Series(node, granularity, first, last, cached_series_points(node, first, last, granularity))


def cached_series_points(node: Jurisdiction, first: date, last: date, granularity: str) -> list[SeriesPoint]:
    """:func:`series_points`, cached as the summary is (a year of a city's days takes seconds)."""
    points = _cached(
        "series",
        node,
        first,
        last,
        lambda: [asdict(point) for point in series_points(node, first, last, granularity)],
        granularity,
    )
    return [SeriesPoint(**point) for point in points]


def series_points(node: Jurisdiction, first: date, last: date, granularity: str) -> list[SeriesPoint]:
    """The buckets of a series: start, end and every SERIES_FIELDS figure of the bucket's days."""
    work_mem(db.session(), REPORT_WORK_MEM_MB)
    starts: list[date] = []
    day = first
    while day <= last:
        if not starts or _bucket(day, granularity) != starts[-1]:
            starts.append(_bucket(day, granularity))
        day += timedelta(days=1)
    spans = [
        (max(start, first), min(last, starts[i + 1] - timedelta(days=1)) if i + 1 < len(starts) else last)
        for i, start in enumerate(starts)
    ]

    def bucket_of(column: Any) -> Any:
        """The first day of the bucket a day lies in (the day itself for daily series)."""
        if granularity == "day":
            return column.label("bucket")
        return case(*((column.between(f, t), f) for f, t in spans), else_=None).label("bucket")

    def as_date(value: Any) -> date:
        return value if isinstance(value, date) else date.fromisoformat(str(value))

    # The node's own rows (its subtree's totals), summed per bucket in the database.
    stat_bucket = bucket_of(DailyStat.day)
    buckets: dict[date, Sums] = {span_first: defaultdict(dict) for span_first, _ in spans}
    for bucket, metric, dim, value in db.session.execute(
        select(stat_bucket, DailyStat.metric, DailyStat.dimension, func.sum(DailyStat.value))
        .where(
            DailyStat.jurisdiction_id == node.id,
            DailyStat.day >= first,
            DailyStat.day <= last,
        )
        .group_by(stat_bucket, DailyStat.metric, DailyStat.dimension)
    ):
        if value:
            buckets[as_date(bucket)][metric][dim] = int(value)
    histogram_bucket = bucket_of(DailyHistogram.day)
    histograms: dict[date, dict[str, list[Histogram]]] = {
        span_first: defaultdict(list) for span_first, _ in spans
    }
    for bucket, metric, values, counts in db.session.execute(
        select(histogram_bucket, DailyHistogram.metric, DailyHistogram.bins, DailyHistogram.counts).where(
            DailyHistogram.jurisdiction_id == node.id,
            DailyHistogram.day >= first,
            DailyHistogram.day <= last,
        )
    ):
        histograms[as_date(bucket)][metric].append((values, counts))
    # Distinct active volunteers per bucket, in one grouped pass.
    active_bucket = bucket_of(VolunteerDay.day)
    active = {
        as_date(bucket): int(count)
        for bucket, count in db.session.execute(
            select(active_bucket, func.count(func.distinct(VolunteerDay.volunteer_id)))
            .join(Jurisdiction, Jurisdiction.id == VolunteerDay.community_id)
            .where(_in_node(node), VolunteerDay.day >= first, VolunteerDay.day <= last)
            .group_by(active_bucket)
        )
    }
    return [
        SeriesPoint(
            start=span_first.isoformat(),
            end=span_last.isoformat(),
            figures={
                **_point(buckets[span_first], histograms[span_first]),
                "active_volunteers": active.get(span_first, 0),
            },
        )
        for span_first, span_last in spans
    ]


@dataclass(frozen=True, slots=True)
class CoverageItem:
    """One community measured against the goal, with every reason it falls short."""

    jurisdiction: Jurisdiction
    has_team: bool
    has_liaison: bool
    has_captain: bool
    active_volunteers: int
    covered: bool
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class Coverage:
    """The communities under a node measured against "一村（社区）一警一队伍"."""

    jurisdiction: Jurisdiction
    min_active_volunteers: int
    active_window_days: int
    communities: int
    covered: int
    coverage_share: float | None
    items: list[CoverageItem]
    falling_short: list[CoverageItem]


def coverage_rows(node: Jurisdiction) -> Coverage:
    """Which communities under ``node`` meet the city's goal "一村（社区）一警一队伍", and why not.

    The goal is one liaison police officer and one volunteer team in every village or community.
    A community is covered when it has a team, the team has a liaison officer and a captain, and at
    least ``COVERAGE_MIN_ACTIVE_VOLUNTEERS`` distinct volunteers served there (a ``volunteer_days``
    row in that community) in the last :data:`ACTIVE_WINDOW_DAYS` days up to today in Baotou: a
    team on paper with nobody patrolling does not count. Each community that falls short carries
    every reason in Chinese, so a leader knows what to fix; the share is None when there is no
    community under the node. Three queries whatever the number of communities.
    """
    minimum = settings().coverage_min_active_volunteers
    today = local_today()
    window_first = today - timedelta(days=ACTIVE_WINDOW_DAYS - 1)
    communities = db.session.scalars(
        select(Jurisdiction)
        .where(
            jurisdictions.in_subtrees(Jurisdiction.path, [node.path]),
            Jurisdiction.level == JurisdictionLevel.COMMUNITY,
        )
        .order_by(Jurisdiction.path)
    ).all()
    ids = [c.id for c in communities]
    teams = {
        t.jurisdiction_id: t for t in db.session.scalars(select(Team).where(Team.jurisdiction_id.in_(ids)))
    }
    active = dict(
        db.session.execute(
            select(VolunteerDay.community_id, func.count(func.distinct(VolunteerDay.volunteer_id)))
            .where(
                VolunteerDay.community_id.in_(ids),
                VolunteerDay.day >= window_first,
                VolunteerDay.day <= today,
            )
            .group_by(VolunteerDay.community_id)
        ).all()
    )
    items: list[CoverageItem] = []
    for community in communities:
        team = teams.get(community.id)
        count = int(active.get(community.id, 0))
        reasons = []
        if team is None:
            reasons.append("未组建义警队伍")
        if team is None or team.liaison_user_id is None:
            reasons.append("未配备联络民警")
        if team is None or team.captain_user_id is None:
            reasons.append("未指定队长")
        if count < minimum:
            reasons.append(f"近{ACTIVE_WINDOW_DAYS}天活跃义警不足{minimum}人（现有{count}人）")
        items.append(
            CoverageItem(
                jurisdiction=community,
                has_team=team is not None,
                has_liaison=team is not None and team.liaison_user_id is not None,
                has_captain=team is not None and team.captain_user_id is not None,
                active_volunteers=count,
                covered=not reasons,
                reasons=reasons,
            )
        )
    covered = sum(1 for item in items if item.covered)
    return Coverage(
        jurisdiction=node,
        min_active_volunteers=minimum,
        active_window_days=ACTIVE_WINDOW_DAYS,
        communities=len(items),
        covered=covered,
        coverage_share=_rate(covered, len(items)),
        items=items,
        falling_short=[item for item in items if not item.covered],
    )


@reads_from_replica
def coverage(principal: Principal, jurisdiction_id: int | None) -> Coverage:
    return coverage_rows(authorised_node(principal, jurisdiction_id))


def _volunteer_hours(node: Jurisdiction, first: date, last: date) -> Select[Any]:
    return (
        select(
            VolunteerDay.volunteer_id.label("volunteer_id"),
            func.sum(VolunteerDay.service_minutes).label("minutes"),
        )
        .join(Jurisdiction, Jurisdiction.id == VolunteerDay.community_id)
        .where(
            jurisdictions.in_subtrees(Jurisdiction.path, [node.path]),
            VolunteerDay.day >= first,
            VolunteerDay.day <= last,
        )
        .group_by(VolunteerDay.volunteer_id)
    )


def _volunteer_points(node: Jurisdiction, first: date, last: date) -> Select[Any]:
    start, _ = day_bounds(first)
    _, end = day_bounds(last)
    return (
        select(Volunteer.id.label("volunteer_id"), func.sum(PointsEntry.amount).label("points"))
        .join(Volunteer, and_(Volunteer.user_id == PointsEntry.user_id, Volunteer.open_user_id.is_not(None)))
        .where(
            Volunteer.community_id.in_(_subtree_ids(node)),
            PointsEntry.created_at >= start,
            PointsEntry.created_at < end,
        )
        .group_by(Volunteer.id)
    )


# Rankings (every volunteer with a positive score, best first) are cached per scope, period and
# measure: the leaderboard's top and each volunteer's own rank in the mini-program read the same
# snapshot, so a volunteer's rank and value always agree with each other.


@dataclass(frozen=True, slots=True)
class Ranking:
    """Volunteer ids and their scores (minutes or points), by score descending, then id."""

    ids: list[int]
    scores: list[int]


def ranking(node: Jurisdiction, first: date, last: date, by: str) -> Ranking:
    """Every volunteer with a positive score under ``node`` in the period, ranked."""

    def compute() -> dict[str, list[int]]:
        work_mem(db.session(), REPORT_WORK_MEM_MB)
        sub = (_volunteer_points if by == "points" else _volunteer_hours)(node, first, last).subquery()
        score = sub.c.points if by == "points" else sub.c.minutes
        rows = db.session.execute(
            select(sub.c.volunteer_id, score).where(score > 0).order_by(score.desc(), sub.c.volunteer_id)
        ).all()
        return {"ids": [int(r[0]) for r in rows], "scores": [int(r[1]) for r in rows]}

    return Ranking(**_cached("ranking", node, first, last, compute, by))


def rank_of(scores: list[int], score: int) -> int:
    """Competition rank ("1, 2, 2, 4") of ``score`` among ``scores`` sorted descending."""
    return bisect.bisect_left(scores, -score, key=operator.neg) + 1


@dataclass(frozen=True, slots=True)
class LeaderboardVolunteer:
    """A volunteer on the leaderboard: points, or service minutes and hours, by the measure."""

    rank: int
    volunteer_id: int
    name_masked: str
    community: str | None
    points: int | None = None
    service_minutes: int | None = None
    service_hours: float | None = None


@dataclass(frozen=True, slots=True)
class LeaderboardCommunity:
    """A community's place: covered ones first, then by active volunteers and service."""

    rank: int
    jurisdiction: Jurisdiction
    covered: bool
    checks_met: int
    active_volunteers: int
    service_minutes: int


@dataclass(frozen=True, slots=True)
class Leaderboard:
    jurisdiction: Jurisdiction
    first: date
    last: date
    by: str
    volunteers: list[LeaderboardVolunteer]
    communities: list[LeaderboardCommunity]


@reads_from_replica
def leaderboard(
    principal: Principal,
    jurisdiction_id: int | None,
    first: date | None,
    last: date | None,
    by: str,
    limit: int,
) -> Leaderboard:
    """Top volunteers by service hours or points in the period; communities by coverage/activity."""
    node = authorised_node(principal, jurisdiction_id)
    first, last = period(first, last)
    ranked = ranking(node, first, last, by)
    top = list(zip(ranked.ids[:limit], ranked.scores[:limit], strict=True))
    people = {
        vid: (name_masked, community_id)
        for vid, name_masked, community_id in db.session.execute(
            select(Volunteer.id, Volunteer.name_masked, Volunteer.community_id).where(
                Volunteer.id.in_([vid for vid, _ in top])
            )
        )
    }
    names = dict(
        db.session.execute(
            select(Jurisdiction.id, Jurisdiction.name).where(
                Jurisdiction.id.in_({community_id for _, community_id in people.values()})
            )
        ).all()
    )
    volunteers = []
    for vid, value in top:
        name_masked, community_id = people[vid]
        measure = (
            {"points": value}
            if by == "points"
            else {"service_minutes": value, "service_hours": round(value / 60, 1)}
        )
        volunteers.append(
            LeaderboardVolunteer(
                rank=rank_of(ranked.scores, value),
                volunteer_id=vid,
                name_masked=name_masked,
                community=names.get(community_id),
                **measure,
            )
        )
    cover = coverage_rows(node)
    minimum = cover.min_active_volunteers
    hours = dict(
        db.session.execute(
            select(VolunteerDay.community_id, func.sum(VolunteerDay.service_minutes))
            .where(
                VolunteerDay.community_id.in_([c.jurisdiction.id for c in cover.items]),
                VolunteerDay.day >= first,
                VolunteerDay.day <= last,
            )
            .group_by(VolunteerDay.community_id)
        ).all()
    )
    ordered = sorted(
        cover.items,
        key=lambda c: (
            not c.covered,
            -c.active_volunteers,
            -int(hours.get(c.jurisdiction.id, 0) or 0),
            c.jurisdiction.id,
        ),
    )
    communities = [
        LeaderboardCommunity(
            rank=position,
            jurisdiction=c.jurisdiction,
            covered=c.covered,
            checks_met=sum((c.has_team, c.has_liaison, c.has_captain, c.active_volunteers >= minimum)),
            active_volunteers=c.active_volunteers,
            service_minutes=int(hours.get(c.jurisdiction.id, 0) or 0),
        )
        for position, c in enumerate(ordered[:limit], start=1)
    ]
    return Leaderboard(node, first, last, by, volunteers, communities)


@dataclass(frozen=True, slots=True)
class RankPart:
    """A volunteer's value, rank (None without a score) and the number ranked; hours carry
    ``service_hours`` too."""

    value: int
    rank: int | None
    of: int
    service_hours: float | None = None


@dataclass(frozen=True, slots=True)
class MyRank:
    scope: Jurisdiction
    first: date
    last: date
    name_masked: str
    hours: RankPart
    points: RankPart


def my_rank(user_id: int, first: date | None, last: date | None) -> MyRank:
    """A volunteer's own rank by service hours and by points in their district (or city)."""
    volunteer = db.session.scalar(
        select(Volunteer).where(Volunteer.user_id == user_id, Volunteer.status.in_(OPEN_STATUSES))
    )
    if volunteer is None or volunteer.status != VolunteerStatus.APPROVED:
        raise NotFound("您还不是义警，暂无排名", code="not_a_volunteer")
    first, last = period(first, last)
    community = db.session.get(Jurisdiction, volunteer.community_id)
    assert community is not None
    ancestors = list(jurisdictions.ancestors(community))
    scope = next((a for a in ancestors if a.level == JurisdictionLevel.DISTRICT), None) or (
        ancestors[0] if ancestors else community
    )
    parts = {}
    for by in ("hours", "points"):
        ranked = ranking(scope, first, last, by)
        try:
            mine = ranked.scores[ranked.ids.index(volunteer.id)]
        except ValueError:
            mine = 0
        parts[by] = RankPart(
            value=mine,
            rank=rank_of(ranked.scores, mine) if mine > 0 else None,
            of=len(ranked.ids),
            service_hours=round(mine / 60, 1) if by == "hours" else None,
        )
    return MyRank(scope, first, last, volunteer.name_masked, parts["hours"], parts["points"])
