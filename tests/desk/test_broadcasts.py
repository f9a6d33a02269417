"""Mass alerts from the desk: scope, fan-out in chunks, progress, pace, cancel, audiences."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from fakewechat import fake_openid
from workers import broadcasts as broadcast_jobs
from workers import notifications as notification_jobs
from workers.runner import AppSimpleWorker
from yijing import jobs
from yijing.actor import Actor
from yijing.extensions import db, redis_client
from yijing.models import AuditEntry, Broadcast, Notification, Role, User
from yijing.services import auth, broadcasts, notifications

SEND = "/cgi-bin/message/subscribe/send"
ALERT = "DEMO-tmpl-alert"


def configure(app, monkeypatch, **changes):
    monkeypatch.setitem(app.config, "YIJING", dataclasses.replace(app.config["YIJING"], **changes))


def drain(app):
    with app.app_context():
        AppSimpleWorker([jobs.get_queue(n) for n in jobs.ALL], connection=redis_client()).work(burst=True)


def add_people(app, tree, spec):
    """spec: list of (name, grant key or None, home key or None, accepts alerts); returns name → id."""
    ids = {}
    with app.app_context():
        for name, grant_key, home_key, consents in spec:
            user = User(kind="wechat", openid=fake_openid(name), display_name=name)
            user.home_jurisdiction_id = tree[home_key] if home_key else None
            db.session.add(user)
            db.session.commit()
            ids[name] = user.id
            if grant_key:
                auth.grant_role(user.id, Role.VOLUNTEER, tree[grant_key], Actor.system("test"))
            if consents:
                notifications.record_consents(user.id, {ALERT: "accept"})
        db.session.remove()
    return ids


@pytest.fixture
def people(app, tree):
    return add_people(
        app,
        tree,
        [
            ("v1", "150203-01-01", None, True),
            ("v2", "150203-01-01-1", None, True),
            ("v3", "150203-01-02", None, False),  # no consent: inbox only
            ("v4", "150203", None, True),
            ("v5", "150203-01", None, True),
            ("q1", "150204-01-01", None, True),  # another district
            ("r1", None, "150203-01-01", True),  # a resident, not a volunteer
            ("r2", None, "150204-01-01", True),
        ],
    )


def rows_of(app, broadcast_id):
    with app.app_context():
        found = db.session.scalars(
            select(Notification).where(Notification.dedupe_key.startswith(f"broadcast:{broadcast_id}:"))
        ).all()
        db.session.remove()
    return found


def get_broadcast(app, broadcast_id):
    with app.app_context():
        item = db.session.get(Broadcast, broadcast_id)
        db.session.expunge(item)
        db.session.remove()
    return item


def create(client, headers, tree, **body):
    body.setdefault("jurisdiction_id", tree["150203"])
    body.setdefault("audience", "volunteers")
    body.setdefault("title", "暴雨红色预警")
    body.setdefault("body", "请在岗义警协助疏导积水路段")
    return client.post("/api/v1/desk/broadcasts", json=body, headers=headers)


def test_district_volunteers_get_the_alert_in_chunks(
    app, client, staff, tree, people, fake_wechat, monkeypatch
):
    configure(app, monkeypatch, broadcast_batch_size=2, broadcast_rate_per_minute=6000)
    desk = staff("desk-kdl", key="150203")
    response = create(client, desk, tree)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["status"] == "queued" and created["written"] == 0 and created["rate_per_minute"] == 6000
    drain(app)
    done = client.get(f"/api/v1/desk/broadcasts/{created['id']}", headers=desk).get_json()
    assert done["status"] == "completed"
    assert done["total"] == 5 and done["written"] == 5 and done["progress"] == 1.0
    assert done["started_at"] and done["finished_at"]
    rows = rows_of(app, created["id"])
    expected = {people[n] for n in ("v1", "v2", "v3", "v4", "v5")}
    assert {r.user_id for r in rows} == expected
    assert all(r.kind == "alert" and r.title == "暴雨红色预警" for r in rows)
    assert all(r.data == {"broadcast_id": created["id"], "jurisdiction_name": "昆都仑区"} for r in rows)
    by_user = {r.user_id: r.status for r in rows}
    assert by_user[people["v3"]] == "inbox_only"
    assert sorted(by_user.values()).count("sent") == 4
    assert sorted(r.json["touser"] for r in fake_wechat.state.requests(SEND)) == sorted(
        fake_openid(n) for n in ("v1", "v2", "v4", "v5")
    )
    with app.app_context():
        assert db.session.scalar(select(AuditEntry.action).where(AuditEntry.target_id == str(created["id"])))


def test_residents_of_a_subtree(app, client, staff, tree, people):
    desk = staff("desk-kdl", key="150203")
    created = create(client, desk, tree, audience="residents", jurisdiction_id=tree["150203-01"]).get_json()
    drain(app)
    assert {r.user_id for r in rows_of(app, created["id"])} == {people["r1"]}


def test_the_fan_out_keeps_its_pace_and_is_cancellable(
    app, client, staff, tree, people, fake_wechat, monkeypatch
):
    configure(app, monkeypatch, broadcast_batch_size=2)
    desk = staff("desk-kdl", key="150203")
    created = create(client, desk, tree, rate_per_minute=10).get_json()
    assert created["rate_per_minute"] == 10
    drain(app)  # the first chunk; the next waits for its turn
    running = client.get(f"/api/v1/desk/broadcasts/{created['id']}", headers=desk).get_json()
    assert running["status"] == "running" and running["written"] == 2 and running["total"] == 5
    assert running["progress"] == 0.4
    with app.app_context():
        registry = jobs.get_queue(jobs.DISPATCH).scheduled_job_registry
        [job_id] = registry.get_job_ids()
        due = registry.get_scheduled_time(job_id)
    # Two rows at 10 a minute: the next chunk is scheduled about 12 s later, not run at once.
    assert (due - datetime.now(UTC)).total_seconds() > 8
    cancelled = client.post(f"/api/v1/desk/broadcasts/{created['id']}/cancel", headers=desk)
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    with app.app_context():
        assert broadcast_jobs.fan_out(created["id"]) is None  # the scheduled chunk finds it cancelled
    assert len(rows_of(app, created["id"])) == 2
    # Rows written before the cancel were already delivered; nothing new goes out.
    sent_before = len(fake_wechat.state.requests(SEND))
    drain(app)
    assert len(fake_wechat.state.requests(SEND)) == sent_before
    again = client.post(f"/api/v1/desk/broadcasts/{created['id']}/cancel", headers=desk)
    assert again.status_code == 409


def test_unsent_rows_of_a_cancelled_broadcast_stay_in_the_inbox(
    app, client, staff, tree, people, fake_wechat
):
    desk = staff("desk-kdl", key="150203")
    created = create(client, desk, tree).get_json()
    with app.app_context():
        broadcasts.fan_out_step(created["id"])  # rows written, delivery queued but not run
        for name in (jobs.DISPATCH, jobs.NOTIFY):
            jobs.get_queue(name).empty()
    # Nothing was delivered yet: cancel, then let the queued delivery run.
    client.post(f"/api/v1/desk/broadcasts/{created['id']}/cancel", headers=desk)
    with app.app_context():
        ids = [r.id for r in rows_of(app, created["id"])]
        notification_jobs.deliver(ids)
    statuses = {r.status for r in rows_of(app, created["id"])}
    assert statuses == {"inbox_only"}
    assert fake_wechat.state.requests(SEND) == []
    assert all(r.last_error.startswith("broadcast_cancelled") for r in rows_of(app, created["id"]))


def test_a_stalled_fan_out_is_revived_by_the_sweeper(app, client, staff, tree, people, monkeypatch):
    desk = staff("desk-kdl", key="150203")
    created = create(client, desk, tree).get_json()
    with app.app_context():
        jobs.get_queue(jobs.DISPATCH).empty()  # the job was lost (Redis restarted, worker killed)
        assert broadcasts.revive_stalled() == []  # not stalled yet
        configure(app, monkeypatch, broadcast_stall_seconds=-3600)
        assert notification_jobs.sweep()["broadcasts"] == 1
    drain(app)
    assert get_broadcast(app, created["id"]).status == "completed"
    assert len(rows_of(app, created["id"])) == 5


def test_a_chunk_written_by_two_runs_at_once_counts_once(app, client, staff, tree, people, monkeypatch):
    configure(app, monkeypatch, broadcast_batch_size=2, broadcast_rate_per_minute=6000)
    desk = staff("desk-kdl", key="150203")
    created = create(client, desk, tree).get_json()
    original = broadcasts._next_ids

    def another_run_commits_this_chunk_meanwhile(spec, broadcast, jurisdiction, limit):
        ids = original(spec, broadcast, jurisdiction, limit)
        with db.engine.begin() as other:
            other.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast.id)
                .values(cursor=ids[-1], written=Broadcast.written + len(ids), status="running")
            )
        return ids

    with app.app_context():
        jobs.get_queue(jobs.DISPATCH).empty()
        monkeypatch.setattr(broadcasts, "_next_ids", another_run_commits_this_chunk_meanwhile)
        assert broadcasts.fan_out_step(created["id"]) is None  # lost the race: its rows are rolled back
        monkeypatch.setattr(broadcasts, "_next_ids", original)
        assert rows_of(app, created["id"]) == []
        while broadcasts.fan_out_step(created["id"]) is not None:
            pass
        db.session.remove()
    assert len(rows_of(app, created["id"])) == 3  # the "other run" wrote its 2 rows in this story
    assert get_broadcast(app, created["id"]).written == 5


def test_scope_is_enforced(app, client, staff, tree, people):
    mine = staff("desk-kdl", key="150203")
    other = staff("desk-qs", key="150204")
    leader = staff("leader", role="leader", key="150203")
    response = create(client, other, tree)
    assert response.status_code == 403
    assert create(client, leader, tree).status_code == 403  # leaders may not broadcast
    created = create(client, mine, tree).get_json()
    assert client.get(f"/api/v1/desk/broadcasts/{created['id']}", headers=other).status_code == 404
    assert client.post(f"/api/v1/desk/broadcasts/{created['id']}/cancel", headers=other).status_code == 404
    assert client.get("/api/v1/desk/broadcasts", headers=other).get_json()["items"] == []
    listed = client.get("/api/v1/desk/broadcasts", headers=mine).get_json()["items"]
    assert [b["id"] for b in listed] == [created["id"]]
    assert client.get("/api/v1/desk/broadcasts", headers=leader).status_code == 403


def test_on_duty_within_a_radius_reaches_the_volunteers_on_duty_there(app, client, staff, tree, volunteers):
    desk = staff("desk-kdl", key="150203")
    near, _ = volunteers.approved(desk, "near")
    far, _ = volunteers.approved(desk, "far")
    volunteers.approved(desk, "off")  # approved but not on duty
    volunteers.on_duty(near, 40.6520, 109.8320)
    volunteers.on_duty(far, 40.7500, 109.8320)  # about 11 km north
    created = create(client, desk, tree, audience="on_duty", lat=40.65, lng=109.83, radius_m=3000)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["total"] == 1
    drain(app)
    near_user = client.get("/api/v1/me", headers=near).get_json()["id"]
    assert {r.user_id for r in rows_of(app, body["id"])} == {near_user}
    missing = create(client, desk, tree, audience="on_duty")
    assert missing.status_code == 422
    assert set(missing.get_json()["error"]["fields"]) == {"lat", "lng", "radius_m"}


def test_on_duty_within_a_radius_through_a_pluggable_resolver(app, client, staff, tree, people, monkeypatch):
    calls = []

    def within(jurisdiction, lat, lng, radius_m):
        calls.append((jurisdiction.key, lat, lng, radius_m))
        return [people["v2"], people["q1"], people["v2"]]

    audience = broadcasts.Audience("on_duty", snapshot=within)
    monkeypatch.setitem(broadcasts.AUDIENCES, "on_duty", audience)
    desk = staff("desk-kdl", key="150203")
    created = create(client, desk, tree, audience="on_duty", lat=40.65, lng=109.83, radius_m=3000).get_json()
    assert created["total"] == 2 and created["radius_m"] == 3000
    assert calls == [("150203", 40.65, 109.83, 3000)]
    drain(app)
    assert {r.user_id for r in rows_of(app, created["id"])} == {people["v2"], people["q1"]}


def test_bad_requests_are_422(client, staff, tree):
    desk = staff("desk-kdl", key="150203")
    assert create(client, desk, tree, audience="everyone").status_code == 422
    assert create(client, desk, tree, title="").status_code == 422
    assert create(client, desk, tree, jurisdiction_id=999999).status_code == 404
