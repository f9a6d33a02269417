"""The jobs after a clue's submission: nothing is lost when Redis or WeChat is down."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from sqlalchemy import select

from yijing import create_app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own, on its own port, that the test stops and starts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def _own_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
    app, fake_wechat, staff, tree, places, tmp_path
):
    from rq import SimpleWorker

    from fakewechat import fake_openid
    from workers import clues as clue_jobs
    from workers import queues
    from yijing.extensions import db, limiter, redis_client
    from yijing.models import Clue, Notification

    storage_before = vars(limiter)["_storage"]
    desk = staff("desk-kdl", "desk", "150203")  # logged in before the outage: tokens live in the database
    with (
        _own_redis() as server,
        _second_app(app, server.url, str(tmp_path)) as other,
    ):
        client = other.test_client()
        server.stop()  # Redis is down from here on

        login = client.post("/api/v1/auth/wechat-login", json={"code": "lin.1"})
        assert login.status_code == 200, login.get_json()
        resident = {"Authorization": f"Bearer {login.get_json()['token']}"}
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

        server.start()  # back, and empty (no persistence): the jobs enqueued at commit are gone
        with other.app_context():
            assert clue_jobs.sweep(min_age_seconds=0) == 2
            assert clue_jobs.sweep(min_age_seconds=0) == 2
            assert queues.get_queue(queues.DEFAULT).count == 2  # queued once each: the job ids are unique
            worker = SimpleWorker([queues.get_queue(queues.DEFAULT)], connection=redis_client())
            worker.work(burst=True, with_scheduler=False)
            db.session.remove()
            clue = db.session.get(Clue, clue_id)
            assert clue.content_flag == "pass"
            assert clue.duplicates_checked_at is not None
            assert clue_jobs.sweep(min_age_seconds=0) == 0
            rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
            # Delivery belongs to the notification worker (issue 7); the rows wait for it, exactly once each.
            assert [(n.kind, n.status) for n in rows] == [
                ("clue_received", "pending"),
                ("clue_status", "pending"),
            ]
            db.session.remove()
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
