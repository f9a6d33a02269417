"""Participation review benchmark (issue 8): the district dashboard on a city's data.

Nine districts of 8 streets × 10 communities under the benchmark city are filled by the data
generator (:mod:`yijing.demo.datagen`), one ninth of the city's data in each, over the last
365 days. The city-wide sizes come from ``BENCH_REPORT_USERS`` / ``_VOLUNTEERS`` /
``_ASSIGNMENTS`` / ``_CLUES``; the defaults are a tenth of Baotou (185,000 / 20,000 / 500,000 /
200,000); the city's own scale is 1,850,000 / 200,000 / 5,000,000 / 2,000,000 (see
bench/README.md). The data is generated once: a later run reuses it when the measured district
already holds its share of the volunteers. After generating, the rollups are rebuilt for the whole
year (timed; in ``extra``); on reuse only the last two days, as the worker does (a rollup table added
since is filled by its migration); then the rollup tables and the volunteers are vacuumed, for the
reports' index-only scans. Then:

* ``reports_district_summary`` (HTTP, wrk): ``GET /api/v1/desk/reports/summary`` for the first
  district over the last 30 days, as a leader of the district — every figure for the district
  and for each of its 8 streets side by side, from the rollups (cached per node and period until
  the rollups change); ratio to the constant baseline.
* ``reports_district_summary_uncached`` (timed in-process): the same figures computed from the
  rollups with no cache — what the first request after a rollup refresh pays.
* ``reports_city_summary_uncached`` (timed in-process): the same for the city and its districts
  (the benchmark city's other scenarios' districts included) — the heaviest node.
* ``reports_district_raw_sql`` (timed in-process): some of the same figures (tasks published,
  check-ins, service minutes, distinct active volunteers, clues reported) for the district and
  each of its 8 streets, computed by direct SQL aggregates over the raw tables (tasks,
  assignments, volunteers, clues) — a lower bound of what the rollups save.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from bench.harness import BenchError, Context, Request, Result, time_calls
from bench.scenarios.tasks import BENCH_TREE, app_context

DISTRICTS = 9
STREETS = 8
COMMUNITIES = 10
DAYS = 365
LEADER = "bench-report-leader"
PASSWORD = "bench-report-leader-pass"


def _tree() -> list[dict[str, Any]]:
    nodes = [dict(BENCH_TREE[0])]
    for d in range(DISTRICTS):
        district = f"bench-rpt-d{d}"
        nodes.append({"key": district, "parent_key": "bench-city", "name": f"报表区{d}", "level": "district"})
        for s in range(STREETS):
            street = f"{district}-s{s}"
            nodes.append(
                {"key": street, "parent_key": district, "name": f"报表街道{d}-{s}", "level": "street"}
            )
            for c in range(COMMUNITIES):
                nodes.append(
                    {
                        "key": f"{street}-c{c}",
                        "parent_key": street,
                        "name": f"报表社区{d}-{s}-{c}",
                        "level": "community",
                        "lat": 40.5 + d * 0.1 + s * 0.01,
                        "lng": 109.8 + c * 0.01,
                    }
                )
    return nodes


def _size(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def seed(progress: Any = None) -> dict[str, Any]:
    """Tree, data and rollups (idempotent); returns the measured district and timings."""
    from sqlalchemy import func, select

    from yijing.demo import datagen
    from yijing.extensions import db
    from yijing.models import Jurisdiction, Volunteer
    from yijing.services import jurisdictions, rollups
    from yijing.sql import vacuum_analyze

    jurisdictions.import_nodes(_tree())
    district = jurisdictions.get_by_key("bench-rpt-d0")
    volunteers = _size("BENCH_REPORT_VOLUNTEERS", 20_000)
    users = _size("BENCH_REPORT_USERS", 185_000)
    assignments = _size("BENCH_REPORT_ASSIGNMENTS", 500_000)
    clues = _size("BENCH_REPORT_CLUES", 200_000)
    have = db.session.scalar(
        select(func.count())
        .select_from(Volunteer)
        .join(Jurisdiction, Jurisdiction.id == Volunteer.community_id)
        .where(Jurisdiction.path.startswith(district.path))
    )
    generated_s = 0.0
    today = rollups.local_today()
    first_day = today - timedelta(days=1)
    if (have or 0) < volunteers // DISTRICTS:
        started = time.perf_counter()
        for d in range(DISTRICTS):
            datagen.generate(
                volunteers // DISTRICTS,
                assignments // DISTRICTS,
                clues // DISTRICTS,
                residents=max(0, users - volunteers) // DISTRICTS,
                days=DAYS,
                seed=8 + d,
                root_path=jurisdictions.get_by_key(f"bench-rpt-d{d}").path,
                progress=progress,
            )
        generated_s = time.perf_counter() - started
        first_day = today - timedelta(days=DAYS)
    started = time.perf_counter()
    rows = rollups.rebuild(first_day, today, vacuum=True)
    # The volunteers' counts by status and category are read by index-only scans, which need the
    # visibility map a VACUUM sets (autovacuum may be late or off after a bulk load).
    vacuum_analyze(db.session(), Volunteer)
    return {
        "district_id": district.id,
        "district_path": district.path,
        "generated_s": round(generated_s, 1),
        "rollup_days": (today - first_day).days + 1,
        "rollup_s": round(time.perf_counter() - started, 1),
        "rollup_rows": rows,
    }


def _leader_token(ctx: Context, district_id: int) -> str:
    from sqlalchemy import select

    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import Role, RoleGrant, User
    from yijing.services import auth

    user = db.session.scalar(select(User).where(User.username == LEADER))
    if user is None:
        user = auth.create_staff(LEADER, PASSWORD, "压测领导")
    if (
        db.session.scalar(
            select(RoleGrant).where(RoleGrant.user_id == user.id, RoleGrant.jurisdiction_id == district_id)
        )
        is None
    ):
        auth.grant_role(user.id, Role.LEADER, district_id, Actor.system("bench"))
    resp = ctx.session.post(
        ctx.url("/api/v1/desk/auth/login"), json={"username": LEADER, "password": PASSWORD}, timeout=30
    )
    if resp.status_code != 200:
        raise BenchError(f"reports: leader login answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()["token"]


def raw_figures(district_path: str, first: Any, last: Any) -> dict[str, int]:
    """The district's figures straight from the raw tables (the comparison, not the product)."""
    from sqlalchemy import case, func, literal, select

    from yijing.extensions import db
    from yijing.models import Assignment, Clue, Jurisdiction, Task, Volunteer
    from yijing.services.rollups import day_bounds

    start, _ = day_bounds(first)
    _, end = day_bounds(last)
    inside = select(Jurisdiction.id).where(Jurisdiction.path.startswith(district_path))
    one = literal(1)
    tasks = db.session.execute(
        select(
            func.count(),
            func.sum(case((Task.filled >= Task.slots, one), else_=0)),
            func.sum(case((Task.status == "completed", one), else_=0)),
            func.sum(case((Task.status == "cancelled", one), else_=0)),
        ).where(
            Task.jurisdiction_id.in_(inside),
            Task.starts_at >= start,
            Task.starts_at < end,
            Task.published_at.is_not(None),
        )
    ).one()
    assignments = db.session.execute(
        select(
            func.sum(case((Assignment.checkin_at.is_not(None), one), else_=0)),
            func.sum(case((Assignment.status == "no_show", one), else_=0)),
            func.sum(case((Assignment.status == "completed", Assignment.service_minutes), else_=0)),
            func.count(func.distinct(case((Assignment.status == "completed", Assignment.volunteer_id)))),
        )
        .join(Task, Task.id == Assignment.task_id)
        .join(Volunteer, Volunteer.id == Assignment.volunteer_id)
        .where(
            Task.jurisdiction_id.in_(inside),
            Task.starts_at >= start,
            Task.starts_at < end,
            Task.published_at.is_not(None),
        )
    ).one()
    clues = db.session.execute(
        select(func.count(), func.sum(case((Clue.valid.is_(True), one), else_=0))).where(
            Clue.jurisdiction_id.in_(inside), Clue.created_at >= start, Clue.created_at < end
        )
    ).one()
    return {
        "published": tasks[0],
        "checkins": assignments[0] or 0,
        "service_minutes": assignments[2] or 0,
        "clues": clues[0],
    }


