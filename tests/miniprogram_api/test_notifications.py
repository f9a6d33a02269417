"""The in-app inbox and subscribe-message consents through HTTP."""

from __future__ import annotations

import pytest
from rq import SimpleWorker
from sqlalchemy import update

from yijing import jobs
from yijing.extensions import db, redis_client
from yijing.models import Notification

SEND = "/cgi-bin/message/subscribe/send"
REMINDER = "DEMO-tmpl-task-reminder"
ALERT = "DEMO-tmpl-alert"


@pytest.fixture
def user(client, wechat_login):
    headers = wechat_login("inbox-user")
    user_id = client.get("/api/v1/me", headers=headers).get_json()["id"]
    return user_id, headers


def write(app, user_id, key, kind="task.reminder", title="标题"):
    from yijing.services import outbox

    with app.app_context():
        outbox.notify(user_id, kind, title=title, dedupe_key=key, body="正文", data={"n": key})
        db.session.commit()
        nid = db.session.query(Notification.id).filter_by(dedupe_key=key).scalar()
        db.session.remove()
    return nid


def drain(app):
    with app.app_context():
        SimpleWorker([jobs.get_queue(n) for n in jobs.ALL], connection=redis_client()).work(burst=True)
        db.session.remove()


def test_inbox_needs_login(client):
    assert client.get("/api/v1/notifications").status_code == 401
    assert client.get("/api/v1/notifications/unread-count").status_code == 401


def test_inbox_lists_unread_first_then_read_newest_first_with_a_cursor(app, client, user):
    user_id, headers = user
    ids = [write(app, user_id, f"inbox:{i}") for i in range(5)]
    for nid in (ids[1], ids[3]):
        assert client.post(f"/api/v1/notifications/{nid}/read", headers=headers).status_code == 200
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/notifications", query_string=query, headers=headers).get_json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [n["id"] for n in seen] == [ids[4], ids[2], ids[0], ids[3], ids[1]]
    assert [n["is_read"] for n in seen] == [False, False, False, True, True]
    first = seen[0]
    assert first["title"] == "标题" and first["body"] == "正文" and first["kind"] == "task.reminder"
    assert first["data"] == {"n": "inbox:4"}
    assert first["created_at"].endswith("+00:00")


def test_read_one_read_all_and_unread_count(app, client, user):
    user_id, headers = user
    ids = [write(app, user_id, f"count:{i}") for i in range(3)]
    assert client.get("/api/v1/notifications/unread-count", headers=headers).get_json() == {"unread": 3}
    read = client.post(f"/api/v1/notifications/{ids[0]}/read", headers=headers)
    assert read.status_code == 200 and read.get_json()["is_read"] is True and read.get_json()["read_at"]
    again = client.post(f"/api/v1/notifications/{ids[0]}/read", headers=headers)
    assert again.get_json()["read_at"] == read.get_json()["read_at"]
    assert client.get("/api/v1/notifications/unread-count", headers=headers).get_json() == {"unread": 2}
    assert client.post("/api/v1/notifications/read-all", headers=headers).get_json() == {"updated": 2}
    assert client.get("/api/v1/notifications/unread-count", headers=headers).get_json() == {"unread": 0}


def test_nobody_sees_or_reads_anyone_elses_notifications(app, client, user, wechat_login):
    user_id, headers = user
    nid = write(app, user_id, "private:1")
    other = wechat_login("someone-else")
    assert client.get("/api/v1/notifications", headers=other).get_json()["items"] == []
    response = client.post(f"/api/v1/notifications/{nid}/read", headers=other)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "notification_not_found"
    assert client.post("/api/v1/notifications/read-all", headers=other).get_json() == {"updated": 0}
    assert client.get("/api/v1/notifications/unread-count", headers=headers).get_json() == {"unread": 1}


def test_every_notification_reaches_the_inbox_whatever_wechat_did(app, client, user):
    user_id, headers = user
    ids = [write(app, user_id, f"status:{s}") for s in ("pending", "sent", "inbox_only", "failed")]
    with app.app_context():
        for nid, status in zip(ids, ("pending", "sent", "inbox_only", "failed"), strict=True):
            db.session.execute(update(Notification).where(Notification.id == nid).values(status=status))
        db.session.commit()
        db.session.remove()
    items = client.get("/api/v1/notifications", headers=headers).get_json()["items"]
    assert sorted(n["id"] for n in items) == sorted(ids)


