"""Liveness and readiness."""

from __future__ import annotations

import socket


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_names_redis_when_it_is_down(make_app):
    other = make_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    response = other.test_client().get("/readyz")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "not_ready"
    assert set(error["fields"]) == {"redis"}
    assert "Redis" in error["message"]


def test_readyz_names_the_database_when_it_is_down(make_app):
    other = make_app(DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/nothing")
    response = other.test_client().get("/readyz")
    assert response.status_code == 503
    assert set(response.get_json()["error"]["fields"]) == {"database"}
