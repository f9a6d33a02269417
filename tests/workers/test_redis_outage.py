"""Redis down while clues are submitted and their status changes: nothing is lost, and the
notifications are delivered once Redis is back.

The test runs a Redis of its own on a free port and stops it; the machine's Redis is never touched.
The clue service is built on another branch; ``_clue_submitted_then_accepted`` writes what it writes
(a change and its outbox row in one transaction), twice.
"""

from __future__ import annotations

import dataclasses

import redis as redis_lib
from sqlalchemy import select

from fakewechat import fake_openid
from workers.runner import AppSimpleWorker
from yijing import extensions, jobs
from yijing.actor import Actor
from yijing.extensions import db
from yijing.models import Notification, User
from yijing.services import audit, notifications, outbox

SEND = "/cgi-bin/message/subscribe/send"
CLUE_TEMPLATE = "DEMO-tmpl-clue-progress"


def _point_app_at(app, monkeypatch, url: str) -> None:
    monkeypatch.setitem(
        app.extensions,
        "yijing_redis",
        redis_lib.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2),
    )
    gateway = app.extensions["yijing_wechat"]
    monkeypatch.setitem(app.extensions, "yijing_wechat", gateway)
    extensions.init_wechat(app)  # the gateway keeps its access token in this Redis too


def _clue_submitted_then_accepted(user_id: int, clue_id: int) -> None:
    """Two transactions, each a change with its notification (what the clue service does)."""
    for status, label in (("submitted", "已提交"), ("accepted", "已受理")):
        audit.record(Actor(user_id=user_id), f"clue.{status}", "clue", clue_id)
        outbox.notify(
            user_id,
            "clue.status_changed",
            title=f"您的线索{label}",
            dedupe_key=f"clue:{clue_id}:{status}",
            data={"clue_no": f"XS{clue_id:06d}", "status_label": label},
            page=f"pages/clue/detail/index?id={clue_id}",
        )
        db.session.commit()  # must succeed with Redis down


def test_notifications_written_during_a_redis_outage_are_delivered_when_it_is_back(
    app, app_ctx, fake_wechat, own_redis, monkeypatch
):
    monkeypatch.setitem(app.config, "YIJING", dataclasses.replace(app.config["YIJING"], notify_sweep_grace=0))
    _point_app_at(app, monkeypatch, own_redis.url)
    user = User(kind="wechat", openid=fake_openid("reporter"), display_name="reporter")
    db.session.add(user)
    db.session.commit()
    notifications.record_consents(user.id, {CLUE_TEMPLATE: "accept"})
    notifications.record_consents(user.id, {CLUE_TEMPLATE: "accept"})

    own_redis.stop()
    _clue_submitted_then_accepted(user.id, clue_id=42)
    rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
    assert [r.status for r in rows] == ["pending", "pending"]
    assert fake_wechat.state.requests(SEND) == []

    own_redis.start()  # back, and empty: the relay's jobs never reached it
    assert jobs.get_queue(jobs.NOTIFY).get_jobs() == []
    # The periodic sweeper runs as a job like any other.
    jobs.get_queue(jobs.NOTIFY).enqueue("workers.notifications.sweep")
    AppSimpleWorker([jobs.get_queue(n) for n in jobs.ALL], connection=extensions.redis_client()).work(
        burst=True
    )

    db.session.expire_all()
    rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
    assert [r.status for r in rows] == ["sent", "sent"]
    sent = fake_wechat.state.requests(SEND)
    assert len(sent) == 2
    assert [r.json["data"]["phrase2"]["value"] for r in sent] == ["已提交", "已受理"]
    assert all(r.json["data"]["character_string1"]["value"] == "XS000042" for r in sent)
