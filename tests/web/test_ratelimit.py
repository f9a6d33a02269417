"""Rate limits in Redis: failed logins per address, staff login lock-out per username."""

from __future__ import annotations


def test_wechat_login_limits_failed_attempts_per_address(make_app):
    client = make_app(LOGIN_RATE_LIMIT="3/minute").test_client()
    codes = [
        client.post("/api/v1/auth/wechat-login", json={"code": f"invalid.{i}"}).status_code for i in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    error = client.post("/api/v1/auth/wechat-login", json={"code": "rl.9"}).get_json()["error"]
    assert error["code"] == "rate_limited"
    assert "每 1 分钟最多 3 次" in error["message"]


def test_many_phones_behind_one_carrier_address_all_log_in(make_app):
    """Carrier NAT: successful logins from one address never count, so nobody behind it is locked out."""
    client = make_app(LOGIN_RATE_LIMIT="3/minute").test_client()
    for i in range(8):
        response = client.post("/api/v1/auth/wechat-login", json={"code": f"phone{i}.x"})
        assert response.status_code == 200
        assert "Retry-After" not in response.headers  # a success tells nobody to wait


def test_a_successful_login_carries_no_retry_after(client, staff):
    staff("fresh", "desk", "150203")
    ok = client.post(
        "/api/v1/desk/auth/login", json={"username": "fresh", "password": "correct horse battery"}
    )
    assert ok.status_code == 200 and "Retry-After" not in ok.headers


def test_staff_login_locks_out_after_repeated_failures(app, client, staff):
    staff("locked", "desk", "150203")
    for _ in range(5):
        response = client.post("/api/v1/desk/auth/login", json={"username": "locked", "password": "wrong"})
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_credentials"
    response = client.post(
        "/api/v1/desk/auth/login", json={"username": "locked", "password": "correct horse battery"}
    )
    assert response.status_code == 429
    other = client.post("/api/v1/desk/auth/login", json={"username": "someone-else", "password": "x"})
    assert other.status_code == 401


def test_successful_staff_logins_do_not_count(client, staff):
    staff("fine", "desk", "150203")
    for _ in range(7):
        response = client.post(
            "/api/v1/desk/auth/login", json={"username": "fine", "password": "correct horse battery"}
        )
        assert response.status_code == 200
