"""WeChat login, phone binding, tokens and /me through HTTP."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select


def test_login_returns_token_and_me(client, fake_wechat):
    response = client.post("/api/v1/auth/wechat-login", json={"code": "alice.1"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["token"].startswith("yjm_")
    assert body["user"]["kind"] == "wechat"
    assert body["user"]["roles"] == ["resident"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.get_json()["id"] == body["user"]["id"]


def test_same_wechat_user_logs_in_to_the_same_account(client):
    first = client.post("/api/v1/auth/wechat-login", json={"code": "bob.1"}).get_json()
    second = client.post("/api/v1/auth/wechat-login", json={"code": "bob.2"}).get_json()
    assert first["user"]["id"] == second["user"]["id"]
    assert first["token"] != second["token"]


def test_session_key_never_leaves_the_server(app, client, fake_wechat, caplog):
    caplog.set_level(logging.DEBUG)
    response = client.post("/api/v1/auth/wechat-login", json={"code": "carol.1"})
    headers = {"Authorization": f"Bearer {response.get_json()['token']}"}
    me = client.get("/api/v1/me", headers=headers)
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import User

        user = db.session.get(User, response.get_json()["user"]["id"])
        openid, stored = user.openid, user.session_key_enc
    session_key = fake_wechat.state.session_key_for(openid)
    assert session_key
    for text in (response.get_data(as_text=True), me.get_data(as_text=True), caplog.text, stored):
        assert session_key not in text


@pytest.mark.parametrize("code", ["invalid-code", "reused"])
def test_invalid_or_reused_code_is_401(client, code):
    if code == "reused":
        assert client.post("/api/v1/auth/wechat-login", json={"code": "dave.1"}).status_code == 200
        code = "dave.1"
    response = client.post("/api/v1/auth/wechat-login", json={"code": code})
    assert response.status_code == 401
    error = response.get_json()["error"]
    assert error["code"] == "invalid_login_code"
    assert "重新" in error["message"]


def test_wechat_unreachable_is_503_and_creates_nothing(app, client, fake_wechat):
    fake_wechat.state.fail("/sns/jscode2session", http_status=502)
    response = client.post("/api/v1/auth/wechat-login", json={"code": "erin.1"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "wechat_unavailable"
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import User

        assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_wechat_timeout_is_503(client, fake_wechat):
    fake_wechat.state.fail("/sns/jscode2session", delay=3)
    response = client.post("/api/v1/auth/wechat-login", json={"code": "frank.1"})
    assert response.status_code == 503


def test_login_asks_no_access_token(client, fake_wechat):
    client.post("/api/v1/auth/wechat-login", json={"code": "gina.1"})
    assert fake_wechat.state.requests("/cgi-bin/stable_token") == []
    assert fake_wechat.state.requests("/cgi-bin/token") == []


def test_bind_phone_stores_it_encrypted(app, client, wechat_login):
    headers = wechat_login("hank")
    response = client.post("/api/v1/auth/phone", json={"code": "phone-13812345678"}, headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"phone_masked": "138****5678"}
    assert client.get("/api/v1/me", headers=headers).get_json()["phone_masked"] == "138****5678"
    with app.app_context():
        from yijing.extensions import db

        raw = db.session.execute(select(db.text("phone_enc, phone_hash")).select_from(db.text("users"))).one()
        assert "13812345678" not in raw.phone_enc and "13812345678" not in raw.phone_hash


def test_bad_phone_code_is_a_field_error(client, wechat_login):
    headers = wechat_login("ivy")
    response = client.post("/api/v1/auth/phone", json={"code": "invalid-phone"}, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_phone_code"


def test_logout_revokes_the_token(client, wechat_login):
    headers = wechat_login("jack")
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_expired_token_is_401(app, client, wechat_login):
    headers = wechat_login("kate")
    with app.app_context():
        from sqlalchemy import update

        from yijing.extensions import db, redis_client
        from yijing.models import AuthToken
        from yijing.models.base import utcnow

        db.session.execute(update(AuthToken).values(expires_at=utcnow()))
        db.session.commit()
        for key in redis_client().scan_iter("yjtest:tok:*"):
            redis_client().delete(key)
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_expired"


def test_missing_and_garbage_tokens_are_401(client):
    assert client.get("/api/v1/me").get_json()["error"]["code"] == "missing_token"
    response = client.get("/api/v1/me", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"
