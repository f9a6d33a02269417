"""`make run`'s launcher: it finds or starts Redis, or says plainly what to install; it never hangs."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest
import redis

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_local.py"


@pytest.fixture
def run_local():
    spec = importlib.util.spec_from_file_location("run_local", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_uses_a_reachable_redis(run_local, redis_url, capsys):
    env = {"REDIS_URL": redis_url}
    procs: list = []
    run_local.ensure_redis(env, procs)
    assert env["REDIS_URL"] == redis_url and procs == []
    assert "using the one at" in capsys.readouterr().out


def test_starts_a_local_redis_server_when_none_answers(run_local, monkeypatch, tmp_path, capsys):
    if run_local.shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary on this machine")
    port = _free_port()
    monkeypatch.setenv("LOCAL_REDIS_PORT", str(port))
    monkeypatch.setattr(run_local, "VAR", tmp_path)
    env = {"REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"}
    procs: list = []
    try:
        run_local.ensure_redis(env, procs)
        assert env["REDIS_URL"] == f"redis://127.0.0.1:{port}/0"
        assert redis.Redis.from_url(env["REDIS_URL"]).ping()
        out = capsys.readouterr().out
        assert "nothing answers" in out and "for development only" in out
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def test_explains_what_to_install_without_a_binary(run_local, monkeypatch):
    monkeypatch.setattr(run_local.shutil, "which", lambda name: None)
    env = {"REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"}
    with pytest.raises(SystemExit) as excinfo:
        run_local.ensure_redis(env, [])
    assert "apt-get install redis-server" in str(excinfo.value)
