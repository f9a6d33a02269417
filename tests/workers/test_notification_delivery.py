"""Outbox delivery: the relay, claims, consent, WeChat's answers one by one, retries, the sweeper."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select

from fakewechat import fake_openid
from workers import notifications as notification_jobs
from workers.runner import AppSimpleWorker
from yijing import jobs
from yijing.extensions import db, redis_client
from yijing.models import Notification, SubscriptionConsent, User
from yijing.models.base import utcnow
from yijing.services import delivery, notifications, outbox

SEND = "/cgi-bin/message/subscribe/send"
REMINDER_TEMPLATE = "DEMO-tmpl-task-reminder"
ALERT_TEMPLATE = "DEMO-tmpl-alert"


def configure(app, monkeypatch, **changes):
    monkeypatch.setitem(app.config, "YIJING", dataclasses.replace(app.config["YIJING"], **changes))


def add_user(name: str, *, openid: bool = True) -> int:
    user = User(
        kind="wechat" if openid else "staff", openid=fake_openid(name) if openid else None, display_name=name
    )
    if not openid:
        user.username = name
    db.session.add(user)
    db.session.commit()
    return user.id


def accept(user_id: int, template_id: str = REMINDER_TEMPLATE, times: int = 1) -> None:
    for _ in range(times):
        notifications.record_consents(user_id, {template_id: "accept"})


def remaining(user_id: int, template_id: str = REMINDER_TEMPLATE) -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(SubscriptionConsent.remaining).where(
            SubscriptionConsent.user_id == user_id, SubscriptionConsent.template_id == template_id
        )
    )


def write(user_id: int, key: str, kind: str = "task.reminder", **kwargs) -> int:
    kwargs.setdefault("title", "夜间巡逻提醒")
    assert outbox.notify(user_id, kind, dedupe_key=key, **kwargs)
    db.session.commit()
    return db.session.scalar(select(Notification.id).where(Notification.dedupe_key == key))


def row(notification_id: int) -> Notification:
    db.session.expire_all()
    return db.session.get(Notification, notification_id)


def drain() -> None:
    AppSimpleWorker([jobs.get_queue(n) for n in jobs.ALL], connection=redis_client()).work(burst=True)


def queued_jobs(name: str):
    return jobs.get_queue(name).get_jobs()


# -- the relay --


def test_commit_enqueues_one_delivery_job_per_batch(app, app_ctx, monkeypatch):
    configure(app, monkeypatch, notify_batch_size=2)
    user_id = add_user("relay")
    for i in range(5):
        outbox.notify(user_id, "task.reminder", title=f"提醒 {i}", dedupe_key=f"relay:{i}")
    assert queued_jobs(jobs.NOTIFY) == []  # nothing before the commit
    db.session.commit()
    batches = queued_jobs(jobs.NOTIFY)
    assert [len(job.args[0]) for job in batches] == [2, 2, 1]
    assert all(job.func_name == notification_jobs.DELIVER for job in batches)
    assert all(job.timeout and job.retries_left == 3 and job.failure_ttl for job in batches)
    ids = sorted(i for job in batches for i in job.args[0])
    assert ids == sorted(db.session.scalars(select(Notification.id)))


def test_urgent_kinds_go_to_the_dispatch_queue(app_ctx):
    user_id = add_user("urgent")
    write(user_id, "urgent:1", kind="task.invitation")
    assert len(queued_jobs(jobs.DISPATCH)) == 1
    assert queued_jobs(jobs.NOTIFY) == []


def test_rollback_enqueues_nothing_and_a_known_event_writes_nothing(app_ctx):
    user_id = add_user("rollback")
    outbox.notify(user_id, "task.reminder", title="x", dedupe_key="rb:1")
    db.session.rollback()
    assert queued_jobs(jobs.NOTIFY) == []
    write(user_id, "rb:2")
    assert outbox.notify(user_id, "task.reminder", title="again", dedupe_key="rb:2") is False
    db.session.commit()
    assert len(queued_jobs(jobs.NOTIFY)) == 1
    assert db.session.query(Notification).count() == 1


# -- sending and WeChat's answers --


def test_sent_with_consent_data_cut_to_fit(app_ctx, fake_wechat):
    user_id = add_user("alice")
    accept(user_id)
    nid = write(
        user_id,
        "send:1",
        title="今晚二十点昆都仑区沼潭街道与友谊社区交界处重点路段夜间巡逻",
        data={"place": "沼潭社区东门", "starts_at": "2026-05-01T12:00:00+00:00"},
        page="pages/task/detail/index?id=7",
    )
    drain()
    sent = row(nid)
    assert sent.status == "sent"
    assert sent.attempts == 1 and sent.sent_at is not None and sent.wechat_msgid
    assert sent.claimed_until is None and sent.last_error is None
    [request] = fake_wechat.state.requests(SEND)
    body = request.json
    assert body["touser"] == fake_openid("alice")
    assert body["template_id"] == REMINDER_TEMPLATE
    assert body["page"] == "pages/task/detail/index?id=7"
    assert body["miniprogram_state"] == "formal"
    assert body["data"]["thing1"]["value"] == "今晚二十点昆都仑区沼潭街道与友谊社区交…"
    assert body["data"]["time2"]["value"] == "2026年05月01日 20:00"
    assert body["data"]["thing3"]["value"] == "沼潭社区东门"
    assert remaining(user_id) == 0  # one consent, one message


def test_no_consent_goes_to_the_inbox_without_calling_wechat(app_ctx, fake_wechat):
    user_id = add_user("bob")
    nid = write(user_id, "noconsent:1")
    drain()
    item = row(nid)
    assert item.status == "inbox_only"
    assert item.last_error.startswith("no_consent")
    assert item.attempts == 0
    assert fake_wechat.state.requests(SEND) == []
    assert [n.id for n in notifications.inbox(user_id, cursor=None, limit=10).items] == [nid]


def test_a_rejection_withdraws_consent(app_ctx, fake_wechat):
    user_id = add_user("carol")
    accept(user_id, times=2)
    notifications.record_consents(user_id, {REMINDER_TEMPLATE: "reject"})
    nid = write(user_id, "rejected:1")
    drain()
    assert row(nid).status == "inbox_only"
    assert fake_wechat.state.requests(SEND) == []


def test_43101_zeroes_the_consent_and_keeps_the_row_in_the_inbox(app_ctx, fake_wechat):
    user_id = add_user("dave")
    accept(user_id, times=3)
    fake_wechat.state.fail(SEND, errcode=43101)
    nid = write(user_id, "43101:1")
    drain()
    item = row(nid)
    assert item.status == "inbox_only"
    assert item.error_code == 43101 and "43101" in item.last_error
    assert remaining(user_id) == 0
    later = write(user_id, "43101:2")
    drain()
    assert row(later).status == "inbox_only"
    assert len(fake_wechat.state.requests(SEND)) == 1  # nothing sent for the second


def test_43101_withdraws_a_long_term_consent(app_ctx, fake_wechat):
    user_id = add_user("dora")
    accept(user_id, ALERT_TEMPLATE)
    fake_wechat.state.fail(SEND, errcode=43101)
    first = write(user_id, "43101:lt:1", kind="alert")
    drain()
    assert row(first).status == "inbox_only"
    [alert] = [s for s in notifications.subscriptions(user_id) if s.template_id == ALERT_TEMPLATE]
    assert alert.can_send is False and alert.last_answer == "reject"
    second = write(user_id, "43101:lt:2", kind="alert")
    drain()
    assert row(second).status == "inbox_only"
    assert len(fake_wechat.state.requests(SEND)) == 1


def test_5xx_is_retried_then_succeeds(app, app_ctx, fake_wechat, monkeypatch):
    configure(app, monkeypatch, notify_retry_backoff=(0,))
    user_id = add_user("erin")
    accept(user_id)
    fake_wechat.state.fail(SEND, http_status=502)
    nid = write(user_id, "5xx:1")
    drain()  # the first attempt fails; its retry job runs in the same drain
    item = row(nid)
    assert item.status == "sent"
    assert item.attempts == 2
    assert len(fake_wechat.state.requests(SEND)) == 2
    assert remaining(user_id) == 0  # the retry used the consent reserved the first time


def test_a_retry_waits_for_its_backoff(app, app_ctx, fake_wechat, monkeypatch):
    configure(app, monkeypatch, notify_retry_backoff=(600,))
    user_id = add_user("frank")
    accept(user_id)
    fake_wechat.state.fail(SEND, http_status=503)
    nid = write(user_id, "backoff:1")
    drain()
    item = row(nid)
    assert item.status == "pending" and item.attempts == 1
    assert "HTTP 503" in item.last_error
    assert item.next_attempt_at > utcnow() + timedelta(seconds=590)
    scheduled = jobs.get_queue(jobs.NOTIFY).scheduled_job_registry.get_job_ids()
    assert len(scheduled) == 1  # the delayed retry, visible in RQ's scheduled registry
    # Early (a duplicate job, a sweeper): not due, so not claimed and not sent.
    assert delivery.deliver_batch([nid]).claimed == []
    assert len(fake_wechat.state.requests(SEND)) == 1


def test_retries_are_bounded(app, app_ctx, fake_wechat, monkeypatch):
    configure(app, monkeypatch, notify_retry_backoff=(0,), notify_max_attempts=3)
    user_id = add_user("gina")
    accept(user_id)
    fake_wechat.state.fail(SEND, http_status=500, times=10)
    nid = write(user_id, "bounded:1")
    drain()
    item = row(nid)
    assert item.status == "failed"
    assert item.attempts == 3
    assert item.last_error.startswith("重试 3 次后仍失败")
    assert len(fake_wechat.state.requests(SEND)) == 3
    assert remaining(user_id) == 1  # the consent was not used: given back


def test_47003_fails_the_row_with_its_reason(app_ctx, fake_wechat):
    user_id = add_user("hank")
    accept(user_id)
    fake_wechat.state.fail(SEND, errcode=47003, errmsg="argument invalid! data.thing1.value is empty")
    nid = write(user_id, "47003:1")
    drain()
    item = row(nid)
    assert item.status == "failed"
    assert item.error_code == 47003
    assert "data.thing1.value is empty" in item.last_error
    assert item.attempts == 1
    assert remaining(user_id) == 1
    assert len(fake_wechat.state.requests(SEND)) == 1


@pytest.mark.parametrize("errcode", [40003, 40037])
def test_other_permanent_answers_fail_without_retry(app_ctx, fake_wechat, errcode):
    user_id = add_user(f"perm{errcode}")
    accept(user_id)
    fake_wechat.state.fail(SEND, errcode=errcode)
    nid = write(user_id, f"perm:{errcode}")
    drain()
    assert row(nid).status == "failed"
    assert row(nid).error_code == errcode
    assert len(fake_wechat.state.requests(SEND)) == 1


def test_a_rate_answer_pauses_every_sender_and_defers_the_batch(app_ctx, fake_wechat):
    first, second = add_user("rate1"), add_user("rate2")
    accept(first)
    accept(second)
    outbox.notify(first, "task.reminder", title="一", dedupe_key="rate:1")
    outbox.notify(second, "task.reminder", title="二", dedupe_key="rate:2")
    db.session.commit()
    fake_wechat.state.fail(SEND, errcode=45009)
    drain()
    rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
    assert [r.status for r in rows] == ["pending", "pending"]
    assert rows[0].attempts == 1 and rows[0].error_code == 45009
    assert rows[1].attempts == 0  # never tried: deferred with the pause
    assert all(r.next_attempt_at > utcnow() + timedelta(seconds=30) for r in rows)
    assert delivery.send_limiter().paused_for() > 30
    assert len(fake_wechat.state.requests(SEND)) == 1


def test_an_expired_token_is_refreshed_once_and_the_send_goes_through(app_ctx, fake_wechat):
    user_id = add_user("ivan")
    accept(user_id, times=2)
    write(user_id, "token:1")
    drain()
    fake_wechat.state.expire_tokens()
    nid = write(user_id, "token:2")
    drain()
    assert row(nid).status == "sent"
    assert len(fake_wechat.state.requests(SEND)) == 3  # ok, 42001, ok after one refresh


def test_a_kind_without_template_and_a_user_without_openid_stay_in_the_inbox(app_ctx, fake_wechat):
    user_id = add_user("judy")
    staff_id = add_user("staff-judy", openid=False)
    accept(user_id)
    unknown = write(user_id, "notemplate:1", kind="something.new")
    staff_row = write(staff_id, "noopenid:1")
    drain()
    assert row(unknown).status == "inbox_only" and row(unknown).last_error.startswith("no_template")
    assert row(staff_row).status == "inbox_only" and row(staff_row).last_error.startswith("no_openid")
    assert fake_wechat.state.requests(SEND) == []
    assert remaining(user_id) == 1


# -- idempotence and races --


def test_a_row_already_sent_is_never_sent_again(app_ctx, fake_wechat):
    user_id = add_user("kim")
    accept(user_id, times=5)
    nid = write(user_id, "once:1")
    drain()
    assert delivery.deliver_batch([nid]).claimed == []
    notification_jobs.deliver([nid])
    assert len(fake_wechat.state.requests(SEND)) == 1
    assert remaining(user_id) == 4


def test_a_claim_is_taken_once(app_ctx):
    user_id = add_user("lee")
    nid = write(user_id, "claim:1")
    assert delivery.claim([nid], "w1") == [nid]
    assert delivery.claim([nid], "w2") == []


def test_two_workers_racing_on_a_row_send_it_once(app, app_ctx, fake_wechat):
    user_id = add_user("mia")
    accept(user_id, times=5)
    nid = write(user_id, "race:1")
    fake_wechat.state.fail(SEND, delay=0.5)  # the first send is slow: the other worker arrives meanwhile
    reports = []
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        with app.app_context():
            barrier.wait()
            reports.append(delivery.deliver_batch([nid], worker=name))
            db.session.remove()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(len(r.claimed) for r in reports) == [0, 1]
    assert len(fake_wechat.state.requests(SEND)) == 1
    assert row(nid).status == "sent"
    assert remaining(user_id) == 4


def test_a_batch_hands_back_what_it_cannot_start_before_its_lease_ends(
    app, app_ctx, fake_wechat, monkeypatch
):
    # No send starts in the last second of a 2-second lease; the first send takes 1.5 s (within
    # the gateway's 2-second time-out), so the second cannot start.
    configure(app, monkeypatch, notify_claim_lease=2)
    first, second = add_user("nina"), add_user("omar")
    accept(first)
    accept(second)
    outbox.notify(first, "task.reminder", title="一", dedupe_key="lease:1")
    outbox.notify(second, "task.reminder", title="二", dedupe_key="lease:2")
    db.session.commit()
    ids = sorted(db.session.scalars(select(Notification.id)))
    fake_wechat.state.fail(SEND, delay=1.5)
    report = delivery.deliver_batch(ids)
    assert report.sent == [ids[0]]
    assert report.released == [ids[1]]
    assert row(ids[1]).claimed_until is None and row(ids[1]).status == "pending"
    notification_jobs.deliver(ids)
    assert row(ids[1]).status == "sent"
    assert len(fake_wechat.state.requests(SEND)) == 2


def test_sends_wait_for_the_shared_rate(app, app_ctx, fake_wechat, monkeypatch):
    # One send a minute, a lease of two seconds: at most one row can go, the rest is handed back.
    configure(app, monkeypatch, wechat_send_rate_per_minute=1, notify_claim_lease=2)
    for i in range(3):
        user_id = add_user(f"slow{i}")
        accept(user_id)
        outbox.notify(user_id, "task.reminder", title="提醒", dedupe_key=f"slow:{i}")
    db.session.commit()
    ids = sorted(db.session.scalars(select(Notification.id)))
    report = delivery.deliver_batch(ids)
    assert len(report.sent) <= 1
    assert sorted(report.sent + report.released) == ids
    assert len(fake_wechat.state.requests(SEND)) == len(report.sent)


# -- the sweeper --


def test_the_sweeper_waits_for_the_grace_period(app, app_ctx):
    user_id = add_user("pat")
    nid = write(user_id, "sweep:1")
    grace = timedelta(seconds=app.config["YIJING"].notify_sweep_grace)
    created = row(nid).created_at
    assert delivery.sweep(now=created + grace - timedelta(seconds=1)) == []
    assert delivery.sweep(now=created + grace + timedelta(seconds=1)) == [nid]
    # Enqueued once; not again until well later (its job may wait in a busy queue).
    assert delivery.sweep(now=created + grace + timedelta(seconds=2)) == []


def test_the_sweeper_delivers_what_the_relay_could_not_enqueue(app, app_ctx, fake_wechat, monkeypatch):
    configure(app, monkeypatch, notify_sweep_grace=0)
    user_id = add_user("quinn")
    accept(user_id)

    def redis_down(*_args, **_kwargs):
        raise RedisConnectionError("Connection refused")

    with monkeypatch.context() as patch:
        patch.setattr("yijing.jobs.enqueue_many", redis_down)
        nid = write(user_id, "lost:1")  # the commit succeeds; the enqueue is lost
    assert queued_jobs(jobs.NOTIFY) == []
    assert row(nid).status == "pending"
    assert notification_jobs.sweep()["rows"] == 1
    drain()
    assert row(nid).status == "sent"
    assert len(fake_wechat.state.requests(SEND)) == 1


# -- the CLI --


def test_cli_shows_the_outbox_and_retries_failed_rows(app, app_ctx, fake_wechat):
    user_id = add_user("rosa")
    accept(user_id)
    fake_wechat.state.fail(SEND, errcode=47003, errmsg="argument invalid! data.time2.value invalid")
    nid = write(user_id, "cli:1")
    drain()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["yijing", "outbox", "--status", "failed"])
    assert result.exit_code == 0, result.output
    assert "failed      1" in result.output
    assert f"#{nid}" in result.output and "data.time2.value invalid" in result.output
    result = runner.invoke(args=["yijing", "outbox", "--retry"])
    assert result.exit_code == 0, result.output
    assert "re-queued 1" in result.output
    drain()
    assert row(nid).status == "sent"
    assert row(nid).attempts == 1


def test_the_cron_process_registers_the_sweeper(app_ctx, monkeypatch):
    from rq.cron import CronScheduler

    from workers import runner

    started = []
    monkeypatch.setattr(CronScheduler, "start", lambda self: started.append(self))
    runner.run_cron()
    [scheduler] = started
    cron_jobs = {job.func_name: job for job in scheduler._cron_jobs}
    sweeper = cron_jobs["workers.notifications.sweep"]
    assert sweeper.interval == 60
    assert sweeper.queue_name == jobs.queue_name(jobs.NOTIFY)
