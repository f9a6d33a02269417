"""The jobs after a clue's submission: nothing is lost when Redis or WeChat is down."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import select

from yijing import create_app


@contextmanager
def _second_app(app, redis_url: str, media_root: str):
    """The test app's twin on the same database but its own Redis; the shared extensions (bound to the
    last app initialised) are given back to the test app afterwards."""
    from yijing.extensions import db, limiter

    saved = {ext: dict(vars(ext)) for ext in (limiter,)}
    config = dataclasses.replace(app.config["YIJING"], redis_url=redis_url, media_root=media_root)
    other = create_app(config)
    other.config["TESTING"] = True
    try:
        yield other
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
        for ext, state in saved.items():
            vars(ext).clear()
            vars(ext).update(state)


def test_a_clue_survives_a_redis_outage_and_its_jobs_run_when_redis_is_back(
    app, fake_wechat, staff, tree, places, tmp_path, own_redis
):
    from rq import SimpleWorker

    from fakewechat import fake_openid
    from workers import clues as clue_jobs
    from workers import notifications as notification_jobs
    from yijing import jobs
    from yijing.extensions import db, limiter, redis_client
    from yijing.models import Clue, Notification
    from yijing.models.base import utcnow
    from yijing.services import delivery

    storage_before = vars(limiter)["_storage"]
    desk = staff("desk-kdl", "desk", "150203")  # logged in before the outage: tokens live in the database
    with (
        _second_app(app, own_redis.url, str(tmp_path)) as other,
    ):
        client = other.test_client()
        own_redis.stop()  # Redis is down from here on

        login = client.post("/api/v1/auth/wechat-login", json={"code": "lin.1"})
        assert login.status_code == 200, login.get_json()
        resident = {"Authorization": f"Bearer {login.get_json()['token']}"}
        consent = client.post(  # two one-time consents to the clue-progress template, while Redis is down
            "/api/v1/notifications/subscriptions",
            json={"errMsg": "requestSubscribeMessage:ok", "DEMO-tmpl-clue-progress": "accept"},
            headers=resident,
        )
        assert consent.status_code == 200, consent.get_json()
        client.post(
            "/api/v1/notifications/subscriptions",
            json={"errMsg": "requestSubscribeMessage:ok", "DEMO-tmpl-clue-progress": "accept"},
            headers=resident,
        )
        body = {
            "category": "safety_hazard",
            "description": "楼道里堆满了纸箱，堵住了消防通道",
            "place": places["kundulun"],
        }
        submitted = client.post("/api/v1/clues", json=body, headers={**resident, "Idempotency-Key": "o-1"})
        assert submitted.status_code == 201, submitted.get_json()
        clue_id = submitted.get_json()["id"]
        accepted = client.post(
            f"/api/v1/desk/clues/{clue_id}/transitions",
            json={"to": "accepted", "public_note": "已通知物业清理"},
            headers=desk,
        )
        assert accepted.status_code == 200, accepted.get_json()
        assert client.get(f"/api/v1/clues/{clue_id}", headers=resident).status_code == 200

        with other.app_context():
            clue = db.session.get(Clue, clue_id)
            assert clue.content_checked_at is None and clue.duplicates_checked_at is None
            rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
            assert [(n.kind, n.status) for n in rows] == [
                ("clue_received", "pending"),
                ("clue_status", "pending"),
            ]
            assert {n.user_id for n in rows} == {login.get_json()["user"]["id"]}
            db.session.remove()

        own_redis.start()  # back, and empty (no persistence): the jobs enqueued at commit are gone
        with other.app_context():
            assert clue_jobs.sweep(min_age_seconds=0) == 2
            assert clue_jobs.sweep(min_age_seconds=0) == 2
            assert jobs.get_queue(jobs.DEFAULT).count == 2  # queued once each: the job ids are unique
            worker = SimpleWorker([jobs.get_queue(jobs.DEFAULT)], connection=redis_client())
            worker.work(burst=True, with_scheduler=False)
            db.session.remove()
            clue = db.session.get(Clue, clue_id)
            assert clue.content_flag == "pass"
            assert clue.duplicates_checked_at is not None
            assert clue_jobs.sweep(min_age_seconds=0) == 0
            rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
            assert [(n.kind, n.status) for n in rows] == [
                ("clue_received", "pending"),
                ("clue_status", "pending"),
            ]
            db.session.remove()
            # The outbox sweeper finds the rows whose relay was lost with Redis; a worker delivers them.
            swept = delivery.sweep(now=utcnow() + timedelta(hours=1))
            assert len(swept) == 2
            notification_jobs.enqueue_delivery(swept)
            names = [jobs.get_queue(jobs.DISPATCH), jobs.get_queue(jobs.NOTIFY)]
            SimpleWorker(names, connection=redis_client()).work(burst=True, with_scheduler=False)
            db.session.remove()
            rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
            assert [(n.kind, n.status) for n in rows] == [("clue_received", "sent"), ("clue_status", "sent")]
            assert delivery.sweep(now=utcnow() + timedelta(hours=2)) == []
            db.session.remove()
        sends = fake_wechat.state.requests("/cgi-bin/message/subscribe/send")
        assert len(sends) == 2, "each notification is sent once"
        assert {r.json["touser"] for r in sends} == {fake_openid("lin")}
        checks = fake_wechat.state.requests("/wxa/msg_sec_check")
        assert len(checks) == 1
        assert checks[0].json["openid"] == fake_openid("lin") and checks[0].json["scene"] == 3
    assert vars(limiter)["_storage"] is storage_before  # the test app's limiter is its own again


def test_a_wechat_outage_leaves_the_clue_unchecked_but_kept(
    app, client, wechat_login, report_clue, fake_wechat, run_jobs
):
    from yijing.extensions import db
    from yijing.models import Clue
    from yijing.services import clues

    fake_wechat.state.fail("/wxa/msg_sec_check", http_status=502, times=5)
    clue_id = report_clue(wechat_login("mo")).get_json()["id"]
    run_jobs("default")  # the check fails and is scheduled for a retry
    with app.app_context():
        clue = db.session.get(Clue, clue_id)
        assert clue is not None and clue.status == "submitted"
        assert clue.content_checked_at is None
        assert clue.duplicates_checked_at is not None  # the other job did not wait for WeChat
        fake_wechat.state.reset()
        assert clues.check_content(clue_id) == "pass"
        db.session.remove()


def test_risky_text_flags_the_clue_for_the_desk_and_hides_nothing(
    app, client, wechat_login, report_clue, staff, run_jobs
):
    reporter = wechat_login("nia")
    clue_id = report_clue(reporter, category="drugs", description="有人在出租屋里贩卖风险物品").get_json()[
        "id"
    ]
    run_jobs("default")
    desk = client.get(f"/api/v1/desk/clues/{clue_id}", headers=staff("desk-kdl", "desk", "150203")).get_json()
    assert (desk["content_flag"], desk["content_label"]) == ("risky", 20006)
    assert desk["events"][-1]["kind"] == "content_flagged"
    mine = client.get(f"/api/v1/clues/{clue_id}", headers=reporter).get_json()
    assert mine["status"] == "submitted" and len(mine["timeline"]) == 1  # the reporter sees no flag


def test_a_refused_check_is_recorded_as_skipped(app, wechat_login, report_clue, fake_wechat, run_jobs):
    from yijing.extensions import db
    from yijing.models import Clue

    fake_wechat.state.fail("/wxa/msg_sec_check", errcode=40003)  # e.g. the openid is not recent enough
    clue_id = report_clue(wechat_login("oz")).get_json()["id"]
    run_jobs("default")
    with app.app_context():
        clue = db.session.get(Clue, clue_id)
        assert clue.content_flag == "skipped" and clue.content_checked_at is not None
        db.session.remove()
