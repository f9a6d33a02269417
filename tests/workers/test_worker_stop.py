"""A worker asked to stop (SIGTERM from a process manager, Ctrl-C under `make run`) stops.

RQ marks an idle worker's stop only by raising out of its loop; the runner, which replaces a
worker that quit on an error, once took that for an error and started a new one, so a stop took
the process manager's kill timeout."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.jobs import worker_env

ROOT = Path(__file__).resolve().parents[2]


def test_an_idle_worker_stops_on_sigterm_without_being_replaced(
    app, app_ctx, fake_wechat, database_url, redis_url, tmp_path
):
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "yijing", "worker", "--no-scheduler"],
            cwd=ROOT,
            env=worker_env(app, database_url, redis_url, fake_wechat.base_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while b"Listening on" not in log_path.read_bytes():
                assert worker.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the worker did not start"
                time.sleep(0.05)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=5) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    text = log_path.read_text()
    assert "warm shut down requested" in text
    assert "starting a new one" not in text
    assert text.count("Listening on") == 1
