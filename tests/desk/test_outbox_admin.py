"""The outbox for admins: counts by status, failed rows with WeChat's reasons, retrying them."""

from __future__ import annotations

from fakewechat import fake_openid
from workers.runner import AppSimpleWorker
from yijing import jobs
from yijing.extensions import db, redis_client
from yijing.models import AuditEntry, Notification, User
from yijing.services import notifications, outbox

SEND = "/cgi-bin/message/subscribe/send"


def drain(app):
    with app.app_context():
        AppSimpleWorker([jobs.get_queue(n) for n in jobs.ALL], connection=redis_client()).work(burst=True)


def failed_row(app, fake_wechat):
    with app.app_context():
        user = User(kind="wechat", openid=fake_openid("failing"), display_name="f")
        db.session.add(user)
        db.session.commit()
        notifications.record_consents(user.id, {"DEMO-tmpl-task-reminder": "accept"})
        outbox.notify(user.id, "task.reminder", title="提醒", dedupe_key="admin:1")
        outbox.notify(user.id, "something.else", title="站内", dedupe_key="admin:2")
        db.session.commit()
        db.session.remove()
    fake_wechat.state.fail(SEND, errcode=40003, errmsg="invalid openid")
    drain(app)


def test_city_admin_sees_failed_rows_with_reasons_and_retries_them(app, client, staff, tree, fake_wechat):
    failed_row(app, fake_wechat)
    admin = staff("city-admin", role="admin", key="150200")
    counts = client.get("/api/v1/desk/outbox", headers=admin).get_json()
    assert counts == {"pending": 0, "sent": 0, "inbox_only": 1, "failed": 1}
    page = client.get("/api/v1/desk/outbox/notifications", query_string={"status": "failed"}, headers=admin)
    [item] = page.get_json()["items"]
    assert item["kind"] == "task.reminder" and item["attempts"] == 1
    assert item["error_code"] == 40003 and "invalid openid" in item["last_error"]
    everything = client.get("/api/v1/desk/outbox/notifications", headers=admin).get_json()["items"]
    assert len(everything) == 2
    retried = client.post("/api/v1/desk/outbox/retry", json={"ids": [item["id"]]}, headers=admin)
    assert retried.status_code == 200 and retried.get_json() == {"requeued": 1}
    drain(app)
    with app.app_context():
        assert db.session.get(Notification, item["id"]).status == "sent"
        assert db.session.query(AuditEntry).filter_by(action="outbox.retry").count() == 1


def test_only_city_admins_see_the_outbox(app, client, staff, tree):
    desk = staff("desk", key="150200")
    district_admin = staff("district-admin", role="admin", key="150203")
    for headers in (desk, district_admin):
        assert client.get("/api/v1/desk/outbox", headers=headers).status_code == 403
        assert client.get("/api/v1/desk/outbox/notifications", headers=headers).status_code == 403
        assert client.post("/api/v1/desk/outbox/retry", json={}, headers=headers).status_code == 403
    response = client.get("/api/v1/desk/outbox", headers=district_admin)
    assert response.get_json()["error"]["code"] == "city_admin_required"


def test_bad_status_filter_is_422(client, staff, tree):
    admin = staff("city-admin", role="admin", key="150200")
    response = client.get("/api/v1/desk/outbox/notifications", query_string={"status": "lost"}, headers=admin)
    assert response.status_code == 422
