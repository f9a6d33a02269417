"""Messages to the police through HTTP: the resident's side, the desk's inbox, replies and Q&A."""

from __future__ import annotations

import pytest
from sqlalchemy import select


@pytest.fixture
def desk(staff):
    return staff("desk-kdl", "desk", "150203")


def _resident(client, wechat_login, tree, name="alice", key="150203"):
    headers = wechat_login(name)
    if key:
        assert (
            client.put("/api/v1/me/district", json={"district_id": tree[key]}, headers=headers).status_code
            == 200
        )
    return headers


def _write(client, headers, body="小区门口路灯坏了，晚上很黑", **extra):
    response = client.post("/api/v1/messages", json={"body": body, **extra}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _notifications(app, kind):
    from yijing.extensions import db
    from yijing.models import Notification

    with app.app_context():
        return list(db.session.scalars(select(Notification).where(Notification.kind == kind)))


def test_resident_writes_to_their_district_and_reads_the_reply(app, client, tree, wechat_login, desk):
    alice = _resident(client, wechat_login, tree)
    message = _write(client, alice)
    assert message["status"] == "new"
    assert message["district"]["id"] == tree["150203"]
    assert message["replies"] == []

    inbox = client.get("/api/v1/desk/messages", query_string={"status": "new"}, headers=desk).get_json()
    assert [m["id"] for m in inbox["items"]] == [message["id"]]
    replied = client.post(
        f"/api/v1/desk/messages/{message['id']}/replies",
        json={"body": "已通知社区维修，感谢反映"},
        headers=desk,
    )
    assert replied.status_code == 201
    assert replied.get_json()["status"] == "answered"
    assert (
        client.get("/api/v1/desk/messages", query_string={"status": "new"}, headers=desk).get_json()["items"]
        == []
    )

    mine = client.get("/api/v1/messages", headers=alice).get_json()["items"]
    assert [(m["id"], m["status"]) for m in mine] == [(message["id"], "answered")]
    detail = client.get(f"/api/v1/messages/{message['id']}", headers=alice).get_json()
    assert [r["body"] for r in detail["replies"]] == ["已通知社区维修，感谢反映"]
    assert "author_id" not in detail["replies"][0]
    (note,) = _notifications(app, "message.reply")
    assert note.user_id == client.get("/api/v1/me", headers=alice).get_json()["id"]
    assert note.data["message_id"] == message["id"] and note.data["question"] == message["body"][:60]

    closed = client.post(f"/api/v1/desk/messages/{message['id']}/close", json={}, headers=desk)
    assert closed.get_json()["status"] == "closed"
    late = client.post(f"/api/v1/desk/messages/{message['id']}/replies", json={"body": "补充"}, headers=desk)
    assert late.status_code == 409


def test_message_needs_a_district(client, tree, wechat_login):
    nobody = _resident(client, wechat_login, tree, key=None)
    response = client.post("/api/v1/messages", json={"body": "你好"}, headers=nobody)
    assert response.status_code == 422
    assert "district_id" in response.get_json()["error"]["fields"]
    named = _write(client, nobody, district_id=tree["150204"])
    assert named["district"]["id"] == tree["150204"]
    street = client.post(
        "/api/v1/messages", json={"body": "你好", "district_id": tree["150203-01"]}, headers=nobody
    )
    assert street.status_code == 422
    assert client.post("/api/v1/messages", json={"body": "你好"}).status_code == 401


def test_residents_see_only_their_own_messages(client, tree, wechat_login):
    alice = _resident(client, wechat_login, tree, "alice")
    bob = _resident(client, wechat_login, tree, "bob")
    message = _write(client, alice)
    assert client.get("/api/v1/messages", headers=bob).get_json()["items"] == []
    assert client.get(f"/api/v1/messages/{message['id']}", headers=bob).status_code == 404
    consent = client.put(
        f"/api/v1/messages/{message['id']}/consent", json={"publish_consent": True}, headers=bob
    )
    assert consent.status_code == 404


def test_inbox_is_limited_to_the_desks_districts(client, tree, wechat_login, desk, staff):
    other = staff("desk-qs", "desk", "150204")
    city = staff("desk-city", "desk", "150200")
    alice = _resident(client, wechat_login, tree)
    message = _write(client, alice)
    assert client.get("/api/v1/desk/messages", headers=other).get_json()["items"] == []
    assert client.get(f"/api/v1/desk/messages/{message['id']}", headers=other).status_code == 403
    reply = client.post(f"/api/v1/desk/messages/{message['id']}/replies", json={"body": "x"}, headers=other)
    assert reply.status_code == 403
    assert [m["id"] for m in client.get("/api/v1/desk/messages", headers=city).get_json()["items"]] == [
        message["id"]
    ]
    assert client.get("/api/v1/desk/messages", headers=alice).status_code == 403


def test_messages_are_rate_limited_per_user(client, tree, wechat_login):
    alice = _resident(client, wechat_login, tree, "alice")
    bob = _resident(client, wechat_login, tree, "bob")
    for i in range(3):
        _write(client, alice, body=f"留言{i}")
    limited = client.post("/api/v1/messages", json={"body": "第四条"}, headers=alice)
    assert limited.status_code == 429
    _write(client, bob)


def test_qa_needs_both_consents_and_shows_in_the_feed(app, client, tree, wechat_login, desk):
    alice = _resident(client, wechat_login, tree)
    message = _write(client, alice, body="电动车在楼道充电能管吗？我叫张三，住3号楼")
    publish = f"/api/v1/desk/messages/{message['id']}/publish-qa"
    assert client.post(publish, json={}, headers=desk).status_code == 409  # no consent, no answer
    client.post(
        f"/api/v1/desk/messages/{message['id']}/replies", json={"body": "可以，请拨打物业电话"}, headers=desk
    )
    no_consent = client.post(publish, json={}, headers=desk)
    assert no_consent.status_code == 409
    assert no_consent.get_json()["error"]["code"] == "no_resident_consent"

    given = client.put(
        f"/api/v1/messages/{message['id']}/consent", json={"publish_consent": True}, headers=alice
    )
    assert given.get_json()["publish_consent"] is True
    published = client.post(publish, json={"question": "电动车在楼道充电能管吗？"}, headers=desk)
    assert published.status_code == 201
    post_id = published.get_json()["qa_post_id"]
    assert client.post(publish, json={}, headers=desk).status_code == 409  # only once

    feed = client.get("/api/v1/feed", query_string={"district_id": tree["150203"]}).get_json()["items"]
    assert [(p["id"], p["kind"]) for p in feed] == [(post_id, "qa")]
    detail = client.get(f"/api/v1/feed/{post_id}").get_json()
    assert detail["body"] == "问：电动车在楼道充电能管吗？\n\n答：可以，请拨打物业电话"
    assert "张三" not in detail["body"]
    assert len(_notifications(app, "message.qa_published")) == 1
    assert client.get(f"/api/v1/messages/{message['id']}", headers=alice).get_json()["qa_post_id"] == post_id

    # Taking the consent back withdraws the Q&A at once.
    client.put(f"/api/v1/messages/{message['id']}/consent", json={"publish_consent": False}, headers=alice)
    assert client.get("/api/v1/feed", query_string={"district_id": tree["150203"]}).get_json()["items"] == []
    assert client.get(f"/api/v1/feed/{post_id}").status_code == 404


def test_consent_can_be_taken_back_after_the_desk_withdrew_the_qa(client, tree, wechat_login, desk):
    alice = _resident(client, wechat_login, tree)
    message = _write(client, alice, publish_consent=True)
    client.post(f"/api/v1/desk/messages/{message['id']}/replies", json={"body": "已处理"}, headers=desk)
    post_id = client.post(
        f"/api/v1/desk/messages/{message['id']}/publish-qa", json={}, headers=desk
    ).get_json()["qa_post_id"]
    client.post(f"/api/v1/desk/posts/{post_id}/withdraw", json={"reason": "过时"}, headers=desk)
    taken = client.put(
        f"/api/v1/messages/{message['id']}/consent", json={"publish_consent": False}, headers=alice
    )
    assert taken.get_json()["publish_consent"] is False
    assert (
        client.get(f"/api/v1/messages/{message['id']}", headers=alice).get_json()["publish_consent"] is False
    )
    refused = client.post(f"/api/v1/desk/messages/{message['id']}/publish-qa", json={}, headers=desk)
    assert refused.status_code == 409
    client.put(f"/api/v1/messages/{message['id']}/consent", json={"publish_consent": True}, headers=alice)
    again = client.post(f"/api/v1/desk/messages/{message['id']}/publish-qa", json={}, headers=desk)
    assert again.status_code == 201
    assert again.get_json()["qa_post_id"] != post_id
