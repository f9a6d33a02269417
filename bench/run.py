"""Run the load benchmarks: ``python -m bench.run [--scenarios me] [--duration 10] ...``.

Starts the fake WeChat server, migrates the benchmark database, starts the real app and the
baseline app under identical gunicorn settings, runs wrk against the baseline's constant endpoint
and then against each scenario, and prints req/s, p50/p99 latency and the ratio to the baseline
measured in the same run. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from bench import breakdown, harness
from bench.growth import GrowthRow, add_factors, format_growth_table, measure_path, sizes_to_run
from bench.harness import (
    BASELINES,
    LOG_DIR,
    REPO_ROOT,
    RESULTS_DIR,
    BenchError,
    Context,
    Growth,
    Processes,
    Request,
    Result,
    WrkMissing,
)
from bench.scenarios import GROWTH, SCENARIOS

APP_TARGET = "app:app"
BASELINE_TARGET = "bench.baseline_app:app"
# The fake WeChat server accepts exactly this app; the app is configured with the same pair.
WECHAT_APPID = "wx-bench-appid"
WECHAT_SECRET = "bench-secret"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated (default: all)")
    p.add_argument("--baseline-only", action="store_true", help="only the baseline; no app, DB or Redis")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    p.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    p.add_argument(
        "--warmup", type=int, default=2, help="seconds of unrecorded wrk before each run (0: none)"
    )
    p.add_argument("--repeat", type=int, default=1, help="repeat baseline+scenarios N times, report medians")
    p.add_argument(
        "--gunicorn", choices=("sync", "gthread"), default="sync", help="worker class (default sync)"
    )
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument("--gunicorn-threads", type=int, default=4, help="threads per gthread worker (default 4)")
    p.add_argument("--fresh-db", action="store_true", help="drop and recreate the benchmark database first")
    p.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for each server")
    p.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the app (repeatable), e.g. --app-env RATELIMIT_ENABLED=false",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results JSON (default bench/results/latest.json; with --growth, growth.json)",
    )
    p.add_argument(
        "--breakdown",
        type=int,
        default=1000,
        metavar="N",
        help="replay each wrk row's request N times in-process and split its time by part (0: skip)",
    )
    g = p.add_argument_group("growth mode (bench/README.md, Growth)")
    g.add_argument(
        "--growth", action="store_true", help="each hot path at sizes ×10 apart, not the scenarios"
    )
    g.add_argument(
        "--paths", default=None, help="comma-separated hot paths (default: all; --list shows them)"
    )
    g.add_argument("--max-size", type=int, default=None, help="skip the sizes above this (a quicker look)")
    args = p.parse_args(argv)
    if args.output is None:
        args.output = RESULTS_DIR / ("growth.json" if args.growth else "latest.json")
    for name in ("duration", "connections", "threads", "repeat", "workers", "gunicorn_threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.connections < args.threads:
        p.error("--connections must be at least --threads (wrk needs one connection per thread)")
    return args


def _select_growth(args: argparse.Namespace) -> list[Growth]:
    names = [n.strip() for n in (args.paths or ",".join(GROWTH)).split(",") if n.strip()]
    unknown = [n for n in names if n not in GROWTH]
    if unknown:
        raise BenchError(f"unknown hot path(s) {', '.join(unknown)}; known: {', '.join(GROWTH)}")
    return [GROWTH[n] for n in names]


def _select(args: argparse.Namespace) -> list[Any]:
    if args.baseline_only:
        return []
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise BenchError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return [SCENARIOS[n] for n in names]


def _app_env(
    args: argparse.Namespace, database_url: str, redis_url: str, fake_url: str | None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "WECHAT_APPID": WECHAT_APPID,
            "WECHAT_SECRET": WECHAT_SECRET,
            "YIJING_ENV": "development",
        }
    )
    if fake_url:
        env["WECHAT_API_BASE_URL"] = fake_url
    for item in args.app_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--app-env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def _say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


class Runner:
    def __init__(self, args: argparse.Namespace, procs: Processes) -> None:
        self.args = args
        self.procs = procs
        self.session = requests.Session()
        self.app: harness.Managed | None = None
        self.baseline: harness.Managed | None = None
        # every row measured so far, by name (rounds in order): printed even when a later one fails
        self.runs: dict[str, list[Result]] = {}
        self.growth_rows: list[GrowthRow] = []
        # where a wrk row's request spends its time (bench.breakdown), one per row name
        self.breakdowns: dict[str, breakdown.Breakdown] = {}
        self._app_env_vars: dict[str, str] | None = None
        self._inprocess_app: Any = None
        self._baseline_url: str | None = None

    # -- servers -------------------------------------------------------------------------------

    def start_servers(self, scenarios: list[Any]) -> Context:
        a = self.args
        database_url = os.environ.get("BENCH_DATABASE_URL", harness.DEFAULT_DATABASE_URL)
        redis_url = os.environ.get("BENCH_REDIS_URL", harness.DEFAULT_REDIS_URL)
        needs_app = any(s.needs_app for s in scenarios)
        fake_url = None

        gargs = {"worker_class": a.gunicorn, "workers": a.workers, "threads": a.gunicorn_threads}
        env = _app_env(a, database_url, redis_url, None)

        baseline_port = harness.free_port()
        baseline = self.procs.start(
            "baseline",
            harness.gunicorn_argv(BASELINE_TARGET, baseline_port, **gargs),
            env,
            LOG_DIR / "baseline.log",
        )
        self.baseline = baseline
        baseline_url = f"http://127.0.0.1:{baseline_port}"
        self._baseline_url = baseline_url

        if scenarios:
            _say(harness.ensure_database(database_url, fresh=a.fresh_db))
            _say(f"FLUSHDB redis db {harness.flush_redis(redis_url)}")

        app_url = None
        if needs_app:
            if not (REPO_ROOT / "app.py").exists():
                raise BenchError(f"{REPO_ROOT / 'app.py'} does not exist yet; try --baseline-only")
            fake_port = harness.free_port()
            fake_argv = [sys.executable, "-m", "fakewechat", "--host", "127.0.0.1", "--port", str(fake_port)]
            fake_argv += ["--appid", WECHAT_APPID, "--secret", WECHAT_SECRET]
            fake = self.procs.start("fakewechat", fake_argv, env, LOG_DIR / "fakewechat.log")
            harness.wait_for_tcp(fake, "127.0.0.1", fake_port, a.startup_timeout)
            fake_url = f"http://127.0.0.1:{fake_port}"
            _say(f"fake WeChat at {fake_url}")

            env = _app_env(a, database_url, redis_url, fake_url)
            self._app_env_vars = env
            _say("migrating: flask --app app db upgrade")
            harness.run_logged(
                "migrations",
                [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
                env,
                LOG_DIR / "migrate.log",
                timeout=300,
            )
            app_port = harness.free_port()
            app = self.procs.start(
                "app", harness.gunicorn_argv(APP_TARGET, app_port, **gargs), env, LOG_DIR / "app.log"
            )
            self.app = app
            app_url = f"http://127.0.0.1:{app_port}"
            harness.wait_for_http(app, app_url + "/healthz", a.startup_timeout)
            _say(f"app ({APP_TARGET}) at {app_url}")

        harness.wait_for_http(baseline, baseline_url + "/healthz", a.startup_timeout)
        _say(f"baseline ({BASELINE_TARGET}) at {baseline_url}")
        mode = f"{a.gunicorn} ×{a.workers}" + (f"×{a.gunicorn_threads}" if a.gunicorn == "gthread" else "")
        _say(f"gunicorn {mode}; wrk -t{a.threads} -c{a.connections} -d{a.duration}s --latency")

        ctx = Context(
            baseline_url=baseline_url,
            fake_wechat_url=fake_url,
            database_url=database_url,
            redis_url=redis_url,
            session=self.session,
            results_dir=RESULTS_DIR,
            duration=a.duration,
            connections=a.connections,
            threads=a.threads,
            _app_url=app_url,
        )
        ctx.measure_http = lambda label, req: self.measure(ctx.app_url, label, req)
        return ctx

    # -- measuring -----------------------------------------------------------------------------

    def measure(self, base_url: str, label: str, req: Request, *, baseline: str | None = None) -> Result:
        a = self.args
        harness.preflight(self.session, base_url, req, what=label)
        wrk_opts = {"connections": a.connections, "threads": a.threads, "results_dir": RESULTS_DIR}
        if a.warmup:
            warm = harness.run_wrk(base_url, req, label=f"{label}.warmup", duration=a.warmup, **wrk_opts)
            self._check(base_url, f"{label}.warmup", req, warm)
        stats = harness.run_wrk(base_url, req, label=label, duration=a.duration, **wrk_opts)
        self._check(base_url, label, req, stats)
        if a.breakdown and not a.growth and label not in self.breakdowns:
            self.breakdowns[label] = breakdown.measure(self._inprocess(base_url), label, req, a.breakdown)
        errors = sum(stats.socket_errors.values())
        if not stats.requests:
            _say(f"{label}: not one answer within the {a.duration} s run: p50/p99 unknown (shown as -)")
        _say(
            f"{label}: {stats.rps:,.0f} req/s, p50 {stats.p50_ms:.2f} ms, p99 {stats.p99_ms:.2f} ms"
            + (f", socket errors {stats.socket_errors}" if errors else "")
        )
        return Result(
            scenario=label,
            rps=stats.rps,
            p50_ms=stats.p50_ms,
            p99_ms=stats.p99_ms,
            baseline=baseline,
            target=req.describe(),
            requests=stats.requests,
            non_2xx=stats.non_2xx,
            socket_errors=stats.socket_errors,
        )

    def _inprocess(self, base_url: str) -> Any:
        """The app behind ``base_url``, built in this process with the workers' environment."""
        if base_url == self._baseline_url:
            from bench.baseline_app import app as bare

            return bare
        if self._inprocess_app is None:
            from yijing import create_app
            from yijing.config import Config

            if self._app_env_vars is None:
                raise BenchError("the breakdown needs the app's environment, but the app was not started")
            self._inprocess_app = create_app(Config.from_env(self._app_env_vars))
        return self._inprocess_app

    def _check(self, base_url: str, label: str, req: Request, stats: harness.WrkStats) -> None:
        if not stats.non_2xx:
            return
        try:
            r = self.session.request(
                req.method, base_url + req.path, headers=req.headers, data=req.body_bytes, timeout=10
            )
            sample = f"one more request now answers {r.status_code}: {r.text[:300]}"
        except requests.RequestException as exc:
            sample = f"one more request fails: {exc}"
        raise BenchError(
            f"{label}: {stats.non_2xx} of {stats.requests} responses were not 2xx/3xx under load; {sample}\n"
            f"see {LOG_DIR} and {RESULTS_DIR}/wrk_{harness._slug(label)}.txt"
        )

    def note_memory(self, rows: list[Result], ctx: Context) -> None:
        """Resident memory after a scenario: its largest API worker, and its RQ workers if any."""
        api = harness.worker_rss_mb(self.app.proc.pid) if self.app else None
        bare = harness.worker_rss_mb(self.baseline.proc.pid) if self.baseline else None
        for row in rows:
            row.api_worker_rss_mb = bare if row.scenario.startswith("baseline:") else api
            if row.rq_worker_rss_mb is None:
                row.rq_worker_rss_mb = ctx.rq_worker_rss_mb
            if row.api_worker_over_limit:
                _say(
                    f"{row.scenario}: an API worker holds {row.api_worker_rss_mb:.0f} MB, "
                    f"above {harness.API_WORKER_RSS_LIMIT_MB:.0f} MB"
                )

    def rows(self) -> list[Result]:
        """Every row measured so far, medians over the rounds, ratios filled in."""
        rows = [harness.median_result(r) for r in self.runs.values()]
        by_name = {r.scenario: r for r in rows}
        for r in rows:
            if r.ratio is None and r.baseline in by_name:
                r.ratio = r.rps / by_name[r.baseline].rps
        return rows

    def run(self, scenarios: list[Any]) -> tuple[list[Result], dict[str, Any]]:
        ctx = self.start_servers(scenarios)
        baselines_needed = ["constant", "redis_get"] + [
            s.baseline for s in scenarios if hasattr(s, "setup") and s.baseline != "constant"
        ]
        baselines_needed = list(dict.fromkeys(baselines_needed))
        for b in baselines_needed:
            if b not in BASELINES:
                raise BenchError(f"unknown baseline {b!r}; known: {', '.join(BASELINES)}")

        prepared: dict[str, Request] = {}
        runs = self.runs
        for i in range(self.args.repeat):
            if self.args.repeat > 1:
                _say(f"round {i + 1} of {self.args.repeat}")
            this_round: dict[str, Result] = {}
            for b in baselines_needed:
                label = f"baseline:{b}"
                row = self.measure(ctx.baseline_url, label, Request(path=BASELINES[b]))
                # the further baselines are shown against the constant one (the first measured)
                row.ratio = row.rps / this_round["baseline:constant"].rps if this_round else 1.0
                row.baseline = "baseline:constant" if this_round else None
                self.note_memory([row], ctx)
                this_round[label] = row
                runs.setdefault(label, []).append(row)
            for s in scenarios:
                ctx.rq_worker_rss_mb = None
                if hasattr(s, "run"):
                    _say(f"running {s.name}: {s.description}")
                    rows = s.run(ctx)
                    for row in rows:
                        if row.ratio is None and row.baseline in this_round:
                            row.ratio = row.rps / this_round[row.baseline].rps
                else:
                    if s.name not in prepared:
                        _say(f"setting up {s.name}: {s.description}")
                        prepared[s.name] = s.setup(ctx)
                    row = self.measure(
                        ctx.app_url, s.name, prepared[s.name], baseline=f"baseline:{s.baseline}"
                    )
                    # against this round's baseline: rounds drift (shared CPU), the ratio drifts less
                    row.ratio = row.rps / this_round[row.baseline].rps
                    rows = [row]
                self.note_memory(rows, ctx)
                for row in rows:
                    runs.setdefault(row.scenario, []).append(row)

        extra = {"fake_wechat_requests": self._fake_requests(ctx)}
        return self.rows(), extra

    def run_growth(self, paths: list[Growth]) -> tuple[list[GrowthRow], dict[str, Any]]:
        """Growth mode: the constant baseline once, then every path at each of its sizes."""
        ctx = self.start_servers(paths)
        base = self.measure(ctx.baseline_url, "baseline:constant", Request(path=BASELINES["constant"]))
        base.ratio = 1.0
        self.note_memory([base], ctx)
        self.runs[base.scenario] = [base]

        def before_each() -> None:
            harness.flush_redis(ctx.redis_url)  # each size starts from an empty Redis database
            ctx.rq_worker_rss_mb = None

        def after_each(rows: list[Result]) -> None:
            for row in rows:
                if row.ratio is None and row.baseline == base.scenario:
                    row.ratio = row.rps / base.rps
            self.note_memory(rows, ctx)

        for growth in paths:
            sizes = sizes_to_run(growth.sizes, self.args.max_size)
            self.growth_rows += measure_path(
                growth, ctx, sizes, before_each=before_each, after_each=after_each, say=_say
            )
        return add_factors(self.growth_rows), {"baseline": base.as_dict()}

    def _fake_requests(self, ctx: Context) -> int | None:
        if not ctx.fake_wechat_url:
            return None
        try:
            data = self.session.get(ctx.fake_wechat_url + "/__fake__/requests", timeout=5).json()
        except (requests.RequestException, ValueError):
            return None
        if isinstance(data, dict):
            data = data.get("requests", data.get("items"))
        return len(data) if isinstance(data, list) else None


