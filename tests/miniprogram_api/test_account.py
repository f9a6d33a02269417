"""Cancelling an account (注销) and a copy of one's data, through HTTP (issue 13)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import select

from tests.fixtures.tasks import TASK_PLACE

REAL_NAME = "司马明远"
PHONE = "13900001111"


def _now() -> datetime:
    return datetime.now(UTC)


def _login_as(client, name: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/wechat-login", json={"code": f"{name}.{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def _volunteer_with_history(client, volunteers, tasks, staff, report_clue, id_number, release_sealed):
    """An approved volunteer on duty with a completed task, an accepted one, a track, a named and an
    anonymous clue, a message and points."""
    desk = staff("desk-kdl", "desk", "150203")
    number = id_number(seq=777)
    headers, application = volunteers.approved(
        desk, "maya", real_name=REAL_NAME, phone=PHONE, id_number=number
    )
    volunteers.on_duty(headers, *TASK_PLACE)
    done = tasks.create(desk, title="已完成的巡逻", points=10)
    accepted = tasks.accept(headers, done["id"])
    tasks.check_in(headers, done["id"], accuracy=10)
    track = tasks.post(
        headers,
        done["id"],
        "track",
        {"points": [{"lat": TASK_PLACE[0], "lng": TASK_PLACE[1], "recorded_at": _now().isoformat()}]},
    )
    assert track.status_code in (200, 201), track.get_json()
    tasks.set_rows("Assignment", accepted["id"], checkin_at=_now() - timedelta(minutes=40))
    assert tasks.check_out(headers, done["id"])["status"] == "completed"
    # The task's window ends and the close job closes it: its service counts on that day (issue 18).
    with tasks.app.app_context():
        from yijing.services import tasks as task_service

        assert task_service.close_task(done["id"])
    later = tasks.create(
        desk,
        title="周末护校",
        kind="campus_guard",
        starts_at=_now() + timedelta(days=2),
        ends_at=_now() + timedelta(days=2, hours=2),
    )
    tasks.accept(headers, later["id"])
    named = report_clue(headers, description="楼下有可疑车辆反复停靠").get_json()["id"]
    anonymous = report_clue(headers, anonymous=True, category="fraud", description="有人冒充客服").get_json()[
        "id"
    ]
    message = client.post(
        "/api/v1/messages",
        json={"body": f"请回电 {PHONE}，{REAL_NAME}", "district_id": volunteers.tree["150203"]},
        headers=headers,
    )
    assert message.status_code == 201, message.get_json()
    release_sealed()
    return {
        "desk": desk,
        "headers": headers,
        "volunteer": application,
        "id_number": number,
        "tasks": (done["id"], later["id"]),
        "clues": (named, anonymous),
    }


def test_a_copy_of_my_data_holds_everything_in_clear_for_me_alone_and_is_audited(
    app, client, volunteers, tasks, staff, report_clue, id_number, release_sealed
):
    from yijing.extensions import db
    from yijing.models import AuditEntry

    made = _volunteer_with_history(client, volunteers, tasks, staff, report_clue, id_number, release_sealed)
    response = client.get("/api/v1/me/data", headers=made["headers"])
    assert response.status_code == 200
    data = response.get_json()
    (application,) = data["volunteer_applications"]
    assert (application["real_name"], application["phone"], application["id_number"]) == (
        REAL_NAME,
        PHONE,
        made["id_number"],
    )
    by_task = {t["task"]["id"]: t for t in data["tasks"]}
    done, later = made["tasks"]
    assert by_task[done]["status"] == "completed" and by_task[done]["service_minutes"] > 0
    assert len(by_task[done]["track"]) == 1 and by_task[done]["checkin"]["lat"] is not None
    assert by_task[later]["status"] == "accepted"
    assert sorted(c["id"] for c in data["clues"]) == sorted(made["clues"])
    assert data["points"]["balance"] == 10 and data["points"]["entries"][0]["reason"] == "task_completed"
    assert data["messages"][0]["body"].startswith("请回电")
    assert data["account"]["openid"]
    assert data["notifications"]  # the inbox

    other = _login_as(client, "somebody-else")
    theirs = client.get("/api/v1/me/data", headers=other).get_json()
    assert REAL_NAME not in json.dumps(theirs, ensure_ascii=False) and theirs["tasks"] == []
    assert client.get("/api/v1/me/data").status_code == 401
    me = client.get("/api/v1/me", headers=made["headers"]).get_json()["id"]
    with app.app_context():
        audited = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "personal_data.copy")
        ).all()
        assert len(audited) == 2 and all(str(a.actor_id) == a.target_id for a in audited)
        assert str(me) in {a.target_id for a in audited}
        db.session.remove()


def _summary(client, app, desk) -> dict:
    """The district's figures for the last days, from freshly rebuilt rollups."""
    from workers import reports

    with app.app_context():
        reports.refresh_recent()
    r = redis.Redis.from_url(app.config["YIJING"].redis_url)
    for key in r.scan_iter(match=app.config["YIJING"].redis_prefix + "reports:*"):
        r.delete(key)
    today = datetime.now(UTC) + timedelta(hours=8)
    window = {
        "from": (today - timedelta(days=7)).date().isoformat(),
        "to": (today + timedelta(days=3)).date().isoformat(),
    }
    response = client.get("/api/v1/desk/reports/summary", query_string=window, headers=desk)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _table_text(app) -> str:
    """Every row of every table, as text."""
    from yijing.extensions import db

    with app.app_context():
        parts = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(table.select()).all():
                parts.append(f"{table.name}: {tuple(row)!r}")
        db.session.remove()
    return "\n".join(parts)