class DistrictDashboardScenario:
    name = "reports_district"
    description = "district dashboard (summary with 8 streets) from rollups vs a raw-table SQL aggregate"
    needs_app = True
    baseline = "constant"

    def run(self, ctx: Context) -> list[Result]:
        from yijing.extensions import db
        from yijing.models import Jurisdiction
        from yijing.services import reports, rollups

        with app_context(ctx):
            info = seed()
            token = _leader_token(ctx, info["district_id"])
            last = rollups.local_today()
            first = last - timedelta(days=29)
            path = (
                f"/api/v1/desk/reports/summary?jurisdiction_id={info['district_id']}&from={first}&to={last}"
            )
            request = Request(path=path, headers={"Authorization": f"Bearer {token}"})
            check = ctx.session.get(ctx.url(path), headers=request.headers, timeout=60)
            if check.status_code != 200:
                raise BenchError(f"reports: summary answered {check.status_code}: {check.text[:300]}")
            body = check.json()
            raw = raw_figures(info["district_path"], first, last)
            if (body["service"]["published"], body["clues"]["reported"]) != (raw["published"], raw["clues"]):
                raise BenchError(f"reports: rollup figures {body['service']} differ from the raw rows {raw}")
            district = db.session.get(Jurisdiction, info["district_id"])
            paths = [district.path, *(street.path for street in reports.report_children(district))]
            raw_row = time_calls(
                "reports_district_raw_sql",
                lambda: [raw_figures(path, first, last) for path in paths],
                iterations=3,
                warmup=1,
                target="SQL aggregates over tasks, assignments, clues (district + 8 streets, 30 days)",
                extra=info,
            )
            raw_row.baseline = "baseline:constant"
            uncached_row = time_calls(
                "reports_district_summary_uncached",
                lambda: reports.figures_with_children(district, first, last),
                iterations=5,
                warmup=1,
                target="the summary's figures (district + 8 streets) from the rollups, no cache",
            )
            uncached_row.baseline = "baseline:constant"
            city = db.session.get(Jurisdiction, district.parent_id)
            city_row = time_calls(
                "reports_city_summary_uncached",
                lambda: reports.figures_with_children(city, first, last),
                iterations=3,
                warmup=1,
                target="the city's figures (city + its districts) from the rollups, no cache",
            )
            city_row.baseline = "baseline:constant"
        if ctx.measure_http is None:
            raise BenchError("reports: the runner gave no measure_http")
        row = ctx.measure_http("reports_district_summary", request)
        row.baseline = "baseline:constant"
        row.extra = {**info, "published": raw["published"], "clues": raw["clues"]}
        return [row, uncached_row, city_row, raw_row]


SCENARIO = DistrictDashboardScenario()
