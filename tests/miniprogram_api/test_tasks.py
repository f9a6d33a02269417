"""Patrol tasks on the volunteer's phone: who sees an open task, taking a place, geofenced
check-in, check-out with service minutes and points counted once, track points."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

PLACE = (40.6525, 109.8330)  # 沼潭社区北门; the community's centre is 40.652, 109.832
TWO_KM_AWAY = (40.6680, 109.8480)


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def desk(staff):
    return staff("desk-kdl", "desk", "150203")


@pytest.fixture
def people(volunteers, staff, tree):
    """Approved volunteers: two in 沼潭社区 (courier with first aid and driving; security guard),
    one in 友谊社区 about 1.7 km from the task place (taxi driver, no skills), one in 青山区's
    先锋社区 about 6 km away (courier)."""
    reviewer = staff("reviewer", "desk", "150200")
    made = {}
    for name, category, key, skills in [
        ("zt", "courier", "150203-01-01", ["first_aid", "driving"]),
        ("zt2", "security_guard", "150203-01-01-1", []),
        ("yy", "taxi_driver", "150203-01-02", []),
        ("xf", "courier", "150204-01-01", ["first_aid"]),
    ]:
        headers, body = volunteers.approved(
            reviewer, name, category=category, jurisdiction_id=tree[key], skills=skills
        )
        made[name] = {"headers": headers, "id": body["id"]}
    return made


def _list(client, headers, **params):
    response = client.get("/api/v1/tasks", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _ids(page) -> list[int]:
    return [item["id"] for item in page["items"]]


def test_open_task_seen_in_the_area_accepted_checked_in_on_site_and_out_once(
    app, client, tasks, desk, people
):
    """The issue's check: publish → seen inside the area, not outside → accept → check-in 2 km away
    refused → check-in on site → check-out → minutes and points appear once, even on replays."""
    task = tasks.create(desk, points=10)
    assert task["status"] == "published"
    inside, outside = people["zt"]["headers"], people["xf"]["headers"]

    seen = _list(client, inside)
    assert _ids(seen) == [task["id"]]
    item = seen["items"][0]
    assert item["distance_m"] == pytest.approx(101, abs=3)  # from the community's centre
    assert item["my_status"] is None
    assert item["kind_label"] == "巡逻" and item["remaining"] == 3
    assert _ids(_list(client, outside)) == []
    hidden = client.get(f"/api/v1/tasks/{task['id']}", headers=outside)
    assert hidden.status_code == 404 and hidden.get_json()["error"]["code"] == "task_not_found"
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=inside).status_code == 200

    accepted = tasks.accept(inside, task["id"])
    assert accepted["status"] == "accepted" and accepted["source"] == "open"

    refused = tasks.post(inside, task["id"], "check-in", {"lat": TWO_KM_AWAY[0], "lng": TWO_KM_AWAY[1]})
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["code"] == "outside_geofence"
    assert "2.1 公里" in error["message"] and "签到" in error["message"]

    checked_in = tasks.check_in(inside, task["id"], accuracy=15)
    assert checked_in["status"] == "checked_in"
    assert checked_in["checkin_distance_m"] == pytest.approx(0, abs=1)

    # Time passes: the task started 30 minutes ago, the volunteer checked in 45 minutes ago
    # (early check-in is allowed; only the part inside the window counts).
    now = _now()
    tasks.set_rows("Task", task["id"], starts_at=now - timedelta(minutes=30))
    tasks.set_rows("Assignment", accepted["id"], checkin_at=now - timedelta(minutes=45))

    key = str(uuid.uuid4())
    done = tasks.check_out(inside, task["id"], key=key)
    assert done["status"] == "completed"
    assert done["service_minutes"] == 30
    assert done["points_awarded"] == 10
    assert done["checkout_auto"] is False

    replay = tasks.post(inside, task["id"], "check-out", {"lat": PLACE[0], "lng": PLACE[1]}, key=key)
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_json() == done
    for other_key in (None, str(uuid.uuid4())):
        again = tasks.check_out(inside, task["id"], key=other_key)
        assert again["service_minutes"] == 30 and again["checkout_at"] == done["checkout_at"]

    service = client.get("/api/v1/tasks/mine/service", headers=inside).get_json()
    assert service == {
        "tasks": 1,
        "completed": 1,
        "no_shows": 0,
        "service_minutes": 30,
        "service_hours": 0.5,
        "points": 10,
    }
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import PointsEntry
        from yijing.services import points

        entries = db.session.scalars(select(PointsEntry)).all()
        assert [(e.amount, e.reason, e.source_key) for e in entries] == [
            (10, "task_completed", f"task:{task['id']}:assignment:{accepted['id']}")
        ]
        assert points.balance(entries[0].user_id) == 10
        db.session.remove()

    mine = client.get("/api/v1/tasks/mine", headers=inside).get_json()
    assert [(i["task"]["id"], i["status"]) for i in mine["items"]] == [(task["id"], "completed")]


def test_who_sees_an_open_task(client, tasks, desk, people, tree, staff):
    """Jurisdiction subtree or nearby, category and skills decide who sees a task."""
    anyone = tasks.create(desk, title="沼潭社区巡逻")
    taxis = tasks.create(desk, title="出租车专项", categories=["taxi_driver"])
    first_aid = tasks.create(desk, title="急救保障", skills=["first_aid"])
    street_far = tasks.create(  # street-level task placed 6 km away: seen by the street's communities
        desk, title="街道集中巡逻", jurisdiction_id=tree["150203-01"], lat=40.70, lng=109.86
    )
    next_door = tasks.create(  # a 青山区 task 1.1 km from 沼潭社区: seen there as nearby
        staff("desk-city", "desk", "150200"),
        title="邻区活动安保",
        jurisdiction_id=tree["150204-01-01"],
        lat=40.660,
        lng=109.840,
    )
    assigned = tasks.create(desk, title="指派任务", dispatch_mode="assigned")
    draft = tasks.create(desk, title="草稿", publish=False)
    assert draft["status"] == "draft" and assigned["status"] == "published"

    def seen(name, **params):
        return set(_ids(_list(client, people[name]["headers"], **params)))

    assert seen("zt") == {anyone["id"], first_aid["id"], street_far["id"], next_door["id"]}
    assert seen("zt2") == {anyone["id"], street_far["id"], next_door["id"]}
    assert seen("yy") == {anyone["id"], taxis["id"], street_far["id"], next_door["id"]}  # ~1.7 km away
    assert seen("xf") == {next_door["id"]}  # 先锋社区's own task; the others are 6 km away
    # Where the phone is counts too: in 沼潭社区 right now.
    assert seen("xf", lat=PLACE[0], lng=PLACE[1]) == {anyone["id"], first_aid["id"], next_door["id"]}

    wrong = tasks.post(people["zt"]["headers"], taxis["id"], "accept")
    assert wrong.status_code == 403
    assert wrong.get_json()["error"] == {
        "code": "not_eligible",
        "message": "该任务仅限以下职业类别的义警：出租车司机",
        "fields": {},
    }
    lacking = tasks.post(people["yy"]["headers"], first_aid["id"], "accept")
    assert lacking.status_code == 403 and "急救" in lacking.get_json()["error"]["message"]
    far = tasks.post(people["xf"]["headers"], anyone["id"], "accept")
    assert far.status_code == 403 and far.get_json()["error"]["code"] == "not_eligible"
    not_invited = tasks.post(people["zt"]["headers"], assigned["id"], "accept")
    assert not_invited.status_code == 403 and not_invited.get_json()["error"]["code"] == "not_invited"


def test_list_sorted_by_distance_then_start_time_with_a_cursor(client, tasks, desk, people):
    now = _now()
    later = dict(starts_at=now + timedelta(hours=3), ends_at=now + timedelta(hours=4))
    sooner = dict(starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=2))
    # Distances from the 沼潭社区 centre (40.652, 109.832).
    far_late = tasks.create(desk, title="远·晚", lat=40.660, lng=109.840, **later)  # ~1.1 km
    near_late = tasks.create(desk, title="近·晚", lat=40.6525, lng=109.8330, **later)  # ~100 m
    near_soon = tasks.create(desk, title="近·早", lat=40.6525, lng=109.8330, **sooner)
    mid = tasks.create(desk, title="中距离", lat=40.655, lng=109.836, **sooner)  # ~470 m
    headers = people["zt"]["headers"]

    expected = [near_soon["id"], near_late["id"], mid["id"], far_late["id"]]
    assert _ids(_list(client, headers)) == expected
    first = _list(client, headers, limit=3)
    assert _ids(first) == expected[:3] and first["next_cursor"]
    second = _list(client, headers, limit=3, cursor=first["next_cursor"])
    assert _ids(second) == expected[3:] and second["next_cursor"] is None
    distances = [i["distance_m"] for i in _list(client, headers)["items"]]
    assert distances == sorted(distances)
    bad = client.get("/api/v1/tasks?cursor=nonsense", headers=headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_cursor"


def test_a_full_task_answers_409_task_full_and_accepting_twice_keeps_one_place(client, tasks, desk, people):
    task = tasks.create(desk, slots=1)
    first, second = people["zt"]["headers"], people["zt2"]["headers"]
    place = tasks.accept(first, task["id"])
    assert tasks.accept(first, task["id"]) == place  # a second tap: same place, nothing counted twice

    full = tasks.post(second, task["id"], "accept")
    assert full.status_code == 409
    assert full.get_json()["error"]["code"] == "task_full"
    assert "已满员" in full.get_json()["error"]["message"]

    assert _ids(_list(client, second)) == []  # a full task leaves the list …
    mine = _list(client, first)["items"]  # … except for those on it
    assert [(i["id"], i["filled"], i["my_status"]) for i in mine] == [(task["id"], 1, "accepted")]


def test_withdrawing_frees_the_place(client, tasks, desk, people):
    task = tasks.create(desk, slots=1)
    first, second = people["zt"]["headers"], people["zt2"]["headers"]
    tasks.accept(first, task["id"])
    withdrawn = tasks.post(first, task["id"], "withdraw", {"reason": "临时有事"})
    assert withdrawn.status_code == 200
    assert (
        withdrawn.get_json()["status"] == "cancelled" and withdrawn.get_json()["cancelled_by"] == "volunteer"
    )
    tasks.accept(second, task["id"])
    again = tasks.post(first, task["id"], "accept")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "task_full"
    detail = client.get(f"/api/v1/tasks/{task['id']}", headers=second).get_json()
    assert detail["filled"] == 1 and detail["my_assignment"]["status"] == "accepted"


def test_a_full_task_is_answered_from_one_read_outside_a_transaction(app, tasks, desk, people, monkeypatch):
    """Most of a rush is told the task is full: that answer costs the token's Redis round trip and
    one SELECT (the volunteer, the task and their place), run outside a transaction, so no BEGIN
    or ROLLBACK round trips; the session never opens one and nothing is written."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from tests.fixtures.redis_commands import RedisCommands
    from yijing.extensions import db

    task = tasks.create(desk, slots=1)
    tasks.accept(people["zt"]["headers"], task["id"])
    tasks.accept(people["zt2"]["headers"], task["id"], expect=409)  # their principal now cached
    statements: list[str] = []
    begun: list[object] = []

    def count(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    def began(session, *_args):  # type: ignore[no-untyped-def]
        begun.append(session)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    event.listen(Session, "after_begin", began)
    try:
        counting = RedisCommands(monkeypatch)
        full = tasks.post(people["zt2"]["headers"], task["id"], "accept")
    finally:
        event.remove(engine, "before_cursor_execute", count)
        event.remove(Session, "after_begin", began)
    assert full.status_code == 409
    assert full.get_json()["error"]["code"] == "task_full" and "已满员" in full.get_json()["error"]["message"]
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT"), statements
    assert begun == []
    assert counting.commands == ["EVALSHA"]  # the token


def test_signing_up_again_after_withdrawing_answers_the_place_as_stored(app, client, tasks, desk, people):
    """A place given up is taken back by one UPDATE … RETURNING of the place the rules read: the
    answer is the schema's dump of the row as stored (accepted, the withdrawal's marks cleared)."""
    from yijing.extensions import db
    from yijing.models import Assignment, Task
    from yijing.web.schemas import AssignmentSchema

    task = tasks.create(desk, slots=1)
    first = tasks.accept(people["zt"]["headers"], task["id"])
    tasks.post(people["zt"]["headers"], task["id"], "withdraw", {"reason": "临时有事"})
    again = tasks.accept(people["zt"]["headers"], task["id"])
    assert again["id"] == first["id"] and again["status"] == "accepted"
    assert (again["cancelled_by"], again["cancel_reason"] is None) == (None, False)  # the reason stays
    with app.app_context():
        stored = db.session.get(Assignment, again["id"])
        assert again == AssignmentSchema().dump(stored)
        assert stored.cancelled_at is None
        assert db.session.get(Task, task["id"]).filled == 1
        db.session.remove()
    assert tasks.accept(people["zt"]["headers"], task["id"]) == again  # a second tap: the same place
    full = tasks.post(people["zt2"]["headers"], task["id"], "accept")
    assert (full.status_code, full.get_json()["error"]["code"]) == (409, "task_full")


def test_overlapping_tasks_cannot_both_be_taken(tasks, desk, people):
    one = tasks.create(desk, title="早班巡逻")
    two = tasks.create(desk, title="同时段活动")
    tasks.accept(people["zt"]["headers"], one["id"])
    clash = tasks.post(people["zt"]["headers"], two["id"], "accept")
    assert clash.status_code == 409
    assert clash.get_json()["error"]["code"] == "schedule_conflict"
    assert "早班巡逻" in clash.get_json()["error"]["message"]


def test_check_in_window_and_geofence_tolerance(tasks, desk, people):
    now = _now()
    later = tasks.create(desk, starts_at=now + timedelta(hours=2), ends_at=now + timedelta(hours=3))
    headers = people["zt"]["headers"]
    tasks.accept(headers, later["id"])
    early = tasks.post(headers, later["id"], "check-in", {"lat": PLACE[0], "lng": PLACE[1]})
    assert early.status_code == 409 and early.get_json()["error"]["code"] == "checkin_not_open"
    assert "起可以签到" in early.get_json()["error"]["message"]

    task = tasks.create(desk, title="围栏测试", geofence_radius_m=200)
    other = people["zt2"]["headers"]
    tasks.accept(other, task["id"])
    # 270 m north of the place: beyond 200 m + 50 m tolerance …
    spot = (PLACE[0] + 270 / 111_195, PLACE[1])
    assert tasks.post(other, task["id"], "check-in", {"lat": spot[0], "lng": spot[1]}).status_code == 422
    # … inside once the phone admits a 30 m fix (250 + 30) …
    assert tasks.check_in(other, task["id"], spot, accuracy=30)["status"] == "checked_in"
    # … but a phone's poor accuracy counts for at most 100 m.
    third = tasks.create(desk, title="围栏上限", geofence_radius_m=200)
    tasks.accept(people["yy"]["headers"], third["id"])
    far_spot = (PLACE[0] + 400 / 111_195, PLACE[1])
    capped = tasks.post(
        people["yy"]["headers"],
        third["id"],
        "check-in",
        {"lat": far_spot[0], "lng": far_spot[1], "accuracy_m": 5000},
    )
    assert capped.status_code == 422 and "400 米" in capped.get_json()["error"]["message"]


def test_a_route_widens_the_geofence_along_it(tasks, desk, people):
    route = [[PLACE[0], PLACE[1]], [PLACE[0] + 0.02, PLACE[1]]]  # 2.2 km due north
    task = tasks.create(desk, route=route, geofence_radius_m=100)
    headers = people["zt"]["headers"]
    tasks.accept(headers, task["id"])
    along = (PLACE[0] + 0.012, PLACE[1] + 0.0005)  # 1.3 km from the place, ~40 m from the route
    assert tasks.check_in(headers, task["id"], along)["checkin_distance_m"] < 60


def test_a_retried_check_in_checks_in_once(app, tasks, desk, people):
    task = tasks.create(desk)
    headers = people["zt"]["headers"]
    tasks.accept(headers, task["id"])
    key = str(uuid.uuid4())
    first = tasks.check_in(headers, task["id"], key=key)
    body = {"lat": PLACE[0], "lng": PLACE[1], "accuracy_m": None}
    replay = tasks.post(headers, task["id"], "check-in", body, key=key)
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.get_json() == first
    again = tasks.check_in(headers, task["id"], (PLACE[0] + 0.001, PLACE[1]))
    assert (
        again["checkin_at"] == first["checkin_at"]
        and again["checkin_distance_m"] == first["checkin_distance_m"]
    )


def test_track_points_in_batches_with_duplicates_and_bounds(client, tasks, desk, people, staff):
    task = tasks.create(desk)
    headers = people["zt"]["headers"]
    tasks.accept(headers, task["id"])
    before = tasks.post(headers, task["id"], "track", {"points": [_point(_now())]})
    assert before.status_code == 409 and before.get_json()["error"]["code"] == "not_checked_in"
    placed = tasks.check_in(headers, task["id"])

    base = datetime.fromisoformat(placed["checkin_at"])
    batch = [
        _point(base + timedelta(seconds=30)),
        _point(base + timedelta(seconds=60), dlat=0.0005),
        _point(base + timedelta(seconds=60), dlat=0.0005),  # the same point twice in a batch
        _point(base - timedelta(minutes=30)),  # long before the check-in
        _point(_now() + timedelta(hours=1)),  # in the future
    ]
    result = tasks.post(headers, task["id"], "track", {"points": batch})
    assert result.status_code == 200
    body = result.get_json()
    assert body["stored"] == 2 and body["duplicates"] == 1
    assert [r["index"] for r in body["rejected"]] == [3, 4]

    # The phone lost the answer and sends the batch again, with one new point.
    resent = tasks.post(
        headers, task["id"], "track", {"points": [*batch[:2], _point(base + timedelta(seconds=90))]}
    )
    assert resent.get_json() == {"stored": 1, "duplicates": 2, "rejected": []}

    view = client.get(f"/api/v1/desk/tasks/{task['id']}/track", headers=desk).get_json()
    times = [p["recorded_at"] for p in view["items"]]
    assert len(times) == 3 and times == sorted(times)
    assert view["items"][1]["lat"] == pytest.approx(PLACE[0] + 0.0005)
    other_desk = staff("desk-qs", "desk", "150204")
    assert client.get(f"/api/v1/desk/tasks/{task['id']}/track", headers=other_desk).status_code == 403


def _point(at: datetime, dlat: float = 0.0) -> dict:
    return {"lat": PLACE[0] + dlat, "lng": PLACE[1], "accuracy_m": 8, "recorded_at": at.isoformat()}


def test_only_approved_volunteers_see_tasks(client, volunteers, wechat_login, tasks, desk):
    tasks.create(desk)
    resident = wechat_login("resident")
    response = client.get("/api/v1/tasks", headers=resident)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "not_a_volunteer"
    pending, _ = volunteers.apply("pending")
    response = client.get("/api/v1/tasks", headers=pending)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "volunteer_not_approved"
    assert client.get("/api/v1/tasks").status_code == 401


def test_the_accept_answer_is_the_schema_dump_of_the_place_as_stored(app, tasks, desk, people):
    """Signing up writes the slot and the place in one statement on PostgreSQL (a data-modifying
    CTE), in two elsewhere: either way the answer is what ``AssignmentSchema`` dumps of the row as
    stored, for a place that leaves one open and for the last one; a third volunteer is told the
    task is full and changes nothing."""
    from yijing.extensions import db
    from yijing.models import Assignment, Task
    from yijing.web.schemas import AssignmentSchema

    task = tasks.create(desk, slots=2)
    answers = [tasks.post(people[who]["headers"], task["id"], "accept") for who in ("zt", "zt2")]
    full = tasks.post(people["yy"]["headers"], task["id"], "accept")
    assert [r.status_code for r in answers] == [200, 200]
    assert (full.status_code, full.get_json()["error"]["code"]) == (409, "task_full")
    with app.app_context():
        for who, response in zip(("zt", "zt2"), answers, strict=True):
            stored = db.session.get(Assignment, response.get_json()["id"])
            assert (stored.volunteer_id, stored.status, stored.source) == (
                people[who]["id"],
                "accepted",
                "open",
            )
            assert response.get_json() == AssignmentSchema().dump(stored)
        assert db.session.get(Task, task["id"]).filled == 2
        assert (
            db.session.scalar(select(Assignment).where(Assignment.volunteer_id == people["yy"]["id"])) is None
        )
        db.session.remove()
