"""A worker killed with SIGKILL in the middle of a batch: after the sweeper, everything is delivered,
and nothing twice except the one request that was in flight at the moment of the kill."""

from __future__ import annotations

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
from yijing.models.base import utcnow
from yijing.services import notifications, outbox

ROOT = Path(__file__).resolve().parents[2]
SEND = "/cgi-bin/message/subscribe/send"
ROWS = 20
SENT_BEFORE_KILL = 5
LEASE = 6  # seconds: short, so that the test does not wait long for the dead worker's claims to lapse


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_mid_batch_then_sweeper_delivers_everything_once(
    app, app_ctx, fake_wechat, database_url, redis_url, tmp_path, record_property
):
    names = [f"crash{i:02d}" for i in range(ROWS)]
    for name in names:
        user = User(kind="wechat", openid=fake_openid(name), display_name=name)
        db.session.add(user)
        db.session.commit()
        notifications.record_consents(user.id, {"DEMO-tmpl-task-reminder": "accept"})
    user_ids = list(db.session.scalars(select(User.id).order_by(User.id)))
    for i, user_id in enumerate(user_ids):
        outbox.notify(user_id, "task.reminder", title=f"巡逻提醒 {i}", dedupe_key=f"crash:{i}")
    db.session.commit()  # one delivery job for the whole batch
    assert len(jobs.get_queue(jobs.NOTIFY).get_jobs()) == 1

    # WeChat answers the first five sends, then sits on the sixth.
    fake_wechat.state.fail(SEND, times=SENT_BEFORE_KILL)
    fake_wechat.state.fail(SEND, delay=10)
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
                "notify",
            ],
            cwd=ROOT,
            env=worker_env(
                app,
                database_url,
                redis_url,
                fake_wechat.base_url,
                WECHAT_TIMEOUT="30",  # the worker waits on the hung request until it is killed
                NOTIFY_CLAIM_LEASE=str(LEASE),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(
                lambda: len(fake_wechat.state.requests(SEND)) > SENT_BEFORE_KILL or worker.poll() is not None,
                60,
                "the worker to reach the sixth send",
            )
            assert worker.poll() is None, log_path.read_text(errors="replace")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    requests_at_kill = fake_wechat.state.requests(SEND)
    assert len(requests_at_kill) == SENT_BEFORE_KILL + 1
    in_flight = requests_at_kill[-1].json["touser"]

    db.session.expire_all()
    by_status = dict(
        db.session.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
    )
    assert by_status == {"sent": SENT_BEFORE_KILL, "pending": ROWS - SENT_BEFORE_KILL}
    # The dead worker's claims hold until its lease ends; nobody may send those rows before.
    assert notification_jobs.sweep()["rows"] == 0
    latest_claim = db.session.scalar(select(func.max(Notification.claimed_until)))
    _wait_for(lambda: utcnow() > latest_claim, LEASE + 10, "the dead worker's lease to end")

    assert notification_jobs.sweep()["rows"] == ROWS - SENT_BEFORE_KILL
    AppSimpleWorker([jobs.get_queue(n) for n in jobs.ALL], connection=redis_client()).work(burst=True)

    db.session.expire_all()
    assert db.session.scalar(select(func.count()).where(Notification.status != "sent")) == 0
    received = Counter(r.json["touser"] for r in fake_wechat.state.requests(SEND))
    assert set(received) == {fake_openid(n) for n in names}  # every notification delivered
    duplicates = {openid: count for openid, count in received.items() if count > 1}
    record_property("duplicates", duplicates)
    print(f"duplicate sends after SIGKILL: {duplicates or 'none'} (in flight at the kill: {in_flight})")
    assert set(duplicates) <= {in_flight}
    assert all(count == 2 for count in duplicates.values())
