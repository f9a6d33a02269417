"""One JSON error shape everywhere, request ids, structured logs."""

from __future__ import annotations

import json
import logging


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.content_type.startswith("application/json")
    error = response.get_json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"]), "message must be Chinese"
    assert isinstance(error["fields"], dict)
    return error


def test_unknown_url_is_404(client):
    assert_error_shape(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/api/v1/me")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_malformed_json_is_400(client):
    response = client.post("/api/v1/auth/wechat-login", data='{"code": ', content_type="application/json")
    assert_error_shape(response, 400, "invalid_json")


def test_validation_errors_fill_fields_in_chinese(client):
    response = client.post("/api/v1/auth/wechat-login", json={"code": "", "extra": 1})
    error = assert_error_shape(response, 422, "invalid_input")
    assert "code" in error["fields"]
    assert error["fields"]["extra"] == ["不认识的字段"]
    missing = client.post("/api/v1/auth/wechat-login", json={})
    assert assert_error_shape(missing, 422, "invalid_input")["fields"]["code"] == ["必填"]


def test_expired_or_bad_token_shape(client):
    assert_error_shape(client.get("/api/v1/me", headers={"Authorization": "Bearer x"}), 401, "invalid_token")


def test_unexpected_exception_is_500_in_the_shape(make_app):
    other = make_app()
    other.config["PROPAGATE_EXCEPTIONS"] = False

    @other.get("/boom")
    def boom():
        raise RuntimeError("bug")

    assert_error_shape(other.test_client().get("/boom"), 500, "internal_error")


def test_request_id_is_returned_and_kept(client):
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) >= 16
    given = client.get("/healthz", headers={"X-Request-ID": "abc12345-trace"})
    assert given.headers["X-Request-ID"] == "abc12345-trace"
    unsafe = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces!"})
    assert unsafe.headers["X-Request-ID"] != "bad id with spaces!"


def test_logs_are_json_with_the_request_id(client, capfd):
    response = client.get("/api/v1/me", headers={"X-Request-ID": "req-for-log-1"})
    assert response.status_code == 401
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "yijing.access"]
    assert access and access[-1]["request_id"] == "req-for-log-1"
    assert access[-1]["status"] == 401 and access[-1]["path"] == "/api/v1/me"
    assert logging.getLogger().level <= logging.INFO