# -- output -------------------------------------------------------------------------------------


def _mb(value: float | None, *, limit: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" + (" !" if limit is not None and value > limit else "")


def format_table(rows: list[Result]) -> str:
    """The results table; an API worker above the memory limit is marked with "!" (and a note)."""
    head = ("scenario", "target", "req/s", "p50 ms", "p99 ms", "× baseline", "errors", "API MB", "RQ MB")
    body = []
    for r in rows:
        errors = r.non_2xx + sum(r.socket_errors.values())
        body.append(
            (
                r.scenario,
                r.target,
                f"{r.rps:,.0f}",
                *(("-", "-") if r.requests == 0 else (f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}")),
                "-" if r.ratio is None else f"{r.ratio:.2f}",
                str(errors),
                _mb(r.api_worker_rss_mb, limit=harness.API_WORKER_RSS_LIMIT_MB),
                _mb(r.rq_worker_rss_mb),
            )
        )
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    left = {0, 1}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)]
    if any(r.requests == 0 for r in rows):
        lines.append("p50/p99 -: not one answer within the run (each took longer than --duration).")
    lines.append(
        "API MB: largest gunicorn worker's resident memory after the row (the bare app's on baseline rows); "
        "RQ MB: largest RQ worker's, where the scenario runs one."
    )
    over = [r.scenario for r in rows if r.api_worker_over_limit]
    if over:
        lines.append(
            f"! an API worker above {harness.API_WORKER_RSS_LIMIT_MB:.0f} MB after: {', '.join(over)}"
        )
    return "\n".join(lines)


