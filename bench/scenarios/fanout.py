"""Fan-out of a mass alert to 100,000 users, delivered to the fake WeChat server by 2 RQ workers.

What it measures (``BENCH_FANOUT_N`` or ``--n`` recipients, ``--workers`` worker processes, default 2):

* ``fanout:rows_written`` — outbox rows written per second by the fan-out (bulk INSERTs of
  ``BROADCAST_BATCH_SIZE`` rows, from the broadcast's creation to its last chunk); p50/p99 are the
  per-chunk durations.
* ``fanout:delivered`` — subscribe messages delivered per second (from the broadcast's creation to the
  last ``sent_at``): claim, consent check, the shared Redis rate limiter, the gateway, one commit per
  message. p50/p99 are per message, from its row being written to it being marked sent.
* ``fanout:direct_posts`` — the baseline: the same requests (same JSON bodies, same access token, one
  keep-alive HTTP session per process) posted to the same fake server from the same number of
  processes, with nothing of the project in between. ``fanout:delivered`` reports its ratio to it.

The sending limits are lifted (``WECHAT_SEND_RATE_PER_MINUTE``/``BROADCAST_RATE_PER_MINUTE``) so that
the figures show what the machinery costs, not the configured pace.

Running it
----------
Inside the harness (``python -m bench.run --scenarios fanout``), add ``fanout`` to ``_MODULES`` in
``bench/scenarios/__init__.py``: the harness gives it the migrated database, the Redis URL and the
fake WeChat server (appid ``wx-bench-appid``); ``run(ctx)`` returns three ``Result`` rows.

On its own, from the repository root::

    python -m bench.scenarios.fanout                 # 100,000 recipients, 2 workers
    python -m bench.scenarios.fanout --n 10000 --workers 2

It then (re)creates the PostgreSQL database ``BENCH_FANOUT_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/yijing_bench_fanout``; the name must contain
``bench``), runs the migrations, uses ``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/13``)
under a key prefix of its own (nothing is flushed), starts its own fake WeChat server and prints the
table. Worker logs go to ``bench/results/logs/fanout_worker_<n>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = REPO_ROOT / "bench" / "results" / "logs"
DEFAULT_N = 100_000
DEFAULT_WORKERS = 2
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/yijing_bench_fanout"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
# The harness's fake WeChat server accepts only this app (bench/run.py).
HARNESS_APPID = "wx-bench-appid"
HARNESS_SECRET = "bench-secret"
UNLIMITED = "100000000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- the baseline: the same requests, straight to the fake ----------------------------------------


def _direct_posts(base_url: str, token: str, body: dict[str, Any], openids: list[str]) -> list[float]:
    """Post the body to subscribe/send once per openid over one keep-alive session; latencies in ms."""
    session = requests.Session()
    url = f"{base_url}/cgi-bin/message/subscribe/send"
    latencies = []
    for openid in openids:
        started = time.perf_counter()
        answer = session.post(
            url, params={"access_token": token}, json={**body, "touser": openid}, timeout=30
        )
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200 or answer.json().get("errcode") != 0:
            raise RuntimeError(f"baseline post failed: {answer.status_code} {answer.text[:200]}")
    session.close()
    return latencies


def _baseline(base_url: str, appid: str, secret: str, body: dict, openids: list[str], processes: int) -> dict:
    token_answer = requests.post(
        f"{base_url}/cgi-bin/stable_token",
        json={"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": False},
        timeout=10,
    ).json()
    token = token_answer["access_token"]
    shares = [openids[i::processes] for i in range(processes)]
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        results = list(
            pool.map(_direct_posts, [base_url] * processes, [token] * processes, [body] * processes, shares)
        )
    elapsed = time.perf_counter() - started
    latencies = [ms for part in results for ms in part]
    return {
        "rate": len(openids) / elapsed,
        "elapsed": elapsed,
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
    }


# -- the project's fan-out --------------------------------------------------------------------------


class _Run:
    """One benchmark run: its database, Redis prefix, fake WeChat server and worker processes."""

    def __init__(self, n: int, workers: int, ctx: Any | None) -> None:
        self.n = n
        self.workers = workers
        self.ctx = ctx
        self.run_id = uuid.uuid4().hex[:8]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.worker_procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []
        if ctx is not None:
            self.database_url = ctx.database_url
            self.redis_url = ctx.redis_url
            self.wechat_url = ctx.fake_wechat_url
            self.appid, self.secret = HARNESS_APPID, HARNESS_SECRET
        else:
            self.database_url = os.environ.get("BENCH_FANOUT_DATABASE_URL", DEFAULT_DATABASE_URL)
            self.redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
            self.wechat_url = ""
            from fakewechat import DEFAULT_APPID, DEFAULT_SECRET

            self.appid, self.secret = DEFAULT_APPID, DEFAULT_SECRET

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "NOTIFY_", "BROADCAST_"))}
        env.update(
            {
                "YIJING_ENV": "development",
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "REDIS_PREFIX": f"bench-fanout-{self.run_id}:",
                "QUEUE_PREFIX": f"bench-fanout-{self.run_id}-",
                "WECHAT_APPID": self.appid,
                "WECHAT_SECRET": self.secret,
                "WECHAT_API_BASE_URL": self.wechat_url,
                "WECHAT_TIMEOUT": "10",
                "WECHAT_SEND_RATE_PER_MINUTE": UNLIMITED,
                "BROADCAST_RATE_PER_MINUTE": UNLIMITED,
                "BROADCAST_BATCH_SIZE": "1000",
                "NOTIFY_BATCH_SIZE": "100",
                "LOG_LEVEL": "WARNING",
            }
        )
        return env

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = (LOG_DIR / f"{name}.log").open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_fake(self) -> None:
        port = _free_port()
        self._start("fanout_fakewechat", [sys.executable, "-m", "fakewechat", "--port", str(port)])
        self.wechat_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{self.wechat_url}/__fake__/requests", params={"path": "/none"}, timeout=1)
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the fake WeChat server did not start")
            time.sleep(0.1)

    def fresh_database(self) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        if "bench" not in (url.database or ""):
            raise RuntimeError(f"refusing to recreate {url.database!r}: the name must contain 'bench'")
        admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{url.database}"')

    def app(self):  # type: ignore[no-untyped-def]
        from yijing import create_app
        from yijing.config import Config

        return create_app(Config.from_env(self.env))

    def openid(self, i: int) -> str:
        return f"bench-fanout-{self.n}-{i:09d}"

    def seed(self, app: Any) -> tuple[int, str]:
        """N volunteers of a district of their own under the shared benchmark city, each with a
        long-term alert consent. Kept between runs: a later run of the same N reuses them."""
        from sqlalchemy import insert

        from bench.scenarios.city import CITY_KEY, ensure_city
        from yijing.extensions import db
        from yijing.models import ConsentAnswer, Role, RoleGrant, SubscriptionConsent, User, UserKind
        from yijing.models.base import utcnow
        from yijing.services import jurisdictions
        from yijing.sql import insert_ignore_returning

        key = f"bench-fanout-{self.n}"
        ensure_city()
        jurisdictions.import_nodes(
            [{"key": key, "parent_key": CITY_KEY, "name": f"压测辖区{self.n}", "level": "district"}]
        )
        node = jurisdictions.get_by_key(key)
        template_id = app.config["YIJING"].wechat_templates.for_kind("alert").template_id
        now = utcnow()
        for start in range(0, self.n, 5000):
            users = [
                {
                    "kind": UserKind.WECHAT,
                    "openid": self.openid(i),
                    "display_name": "",
                    "is_active": True,
                    "created_at": now,
                }
                for i in range(start, min(start + 5000, self.n))
            ]
            ids = insert_ignore_returning(db.session(), User, users)
            if not ids:  # an earlier run seeded these already
                continue
            db.session.execute(
                insert(RoleGrant),
                [
                    {"user_id": uid, "role": Role.VOLUNTEER, "jurisdiction_id": node.id, "created_at": now}
                    for uid in ids
                ],
            )
            db.session.execute(
                insert(SubscriptionConsent),
                [
                    {
                        "user_id": uid,
                        "template_id": template_id,
                        "remaining": 0,
                        "last_answer": ConsentAnswer.ACCEPT,
                        "answered_at": now,
                        "created_at": now,
                    }
                    for uid in ids
                ],
            )
            db.session.commit()
        return node.id, template_id

    def start_workers(self) -> None:
        for i in range(self.workers):
            argv = [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "app",
                "yijing",
                "worker",
                "--queues",
                "dispatch,notify",
            ]
            self.worker_procs.append(self._start(f"fanout_worker_{i + 1}", argv))

    def stop_workers(self) -> None:
        self._terminate(self.worker_procs)

    def stop(self) -> None:
        self._terminate(self.procs)
        for log in self.logs:
            log.close()

    @staticmethod
    def _terminate(procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_delivered(app: Any, broadcast_id: int, n: int, timeout: float, procs: list[Any]) -> None:
    from sqlalchemy import func, select

    from yijing.extensions import db
    from yijing.models import Broadcast, Notification

    deadline = time.monotonic() + timeout
    while True:
        time.sleep(1)
        db.session.expire_all()
        broadcast = db.session.get(Broadcast, broadcast_id)
        # This broadcast's rows only: other scenarios of the same run leave rows of their own
        # (a dispatch's invitations) that these workers, on a queue prefix of their own, never send.
        pending = db.session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(
                Notification.status == "pending",
                Notification.dedupe_key.startswith(f"broadcast:{broadcast_id}:"),
            )
        )
        db.session.rollback()
        if broadcast.status == "completed" and broadcast.written == n and pending == 0:
            return
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(
                "a worker or the fake WeChat server stopped: see bench/results/logs/fanout_*.log"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"not delivered in {timeout:.0f} s: {broadcast.written}/{n} written, {pending} pending"
            )


def _measure_project(run: _Run, app: Any) -> dict:
    from sqlalchemy import select

    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import Broadcast, Notification
    from yijing.policies import Grant, Principal
    from yijing.services import broadcasts, jurisdictions

    with app.app_context():
        jurisdiction_id, template_id = run.seed(app)
        node = jurisdictions.get(jurisdiction_id)
        principal = Principal(user_id=0, kind="staff", grants=(Grant("admin", node.id, node.path),))
        run.start_workers()
        time.sleep(2)  # let the workers start before the clock does
        broadcast = broadcasts.create(
            principal,
            Actor.system("bench"),
            jurisdiction_id=node.id,
            audience="volunteers",
            title="暴雨红色预警",
            body="请在岗义警协助疏导积水路段，注意自身安全",
        )
        _wait_until_delivered(app, broadcast.id, run.n, timeout=max(600, run.n / 20), procs=run.procs)
        broadcast = db.session.get(Broadcast, broadcast.id)
        rows = db.session.execute(
            select(Notification.created_at, Notification.sent_at, Notification.status).where(
                Notification.dedupe_key.startswith(f"broadcast:{broadcast.id}:")
            )
        ).all()
        created = broadcast.created_at
        written_span = (broadcast.finished_at - created).total_seconds()
        last_sent = max(r.sent_at for r in rows)
        delivered_span = (last_sent - created).total_seconds()
        chunk_times = sorted({r.created_at for r in rows})
        chunk_ms = [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(chunk_times)]
        latencies = [(r.sent_at - r.created_at).total_seconds() * 1000 for r in rows]
        fields = (
            app.config["YIJING"]
            .wechat_templates.for_kind("alert")
            .render(
                title=broadcast.title,
                body=broadcast.body,
                data={"jurisdiction_name": node.name},
                created_at=created,
                kind="alert",
            )
        )
        # What the gateway posts for each of them (yijing.wechat.gateway.send_subscribe_message).
        body = {
            "touser": "",
            "template_id": template_id,
            "page": "pages/inbox/index",
            "data": {name: {"value": value} for name, value in fields.items()},
            "miniprogram_state": "formal",
            "lang": "zh_CN",
        }
        db.session.remove()
    return {
        "sent": sum(1 for r in rows if r.status == "sent"),
        "rows_rate": run.n / written_span,
        "chunk_p50": _percentile(chunk_ms, 0.5),
        "chunk_p99": _percentile(chunk_ms, 0.99),
        "delivered_rate": run.n / delivered_span,
        "latency_p50": _percentile(latencies, 0.5),
        "latency_p99": _percentile(latencies, 0.99),
        "body": body,
        "template_id": template_id,
    }


def run(ctx: Any | None = None, *, n: int | None = None, workers: int = DEFAULT_WORKERS) -> list[Any]:
    """Run the scenario; prints the table and returns ``bench.harness.Result`` rows (plain dicts when
    the harness is not there)."""
    n = n or int(os.environ.get("BENCH_FANOUT_N", DEFAULT_N))
    bench_run = _Run(n, workers, ctx)
    try:
        if ctx is None:
            bench_run.fresh_database()
            bench_run.start_fake()
        app = bench_run.app()
        if ctx is None:
            from flask_migrate import upgrade

            with app.app_context():
                upgrade()
        project = _measure_project(bench_run, app)
        # The RQ workers' resident memory after delivering them all (issue 15), before they stop.
        from bench.harness import rss_mb_of_trees

        rq_rss_mb = rss_mb_of_trees(p.pid for p in bench_run.worker_procs)
        if ctx is not None:
            ctx.rq_worker_rss_mb = rq_rss_mb
        bench_run.stop_workers()
        if project["sent"] != n:
            raise RuntimeError(f"only {project['sent']} of {n} delivered")
        openids = [bench_run.openid(i) for i in range(n)]
        baseline = _baseline(
            bench_run.wechat_url, bench_run.appid, bench_run.secret, project["body"], openids, workers
        )
    finally:
        bench_run.stop()
    ratio = project["delivered_rate"] / baseline["rate"]
    rows = [
        {
            "scenario": "fanout:rows_written",
            "rps": project["rows_rate"],
            "p50_ms": project["chunk_p50"],
            "p99_ms": project["chunk_p99"],
            "ratio": None,
            "baseline": None,
            "target": f"{n:,} outbox rows, bulk INSERT per chunk",
        },
        {
            "scenario": "fanout:delivered",
            "rps": project["delivered_rate"],
            "p50_ms": project["latency_p50"],
            "p99_ms": project["latency_p99"],
            "ratio": ratio,
            "baseline": "fanout:direct_posts",
            "target": f"{n:,} subscribe messages, {workers} RQ workers",
        },
        {
            "scenario": "fanout:direct_posts",
            "rps": baseline["rate"],
            "p50_ms": baseline["p50"],
            "p99_ms": baseline["p99"],
            "ratio": 1.0,
            "baseline": None,
            "target": f"{n:,} POSTs from {workers} processes",
        },
    ]
    print(f"{'scenario':<22} {'per second':>11} {'p50 ms':>9} {'p99 ms':>9} {'× baseline':>11}  what")
    for row in rows:
        ratio_text = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        print(
            f"{row['scenario']:<22} {row['rps']:>11,.0f} {row['p50_ms']:>9.1f} {row['p99_ms']:>9.1f}"
            f" {ratio_text:>11}  {row['target']}"
        )
    print("p50/p99: rows_written per chunk; delivered from row written to sent; direct_posts per request")
    if rq_rss_mb is not None:
        print(f"RQ worker resident memory after delivery (largest of {workers}): {rq_rss_mb:.0f} MB")
    try:
        from bench.harness import Result
    except ImportError:
        return rows
    return [
        Result(
            scenario=row["scenario"],
            rps=row["rps"],
            p50_ms=row["p50_ms"],
            p99_ms=row["p99_ms"],
            ratio=row["ratio"],
            baseline=row["baseline"],
            kind="python",
            target=row["target"],
            requests=n,
            rq_worker_rss_mb=rq_rss_mb,
        )
        for row in rows
    ]


class FanoutScenario:
    name = "fanout"
    description = "mass alert to 100,000 users: rows written/s, messages delivered/s vs direct posts"
    needs_app = True

    def run(self, ctx: Any) -> list[Any]:
        return run(ctx)


SCENARIO = FanoutScenario()


def _growth() -> list[Any]:
    from bench.harness import Growth

    return [Growth("broadcast_fanout", "recipients", (10_000, 100_000), lambda ctx, size: run(ctx, n=size))]


GROWTH = _growth()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scenarios.fanout", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_FANOUT_N", DEFAULT_N)))
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    args = parser.parse_args(argv)
    run(None, n=args.n, workers=args.workers)


if __name__ == "__main__":
    main()