def test_cancelling_cooling_off_login_withdraws_then_the_job_erases_the_person_and_figures_add_up(
    app, client, volunteers, tasks, staff, report_clue, id_number, release_sealed, fake_wechat
):
    from fakewechat import fake_openid, fake_unionid
    from workers import privacy
    from yijing import pii
    from yijing.extensions import db
    from yijing.models import Assignment, AuditEntry, AuthToken, Clue, User

    made = _volunteer_with_history(client, volunteers, tasks, staff, report_clue, id_number, release_sealed)
    headers, desk = made["headers"], made["desk"]
    user_id = client.get("/api/v1/me", headers=headers).get_json()["id"]
    bound = client.post("/api/v1/auth/phone", json={"code": f"phone-{PHONE}"}, headers=headers)
    assert bound.status_code == 200, bound.get_json()

    state = client.get("/api/v1/me/cancellation", headers=headers).get_json()
    assert state["status"] == "none" and state["cooling_off_days"] == 15
    assert "注销账号后" in state["statement"] and "15 天冷静期" in state["statement"]
    assert any("周末护校" in line for line in state["consequences"])
    assert any("正在执勤" in line for line in state["consequences"])

    staff_asks = client.post("/api/v1/me/cancellation", json={"acknowledged": True}, headers=desk)
    assert staff_asks.status_code == 403 and staff_asks.get_json()["error"]["code"] == "staff_account"

    # Told first: a volunteer on duty with an accepted task must acknowledge what it does.
    refused = client.post("/api/v1/me/cancellation", json={}, headers=headers)
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "cancellation_affects_duties" and "周末护校" in error["message"]
    asked = client.post("/api/v1/me/cancellation", json={"acknowledged": True}, headers=headers)
    assert asked.status_code == 202, asked.get_json()
    due = datetime.fromisoformat(asked.get_json()["due_at"])
    assert timedelta(days=14, hours=23) < due - _now() <= timedelta(days=15)

    # Logging in during the cooling-off period withdraws it.
    headers = _login_as(client, "maya")
    assert client.get("/api/v1/me/cancellation", headers=headers).get_json()["status"] == "none"
    with app.app_context():
        assert db.session.get(User, user_id).cancel_due_at is None
        db.session.remove()

    before = _summary(client, app, desk)
    done_task, later_task = made["tasks"]
    assert (
        client.post("/api/v1/me/cancellation", json={"acknowledged": True}, headers=headers).status_code
        == 202
    )
    from workers.schedule import PERIODIC_JOBS

    assert any(j.func is privacy.carry_out_cancellations and j.interval == 86400 for j in PERIODIC_JOBS)
    with app.app_context():
        assert privacy.carry_out_cancellations() == 0  # not yet due
        db.session.remove()
    tasks.set_rows("User", user_id, cancel_due_at=_now() - timedelta(minutes=1))  # the 15 days pass
    with app.app_context():
        assert privacy.carry_out_cancellations() == 1
        assert privacy.carry_out_cancellations() == 0  # idempotent
        assert db.session.scalars(select(AuthToken).where(AuthToken.user_id == user_id)).all() == []
        db.session.remove()

    # Tokens are gone; the person can no longer act.
    assert client.get("/api/v1/me", headers=headers).status_code == 401

    # Nothing in any table identifies the person.
    with app.app_context():
        config = app.config["YIJING"]
        identifying = [
            fake_openid("maya"),
            fake_unionid("maya"),
            REAL_NAME,
            PHONE,
            made["id_number"],
            pii.blind_index(made["id_number"], context="volunteer.id_number", config=config),
            pii.blind_index(PHONE, context="volunteer.phone", config=config),
            pii.blind_index(PHONE, context="user.phone", config=config),
            pii.blind_index(str(user_id), context="clue.reporter", config=config),
        ]
        user = db.session.get(User, user_id)
        assert user.openid is None and user.phone_enc is None and user.cancelled_at is not None
        db.session.remove()
    everything = _table_text(app)
    for value in identifying:
        assert value not in everything, value
    # ... nor in Redis: no key or value holds them, no cached principal, no duty entry.
    r = redis.Redis.from_url(app.config["YIJING"].redis_url)
    prefix = app.config["YIJING"].redis_prefix
    for key in r.scan_iter():
        name = key.decode()
        assert name != f"{prefix}principal:{user_id}"
        kind = r.type(key).decode()
        if kind == "string":
            values = [r.get(key) or b""]
        elif kind == "hash":
            values = list(r.hgetall(key).keys()) + list(r.hgetall(key).values())
        elif kind == "zset":
            values = r.zrange(key, 0, -1)
        elif kind == "set":
            values = list(r.smembers(key))
        elif kind == "list":
            values = r.lrange(key, 0, -1)
        else:
            values = []
        blob = b"\n".join(values).decode(errors="replace")
        for value in identifying:
            assert value not in blob, (name, value)
    assert str(made["volunteer"]["id"]).encode() not in [
        m for k in r.scan_iter(match=f"{prefix}duty:geo*") if r.type(k) == b"zset" for m in r.zrange(k, 0, -1)
    ]

    # The clues, the task history and the figures remain and add up.
    with app.app_context():
        clues = db.session.scalars(select(Clue).where(Clue.id.in_(made["clues"]))).all()
        assert len(clues) == 2 and all(c.reporter_id is None and c.reporter_enc is None for c in clues)
        history = {
            a.task_id: a for a in db.session.scalars(select(Assignment).where(Assignment.user_id == user_id))
        }
        assert history[done_task].status == "completed" and history[done_task].service_minutes > 0
        assert history[later_task].status == "cancelled"  # the place was given back
        assert history[done_task].checkin_lat is None
        actions = db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.target_id == str(user_id))
        ).all()
        assert {"account.cancel_request", "account.cancel_withdraw", "account.cancel"} <= set(actions)
        db.session.remove()
    after = _summary(client, app, desk)
    assert before["service"]["service_minutes"] > 0
    assert before["clues"]["reported"] == 2
    # The service done and the clues reported are unchanged; the volunteer has left the corps and
    # the place they held on the later task was given back.
    assert after["clues"] == before["clues"]
    assert {k: v for k, v in after["service"].items() if k not in {"filled", "fill_rate", "cancelled"}} == {
        k: v for k, v in before["service"].items() if k not in {"filled", "fill_rate", "cancelled"}
    }
    assert after["volunteers"]["by_status"] == {"withdrawn": 1}
    desk_clue = client.get(f"/api/v1/desk/clues/{made['clues'][0]}", headers=desk).get_json()
    assert desk_clue["reporter"] is None
    later_desk = client.get(f"/api/v1/desk/tasks/{later_task}", headers=desk).get_json()
    assert later_desk["filled"] == 0

    # The same WeChat account may come back: it is a new, empty account.
    back = _login_as(client, "maya")
    again = client.get("/api/v1/me", headers=back).get_json()
    assert again["id"] != user_id
    assert client.get("/api/v1/me/data", headers=back).get_json()["tasks"] == []
