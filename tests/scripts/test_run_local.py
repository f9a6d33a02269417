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


def test_a_taken_port_stops_the_run_before_anything_starts_and_names_the_setting(run_local):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not run_local.port_free("127.0.0.1", port)
        with pytest.raises(SystemExit) as excinfo:
            run_local.require_free_port("127.0.0.1", port, "the API", "PORT")
    message = str(excinfo.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert f"PORT={port + 1} make run" in message
    assert run_local.port_free("127.0.0.1", port)


def test_a_child_that_dies_before_listening_is_reported_with_its_log(run_local, tmp_path):
    import subprocess
    import sys

    log = tmp_path / "child.log"
    log.write_text("Traceback ...\nOSError: [Errno 98] Address already in use\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(SystemExit) as excinfo:
        run_local.wait_for_port("127.0.0.1", _free_port(), "the fake WeChat server", proc=proc, log=log)
    assert "exited (status 3) before listening" in str(excinfo.value)
    assert "Address already in use" in str(excinfo.value)


def test_periodic_jobs_routine_lines_stay_off_the_terminal(run_local):
    keep = run_local.QuietPeriodic(run_local.periodic_job_names())
    assert "workers.feed.publish_due" in keep.periodic
    job = "fb7f2de9-18bc-413b-b626-94765be59258"
    other = "0c0ffee0-0000-4000-8000-000000000001"
    lines = {
        f"t INFO rq.worker: Worker w: h14-default: workers.feed.publish_due() ({job})": False,
        "t INFO rq.worker: Successfully completed workers.feed.publish_due() job in 0:00:00.002s on w": False,
        f"t INFO rq.worker: Worker w: h14-default: Job OK ({job})": False,
        f"t INFO rq.worker: Worker w: job {job} result is kept for 500 seconds": False,
        "t INFO rq.cron: Enqueued job publish_due to queue h14-default": False,
        "t INFO rq.worker: Worker w: cleaning registries for queue: h14-default": False,
        "t WARNING yijing.services.duty: duty index was missing and has been rebuilt": True,
        f"t INFO rq.worker: Worker w: h14-notify: workers.notifications.deliver([1, 2]) ({other})": True,
        f"t INFO rq.worker: Worker w: h14-notify: Job OK ({other})": True,
        f"t ERROR rq.worker: Worker w: job {job} failed": True,
    }
    assert {line: keep.show(line) for line in lines} == lines


def test_the_ready_banner_shows_the_console_and_how_to_log_in(run_local):
    banner = "\n".join(
        run_local.ready_banner(
            "http://127.0.0.1:8000",
            {"WECHAT_API_BASE_URL": "http://127.0.0.1:9400", "REDIS_URL": "redis://127.0.0.1:6379/0"},
        )
    )
    assert "desk console http://127.0.0.1:8000/desk/" in banner
    assert "admin / demo-admin-2026" in banner
    assert "http://127.0.0.1:8000/api/v1/auth/wechat-login" in banner and '"code": "alice.1"' in banner
