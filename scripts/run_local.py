"""`make run`: everything a laptop needs, on the embedded defaults.

Starts (or finds) Redis, the fake WeChat server, migrates the database, loads the demo data, then
runs the API under gunicorn, an RQ worker and the periodic-job scheduler until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VAR = ROOT / "var"


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.2)
    raise SystemExit(f"[make run] {what} did not start listening on {host}:{port} within {seconds:.0f}s")


def start(procs: list[subprocess.Popen], args: list[str], log_name: str | None = None, **kwargs: Any) -> None:
    """Start a child process (its output to ``var/<log_name>`` when given) and remember it."""
    if log_name is None:
        procs.append(subprocess.Popen(args, **kwargs))
        return
    with open(VAR / log_name, "ab") as log:  # the child keeps its own copy of the descriptor
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kwargs))


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis(env: dict[str, str], procs: list[subprocess.Popen]) -> None:
    url = env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(url):
        say(f"Redis: using the one at {url}")
        return
    say(f"Redis: nothing answers at {url}.")
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit(
            "[make run] No Redis and no redis-server binary to start one. Install it "
            "(Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`) "
            "or set REDIS_URL to a Redis you can reach, then run `make run` again."
        )
    port = int(os.environ.get("LOCAL_REDIS_PORT", "6390"))
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    say(f"Redis: starting a local redis-server on 127.0.0.1:{port} (data in var/redis, for development only)")
    start(
        procs,
        [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(VAR / "redis"),
            "--save",
            "60 1",
            "--appendonly",
            "no",
        ],
        log_name="redis.log",
    )
    wait_for_port("127.0.0.1", port, "redis-server")
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"


def ensure_fake_wechat(env: dict[str, str], procs: list[subprocess.Popen]) -> None:
    if env.get("WECHAT_API_BASE_URL"):
        say(f"WeChat: using WECHAT_API_BASE_URL={env['WECHAT_API_BASE_URL']}")
        return
    from yijing.config import DEMO_WECHAT_APPID, DEMO_WECHAT_SECRET

    port = int(env.get("FAKE_WECHAT_PORT", "9400"))
    env.setdefault("WECHAT_APPID", DEMO_WECHAT_APPID)
    env.setdefault("WECHAT_SECRET", DEMO_WECHAT_SECRET)
    start(
        procs,
        [
            str(BIN / "python"),
            "-m",
            "fakewechat",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--appid",
            env["WECHAT_APPID"],
            "--secret",
            env["WECHAT_SECRET"],
        ],
        log_name="fakewechat.log",
        env=env,
    )
    wait_for_port("127.0.0.1", port, "the fake WeChat server")
    env["WECHAT_API_BASE_URL"] = f"http://127.0.0.1:{port}"
    say(f"WeChat: fake WeChat server at {env['WECHAT_API_BASE_URL']} (log: var/fakewechat.log)")


def flask(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(BIN / "flask"), "--app", "app", *args], env=env, cwd=ROOT, check=True)


def main() -> None:
    VAR.mkdir(exist_ok=True)
    (ROOT / "instance").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("YIJING_ENV", "development")
    env.setdefault("LOG_JSON", "false")
    procs: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        ensure_redis(env, procs)
        ensure_fake_wechat(env, procs)
        db = env.get("DATABASE_URL") or f"sqlite:///{ROOT / 'instance' / 'yijing.db'} (the embedded default)"
        say(f"Database: {db}")
        flask(env, "db", "upgrade")
        flask(env, "yijing", "seed-demo")
        flask(env, "yijing", "demo-activity")  # once: a month of activity for the desk console
        host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
        workers = env.get("WEB_CONCURRENCY", "2")
        start(
            procs,
            [
                str(BIN / "gunicorn"),
                "app:app",
                "--bind",
                f"{host}:{port}",
                "--workers",
                workers,
                "--worker-class",
                "gthread",
                "--threads",
                "4",
            ],
            env=env,
            cwd=ROOT,
        )
        start(procs, [str(BIN / "flask"), "--app", "app", "yijing", "worker"], env=env, cwd=ROOT)
        start(procs, [str(BIN / "flask"), "--app", "app", "yijing", "cron"], env=env, cwd=ROOT)
        wait_for_port(host, int(port), "the API")
        base = f"http://{host}:{port}"
        say("ready:")
        say(f"  API          {base}/api/v1   (health {base}/healthz, readiness {base}/readyz)")
        say(f"  API docs     {base}/api/v1/docs   (OpenAPI {base}/api/v1/openapi.json)")
        say(f"  fake WeChat  {env['WECHAT_API_BASE_URL']}")
        say(f"  Redis        {env['REDIS_URL']}")
        say("  RQ worker and scheduler: running (queues dispatch, notify, default, reports)")
        say("Ctrl-C stops everything.")
        while all(proc.poll() is None for proc in procs):
            time.sleep(1)
        dead = [p.args[0] if isinstance(p.args, list) else p.args for p in procs if p.poll() is not None]
        say(f"a process exited ({', '.join(map(str, dead))}); stopping the rest")
        stop()
    except KeyboardInterrupt:
        stop()
    except subprocess.CalledProcessError as exc:
        say(f"set-up step failed: {' '.join(map(str, exc.cmd))}")
        for proc in procs:
            proc.terminate()
        raise SystemExit(1) from None


if __name__ == "__main__":
    if urlparse(os.environ.get("DATABASE_URL", "sqlite://")).scheme.startswith("postgresql"):
        say("DATABASE_URL points at PostgreSQL")
    main()
