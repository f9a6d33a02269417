"""`make run`: everything a laptop needs, on the embedded defaults.

Starts (or finds) Redis, the fake WeChat server, migrates the database, loads the demo data, then
runs the API under gunicorn, an RQ worker and the periodic-job scheduler until Ctrl-C.

Every port is checked before anything starts: a port already taken stops the run with a sentence
naming it and the setting that moves it. The worker's and the scheduler's whole output goes to
``var/worker.log`` and ``var/cron.log``; the terminal shows their warnings and errors and the jobs
a person caused, not the routine lines of the periodic jobs (every 30–60 seconds).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any
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


def port_free(host: str, port: int) -> bool:
    """True when a server could listen on ``host:port`` now (as gunicorn would: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def require_free_port(host: str, port: int, what: str, setting: str) -> None:
    """Stop at once, saying which port is taken and how to choose another, before anything starts."""
    if not port_free(host, port):
        raise SystemExit(
            f"[make run] port {port} on {host} is already in use, so {what} cannot listen there. "
            f"Stop whatever holds it (another `make run`? `ss -ltnp 'sport = :{port}'` shows it) "
            f"or choose another port: `{setting}={port + 1} make run`."
        )


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for_port(
    host: str,
    port: int,
    what: str,
    seconds: float = 20,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Wait until ``host:port`` answers; stop with the reason when ``proc`` exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            detail = f" The end of {log.name}:\n{tail(log)}" if log else " Its output is above."
            raise SystemExit(f"[make run] {what} exited (status {proc.returncode}) before listening.{detail}")
        if port_open(host, port):
            return
        time.sleep(0.2)
    raise SystemExit(f"[make run] {what} did not start listening on {host}:{port} within {seconds:.0f}s")


class QuietPeriodic:
    """Which worker and scheduler lines reach the terminal: not the periodic jobs' routine INFO lines.

    A line is kept unless it is INFO and either comes from RQ's cron scheduler, is a routine
    housekeeping line, or belongs to a run of a periodic job (its function named, or its job id seen
    with such a function earlier). Warnings and errors are always kept.
    """

    _JOB_START = re.compile(r": (?P<func>[\w.]+)\(.*\) \((?P<id>[0-9a-f-]{8,})\)\s*$")
    _ROUTINE = ("cleaning registries", "cleaning group registries", "result is kept for", "rq.cron:")

    def __init__(self, periodic: Iterable[str]) -> None:
        self.periodic = frozenset(periodic)
        self._ids: set[str] = set()

    def show(self, line: str) -> bool:
        if " INFO " not in line:
            return True
        start = self._JOB_START.search(line)
        if start and start["func"] in self.periodic:
            self._ids.add(start["id"])
            return False
        if any(marker in line for marker in self._ROUTINE):
            return False
        if any(job_id in line for job_id in self._ids):
            return False
        return not any(f"{name}()" in line for name in self.periodic)


def periodic_job_names() -> list[str]:
    """Dotted names of the periodic jobs (``workers.feed.publish_due``), from ``workers/schedule.py``."""
    from workers.schedule import PERIODIC_JOBS

    return [f"{job.func.__module__}.{job.func.__name__}" for job in PERIODIC_JOBS]


def start_filtered(
    procs: list[subprocess.Popen], args: list[str], log_name: str, keep: QuietPeriodic, **kwargs: Any
) -> None:
    """Start a child whose whole output goes to ``var/<log_name>`` and the lines ``keep`` shows to us."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", **kwargs
    )
    procs.append(proc)

    def pump(stream: IO[str], log_path: Path) -> None:
        with open(log_path, "a", encoding="utf-8") as log:
            for line in stream:
                log.write(line)
                log.flush()
                if keep.show(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()

    threading.Thread(target=pump, args=(proc.stdout, VAR / log_name), daemon=True).start()


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
    require_free_port("127.0.0.1", port, "a local redis-server", "LOCAL_REDIS_PORT")
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
    wait_for_port("127.0.0.1", port, "redis-server", proc=procs[-1], log=VAR / "redis.log")
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"


def ensure_fake_wechat(env: dict[str, str], procs: list[subprocess.Popen]) -> None:
    if env.get("WECHAT_API_BASE_URL"):
        say(f"WeChat: using WECHAT_API_BASE_URL={env['WECHAT_API_BASE_URL']}")
        return
    from yijing.config import DEMO_WECHAT_APPID, DEMO_WECHAT_SECRET

    port = int(env.get("FAKE_WECHAT_PORT", "9400"))
    require_free_port("127.0.0.1", port, "the fake WeChat server", "FAKE_WECHAT_PORT")
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
        cwd=ROOT,  # a development tool, run from the checkout (it is not part of the installed package)
    )
    wait_for_port("127.0.0.1", port, "the fake WeChat server", proc=procs[-1], log=VAR / "fakewechat.log")
    env["WECHAT_API_BASE_URL"] = f"http://127.0.0.1:{port}"
    say(f"WeChat: fake WeChat server at {env['WECHAT_API_BASE_URL']} (log: var/fakewechat.log)")


def ready_banner(base: str, env: dict[str, str]) -> list[str]:
    """What ``make run`` prints once everything listens: where things are and how to log in."""
    from yijing.demo.seed import DEMO_STAFF

    staff = ", ".join(f"{username} / {password}" for username, _, password, _, _ in DEMO_STAFF)
    return [
        "ready:",
        f"  desk console {base}/desk/   (staff logins: {staff})",
        f"  API          {base}/api/v1   (health {base}/healthz, readiness {base}/readyz)",
        f"  API docs     {base}/api/v1/docs   (OpenAPI {base}/api/v1/openapi.json)",
        "  resident     log in through the fake WeChat with any code (alice.<anything> is one user):",
        f"               curl -s {base}/api/v1/auth/wechat-login -H 'Content-Type: application/json' "
        """-d '{"code": "alice.1"}'""",
        "               then send the token as `Authorization: Bearer <token>`",
        f"  fake WeChat  {env['WECHAT_API_BASE_URL']}",
        f"  Redis        {env['REDIS_URL']}",
        "  RQ worker and scheduler: running (queues dispatch, notify, default, reports); periodic jobs'",
        "               routine lines go to var/worker.log and var/cron.log only",
        "Ctrl-C stops everything.",
    ]


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
    host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
    try:
        require_free_port(host, int(port), "the API", "PORT")
        ensure_redis(env, procs)
        ensure_fake_wechat(env, procs)
        db = env.get("DATABASE_URL") or f"sqlite:///{ROOT / 'instance' / 'yijing.db'} (the embedded default)"
        say(f"Database: {db}")
        flask(env, "db", "upgrade")
        flask(env, "yijing", "seed-demo")
        flask(env, "yijing", "demo-activity")  # once: a month of activity for the desk console
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
        api = procs[-1]
        keep = QuietPeriodic(periodic_job_names())
        flask_cmd = [str(BIN / "flask"), "--app", "app", "yijing"]
        start_filtered(procs, [*flask_cmd, "worker"], "worker.log", keep, env=env, cwd=ROOT)
        start_filtered(procs, [*flask_cmd, "cron"], "cron.log", keep, env=env, cwd=ROOT)
        wait_for_port(host, int(port), "the API (gunicorn)", seconds=30, proc=api)
        for line in ready_banner(f"http://{host}:{port}", env):
            say(line)
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