def _subscribe(client, headers, results, **kwargs):
    return client.post(
        "/api/v1/notifications/subscriptions",
        json={"errMsg": "requestSubscribeMessage:ok", **results},
        headers=headers,
        **kwargs,
    )


def _by_template(body):
    return {s["template_id"]: s for s in body}


def test_one_time_consents_are_counted(client, user):
    _, headers = user
    response = _subscribe(client, headers, {REMINDER: "accept", "not-our-template": "accept"})
    assert response.status_code == 200, response.get_json()
    reminder = _by_template(response.get_json())[REMINDER]
    assert reminder["remaining"] == 1 and reminder["can_send"] is True
    assert reminder["kinds"] == ["task.reminder"] and reminder["long_term"] is False
    reminder = _by_template(_subscribe(client, headers, {REMINDER: "accept"}).get_json())[REMINDER]
    assert reminder["remaining"] == 2
    filtered = _by_template(_subscribe(client, headers, {REMINDER: "filter"}).get_json())[REMINDER]
    assert filtered["remaining"] == 2
    rejected = _by_template(_subscribe(client, headers, {REMINDER: "reject"}).get_json())[REMINDER]
    assert rejected["remaining"] == 0 and rejected["last_answer"] == "reject"
    assert rejected["can_send"] is False
    _subscribe(client, headers, {REMINDER: "accept"})
    banned = _by_template(_subscribe(client, headers, {REMINDER: "ban"}).get_json())[REMINDER]
    assert banned["remaining"] == 0 and banned["last_answer"] == "ban"
    listed = _by_template(client.get("/api/v1/notifications/subscriptions", headers=headers).get_json())
    assert listed[REMINDER]["remaining"] == 0
    assert set(listed) >= {REMINDER, ALERT, "DEMO-tmpl-task-invitation"}


def test_a_replayed_subscription_request_counts_once(client, user):
    _, headers = user
    keyed = {**headers, "Idempotency-Key": "sub-1"}
    first = _subscribe(client, keyed, {REMINDER: "accept"})
    second = _subscribe(client, keyed, {REMINDER: "accept"})
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.get_json() == second.get_json()
    listed = _by_template(client.get("/api/v1/notifications/subscriptions", headers=headers).get_json())
    assert listed[REMINDER]["remaining"] == 1


def test_long_term_templates_are_not_counted(app, client, user, fake_wechat):
    user_id, headers = user
    alert = _by_template(_subscribe(client, headers, {ALERT: "accept"}).get_json())[ALERT]
    assert alert["long_term"] is True and alert["remaining"] is None and alert["can_send"] is True
    for i in range(3):
        write(app, user_id, f"alert:{i}", kind="alert", title="暴雨预警")
    drain(app)
    assert len(fake_wechat.state.requests(SEND)) == 3
    alert = _by_template(client.get("/api/v1/notifications/subscriptions", headers=headers).get_json())[ALERT]
    assert alert["can_send"] is True


def test_consent_sent_once_then_inbox_only(app, client, user, fake_wechat):
    user_id, headers = user
    _subscribe(client, headers, {REMINDER: "accept"})
    first = write(app, user_id, "once:1")
    second = write(app, user_id, "once:2")
    drain(app)
    with app.app_context():
        statuses = {n.id: n.status for n in db.session.query(Notification)}
        db.session.remove()
    assert statuses == {first: "sent", second: "inbox_only"}
    assert len(fake_wechat.state.requests(SEND)) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({REMINDER: "maybe"}, "invalid_subscription_result"),
        ({"unknown-template": "accept"}, "no_known_template"),
        ({}, "invalid_input"),
        ({REMINDER: 3}, "invalid_input"),
    ],
)
def test_bad_subscription_results_are_422(client, user, body, code):
    _, headers = user
    response = client.post("/api/v1/notifications/subscriptions", json=body, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == code
