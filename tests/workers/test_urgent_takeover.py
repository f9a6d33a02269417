"""A worker SIGKILLed while it holds urgent rows (nearby-dispatch invitations): another worker delivers
them within DISPATCH_RING_TIMEOUT_SECONDS, not after the ordinary 300 s claim lease.

Urgent rows are claimed for a quarter of the ring timeout and swept on the dispatch queue every
``URGENT_SWEEP_SECONDS``. The test runs with a short ring timeout (so the lease is a few seconds) and
plays the periodic sweeper itself every half second; it prints the measured takeover time.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from fakewechat import fake_openid
from tests.fixtures.jobs import worker_env
from workers import notifications as notification_jobs
from workers.runner import AppSimpleWorker
from yijing import jobs
from yijing.extensions import db, redis_client
from yijing.models import Notification, User
from yijing.services import notifications, outbox

ROOT = Path(__file__).resolve().parents[2]
SEND = "/cgi-bin/message/subscribe/send"
ROWS = 12
SENT_BEFORE_KILL = 3
RING_TIMEOUT = 20  # seconds: the urgent lease is a quarter of it
ORDINARY_LEASE = 300


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_killed_workers_invitations_are_taken_over_within_the_ring_timeout(
    app, app_ctx, fake_wechat, database_url, redis_url, tmp_path, record_property, monkeypatch
):
    config = dataclasses.replace(
        app.config["YIJING"], notify_claim_lease=ORDINARY_LEASE, dispatch_ring_timeout_seconds=RING_TIMEOUT
    )
    monkeypatch.setitem(app.config, "YIJING", config)
    template = config.wechat_templates.for_kind("task.invitation")
    assert template is not None and template.urgent
    names = [f"urgent{i:02d}" for i in range(ROWS)]
    for name in names:
        user = User(kind="wechat", openid=fake_openid(name), display_name=name)
        db.session.add(user)
        db.session.commit()
        notifications.record_consents(user.id, {template.template_id: "accept"})
    for i, user_id in enumerate(db.session.scalars(select(User.id).order_by(User.id))):
        outbox.notify(user_id, "task.invitation", title=f"紧急任务 {i}", dedupe_key=f"urgent:{i}")
    db.session.commit()  # one delivery job on the dispatch queue
    assert len(jobs.get_queue(jobs.DISPATCH).get_jobs()) == 1

    fake_wechat.state.fail(SEND, times=SENT_BEFORE_KILL)
    fake_wechat.state.fail(SEND, delay=10)  # WeChat sits on the next send
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "app",
                "yijing",
                "worker",
                "--burst",
                "--queues",
                "dispatch",
            ],
            cwd=ROOT,
            env=worker_env(
                app,
                database_url,
                redis_url,
                fake_wechat.base_url,
                WECHAT_TIMEOUT="30",
                NOTIFY_CLAIM_LEASE=str(ORDINARY_LEASE),
                DISPATCH_RING_TIMEOUT_SECONDS=str(RING_TIMEOUT),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(
                lambda: len(fake_wechat.state.requests(SEND)) > SENT_BEFORE_KILL or worker.poll() is not None,
                60,
                "the worker to reach the hung send",
            )
            assert worker.poll() is None, log_path.read_text(errors="replace")
            worker.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    db.session.expire_all()
    claimed_until = db.session.scalar(select(func.max(Notification.claimed_until)))
    created = db.session.scalar(select(func.min(Notification.created_at)))
    assert (claimed_until - created).total_seconds() < RING_TIMEOUT  # not the 300 s lease

    # The periodic urgent sweep (every half second here) and a live worker take the rows over.
    def delivered() -> bool:
        notification_jobs.sweep_urgent()
        AppSimpleWorker([jobs.get_queue(jobs.DISPATCH)], connection=redis_client()).work(burst=True)
        db.session.expire_all()
        left = db.session.scalar(select(func.count()).where(Notification.status != "sent"))
        if left:
            time.sleep(0.5)
        return left == 0

    _wait_for(delivered, RING_TIMEOUT + 10, "the invitations to be taken over")
    takeover = time.monotonic() - killed_at
    record_property("urgent_takeover_seconds", round(takeover, 1))
    print(f"urgent rows taken over {takeover:.1f} s after SIGKILL (ring timeout {RING_TIMEOUT} s)")
    assert takeover < RING_TIMEOUT
    received = Counter(r.json["touser"] for r in fake_wechat.state.requests(SEND))
    assert set(received) == {fake_openid(n) for n in names}
    assert sum(received.values()) <= ROWS + 1  # only the send in flight at the kill may go twice
