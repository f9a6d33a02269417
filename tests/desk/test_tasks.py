"""Tasks at the desk: life cycle, permissions, cancellation reaching volunteers, the board,
closing after the window (no-shows), reminders, recurring series, a volunteer's service hours."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from workers import tasks as task_jobs

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def desk(staff):
    return staff("desk-kdl", "desk", "150203")


def _outbox(app, kind: str) -> list:
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import Notification

        rows = db.session.scalars(
            select(Notification).where(Notification.kind == kind).order_by(Notification.id)
        ).all()
        db.session.expunge_all()
        db.session.remove()
        return rows


def test_create_edit_while_draft_publish(client, tasks, desk, volunteers):
    draft = tasks.create(desk, publish=False, slots=2)
    assert draft["status"] == "draft" and draft["status_label"] == "草稿"
    assert draft["counts"]["accepted"] == 0 and draft["jurisdiction"]["name"] == "沼潭社区"

    edited = client.patch(
        f"/api/v1/desk/tasks/{draft['id']}", json={"title": "沼潭社区早班巡逻", "slots": 4}, headers=desk
    )
    assert edited.status_code == 200
    assert edited.get_json()["title"] == "沼潭社区早班巡逻" and edited.get_json()["slots"] == 4
    backwards = client.patch(
        f"/api/v1/desk/tasks/{draft['id']}",
        json={"ends_at": (_now() - timedelta(days=1)).isoformat()},
        headers=desk,
    )
    assert backwards.status_code == 422
    assert backwards.get_json()["error"]["fields"] == {"ends_at": ["结束时间应晚于开始时间"]}

    volunteer, _ = volunteers.approved(desk, "v")
    assert client.get(f"/api/v1/tasks/{draft['id']}", headers=volunteer).status_code == 404

    published = client.post(f"/api/v1/desk/tasks/{draft['id']}/publish", headers=desk)
    assert published.status_code == 200 and published.get_json()["status"] == "published"
    assert (
        client.post(f"/api/v1/desk/tasks/{draft['id']}/publish", headers=desk).get_json()["status"]
        == "published"
    )
    locked = client.patch(f"/api/v1/desk/tasks/{draft['id']}", json={"points": 99, "slots": 4}, headers=desk)
    assert locked.status_code == 422 and locked.get_json()["error"]["code"] == "task_field_locked"
    assert locked.get_json()["error"]["fields"] == {"points": ["发布后不能修改"]}  # slots unchanged: ignored
    assert client.get(f"/api/v1/tasks/{draft['id']}", headers=volunteer).status_code == 200


def test_published_task_edited_within_the_rules_tells_its_volunteers(app, client, tasks, desk, volunteers):
    starts = _now() + timedelta(hours=1)
    task = tasks.create(desk, starts_at=starts, ends_at=starts + timedelta(hours=2), slots=2)
    volunteer, _ = volunteers.approved(desk, "v")
    tasks.accept(volunteer, task["id"])
    url = f"/api/v1/desk/tasks/{task['id']}"

    fewer = client.patch(url, json={"slots": 1}, headers=desk)
    assert fewer.status_code == 200 and fewer.get_json()["slots"] == 1  # one place taken: 1 is allowed
    assert client.patch(url, json={"slots": 2}, headers=desk).status_code == 200
    moved = client.patch(
        url,
        json={
            "lat": 40.6540,
            "lng": 109.8350,
            "address": "沼潭社区南门",
            "geofence_radius_m": 300,
            "starts_at": (starts + timedelta(hours=1)).isoformat(),
            "ends_at": (starts + timedelta(hours=3)).isoformat(),
            "title": task["title"],  # unchanged values are ignored
            "kind": task["kind"],
        },
        headers=desk,
    )
    assert moved.status_code == 200, moved.get_json()
    body = moved.get_json()
    assert body["address"] == "沼潭社区南门" and body["geofence_radius_m"] == 300 and body["lat"] == 40.654
    changed = _outbox(app, "task.changed")
    assert len(changed) == 1 and "沼潭社区南门" in changed[0].body
    assert sorted(changed[0].data["fields"]) == [
        "address",
        "ends_at",
        "geofence_radius_m",
        "lat",
        "lng",
        "starts_at",
    ]

    kind = client.patch(url, json={"kind": "traffic"}, headers=desk)
    assert kind.status_code == 422 and kind.get_json()["error"]["fields"] == {"kind": ["发布后不能修改"]}
    taken = client.patch(url, json={"slots": 0}, headers=desk)
    assert taken.status_code == 422  # the schema refuses 0; below the places taken is refused too:
    tasks.set_rows("Task", task["id"], slots=5)
    second, _ = volunteers.approved(desk, "w")
    tasks.accept(second, task["id"])
    below = client.patch(url, json={"slots": 1}, headers=desk)
    assert below.status_code == 422 and "2" in below.get_json()["error"]["fields"]["slots"][0]

    assert client.post(f"{url}/cancel", json={"reason": "天气原因"}, headers=desk).status_code == 200
    done = client.patch(url, json={"title": "另一个标题"}, headers=desk)
    assert done.status_code == 409 and done.get_json()["error"]["code"] == "task_not_editable"


def test_nearby_task_keeps_its_place_once_published(client, tasks, desk):
    task = tasks.create(desk, dispatch_mode="nearby", publish=True)
    url = f"/api/v1/desk/tasks/{task['id']}"
    response = client.patch(url, json={"lat": 40.66, "address": "别处"}, headers=desk)
    assert response.status_code == 422 and set(response.get_json()["error"]["fields"]) == {"lat"}
    assert client.patch(url, json={"address": "沼潭社区北门东侧"}, headers=desk).status_code == 200


def test_task_input_is_checked_in_chinese(client, tasks, desk):
    response = client.post(
        "/api/v1/desk/tasks",
        json=tasks.body(title="巡", slots=0, kind="party", geofence_radius_m=5),
        headers=desk,
    )
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert fields["title"] == ["标题 2–100 字"]
    assert fields["slots"] == ["名额 1–500"]
    assert fields["kind"] == ["任务类型不在可选范围内"]
    assert fields["geofence_radius_m"] == ["签到范围 20–5000 米"]
    past = tasks.body(starts_at=_now() - timedelta(hours=3), ends_at=_now() - timedelta(hours=1))
    response = client.post("/api/v1/desk/tasks", json=past, headers=desk)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"ends_at": ["任务时间已过，请修改时间后再发布"]}
    naive = tasks.body(starts_at="2030-01-01T08:00:00")
    assert client.post("/api/v1/desk/tasks", json=naive, headers=desk).status_code == 422


def test_only_desk_staff_of_the_jurisdiction_manage_its_tasks(client, tasks, desk, staff, tree):
    task = tasks.create(desk)
    qs = staff("desk-qs", "desk", "150204")
    leader = staff("leader-kdl", "leader", "150203")
    assert client.get(f"/api/v1/desk/tasks/{task['id']}", headers=qs).status_code == 403
    assert (
        client.post(
            f"/api/v1/desk/tasks/{task['id']}/cancel", json={"reason": "测试取消"}, headers=qs
        ).status_code
        == 403
    )
    elsewhere = client.post(
        "/api/v1/desk/tasks", json=tasks.body(jurisdiction_id=tree["150203-01-01"]), headers=qs
    )
    assert elsewhere.status_code == 403 and elsewhere.get_json()["error"]["code"] == "out_of_jurisdiction"
    assert client.post("/api/v1/desk/tasks", json=tasks.body(), headers=leader).status_code == 403
    assert client.get("/api/v1/desk/tasks", headers=qs).get_json()["items"] == []
    assert client.get(f"/api/v1/desk/tasks?jurisdiction_id={tree['150203']}", headers=qs).status_code == 403


def test_a_retried_create_makes_one_task(client, tasks, desk):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = tasks.body()
    first = client.post("/api/v1/desk/tasks", json=body, headers={**desk, **key})
    again = client.post("/api/v1/desk/tasks", json=body, headers={**desk, **key})
    assert first.status_code == again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(client.get("/api/v1/desk/tasks", headers=desk).get_json()["items"]) == 1


def test_cancelling_tells_every_volunteer_why(app, client, tasks, desk, volunteers):
    task = tasks.create(desk, slots=3, points=5)
    on_site, _ = volunteers.approved(desk, "on-site")
    coming, _ = volunteers.approved(desk, "coming")
    checked = tasks.accept(on_site, task["id"])
    tasks.accept(coming, task["id"])
    tasks.check_in(on_site, task["id"])
    tasks.set_rows("Assignment", checked["id"], checkin_at=_now() - timedelta(minutes=8))

    response = client.post(
        f"/api/v1/desk/tasks/{task['id']}/cancel", json={"reason": "找到走失老人，任务取消"}, headers=desk
    )
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert response.get_json()["cancel_reason"] == "找到走失老人，任务取消"

    rows = _outbox(app, "task.cancelled")
    assert len(rows) == 2 and all("找到走失老人，任务取消" in r.body for r in rows)
    coming_view = client.get(f"/api/v1/tasks/{task['id']}", headers=coming).get_json()
    assert coming_view["status"] == "cancelled" and coming_view["my_assignment"]["status"] == "cancelled"
    assert coming_view["my_assignment"]["cancel_reason"] == "找到走失老人，任务取消"
    served = client.get(f"/api/v1/tasks/{task['id']}", headers=on_site).get_json()["my_assignment"]
    assert served["status"] == "completed" and served["checkout_auto"] is True
    assert served["service_minutes"] == 8  # the check-in was 8 minutes ago, inside the window

    again = client.post(f"/api/v1/desk/tasks/{task['id']}/cancel", json={"reason": "再次取消"}, headers=desk)
    assert again.status_code == 200 and len(_outbox(app, "task.cancelled")) == 2
    late = tasks.post(coming, task["id"], "accept")
    assert late.status_code == 409 and late.get_json()["error"] == {
        "code": "task_not_open",
        "message": "该任务已取消",
        "fields": {},
    }


def test_board_filters_and_counts(client, tasks, desk, staff, tree, volunteers):
    # Two days on, not tomorrow: from 22:00 in Shanghai the other tasks (now until two hours on)
    # reach into tomorrow and the day filter rightly lists them too.
    later = _now() + timedelta(days=2)
    patrol = tasks.create(desk, slots=2)
    guard = tasks.create(
        desk,
        kind="campus_guard",
        title="友谊小学护校安园",
        jurisdiction_id=tree["150203-01-02"],
        starts_at=later,
        ends_at=later + timedelta(hours=1),
    )
    draft = tasks.create(desk, publish=False, title="草稿任务")
    city = staff("desk-city", "desk", "150200")
    tasks.create(city, jurisdiction_id=tree["150204-01-01"], title="青山区巡逻", lat=40.641, lng=109.905)

    a, _ = volunteers.approved(desk, "a")
    b, _ = volunteers.approved(desk, "b")
    tasks.accept(a, patrol["id"])
    tasks.accept(b, patrol["id"])
    tasks.check_in(a, patrol["id"])

    def board(**params):
        response = client.get("/api/v1/desk/tasks", query_string=params, headers=desk)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    assert [t["id"] for t in board()["items"]] == [
        guard["id"],
        draft["id"],
        patrol["id"],
    ]  # latest start first
    assert [t["id"] for t in board(status="draft")["items"]] == [draft["id"]]
    assert [t["id"] for t in board(kind="campus_guard")["items"]] == [guard["id"]]
    assert [t["id"] for t in board(jurisdiction_id=tree["150203-01-02"])["items"]] == [guard["id"]]
    local_day = later.astimezone(SHANGHAI).date().isoformat()
    assert [t["id"] for t in board(day=local_day)["items"]] == [guard["id"]]
    row = next(t for t in board()["items"] if t["id"] == patrol["id"])
    assert row["filled"] == 2 and row["remaining"] == 0
    assert (
        row["counts"]["checked_in"] == 1 and row["counts"]["accepted"] == 1 and row["counts"]["arrived"] == 1
    )
    first = board(limit=2)
    second = board(limit=2, cursor=first["next_cursor"])
    assert len(first["items"]) == 2 and len(second["items"]) == 1 and second["next_cursor"] is None
    assert len(board(limit=10)["items"]) == 3
    assert len(client.get("/api/v1/desk/tasks", headers=city).get_json()["items"]) == 4


def test_closing_after_the_window_marks_no_shows(app, client, tasks, desk, volunteers):
    task = tasks.create(desk, slots=3, points=20)
    never, _ = volunteers.approved(desk, "never")
    stayed, _ = volunteers.approved(desk, "stayed")
    tasks.accept(never, task["id"])
    placed = tasks.accept(stayed, task["id"])
    tasks.check_in(stayed, task["id"])
    # The window was 3 h to 1 h ago; the volunteer on site checked in 2 h 30 min ago and forgot to check out.
    now = _now()
    tasks.set_rows("Task", task["id"], starts_at=now - timedelta(hours=3), ends_at=now - timedelta(hours=1))
    tasks.set_rows("Assignment", placed["id"], checkin_at=now - timedelta(minutes=150))
    upcoming = tasks.create(desk, title="稍后开始")
    tasks.set_rows("Task", upcoming["id"], starts_at=now - timedelta(minutes=1))

    with app.app_context():
        assert task_jobs.close_finished_tasks() == 1
        assert task_jobs.close_finished_tasks() == 0  # twice is harmless

    detail = client.get(f"/api/v1/desk/tasks/{task['id']}", headers=desk).get_json()
    assert detail["status"] == "completed" and detail["closed_at"] is not None
    assert detail["counts"]["no_show"] == 1 and detail["counts"]["completed"] == 1
    assert (
        client.get(f"/api/v1/desk/tasks/{upcoming['id']}", headers=desk).get_json()["status"] == "in_progress"
    )
    mine = client.get(f"/api/v1/tasks/{task['id']}", headers=stayed).get_json()["my_assignment"]
    assert mine["status"] == "completed" and mine["checkout_auto"] is True
    assert mine["service_minutes"] == 90 and mine["points_awarded"] == 20  # clipped to the end of the window
    assert client.get("/api/v1/tasks/mine/service", headers=never).get_json()["no_shows"] == 1
    assert client.get("/api/v1/tasks/mine/service", headers=stayed).get_json()["points"] == 20


def test_reminders_before_the_start_and_before_an_invitation_deadline(app, client, tasks, desk, volunteers):
    soon = tasks.create(desk, starts_at=_now() + timedelta(minutes=40), ends_at=_now() + timedelta(hours=2))
    later = tasks.create(desk, starts_at=_now() + timedelta(hours=5), ends_at=_now() + timedelta(hours=6))
    a, _ = volunteers.approved(desk, "a")
    _, b_body = volunteers.approved(desk, "b")
    tasks.accept(a, soon["id"])
    assigned = tasks.create(desk, dispatch_mode="assigned", title="指派任务")
    deadline = _now() + timedelta(minutes=10)
    invited = client.post(
        f"/api/v1/desk/tasks/{assigned['id']}/invitations",
        json={"volunteer_ids": [b_body["id"]], "expires_at": deadline.isoformat()},
        headers=desk,
    )
    assert invited.status_code == 200
    assert later["status"] == "published"

    with app.app_context():
        assert task_jobs.send_reminders() == 2
        assert task_jobs.send_reminders() == 0
    rows = _outbox(app, "task.reminder")
    assert sorted(r.data["type"] for r in rows) == ["invitation_deadline", "start"]
    start = next(r for r in rows if r.data["type"] == "start")
    assert start.title == f"任务即将开始：{soon['title']}" and start.data["task_id"] == soon["id"]


def test_recurring_series_produce_their_occurrences_ahead(app, client, tasks, desk, volunteers):
    today = _now().astimezone(SHANGHAI).date()
    skip = today + timedelta(days=(7 - today.weekday()) % 7 or 7)  # next Monday: a holiday
    body = tasks.body(title="友谊小学早间护校", kind="campus_guard", slots=2)
    for key in ("starts_at", "ends_at", "dispatch_mode", "publish"):
        body.pop(key)
    body.update(
        weekdays=[1, 2, 3, 4, 5],
        start_time="07:30",
        end_time="08:30",
        starts_on=today.isoformat(),
        skip_dates=[skip.isoformat()],
    )
    created = client.post("/api/v1/desk/task-series", json=body, headers=desk)
    assert created.status_code == 201, created.get_json()
    series = created.get_json()
    assert series["generated_through"] is None  # nobody creates occurrences by hand …

    tasks.run_jobs("default")  # … the job queued with the series does
    now = _now()
    expected = []
    for offset in range(15):
        day = today + timedelta(days=offset)
        end = datetime.combine(day, datetime.min.time(), SHANGHAI).replace(hour=8, minute=30)
        if day.isoweekday() <= 5 and day != skip and end > now:
            expected.append(day)
    board = client.get(f"/api/v1/desk/tasks?series_id={series['id']}&limit=100", headers=desk).get_json()[
        "items"
    ]
    assert sorted(date.fromisoformat(t["occurrence_date"]) for t in board) == expected
    first = min(board, key=lambda t: t["starts_at"])
    starts = datetime.fromisoformat(first["starts_at"]).astimezone(SHANGHAI)
    assert (starts.hour, starts.minute) == (7, 30) and first["status"] == "published"
    assert first["dispatch_mode"] == "open" and first["kind"] == "campus_guard"

    with app.app_context():
        assert task_jobs.generate_occurrences() == 0  # the periodic run adds nothing twice
    listing = client.get("/api/v1/desk/task-series", headers=desk).get_json()["items"]
    assert listing[0]["generated_through"] == (today + timedelta(days=14)).isoformat()

    volunteer, _ = volunteers.approved(desk, "v")
    seen = {
        t["series_id"] for t in client.get("/api/v1/tasks?limit=100", headers=volunteer).get_json()["items"]
    }
    assert seen == {series["id"]}

    ended = client.post(
        f"/api/v1/desk/task-series/{series['id']}/end", json={"reason": "学校放假"}, headers=desk
    )
    assert ended.status_code == 200 and ended.get_json()["status"] == "ended"
    after = client.get(f"/api/v1/desk/tasks?series_id={series['id']}&limit=100", headers=desk).get_json()[
        "items"
    ]
    upcoming = [t for t in after if datetime.fromisoformat(t["starts_at"]) > _now()]
    assert upcoming and {t["status"] for t in upcoming} == {"cancelled"}
    assert {t["cancel_reason"] for t in upcoming} == {"学校放假"}
    bad = client.post("/api/v1/desk/task-series", json={**body, "start_time": "7:75"}, headers=desk)
    assert bad.status_code == 422 and "start_time" in bad.get_json()["error"]["fields"]


def test_a_volunteers_history_and_service_hours(client, tasks, desk, staff, volunteers):
    headers, volunteer = volunteers.approved(desk, "veteran")
    now = _now()
    for title, minutes in (("第一次巡逻", 40), ("第二次巡逻", 25)):
        task = tasks.create(desk, title=title, points=5, starts_at=now - timedelta(hours=1))
        placed = tasks.accept(headers, task["id"])
        tasks.check_in(headers, task["id"])
        tasks.set_rows("Assignment", placed["id"], checkin_at=now - timedelta(minutes=minutes))
        tasks.check_out(headers, task["id"])

    response = client.get(f"/api/v1/desk/volunteers/{volunteer['id']}/tasks", headers=desk)
    assert response.status_code == 200
    body = response.get_json()
    assert [i["task"]["title"] for i in body["items"]] == ["第二次巡逻", "第一次巡逻"]
    assert [i["service_minutes"] for i in body["items"]] == [25, 40]
    assert body["service"]["service_minutes"] == 65 and body["service"]["service_hours"] == 1.1
    assert body["service"]["completed"] == 2 and body["service"]["points"] == 10
    assert body["volunteer"]["id"] == volunteer["id"] and "*" in body["volunteer"]["name_masked"]
    qs = staff("desk-qs", "desk", "150204")
    assert client.get(f"/api/v1/desk/volunteers/{volunteer['id']}/tasks", headers=qs).status_code == 403