def _meta(
    args: argparse.Namespace,
    scenarios: list[Any],
    started: dt.datetime,
    argv_given: list[str] | None = None,
) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    try:
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
        wrk_version = wrk_version.splitlines()[0].strip() if wrk_version else None
    except OSError:
        wrk_version = None
    db = os.environ.get("BENCH_DATABASE_URL", harness.DEFAULT_DATABASE_URL)
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "scenarios": [getattr(s, "name", None) or s.path for s in scenarios],
        "wrk": {
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "version": wrk_version,
        },
        "gunicorn": {
            "worker_class": args.gunicorn,
            "workers": args.workers,
            "threads": args.gunicorn_threads if args.gunicorn == "gthread" else 1,
        },
        "repeat": args.repeat,
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv_given is None else argv_given),
        "api_worker_rss_limit_mb": harness.API_WORKER_RSS_LIMIT_MB,
        # sizes set through the environment (BENCH_FANOUT_N, BENCH_REPORT_*); the URLs are below
        "bench_env": {
            k: v for k, v in sorted(os.environ.items()) if k.startswith("BENCH_") and "_URL" not in k
        },
        "database_url": make_url(db).render_as_string(hide_password=True),
        "redis_url": os.environ.get("BENCH_REDIS_URL", harness.DEFAULT_REDIS_URL),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops every subprocess


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            kind = "run" if hasattr(s, "run") else "http"
            print(f"{s.name:24} {kind:5} {s.description}")
        print("\ngrowth mode (--growth --paths ...):")
        for g in GROWTH.values():
            print(f"{g.path:24} {', '.join(f'{n:,}' for n in g.sizes)} {g.what}")
        return 0
    try:
        harness.require_wrk()
    except WrkMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _on_sigterm)
    started = dt.datetime.now().astimezone()
    procs = Processes()
    runner = Runner(args, procs)
    selected: list[Any] = []
    extra: dict[str, Any] = {}
    failure: str | None = None
    status = 0
    try:
        selected = _select_growth(args) if args.growth else _select(args)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        if args.growth:
            _, extra = runner.run_growth(selected)
        else:
            _, extra = runner.run(selected)
    except BenchError as exc:
        failure, status = str(exc), 1
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        print(f"bench: server logs in {LOG_DIR}, wrk output in {RESULTS_DIR}", file=sys.stderr)
    except KeyboardInterrupt:
        failure, status = "interrupted", 130
        print("bench: interrupted", file=sys.stderr)
    except SystemExit as exc:  # SIGTERM (_on_sigterm): still print and write what was measured
        failure, status = "terminated", exc.code if isinstance(exc.code, int) else 1
        print("bench: terminated", file=sys.stderr)
    finally:
        procs.stop_all()

    meta = {**_meta(args, selected, started, argv), **extra}
    if failure:
        meta["failed"] = failure
    if args.growth:
        rows = add_factors(runner.growth_rows)
        if not rows:
            return status
        print()
        print(format_growth_table(rows))
        payload = {"meta": meta, "rows": [r.as_dict() for r in rows]}
    else:
        results = runner.rows()
        if not results:
            return status
        print()
        print(format_table(results))
        payload = {"meta": meta, "results": [r.as_dict() for r in results]}
        if runner.breakdowns:
            print(f"\nWhere a request's time goes (bench/breakdown.py; {args.breakdown:,} requests each):")
            print(breakdown.format_table(list(runner.breakdowns.values())))
            payload["breakdown"] = [b.as_json() for b in runner.breakdowns.values()]
    harness.write_json(args.output, payload)
    partial = " (partial: the run failed)" if failure else ""
    print(f"\nbench: results{partial} in {args.output}; logs in {LOG_DIR}")
    return status


if __name__ == "__main__":
    sys.exit(main())
