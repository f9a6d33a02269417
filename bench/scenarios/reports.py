"""Participation review benchmark (issue 8): the district dashboard.

A district of 8 streets × 10 communities under the benchmark city is filled by the data generator
(:mod:`yijing.services.datagen`; sizes from ``BENCH_REPORT_VOLUNTEERS`` / ``_ASSIGNMENTS`` /
``_CLUES``, default 20,000 / 200,000 / 50,000 over 60 days — pass the city's 200,000 / 5,000,000
/ 2,000,000 for the full scale), once: a later run reuses it when the district already holds the
volunteers. The rollups are rebuilt for the 60 days (timed; in ``extra``). Then:

* ``reports_district_summary`` (HTTP, wrk): ``GET /api/v1/desk/reports/summary`` for the district
  over the last 30 days, as a leader of the district — every figure for the district and for each
  of its 8 streets side by side, read from the rollups; ratio to the constant baseline.
* ``reports_district_raw_sql`` (timed in-process): the same service, volunteer-activity and clue
  figures for the district computed by direct SQL aggregates over the raw tables (tasks,
  assignments, volunteers, clues) — what the rollups save on every request.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from bench.harness import BenchError, Context, Request, Result, time_calls
from bench.scenarios.tasks import BENCH_TREE, app_context

STREETS = 8
COMMUNITIES = 10
DAYS = 60
LEADER = "bench-report-leader"
PASSWORD = "bench-report-leader-pass"


def _tree() -> list[dict[str, Any]]:
    nodes = [
        dict(BENCH_TREE[0]),
        {"key": "bench-rpt-district", "parent_key": "bench-city", "name": "报表区", "level": "district"},
    ]
    for s in range(STREETS):
        nodes.append(
            {
                "key": f"bench-rpt-s{s}",
                "parent_key": "bench-rpt-district",
                "name": f"报表街道{s}",
                "level": "street",
            }
        )
        for c in range(COMMUNITIES):
            nodes.append(
                {
                    "key": f"bench-rpt-s{s}-c{c}",
                    "parent_key": f"bench-rpt-s{s}",
                    "name": f"报表社区{s}-{c}",
                    "level": "community",
                    "lat": 40.6 + s * 0.01,
                    "lng": 109.8 + c * 0.01,
                }
            )
    return nodes


def _size(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def seed() -> dict[str, Any]:
    """Tree, data and rollups (idempotent); returns the district and timings."""
    from sqlalchemy import func, select

    from yijing.extensions import db
    from yijing.models import Jurisdiction, Volunteer
    from yijing.services import datagen, jurisdictions, rollups

    jurisdictions.import_nodes(_tree())
    district = jurisdictions.get_by_key("bench-rpt-district")
    wanted = _size("BENCH_REPORT_VOLUNTEERS", 20_000)
    have = db.session.scalar(
        select(func.count())
        .select_from(Volunteer)
        .join(Jurisdiction, Jurisdiction.id == Volunteer.community_id)
        .where(Jurisdiction.path.startswith(district.path))
    )
    generated_s = 0.0
    if (have or 0) < wanted:
        started = time.perf_counter()
        datagen.generate(
            wanted - (have or 0),
            _size("BENCH_REPORT_ASSIGNMENTS", 200_000),
            _size("BENCH_REPORT_CLUES", 50_000),
            days=DAYS,
            seed=8,
            root_path=district.path,
        )
        generated_s = time.perf_counter() - started
    today = rollups.local_today()
    started = time.perf_counter()
    rows = rollups.rebuild(today - timedelta(days=DAYS), today)
    return {
        "district_id": district.id,
        "district_path": district.path,
        "generated_s": round(generated_s, 1),
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
        from yijing.services import rollups

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
            raw_row = time_calls(
                "reports_district_raw_sql",
                lambda: raw_figures(info["district_path"], first, last),
                iterations=5,
                warmup=1,
                target="SQL aggregates over tasks, assignments, clues (district, 30 days)",
                extra=info,
            )
            raw_row.baseline = "baseline:constant"
        if ctx.measure_http is None:
            raise BenchError("reports: the runner gave no measure_http")
        row = ctx.measure_http("reports_district_summary", request)
        row.baseline = "baseline:constant"
        row.extra = {**info, "published": raw["published"], "clues": raw["clues"]}
        return [row, raw_row]


SCENARIO = DistrictDashboardScenario()
