"""Participation review: on generated data, every figure, the coverage list and the leaderboards
from the rollups equal what this test computes from the raw rows; scope (a community leader sees
their community only, a street leader each community side by side); exports match the roster."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _day(moment) -> date:
    return moment.astimezone(SHANGHAI).date()


@pytest.fixture
def dataset(app, tree):
    """Generated volunteers, teams, tasks, assignments, points and clues, rolled up by the worker job."""
    with app.app_context():
        from workers import reports as report_jobs
        from yijing.demo import datagen
        from yijing.extensions import db

        result = datagen.generate(150, 700, 250, days=30, seed=7)
        assert result.assignments == 700 and result.clues == 250
        # Some tasks and clues belong to a street or a district itself, not to a community: every
        # level's figures must hold its own rows and its whole subtree's.
        from sqlalchemy import update

        from yijing.models import Clue, Jurisdiction, Task

        parents = dict(db.session.execute(select(Jurisdiction.id, Jurisdiction.parent_id)).all())
        for model, every in ((Task, 7), (Clue, 5)):
            for row_id, jid in db.session.execute(select(model.id, model.jurisdiction_id)).all():
                if row_id % every == 0 and parents.get(jid):
                    up = parents[jid] if row_id % (2 * every) else parents.get(parents[jid]) or parents[jid]
                    db.session.execute(update(model).where(model.id == row_id).values(jurisdiction_id=up))
        db.session.commit()
        report_jobs.refresh_recent()
        db.session.remove()
    return result


def _raw(app) -> dict[str, Any]:
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import (
            Assignment,
            Clue,
            ClueEvent,
            ClueMessage,
            DispatchRing,
            Jurisdiction,
            PointsEntry,
            Task,
            Team,
            Volunteer,
        )

        data = {
            "paths": {j.id: j.path for j in db.session.scalars(select(Jurisdiction))},
            "tasks": {t.id: t for t in db.session.scalars(select(Task))},
            "assignments": list(db.session.scalars(select(Assignment))),
            "volunteers": {v.id: v for v in db.session.scalars(select(Volunteer))},
            "clues": list(db.session.scalars(select(Clue))),
            "clue_events": list(db.session.scalars(select(ClueEvent))),
            "clue_messages": list(db.session.scalars(select(ClueMessage))),
            "rings": list(db.session.scalars(select(DispatchRing))),
            "points": list(db.session.scalars(select(PointsEntry))),
            "teams": {t.jurisdiction_id: t for t in db.session.scalars(select(Team))},
            "levels": {j.id: j.level for j in db.session.scalars(select(Jurisdiction))},
        }
        db.session.expunge_all()
        db.session.remove()
        return data


def _end_day(task) -> date | None:
    """The local day a task ended: closed after its window, or cancelled once published."""
    if task.status in ("completed", "unserved") and task.closed_at is not None:
        return _day(task.closed_at)
    if task.status == "cancelled" and task.published_at is not None and task.cancelled_at is not None:
        return _day(task.cancelled_at)
    return None


def _expected(raw: dict[str, Any], root_id: int, first: date, last: date) -> dict[str, Any]:
    """Every figure by its definition (see the OpenAPI document), from the raw rows."""
    root = raw["paths"][root_id]
    inside = lambda jid: raw["paths"][jid].startswith(root)  # noqa: E731
    in_period = lambda moment: moment is not None and first <= _day(moment) <= last  # noqa: E731
    ends_in = lambda task, a, b: (end := _end_day(task)) is not None and a <= end <= b  # noqa: E731
    scheduled = [
        t
        for t in raw["tasks"].values()
        if t.published_at is not None and inside(t.jurisdiction_id) and in_period(t.starts_at)
    ]
    ended = {t.id: t for t in raw["tasks"].values() if inside(t.jurisdiction_id) and ends_in(t, first, last)}
    closed = [t for t in ended.values() if t.status in ("completed", "unserved")]
    assignments = [a for a in raw["assignments"] if a.task_id in ended]
    completed = [a for a in assignments if a.status == "completed"]
    minutes = sum(a.service_minutes or 0 for a in completed)
    served_on = Counter(a.task_id for a in completed)

    def active_in(a_first: date, a_last: date) -> set[int]:
        return {
            a.volunteer_id
            for a in raw["assignments"]
            if a.status == "completed"
            and ends_in(raw["tasks"][a.task_id], a_first, a_last)
            and inside(raw["volunteers"][a.volunteer_id].jurisdiction_id)  # home: grid or community
        }

    length = (last - first).days + 1
    active = active_in(first, last)
    previous = active_in(first - timedelta(days=length), first - timedelta(days=1))
    clues = [c for c in raw["clues"] if inside(c.jurisdiction_id) and in_period(c.created_at)]
    closed_clues = [
        c
        for c in raw["clues"]
        if inside(c.jurisdiction_id)
        and c.status not in ("submitted", "accepted", "investigating")
        and in_period(c.closed_at)
    ]
    judged = [c for c in closed_clues if c.valid is not None]
    volunteers = [v for v in raw["volunteers"].values() if inside(v.jurisdiction_id)]
    newly = [v for v in volunteers if in_period(v.approved_at)]

    answered: dict[int, Any] = {}
    for event in raw["clue_events"]:
        if event.public_note is not None and event.actor_id is not None:
            answered[event.clue_id] = min(answered.get(event.clue_id, event.created_at), event.created_at)
    for message in raw["clue_messages"]:
        if message.sender == "desk":
            answered[message.clue_id] = min(
                answered.get(message.clue_id, message.created_at), message.created_at
            )
    answer_minutes = [
        max(0, int((answered[c.id] - c.created_at).total_seconds() // 60))
        for c in raw["clues"]
        if inside(c.jurisdiction_id) and c.id in answered and in_period(answered[c.id])
    ]

    sent = {}
    for ring in raw["rings"]:
        sent[ring.task_id] = min(sent.get(ring.task_id, ring.created_at), ring.created_at)
    nearby = [t for t in ended.values() if t.dispatch_mode == "nearby" and t.id in sent]
    accept, checkin = [], []
    for task in nearby:
        mine = [a for a in assignments if a.task_id == task.id]
        accepted = [a.accepted_at for a in mine if a.accepted_at]
        checked = [a.checkin_at for a in mine if a.checkin_at]
        if accepted:  # whole seconds, as the rollup keeps them
            accept.append(int((min(accepted) - sent[task.id]).total_seconds()))
        if checked:
            checkin.append(int((min(checked) - sent[task.id]).total_seconds()))

    def p90(values):
        return float(sorted(values)[max(0, math.ceil(0.9 * len(values)) - 1)]) if values else None

    by_kind: dict[str, dict[str, int]] = defaultdict(Counter)
    for task in scheduled:
        by_kind[task.kind]["published"] += 1
    for task in ended.values():
        by_kind[task.kind]["completed"] += task.status == "completed"
        by_kind[task.kind]["unserved"] += task.status == "unserved"
    for a in completed:
        by_kind[ended[a.task_id].kind]["service_minutes"] += a.service_minutes or 0
    return {
        "volunteers": {
            "by_status": dict(Counter(v.status for v in volunteers)),
            "by_category": dict(Counter(v.category for v in volunteers if v.status == "approved")),
            "newly_approved": len(newly),
            "active": len(active),
            "active_previous_period": len(previous),
            "retained": len(active & previous),
        },
        "service": {
            "published": len(scheduled),
            "ended": len(closed),
            "filled": sum(1 for t in closed if served_on[t.id] >= t.slots),
            "completed": sum(1 for t in closed if t.status == "completed"),
            "unserved": sum(1 for t in closed if t.status == "unserved"),
            "cancelled": sum(1 for t in ended.values() if t.status == "cancelled"),
            "checkins": sum(1 for a in assignments if a.checkin_at is not None),
            "no_shows": sum(1 for a in assignments if a.status == "no_show"),
            "served": len(completed),
            "service_minutes": minutes,
        },
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "clues": {
            "reported": len(clues),
            "by_category": dict(Counter(c.category for c in clues)),
            "by_outcome": dict(Counter(c.status for c in closed_clues)),
            "valid": sum(1 for c in judged if c.valid),
            "judged": len(judged),
            "answered": len(answer_minutes),
            "answer_median_minutes": statistics.median(answer_minutes) if answer_minutes else None,
        },
        "response": {
            "nearby_tasks": len(nearby),
            "accept_median_seconds": round(statistics.median(accept), 1) if accept else None,
            "accept_p90_seconds": p90(accept),
            "checkin_median_seconds": round(statistics.median(checkin), 1) if checkin else None,
            "checkin_p90_seconds": p90(checkin),
        },
    }


def _check(figures: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected["volunteers"].items():
        assert figures["volunteers"][key] == value, key
    for key, value in expected["service"].items():
        assert figures["service"][key] == value, key
    for kind, values in expected["by_kind"].items():
        for key, value in values.items():
            assert figures["service"]["by_kind"][kind][key] == value, (kind, key)
    for key, value in expected["clues"].items():
        assert figures["clues"][key] == value, key
    assert figures["response"] == expected["response"]


def _period() -> tuple[date, date]:
    from datetime import datetime

    today = datetime.now(SHANGHAI).date()
    return today - timedelta(days=11), today


def test_rollup_figures_equal_the_raw_rows(client, app, tree, staff, dataset):
    first, last = _period()
    raw = _raw(app)
    admin = staff("admin-city", "admin", "150200")
    for key in ("150200", "150203", "150203-01", "150203-01-02"):
        response = client.get(
            f"/api/v1/desk/reports/summary?jurisdiction_id={tree[key]}&from={first}&to={last}", headers=admin
        )
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["from"] == first.isoformat() and body["to"] == last.isoformat()
        expected = _expected(raw, tree[key], first, last)
        _check(body, expected)
        for child in body["children"]:
            _check(child, _expected(raw, child["jurisdiction"]["id"], first, last))
    city = client.get(f"/api/v1/desk/reports/summary?from={first}&to={last}", headers=admin).get_json()
    assert city["jurisdiction"]["id"] == tree["150200"]
    assert city["service"]["published"] > 0 and city["volunteers"]["active"] > 0
    assert city["clues"]["reported"] > 0 and city["response"]["nearby_tasks"] > 0
    assert city["clues"]["answered"] > 0 and city["clues"]["answer_median_minutes"] > 0
    assert {c["jurisdiction"]["key"] for c in city["children"]} == {"150203", "150204"}
    whole = _expected(raw, tree["150200"], first - timedelta(days=40), last)
    assert whole["clues"]["reported"] == 250 and whole["service"]["served"] > 0


def test_rollups_are_idempotent_and_the_series_adds_up(client, app, tree, staff, dataset):
    first, last = _period()
    admin = staff("admin-city", "admin", "150200")
    url = f"/api/v1/desk/reports/summary?jurisdiction_id={tree['150203']}&from={first}&to={last}"
    before = client.get(url, headers=admin).get_json()
    with app.app_context():
        from workers import reports as report_jobs
        from yijing.extensions import db

        report_jobs.refresh_recent()
        db.session.remove()
    assert client.get(url, headers=admin).get_json() == before

    for granularity in ("day", "week", "month"):
        series = client.get(
            f"/api/v1/desk/reports/series?jurisdiction_id={tree['150203']}&from={first}&to={last}"
            f"&granularity={granularity}",
            headers=admin,
        )
        assert series.status_code == 200
        points = series.get_json()["points"]
        assert points[0]["start"] == first.isoformat() and points[-1]["end"] == last.isoformat()
        assert sum(p["task_published"] for p in points) == before["service"]["published"]
        assert sum(p["service_minutes"] for p in points) == before["service"]["service_minutes"]
        assert sum(p["clue_reported"] for p in points) == before["clues"]["reported"]
        if granularity == "day":
            assert len(points) == 12
            assert max(p["active_volunteers"] for p in points) <= before["volunteers"]["active"]
        raw = _raw(app)
        for p in points:  # every figure of every bucket, as the raw rows of the bucket's days give it
            span = date.fromisoformat(p["start"]), date.fromisoformat(p["end"])
            expected = _expected(raw, tree["150203"], *span)
            service, clues = expected["service"], expected["clues"]
            assert p["active_volunteers"] == expected["volunteers"]["active"]
            assert p["vol_approved"] == expected["volunteers"]["newly_approved"]
            assert (p["task_published"], p["task_filled"], p["task_completed"], p["task_cancelled"]) == (
                service["published"],
                service["filled"],
                service["completed"],
                service["cancelled"],
            )
            assert (p["checkins"], p["no_shows"], p["served"], p["service_minutes"]) == (
                service["checkins"],
                service["no_shows"],
                service["served"],
                service["service_minutes"],
            )
            assert (p["clue_reported"], p["clue_valid"], p["clue_judged"], p["clues_answered"]) == (
                clues["reported"],
                clues["valid"],
                clues["judged"],
                clues["answered"],
            )
            assert p["answer_median_minutes"] == clues["answer_median_minutes"]
            assert {k: p[k] for k in expected["response"]} == expected["response"]
    bad = client.get(f"/api/v1/desk/reports/series?granularity=year&from={last}&to={first}", headers=admin)
    assert bad.status_code == 422
    reversed_period = client.get(f"/api/v1/desk/reports/summary?from={last}&to={first}", headers=admin)
    assert reversed_period.status_code == 422
    assert reversed_period.get_json()["error"]["fields"] == {"from": ["开始日期应不晚于结束日期"]}


def test_summary_answers_from_the_cache_until_the_rollups_change(client, app, tree, staff, dataset):
    from sqlalchemy import delete

    from yijing.extensions import db
    from yijing.models.report import DailyStat
    from yijing.services import rollups

    first, last = _period()
    admin = staff("admin-cache", "admin", "150200")
    url = f"/api/v1/desk/reports/summary?jurisdiction_id={tree['150203']}&from={first}&to={last}"
    before = client.get(url, headers=admin).get_json()
    assert before["service"]["published"] > 0
    with app.app_context():  # the rollup rows vanish behind the cache's back: the answer is the cached one
        db.session.execute(delete(DailyStat))
        db.session.commit()
    assert client.get(url, headers=admin).get_json() == before
    with app.app_context():  # a rebuild bumps the rollup version: the next answer is computed afresh
        rollups.rebuild_day(first)
        db.session.remove()
    after = client.get(url, headers=admin).get_json()
    assert after != before
    with app.app_context():
        rollups.rebuild(first, last)
        db.session.remove()
    assert client.get(url, headers=admin).get_json() == before


def test_coverage_lists_the_communities_falling_short(client, app, tree, staff, dataset):
    from datetime import datetime

    raw = _raw(app)
    today = datetime.now(SHANGHAI).date()
    window_first = today - timedelta(days=29)
    active: dict[int, set[int]] = defaultdict(set)
    for a in raw["assignments"]:
        task = raw["tasks"][a.task_id]
        if a.status == "completed" and _end_day(task) is not None and window_first <= _end_day(task) <= today:
            active[raw["volunteers"][a.volunteer_id].community_id].add(a.volunteer_id)
    leader = staff("leader-kdl", "leader", "150203")
    body = client.get(f"/api/v1/desk/reports/coverage?jurisdiction_id={tree['150203']}", headers=leader)
    assert body.status_code == 200
    body = body.get_json()
    assert [i["jurisdiction"]["key"] for i in body["items"]] == ["150203-01-01", "150203-01-02"]
    for item in body["items"]:
        cid = item["jurisdiction"]["id"]
        team = raw["teams"].get(cid)
        assert item["has_team"] == (team is not None)
        assert item["has_liaison"] == (team is not None and team.liaison_user_id is not None)
        assert item["has_captain"] == (team is not None and team.captain_user_id is not None)
        assert item["active_volunteers"] == len(active[cid])
        assert item["covered"] == (
            item["has_team"] and item["has_liaison"] and item["has_captain"] and len(active[cid]) >= 3
        )
        assert item["covered"] == (item["reasons"] == [])
    assert body["covered"] == sum(i["covered"] for i in body["items"])
    assert [i["jurisdiction"]["id"] for i in body["falling_short"]] == [
        i["jurisdiction"]["id"] for i in body["items"] if not i["covered"]
    ]


def test_coverage_reasons_are_in_chinese(client, app, tree, staff):
    leader = staff("leader-street", "leader", "150203-01")
    body = client.get("/api/v1/desk/reports/coverage", headers=leader).get_json()
    assert body["communities"] == 2 and body["covered"] == 0 and body["coverage_share"] == 0.0
    assert body["falling_short"][0]["reasons"] == [
        "未组建义警队伍",
        "未配备联络民警",
        "未指定队长",
        "近30天活跃义警不足3人（现有0人）",
    ]


def test_leaderboards_match_the_raw_rows(client, app, tree, staff, dataset):
    first, last = _period()
    raw = _raw(app)
    root = raw["paths"][tree["150203"]]
    desk = staff("desk-kdl", "desk", "150203")
    minutes: Counter[int] = Counter()
    for a in raw["assignments"]:
        task = raw["tasks"][a.task_id]
        volunteer = raw["volunteers"][a.volunteer_id]
        if (
            a.status == "completed"
            and _end_day(task) is not None
            and first <= _end_day(task) <= last
            and raw["paths"][volunteer.community_id].startswith(root)
        ):
            minutes[a.volunteer_id] += a.service_minutes or 0
    expected = sorted(((-m, vid) for vid, m in minutes.items() if m > 0))[:10]
    body = client.get(
        f"/api/v1/desk/reports/leaderboard?jurisdiction_id={tree['150203']}&from={first}&to={last}&limit=10",
        headers=desk,
    ).get_json()
    assert [(v["volunteer_id"], v["service_minutes"]) for v in body["volunteers"]] == [
        (vid, -m) for m, vid in expected
    ]
    for item in body["volunteers"]:
        assert item["name_masked"] == raw["volunteers"][item["volunteer_id"]].name_masked
        assert "*" in item["name_masked"]
        # competition ranking: equal hours share a rank ("1, 2, 2, 4")
        assert item["rank"] == 1 + sum(1 for m in minutes.values() if m > item["service_minutes"])

    by_user = {v.user_id: v for v in raw["volunteers"].values() if v.open_user_id is not None}
    points: Counter[int] = Counter()
    for entry in raw["points"]:
        volunteer = by_user.get(entry.user_id)
        if (
            volunteer
            and first <= _day(entry.created_at) <= last
            and raw["paths"][volunteer.community_id].startswith(root)
        ):
            points[volunteer.id] += entry.amount
    expected_points = sorted(((-p, vid) for vid, p in points.items() if p > 0))[:10]
    body = client.get(
        f"/api/v1/desk/reports/leaderboard?jurisdiction_id={tree['150203']}&from={first}&to={last}"
        "&limit=10&by=points",
        headers=desk,
    ).get_json()
    assert [(v["volunteer_id"], v["points"]) for v in body["volunteers"]] == [
        (vid, -p) for p, vid in expected_points
    ]
    assert {c["jurisdiction"]["key"] for c in body["communities"]} == {"150203-01-01", "150203-01-02"}

    # A volunteer's own rank: one more than those with more hours in the district.
    with app.app_context():
        from yijing.services import reports as report_service

        vid = expected[-1][1]
        mine = report_service.my_rank(raw["volunteers"][vid].user_id, first, last)
        assert mine.scope.key == "150203"
        assert mine.hours.value == minutes[vid]
        assert mine.hours.rank == 1 + sum(1 for m in minutes.values() if m > minutes[vid])


def test_my_rank_needs_an_approved_volunteer(client, wechat_login):
    response = client.get("/api/v1/volunteers/me/rank", headers=wechat_login("resident"))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_a_volunteer"


def test_a_community_leader_sees_their_community_only(client, tree, staff):
    leader = staff("leader-zt", "leader", "150203-01-01")
    own = client.get("/api/v1/desk/reports/summary", headers=leader)
    assert own.status_code == 200
    assert own.get_json()["jurisdiction"]["key"] == "150203-01-01"
    assert [c["jurisdiction"]["key"] for c in own.get_json()["children"]] == ["150203-01-01-1"]  # its grids
    for path in ("summary", "series", "coverage", "leaderboard"):
        nxt = client.get(
            f"/api/v1/desk/reports/{path}?jurisdiction_id={tree['150203-01-02']}", headers=leader
        )
        assert nxt.status_code == 403 and nxt.get_json()["error"]["code"] == "out_of_jurisdiction"
        up = client.get(f"/api/v1/desk/reports/{path}?jurisdiction_id={tree['150203-01']}", headers=leader)
        assert up.status_code == 403
    street = staff("leader-street", "leader", "150203-01")
    body = client.get("/api/v1/desk/reports/summary", headers=street).get_json()
    assert [c["jurisdiction"]["key"] for c in body["children"]] == ["150203-01-01", "150203-01-02"]
    # A summary another leader's request left in the cache is still refused outside one's scope.
    query = f"jurisdiction_id={tree['150203-01-02']}&from=2026-11-01&to=2026-11-30"
    cached = client.get(f"/api/v1/desk/reports/summary?{query}", headers=street)
    assert cached.status_code == 200
    refused = client.get(f"/api/v1/desk/reports/summary?{query}", headers=leader)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "out_of_jurisdiction"
    assert client.get(f"/api/v1/desk/reports/summary?{query}", headers=street).data == cached.data


def test_residents_and_volunteers_get_no_reports(client, wechat_login):
    response = client.get("/api/v1/desk/reports/summary", headers=wechat_login("bob"))
    assert response.status_code == 403


def _rows(client, headers, export_id) -> list[list[str]]:
    response = client.get(f"/api/v1/desk/exports/{export_id}/file", headers=headers)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.data.decode("utf-8-sig")
    response.close()
    return list(csv.reader(io.StringIO(text)))


def test_roster_export_matches_the_roster(client, app, tree, staff, dataset, run_jobs):
    raw = _raw(app)
    root = raw["paths"][tree["150203"]]
    roster = sorted(
        (
            v
            for v in raw["volunteers"].values()
            if v.open_user_id and raw["paths"][v.community_id].startswith(root)
        ),
        key=lambda v: v.id,
    )
    leader = staff("leader-kdl", "leader", "150203")
    started = client.post("/api/v1/desk/exports", json={"kind": "roster"}, headers=leader)
    assert started.status_code == 202, started.get_json()
    export = started.get_json()
    assert export["status"] == "queued" and export["with_pii"] is False and export["download_url"] is None
    early = client.get(f"/api/v1/desk/exports/{export['id']}/file", headers=leader)
    assert early.status_code == 409 and early.get_json()["error"]["code"] == "export_not_ready"
    run_jobs("reports")
    done = client.get(f"/api/v1/desk/exports/{export['id']}", headers=leader).get_json()
    assert (
        done["status"] == "done" and done["done"] == done["total"] == len(roster) and done["progress"] == 1.0
    )
    rows = _rows(client, leader, export["id"])
    assert rows[0][:4] == ["义警编号", "姓名", "身份证号", "手机号"]
    assert [(r[1], r[2], r[3]) for r in rows[1:]] == [
        (v.name_masked, v.id_number_masked, v.phone_masked) for v in roster
    ]
    other = staff("desk-kdl-2", "desk", "150203")
    assert client.get(f"/api/v1/desk/exports/{export['id']}", headers=other).status_code == 404
    assert client.get(f"/api/v1/desk/exports/{export['id']}/file", headers=other).status_code == 404

    # The desk may see personal information: the export shows it, and the request is audited.
    desk = staff("desk-kdl", "desk", "150203")
    pii_export = client.post(
        "/api/v1/desk/exports", json={"kind": "roster", "jurisdiction_id": tree["150203-01-02"]}, headers=desk
    ).get_json()
    assert pii_export["with_pii"] is True
    run_jobs("reports")
    rows = _rows(client, desk, pii_export["id"])
    with app.app_context():
        from yijing import pii
        from yijing.extensions import db
        from yijing.models import AuditEntry
        from yijing.services.volunteers import NAME_CONTEXT

        path = raw["paths"][tree["150203-01-02"]]
        expected = [
            pii.decrypt(v.real_name_enc, context=NAME_CONTEXT)
            for v in roster
            if raw["paths"][v.community_id].startswith(path)
        ]
        audits = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "volunteer.export_pii")
        ).all()
        assert [a.data["export_id"] for a in audits] == [pii_export["id"]]
        db.session.remove()
    assert [r[1] for r in rows[1:]] == expected and expected


def test_summary_series_coverage_and_leaderboard_exports(client, app, tree, staff, dataset, run_jobs):
    first, last = _period()
    leader = staff("leader-street", "leader", "150203-01")
    period = f"from={first}&to={last}"
    summary = client.get(f"/api/v1/desk/reports/summary?{period}", headers=leader).get_json()
    coverage = client.get("/api/v1/desk/reports/coverage", headers=leader).get_json()
    weekly = client.get(f"/api/v1/desk/reports/series?{period}&granularity=week", headers=leader).get_json()
    top = client.get(
        f"/api/v1/desk/reports/leaderboard?{period}&by=points&limit=100", headers=leader
    ).get_json()
    dates = {"from": first.isoformat(), "to": last.isoformat()}
    made = client.post("/api/v1/desk/exports", json={"kind": "summary", **dates}, headers=leader).get_json()
    cover = client.post("/api/v1/desk/exports", json={"kind": "coverage"}, headers=leader).get_json()
    series = client.post(
        "/api/v1/desk/exports", json={"kind": "series", "granularity": "week", **dates}, headers=leader
    ).get_json()
    board = client.post(
        "/api/v1/desk/exports", json={"kind": "leaderboard", "by": "points", **dates}, headers=leader
    ).get_json()
    run_jobs("reports")

    rows = _rows(client, leader, made["id"])
    column = {title: index for index, title in enumerate(rows[0])}
    assert [r[0] for r in rows[1:]] == [summary["jurisdiction"]["name"]] + [
        c["jurisdiction"]["name"] for c in summary["children"]
    ]
    for row, figures in zip(rows[1:], [summary, *summary["children"]], strict=True):
        assert int(row[column["发布任务"]]) == figures["service"]["published"]
        assert int(row[column["上报线索"]]) == figures["clues"]["reported"]
        assert int(row[column["活跃义警"]]) == figures["volunteers"]["active"]
        assert int(row[column["就近派单任务"]]) == figures["response"]["nearby_tasks"]
    rows = _rows(client, leader, cover["id"])
    assert [r[0] for r in rows[1:]] == [i["jurisdiction"]["name"] for i in coverage["items"]]
    assert [r[6] for r in rows[1:]] == ["；".join(i["reasons"]) for i in coverage["items"]]
    rows = _rows(client, leader, series["id"])
    assert rows[0][:2] == ["开始日期", "结束日期"] and rows[0][-1] == "活跃义警"
    assert [(r[0], r[1], int(r[2]), int(r[-1])) for r in rows[1:]] == [
        (p["start"], p["end"], p["task_published"], p["active_volunteers"]) for p in weekly["points"]
    ]
    rows = _rows(client, leader, board["id"])
    assert rows[0] == ["名次", "义警编号", "姓名", "社区", "积分"]
    assert [(int(r[0]), r[2], int(r[4])) for r in rows[1 : len(top["volunteers"]) + 1]] == [
        (v["rank"], v["name_masked"], v["points"]) for v in top["volunteers"]
    ]
    assert all("*" in r[2] for r in rows[1:]) and len(rows) > 1
    bad = client.post("/api/v1/desk/exports", json={"kind": "everything"}, headers=leader)
    assert bad.status_code == 422
    bad = client.post("/api/v1/desk/exports", json={"kind": "series", "granularity": "year"}, headers=leader)
    assert bad.status_code == 422 and bad.get_json()["error"]["fields"]["granularity"]


def test_generate_and_rollup_commands(app, tree):
    from yijing.cli import yijing_cli

    runner = app.test_cli_runner()
    sizes = ["--volunteers", "20", "--assignments", "40", "--clues", "10", "--residents", "30"]
    result = runner.invoke(yijing_cli, ["generate", *sizes, "--days", "5", "--under", "150203-01"])
    assert result.exit_code == 0, result.output
    assert "generated 30 residents, 20 volunteers" in result.output and "40 assignments" in result.output
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import Jurisdiction, User, Volunteer

        street = db.session.scalar(select(Jurisdiction).where(Jurisdiction.key == "150203-01"))
        homes = db.session.scalars(
            select(Jurisdiction.path).join(Volunteer, Volunteer.community_id == Jurisdiction.id)
        )
        assert {path.startswith(street.path) for path in homes} == {True}
        assert (
            db.session.scalar(select(func.count()).select_from(User).where(User.openid.like("gen-%"))) == 50
        )
        db.session.remove()
    result = runner.invoke(yijing_cli, ["generate", "--volunteers", "1", "--under", "no-such-key"])
    assert result.exit_code != 0 and "no-such-key" in result.output
    result = runner.invoke(yijing_cli, ["rollup", "--from", "2026-01-01", "--to", "2025-12-01"])
    assert result.exit_code == 1
    result = runner.invoke(yijing_cli, ["rollup"])
    assert result.exit_code == 0 and "rolled up 36 days" in result.output
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import Clue, DailyStat, Jurisdiction

        reported = db.session.scalar(
            select(func.sum(DailyStat.value)).where(
                DailyStat.metric == "clue_reported",  # the roots' rows: each holds its whole tree
                DailyStat.jurisdiction_id.in_(
                    select(Jurisdiction.id).where(Jurisdiction.parent_id.is_(None))
                ),
            )
        )
        assert reported == db.session.scalar(select(func.count()).select_from(Clue)) == 10
        db.session.remove()


def test_migration_0015_fills_active_counts_as_the_rollup_writes_them(app, tree, dataset):
    """The migration that added ``active_counts`` fills the days rolled up before it with the rows
    the rollup itself writes (each volunteer under their home and its ancestors, by the previous
    day in ``volunteer_days``)."""
    import importlib.util
    from pathlib import Path

    from sqlalchemy import delete, text

    spec = importlib.util.spec_from_file_location(
        "migration_0015", Path(__file__).parents[2] / "migrations/versions/0015_active_counts.py"
    )
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import ActiveCount

        def rows() -> set[tuple]:
            return set(
                db.session.execute(
                    select(
                        ActiveCount.jurisdiction_id,
                        ActiveCount.day,
                        ActiveCount.prev_day,
                        ActiveCount.volunteers,
                    )
                ).all()
            )

        written = rows()
        assert len(written) > 100
        db.session.execute(delete(ActiveCount))
        db.session.execute(text(migration.FILL))
        db.session.commit()
        assert rows() == written
        db.session.remove()


def test_a_volunteer_sees_their_own_rank(client, app, staff, volunteers, tasks):
    desk = staff("desk-kdl", "desk", "150203")
    first_headers, first = volunteers.approved(desk, "first")
    second_headers, second = volunteers.approved(desk, "second")
    task = tasks.create(desk, slots=2)
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import Assignment, Volunteer
        from yijing.services import rollups

        for body, minutes in ((first, 90), (second, 30)):
            volunteer = db.session.get(Volunteer, body["id"])
            db.session.add(
                Assignment(
                    task_id=task["id"],
                    volunteer_id=volunteer.id,
                    user_id=volunteer.user_id,
                    status="completed",
                    source="open",
                    service_minutes=minutes,
                )
            )
        from yijing.models import Task
        from yijing.models.base import utcnow

        # Service counts on the day its task ended: the task is closed now.
        db.session.get(Task, task["id"]).status = "completed"
        db.session.get(Task, task["id"]).closed_at = utcnow()
        db.session.commit()
        task_day = rollups.local_today()
        rollups.rebuild(task_day, task_day)
        db.session.remove()
    query = f"?from={task_day}&to={task_day}"
    mine = client.get(f"/api/v1/volunteers/me/rank{query}", headers=second_headers)
    assert mine.status_code == 200, mine.get_json()
    body = mine.get_json()
    assert body["scope"]["key"] == "150203" and "*" in body["name_masked"]
    assert body["hours"] == {"value": 30, "rank": 2, "of": 2, "service_hours": 0.5}
    top = client.get(f"/api/v1/volunteers/me/rank{query}", headers=first_headers).get_json()
    assert top["hours"]["rank"] == 1 and top["hours"]["value"] == 90


def test_the_rollup_job_is_periodic_and_the_threshold_is_configurable(app, make_app, tree):
    from workers import reports as report_jobs
    from workers.schedule import PERIODIC_JOBS

    assert any(job.func is report_jobs.refresh_recent and job.queue == "reports" for job in PERIODIC_JOBS)
    assert any(job.func is report_jobs.refresh_quarter and job.interval == 86400 for job in PERIODIC_JOBS)
    other = make_app(COVERAGE_MIN_ACTIVE_VOLUNTEERS="1", REPORT_ROLLUP_DAYS="7")
    assert other.config["YIJING"].coverage_min_active_volunteers == 1
    assert other.config["YIJING"].report_rollup_days == 7
    with other.app_context():
        from yijing.extensions import db
        from yijing.models import Jurisdiction
        from yijing.services import reports

        result = reports.coverage_rows(db.session.get(Jurisdiction, tree["150203-01-01"]))
        assert result.min_active_volunteers == 1
        assert result.items[0].reasons[-1] == "近30天活跃义警不足1人（现有0人）"
        assert report_jobs.refresh_recent() == 0
        db.session.remove()


def test_a_late_outcome_counts_on_its_own_day_and_old_days_stay_equal_to_the_raw_rows(app, tree):
    from sqlalchemy import update

    from workers import reports as report_jobs
    from yijing.demo import datagen
    from yijing.extensions import db
    from yijing.models import Clue, DailyStat
    from yijing.models.base import utcnow
    from yijing.services import rollups
    from yijing.services.rollups import local_day, local_today

    with app.app_context():
        datagen.generate(0, 0, 40, days=90, seed=5)
        window = app.config["YIJING"].report_rollup_days
        old = [
            c
            for c in db.session.scalars(select(Clue))
            if window + 1 < (local_today() - local_day(c.created_at)).days < report_jobs.QUARTER_DAYS
            and c.status in ("submitted", "accepted", "investigating")
        ]
        assert old, "the generator spreads clues over 90 days, in every status"
        report_jobs.refresh_recent()
        assert report_jobs.refresh_quarter() > 0
        day = local_day(old[0].created_at)

        def resolved_on(when: date) -> int:
            return int(
                db.session.scalar(
                    select(func.coalesce(func.sum(DailyStat.value), 0)).where(
                        DailyStat.day == when,
                        DailyStat.jurisdiction_id == old[0].jurisdiction_id,
                        DailyStat.metric == "clue_outcome",
                        DailyStat.dimension == "resolved",
                    )
                )
            )

        before, today_before = resolved_on(day), resolved_on(local_today())
        db.session.execute(
            update(Clue).where(Clue.id == old[0].id).values(status="resolved", valid=True, closed_at=utcnow())
        )
        db.session.commit()
        report_jobs.refresh_recent()  # the outcome happened today: today's figures carry it
        assert resolved_on(local_today()) == today_before + 1
        report_jobs.refresh_quarter()  # and the day the clue was reported stays as it was
        assert resolved_on(day) == before
        # Every day of the generated history equals its raw rows, the old ones too.
        assert (
            rollups.differing_days(local_today() - timedelta(days=report_jobs.QUARTER_DAYS), local_today())
            == []
        )
        db.session.remove()


def test_a_task_nobody_served_ends_unserved_and_is_counted_apart(
    app, client, tree, staff, volunteers, tasks, run_jobs
):
    """From raw rows through HTTP: the close job ends a task nobody checked into as ``unserved``;
    the board, the volunteer's history, the summary and its export agree, and the completion,
    fill and no-show rates follow from what happened."""
    from datetime import UTC, datetime

    from workers import tasks as task_jobs
    from yijing.services.rollups import local_today

    desk = staff("desk-kdl", "desk", "150203")
    served = tasks.create(desk, slots=1, title="有人服务")
    empty = tasks.create(desk, slots=2, title="无人报名")
    absent = tasks.create(desk, slots=1, title="报名未到")
    came, _ = volunteers.approved(desk, "came")
    missed, _ = volunteers.approved(desk, "missed")
    placed = tasks.accept(came, served["id"])
    tasks.check_in(came, served["id"])
    tasks.accept(missed, absent["id"])
    now = datetime.now(UTC)
    for task in (served, empty, absent):
        tasks.set_rows(
            "Task", task["id"], starts_at=now - timedelta(hours=3), ends_at=now - timedelta(hours=1)
        )
    tasks.set_rows("Assignment", placed["id"], checkin_at=now - timedelta(minutes=150))
    with app.app_context():
        assert task_jobs.close_finished_tasks() == 3

    board = client.get("/api/v1/desk/tasks?limit=10", headers=desk).get_json()["items"]
    status = {t["id"]: (t["status"], t["status_label"]) for t in board}
    assert status == {
        served["id"]: ("completed", "已完成"),
        empty["id"]: ("unserved", "无人服务"),
        absent["id"]: ("unserved", "无人服务"),
    }
    filtered = client.get("/api/v1/desk/tasks?status=unserved", headers=desk).get_json()["items"]
    assert {t["id"] for t in filtered} == {empty["id"], absent["id"]}
    history = client.get("/api/v1/tasks/mine", headers=missed).get_json()["items"]
    assert [(i["status"], i["task"]["status"], i["task"]["status_label"]) for i in history] == [
        ("no_show", "unserved", "无人服务")
    ]
    assert (
        client.get("/api/v1/tasks/mine", headers=came).get_json()["items"][0]["task"]["status"] == "completed"
    )

    with app.app_context():
        from workers import reports as report_jobs
        from yijing.extensions import db

        report_jobs.refresh_recent()
        db.session.remove()
    today = local_today()
    period = f"from={today - timedelta(days=1)}&to={today}"
    body = client.get(f"/api/v1/desk/reports/summary?jurisdiction_id={tree['150203']}&{period}", headers=desk)
    service = body.get_json()["service"]
    # the same figures from the raw rows, by their definitions
    expected = _expected(_raw(app), tree["150203"], today - timedelta(days=1), today)["service"]
    assert {k: service[k] for k in expected} == expected
    assert (service["ended"], service["completed"], service["unserved"], service["filled"]) == (3, 1, 2, 1)
    assert service["completion_rate"] == round(1 / 3, 4) and service["fill_rate"] == round(1 / 3, 4)
    assert (service["checkins"], service["no_shows"], service["no_show_rate"]) == (1, 1, 0.5)
    assert service["by_kind"]["patrol"]["unserved"] == 2
    series = client.get(
        f"/api/v1/desk/reports/series?jurisdiction_id={tree['150203']}&{period}&granularity=month",
        headers=desk,
    ).get_json()
    assert sum(p["task_unserved"] for p in series["points"]) == 2
    assert sum(p["task_completed"] for p in series["points"]) == 1

    made = client.post(
        "/api/v1/desk/exports",
        json={"kind": "summary", "from": str(today - timedelta(days=1)), "to": str(today)},
        headers=desk,
    ).get_json()
    run_jobs("reports")
    rows = _rows(client, desk, made["id"])
    column = {title: index for index, title in enumerate(rows[0])}
    assert (rows[1][column["完成任务（有人服务）"]], rows[1][column["无人服务任务"]]) == ("1", "2")
    assert rows[1][column["任务完成率"]] == "33.33%"


def test_the_summarys_volunteers_are_the_rosters_by_status(client, app, tree, staff, dataset, run_jobs):
    """The summary export's 已通过义警 / 待审核申请 / 已暂停义警 are the roster export's rows of
    those statuses: the same set under the same name."""
    leader = staff("leader-kdl", "leader", "150203")
    today = date.today().isoformat()
    summary = client.post(
        "/api/v1/desk/exports", json={"kind": "summary", "from": today, "to": today}, headers=leader
    ).get_json()
    roster = client.post("/api/v1/desk/exports", json={"kind": "roster"}, headers=leader).get_json()
    run_jobs("reports")
    summary_rows, roster_rows = _rows(client, leader, summary["id"]), _rows(client, leader, roster["id"])
    column = {title: index for index, title in enumerate(summary_rows[0])}
    statuses = Counter(row[roster_rows[0].index("状态")] for row in roster_rows[1:])
    assert statuses and set(statuses) <= {"已通过", "待审核", "已暂停"}
    for title, label in (("已通过义警", "已通过"), ("待审核申请", "待审核"), ("已暂停义警", "已暂停")):
        assert int(summary_rows[1][column[title]]) == statuses[label], title
    assert "在册义警" not in column


def test_overlapping_rebuilds_of_the_same_days_all_finish_and_equal_the_raw_rows(
    client, app, tree, staff, dataset
):
    """Three ``flask yijing rollup`` runs over the same days at once, beside the 15-minute job:
    every run finishes, and every day equals the raw rows."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from workers import reports as report_jobs
    from yijing.extensions import db
    from yijing.services import rollups

    config = app.config["YIJING"]
    if not config.database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: rebuilds cannot overlap there")
    today = rollups.local_today()
    first = today - timedelta(days=32)
    env = {
        **os.environ,
        "YIJING_ENV": "test",
        "DATABASE_URL": config.database_url,
        "REDIS_URL": config.redis_url,
        "REDIS_PREFIX": config.redis_prefix,
        "QUEUE_PREFIX": config.queue_prefix,
        "MEDIA_ROOT": config.media_root,
        "LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "app",
        "yijing",
        "rollup",
        "--from",
        str(first),
        "--to",
        str(today),
    ]
    root = Path(__file__).resolve().parents[2]
    runs = [
        subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    # Meanwhile, in this process: the periodic job and three rebuilders hammering the same days
    # in step (a barrier lines up every round), so rebuilds of one day surely collide.
    import threading

    busy = [today - timedelta(days=n) for n in (1, 2, 3)]
    barrier, failures = threading.Barrier(3), []

    def hammer() -> None:
        try:
            with app.app_context():
                for _ in range(8):
                    barrier.wait(timeout=60)
                    for day in busy:
                        rollups.rebuild_day(day)
                db.session.remove()
        except Exception as exc:  # reported by the assertion below
            failures.append(repr(exc))
            barrier.abort()

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    with app.app_context():
        report_jobs.refresh_recent()
        db.session.remove()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        assert f"rolled up {(today - first).days + 1} days" in out
    with app.app_context():
        assert rollups.differing_days(first, today) == []
        db.session.remove()
    check = subprocess.run(
        [*command[:6], "rollup", "--check", "--from", str(first), "--to", str(today)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0 and "every day equals the raw rows" in check.stdout, (
        check.stdout + check.stderr
    )
    admin = staff("admin-city", "admin", "150200")
    raw = _raw(app)
    for key in ("150200", "150203-01"):
        body = client.get(
            f"/api/v1/desk/reports/summary?jurisdiction_id={tree[key]}&from={first}&to={today}", headers=admin
        ).get_json()
        _check(body, _expected(raw, tree[key], first, today))


def test_a_past_period_is_the_same_after_later_status_changes(client, app, tree, staff, dataset):
    """A period's figures, asked for again after volunteers were suspended, clues judged and
    answered, and the rollups rebuilt, are the figures it had (only the live volunteer counts by
    status, documented as "now", move)."""
    from yijing.services.rollups import local_today

    today = local_today()
    first, last = today - timedelta(days=20), today - timedelta(days=10)
    desk = staff("desk-kdl", "desk", "150203")
    period = f"from={first}&to={last}"

    def figures() -> dict[str, Any]:
        body = client.get(
            f"/api/v1/desk/reports/summary?jurisdiction_id={tree['150203']}&{period}", headers=desk
        )
        series = client.get(
            f"/api/v1/desk/reports/series?jurisdiction_id={tree['150203']}&{period}&granularity=day",
            headers=desk,
        )
        board = client.get(
            f"/api/v1/desk/reports/leaderboard?jurisdiction_id={tree['150203']}&{period}&limit=100",
            headers=desk,
        )
        summary = body.get_json()
        for item in (summary, *summary["children"]):
            item["volunteers"].pop("by_status")  # the live snapshot: who is approved now
            item["volunteers"].pop("by_category")
        return {"summary": summary, "series": series.get_json(), "volunteers": board.get_json()["volunteers"]}

    before = figures()
    assert (
        before["summary"]["volunteers"]["newly_approved"] > 0 and before["summary"]["clues"]["reported"] > 0
    )

    raw = _raw(app)
    root = raw["paths"][tree["150203"]]
    inside = lambda jid: raw["paths"][jid].startswith(root)  # noqa: E731
    in_period = lambda moment: moment is not None and first <= _day(moment) <= last  # noqa: E731
    # Volunteers approved in the period are suspended now.
    approved = [
        v
        for v in raw["volunteers"].values()
        if v.status == "approved" and inside(v.community_id) and in_period(v.approved_at)
    ]
    for volunteer in approved[:3]:
        response = client.post(
            f"/api/v1/desk/volunteers/{volunteer.id}/suspend", json={"reason": "多次无故缺勤"}, headers=desk
        )
        assert response.status_code == 200, response.get_json()
    # Clues reported in the period and still open are judged now; another one is answered now.
    open_clues = [
        c
        for c in raw["clues"]
        if c.status in ("submitted", "accepted", "investigating")
        and inside(c.jurisdiction_id)
        and in_period(c.created_at)
    ]
    assert len(open_clues) >= 2, "the generator leaves some clues of the period open"
    for clue in open_clues[:-1]:
        move = {"to": "rejected"} if clue.status == "submitted" else {"to": "resolved", "valid": True}
        response = client.post(f"/api/v1/desk/clues/{clue.id}/transitions", json=move, headers=desk)
        assert response.status_code == 200, response.get_json()
    asked = client.post(
        f"/api/v1/desk/clues/{open_clues[-1].id}/messages",
        json={"body": "请问具体位置在哪里？"},
        headers=desk,
    )
    assert asked.status_code == 201, asked.get_json()

    with app.app_context():
        from workers import reports as report_jobs
        from yijing.extensions import db

        report_jobs.refresh_recent()  # the period lies inside the recompute window: rebuilt whole
        db.session.remove()
    after = figures()
    assert after == before
    # The changes count on the day they happened: today.
    now = client.get(
        f"/api/v1/desk/reports/summary?jurisdiction_id={tree['150203']}&from={today}&to={today}", headers=desk
    ).get_json()
    assert sum(now["clues"]["by_outcome"].values()) >= len(open_clues) - 1
    assert now["clues"]["answered"] >= 1


def test_every_figure_has_its_definition_in_the_openapi_document(client, app, tree, staff, dataset):
    """The summary, series and coverage responses are typed: every key they carry, at any depth,
    is a documented property whose description defines it (what, which day, which time zone)."""
    spec = client.get("/api/v1/openapi.json").get_json()

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        if "allOf" in schema:  # a nested field with a description wraps its $ref
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(resolve(part))
            return merged
        return schema

    def walk(schema: dict[str, Any], value: Any, where: str) -> int:
        """Every key of ``value`` is a property of ``schema`` with a description; returns how many."""
        schema = resolve(schema)
        seen = 0
        if isinstance(value, dict) and "properties" in schema:
            for key, item in value.items():
                assert key in schema["properties"], f"{where}.{key} is not in the OpenAPI document"
                prop = schema["properties"][key]
                assert (prop.get("description") or "").strip(), f"{where}.{key} has no definition"
                seen += 1 + walk(prop, item, f"{where}.{key}")
        elif isinstance(value, dict) and "additionalProperties" in schema:
            for key, item in value.items():
                seen += walk(schema["additionalProperties"], item, f"{where}[{key}]")
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value[:3]):
                seen += walk(schema["items"], item, f"{where}[{index}]")
        return seen

    first, last = _period()
    admin = staff("admin-city", "admin", "150200")
    query = f"jurisdiction_id={tree['150203']}&from={first}&to={last}"
    for path, url in (
        ("/api/v1/desk/reports/summary", f"/api/v1/desk/reports/summary?{query}"),
        ("/api/v1/desk/reports/series", f"/api/v1/desk/reports/series?{query}&granularity=week"),
        ("/api/v1/desk/reports/coverage", f"/api/v1/desk/reports/coverage?jurisdiction_id={tree['150203']}"),
    ):
        schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        body = client.get(url, headers=admin).get_json()
        assert walk(schema, body, path) > 20
    # The figures that define the results carry their day and time zone.
    service = resolve({"$ref": "#/components/schemas/ServiceFigures"})["properties"]
    assert "北京时间" in service["unserved"]["description"] and "关闭" in service["unserved"]["description"]


def test_a_communitys_summary_breaks_down_by_its_grids(client, app, tree, staff, dataset):
    """As a district's summary lists its streets, a community's lists its grids: each grid's
    figures equal its raw rows (its tasks and clues, and the volunteers living in it)."""
    from sqlalchemy import update

    from workers import reports as report_jobs
    from yijing.extensions import db
    from yijing.models import Clue, Task, Volunteer

    community, grid = tree["150203-01-01"], tree["150203-01-01-1"]
    with app.app_context():  # half of the community's volunteers, tasks and clues lie in its grid
        for model, column in (
            (Volunteer, Volunteer.community_id),
            (Task, Task.jurisdiction_id),
            (Clue, Clue.jurisdiction_id),
        ):
            ids = db.session.scalars(select(model.id).where(column == community).order_by(model.id)).all()
            db.session.execute(update(model).where(model.id.in_(ids[::2])).values(jurisdiction_id=grid))
        db.session.commit()
        report_jobs.refresh_recent()
        db.session.remove()
    first, last = _period()
    leader = staff("leader-zt", "leader", "150203-01-01")
    body = client.get(f"/api/v1/desk/reports/summary?from={first}&to={last}", headers=leader).get_json()
    assert body["jurisdiction"]["id"] == community
    assert [c["jurisdiction"]["id"] for c in body["children"]] == [grid]
    raw = _raw(app)
    _check(body, _expected(raw, community, first, last))
    (child,) = body["children"]
    _check(child, _expected(raw, grid, first, last))
    assert child["service"]["published"] > 0 and child["clues"]["reported"] > 0
    assert 0 < child["volunteers"]["active"] < body["volunteers"]["active"]
    assert 0 < sum(child["volunteers"]["by_status"].values()) < sum(body["volunteers"]["by_status"].values())


def test_the_check_finds_a_changed_histogram_and_a_rebuild_mends_it(app, tree, dataset):
    from sqlalchemy import update

    from yijing.extensions import db
    from yijing.models import DailyHistogram
    from yijing.services import rollups
    from yijing.services.rollups import local_today

    with app.app_context():
        rollups.rebuild(local_today() - timedelta(days=29), local_today())
        row = db.session.scalars(select(DailyHistogram).order_by(DailyHistogram.day.desc())).first()
        assert row is not None, "the generated month has answered clues and nearby dispatches"
        day, key = row.day, (row.jurisdiction_id, row.day, row.metric)
        assert list(row.bins) == sorted(set(row.bins)) and all(count > 0 for count in row.counts)
        assert rollups.differing_days(day, day) == []
        db.session.execute(
            update(DailyHistogram)
            .where(
                DailyHistogram.jurisdiction_id == key[0],
                DailyHistogram.day == key[1],
                DailyHistogram.metric == key[2],
            )
            .values(counts=[count + 1 for count in row.counts])
        )
        db.session.commit()
        assert rollups.differing_days(day - timedelta(days=1), day) == [day]
        rollups.rebuild_day(day)
        assert rollups.differing_days(day, day) == []
        db.session.remove()
