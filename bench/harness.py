"""Benchmark plumbing: subprocesses, PostgreSQL/Redis preparation, wrk, and the types scenarios use.

Nothing here knows about a particular endpoint; scenarios (``bench/scenarios/``) do.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
LOG_DIR = RESULTS_DIR / "logs"

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/yijing_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"

# Paths on the baseline app; a scenario names the one its ratio is computed against. Every run with
# scenarios also measures ``redis_get`` (the bare app plus one Redis GET), its ratio to ``constant``:
# the ceiling of an endpoint that reads Redis once.
BASELINES = {"constant": "/const", "redis_get": "/redis-get"}

#: An API worker's resident memory must stay under this (issue 15); rows above it are flagged.
API_WORKER_RSS_LIMIT_MB = 150.0

#: wrk drops a response slower than its timeout (default 2 s) from the latency figures and counts a
#: socket "timeout" instead; a slow endpoint on a loaded machine then shows p50 0.00. Wait this long.
WRK_TIMEOUT_S = 30

WRK_INSTALL_HINT = "wrk is not installed: apt-get install -y wrk  (or: make bench, which installs it)"


class BenchError(Exception):
    """Something is wrong with the run; the message says what and where to look."""


class WrkMissing(BenchError):
    pass


# --------------------------------------------------------------------------------------------------
# Types scenarios use


@dataclass
class Request:
    """What wrk sends, over and over. ``json`` is a shortcut that sets the body and Content-Type."""

    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes | None = None
    json: Any = None
    expect_status: int = 200

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"Request.path must start with '/': {self.path!r}")
        self.method = self.method.upper()
        if self.json is not None:
            if self.body is not None:
                raise ValueError("give either body or json, not both")
            self.body = json.dumps(self.json, ensure_ascii=False, separators=(",", ":"))
            self.headers = {"Content-Type": "application/json", **self.headers}

    @property
    def body_bytes(self) -> bytes | None:
        if self.body is None:
            return None
        return self.body.encode() if isinstance(self.body, str) else self.body

    def describe(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Result:
    """One row of the results table."""

    scenario: str
    rps: float  # requests (or operations) per second
    p50_ms: float
    p99_ms: float
    ratio: float | None = None  # rps ÷ baseline rps (same run), when there is a matching baseline
    baseline: str | None = None  # the baseline row the ratio is against
    kind: str = "http"  # "http" (wrk) or "python" (timed in-process by the scenario)
    target: str = ""  # e.g. "GET /api/v1/me"
    requests: int | None = None
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # Resident memory (VmRSS, MB) right after the scenario: the largest gunicorn worker of the app
    # (of the bare app on baseline rows), and the largest RQ worker the scenario ran (None: none).
    api_worker_rss_mb: float | None = None
    rq_worker_rss_mb: float | None = None

    @property
    def api_worker_over_limit(self) -> bool:
        return self.api_worker_rss_mb is not None and self.api_worker_rss_mb > API_WORKER_RSS_LIMIT_MB

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "api_worker_over_limit": self.api_worker_over_limit}


@dataclass
class Context:
    """What a scenario may use. Setup talks to the app over HTTP only (``session`` + ``url``)."""

    baseline_url: str
    fake_wechat_url: str | None
    database_url: str
    redis_url: str
    session: requests.Session
    results_dir: Path
    duration: int
    connections: int
    threads: int
    _app_url: str | None = None
    # run.py sets this: measure any Request against the app with wrk, as a Result row.
    measure_http: Callable[[str, Request], Result] | None = None
    # A scenario that runs RQ workers sets this (``rss_mb_of_trees``) before stopping them; the
    # runner resets it before each scenario and copies it onto that scenario's rows.
    rq_worker_rss_mb: float | None = None

    @property
    def app_url(self) -> str:
        if self._app_url is None:
            raise BenchError("this scenario needs the app, but the app was not started (needs_app=False?)")
        return self._app_url

    def url(self, path: str) -> str:
        return self.app_url + path


@runtime_checkable
class HttpScenario(Protocol):
    """Set up state over HTTP, then return the one Request wrk hammers."""

    name: str
    description: str
    needs_app: bool
    baseline: str  # a key of BASELINES

    def setup(self, ctx: Context) -> Request: ...


@runtime_checkable
class RunScenario(Protocol):
    """Measures itself (e.g. a Redis GEOSEARCH timed from Python) and returns its rows."""

    name: str
    description: str
    needs_app: bool

    def run(self, ctx: Context) -> list[Result]: ...


Scenario = HttpScenario | RunScenario


@dataclass(frozen=True)
class Growth:
    """One hot path measured at several sizes (``python -m bench.run --growth``).

    A scenario module lists these in ``GROWTH``. ``run(ctx, size)`` makes the data hold exactly
    ``size`` of what ``what`` counts (seeding fast and reusing what an earlier size left; Redis is
    flushed before each call, the database is kept), measures, and returns its rows; a row's
    ``scenario`` names the measurement, and the same names come back at every size.
    """

    path: str  # the hot path, e.g. "on_duty_search"
    what: str  # what a size counts, e.g. "on duty"
    sizes: tuple[int, ...]  # ascending, an order of magnitude apart
    run: Callable[[Context, int], list[Result]]
    needs_app: bool = True


# --------------------------------------------------------------------------------------------------
# Subprocesses


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the child if the harness dies without cleaning up (e.g. SIGKILL)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Managed:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, what: str) -> BenchError:
        return BenchError(
            f"{self.name}: {what} (exit code {self.proc.poll()}); log {self.log_path}:\n{self.log_tail()}"
        )


class Processes:
    """Starts long-running subprocesses in their own process groups and stops every one of them."""

    def __init__(self) -> None:
        self._procs: list[Managed] = []
        self._logs: list[Any] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> Managed:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: gunicorn's workers go down with it
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        managed = Managed(name, proc, log_path)
        self._procs.append(managed)
        return managed

    def stop_all(self, grace: float = 8.0) -> None:
        procs, self._procs = self._procs, []
        for m in procs:
            _signal_group(m.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for m in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for m in procs:
            # The leader may be gone while a worker lingers: kill the whole group regardless.
            _signal_group(m.proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout=2)
        for log in self._logs:
            log.close()
        self._logs = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def wait_for_tcp(m: Managed, host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not m.alive():
            raise m.fail("exited before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise m.fail(f"not listening on {host}:{port} after {timeout:.0f}s")


def wait_for_http(m: Managed, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not m.alive():
            raise m.fail("exited before becoming ready")
        try:
            r = requests.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise m.fail(f"GET {url} not 200 after {timeout:.0f}s (last: {last})")


def gunicorn_argv(target: str, port: int, *, worker_class: str, workers: int, threads: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        target,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--graceful-timeout",
        "5",
        "--no-control-socket",  # its default path is shared by every gunicorn of this user
        "--error-logfile",
        "-",
    ]
    if worker_class == "gthread":
        argv += ["--threads", str(threads)]
    return argv


def run_logged(name: str, argv: list[str], env: dict[str, str], log_path: Path, timeout: float) -> None:
    """Run a command to completion, output to ``log_path``; raise with the log's tail if it fails."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        try:
            rc = subprocess.run(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{name}: timed out after {timeout:.0f}s; log {log_path}") from exc
    if rc != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise BenchError(f"{name}: exit code {rc}; log {log_path}:\n{tail}")


# --------------------------------------------------------------------------------------------------
# PostgreSQL and Redis


def _pg_connect_kwargs(database_url: str) -> tuple[dict[str, Any], str]:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        raise BenchError(f"BENCH_DATABASE_URL must be a PostgreSQL URL, got {url.drivername}")
    if not url.database:
        raise BenchError("BENCH_DATABASE_URL names no database")
    kwargs = {"host": url.host, "port": url.port, "user": url.username, "password": url.password}
    kwargs.update({k: v for k, v in url.query.items() if isinstance(v, str)})
    return {k: v for k, v in kwargs.items() if v is not None}, url.database


def ensure_database(database_url: str, *, fresh: bool = False) -> str:
    """Create the benchmark database if it is missing (``fresh``: drop it first). Returns a status."""
    import psycopg
    from psycopg import sql

    kwargs, name = _pg_connect_kwargs(database_url)
    if fresh and "bench" not in name:
        raise BenchError(
            f"refusing to drop database {name!r}: --fresh-db only drops a database named *bench*"
        )
    try:
        conn = psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        raise BenchError(f"cannot connect to PostgreSQL ({database_url}): {exc}") from exc
    with conn:
        ident = sql.Identifier(name)
        if fresh:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return f"database {name} exists"
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        return f"database {name} created"


def flush_redis(redis_url: str) -> int:
    """FLUSHDB the one database number the URL names (never FLUSHALL). Returns that number."""
    import redis

    path = redis_url.split("?", 1)[0].rsplit("/", 1)
    if len(path) != 2 or not path[1].isdigit() or "//" not in path[0]:
        raise BenchError(
            "BENCH_REDIS_URL must name its database number explicitly, "
            f"e.g. redis://host:6379/13: {redis_url}"
        )
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise BenchError(f"cannot FLUSHDB redis ({redis_url}): {exc}") from exc
    finally:
        client.close()
    return int(db)


# --------------------------------------------------------------------------------------------------
# Memory


def rss_mb(pid: int) -> float | None:
    """A process's resident memory (``VmRSS`` of /proc/<pid>/status) in MB; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc; empty elsewhere)."""
    children = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 1 and fields[1] == str(pid):
                children.append(int(entry.name))
    return children


def worker_rss_mb(master_pid: int) -> float | None:
    """The largest resident memory among a gunicorn master's worker processes (its children)."""
    sizes = [mb for pid in child_pids(master_pid) if (mb := rss_mb(pid)) is not None]
    return max(sizes) if sizes else None


def rss_mb_of_trees(pids: Iterable[int]) -> float | None:
    """The largest resident memory among these processes and their children (an RQ worker and a
    work horse it may have forked)."""
    sizes = []
    for pid in pids:
        for p in (pid, *child_pids(pid)):
            if (mb := rss_mb(p)) is not None:
                sizes.append(mb)
    return max(sizes) if sizes else None


# --------------------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkStats:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: dict[str, int]
    raw: str


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(text: str) -> WrkStats:
    """Parse ``wrk --latency`` output. Latencies are normalised to milliseconds."""

    def need(pattern: str) -> re.Match[str]:
        m = re.search(pattern, text, re.MULTILINE)
        if not m:
            raise BenchError(f"cannot parse wrk output (no match for {pattern!r}):\n{text}")
        return m

    rps = float(need(r"^Requests/sec:\s+([\d.]+)").group(1))
    p50 = need(r"^\s*50(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    p99 = need(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    total = need(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = {}
    if sock:
        socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
    return WrkStats(
        rps=rps,
        p50_ms=_to_ms(*p50.groups()),
        p99_ms=_to_ms(*p99.groups()),
        requests=int(total.group(1)),
        duration_s=_to_ms(total.group(2), total.group(3)) / 1000.0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
        raw=text,
    )


def _lua_string(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    out = []
    for b in data:
        if 32 <= b < 127 and b not in (ord('"'), ord("\\")):
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def wrk_script(req: Request) -> str:
    lines = ["-- generated by bench/harness.py", f"wrk.method = {_lua_string(req.method)}"]
    for k, v in req.headers.items():
        lines.append(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}")
    if req.body_bytes is not None:
        lines.append(f"wrk.body = {_lua_string(req.body_bytes)}")
    return "\n".join(lines) + "\n"


def require_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        raise WrkMissing(WRK_INSTALL_HINT)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "request"


def run_wrk(
    base_url: str,
    req: Request,
    *,
    label: str,
    duration: int,
    connections: int,
    threads: int,
    results_dir: Path = RESULTS_DIR,
) -> WrkStats:
    wrk = require_wrk()
    script = results_dir / f"wrk_{_slug(label)}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(wrk_script(req))
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={WRK_TIMEOUT_S}s",
        "--latency",
        "-s",
        str(script),
        base_url + req.path,
    ]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration + WRK_TIMEOUT_S + 60,
        check=False,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    output = proc.stdout + ("\n" + proc.stderr if proc.stderr.strip() else "")
    (results_dir / f"wrk_{_slug(label)}.txt").write_text(" ".join(argv) + "\n\n" + output)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed with exit code {proc.returncode}:\n{output}")
    return parse_wrk(proc.stdout)


def preflight(session: requests.Session, base_url: str, req: Request, *, what: str) -> requests.Response:
    """Send the request once; it must answer ``expect_status`` before we hammer it."""
    try:
        resp = session.request(
            req.method, base_url + req.path, headers=req.headers, data=req.body_bytes, timeout=10
        )
    except requests.RequestException as exc:
        raise BenchError(f"{what}: {req.describe()} failed: {exc}") from exc
    if resp.status_code != req.expect_status:
        raise BenchError(
            f"{what}: {req.describe()} answered {resp.status_code}, expected {req.expect_status}: "
            f"{resp.text[:500]}"
        )
    return resp


# --------------------------------------------------------------------------------------------------
# Helpers for scenarios that time themselves


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), round(pct / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def time_calls(
    scenario: str,
    fn: Callable[[], object],
    *,
    duration: float | None = None,
    iterations: int | None = None,
    warmup: int = 10,
    target: str = "",
    extra: dict[str, Any] | None = None,
) -> Result:
    """Call ``fn`` back to back (one client) for ``duration`` seconds or ``iterations`` times."""
    if (duration is None) == (iterations is None):
        raise ValueError("give exactly one of duration or iterations")
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    clock = time.perf_counter
    start = clock()
    stop_at = start + duration if duration is not None else None
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) * 1000.0)
        if (stop_at is not None and t1 >= stop_at) or (iterations is not None and len(samples) >= iterations):
            break
    elapsed = clock() - start
    samples.sort()
    return Result(
        scenario=scenario,
        rps=len(samples) / elapsed,
        p50_ms=percentile(samples, 50),
        p99_ms=percentile(samples, 99),
        kind="python",
        target=target,
        requests=len(samples),
        extra=extra or {},
    )


Timed = tuple[str, Callable[[], object], str, dict[str, Any]]


def time_alternating(calls: Sequence[Timed], *, iterations: int, warmup: int = 10) -> list[Result]:
    """Time several calls (scenario, fn, target, extra) one after the other, round after round
    (``iterations`` rounds after ``warmup``), one row each: rows compared with each other (a path
    and its floor) see the same minutes of a shared machine. req/s is over each call's own time."""
    for _ in range(warmup):
        for _, fn, _, _ in calls:
            fn()
    samples: list[list[float]] = [[] for _ in calls]
    clock = time.perf_counter
    for _ in range(iterations):
        for (_, fn, _, _), own in zip(calls, samples, strict=True):
            t0 = clock()
            fn()
            own.append((clock() - t0) * 1000.0)
    rows = []
    for (scenario, _, target, extra), own in zip(calls, samples, strict=True):
        own.sort()
        rows.append(
            Result(
                scenario=scenario,
                rps=len(own) / (sum(own) / 1000.0),
                p50_ms=percentile(own, 50),
                p99_ms=percentile(own, 99),
                kind="python",
                target=target,
                requests=len(own),
                extra=extra,
            )
        )
    return rows


def median_result(runs: Iterable[Result]) -> Result:
    """Collapse repeated runs of one scenario: medians of req/s, p50, p99 and of the per-round ratios
    (when every round has one); errors summed."""
    runs = list(runs)
    first = runs[0]
    if len(runs) == 1:
        return first
    errors: dict[str, int] = {}
    for r in runs:
        for k, v in r.socket_errors.items():
            errors[k] = errors.get(k, 0) + v
    return Result(
        scenario=first.scenario,
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        ratio=statistics.median(r.ratio for r in runs) if all(r.ratio is not None for r in runs) else None,
        baseline=first.baseline,
        kind=first.kind,
        target=first.target,
        requests=sum(r.requests or 0 for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=errors,
        api_worker_rss_mb=_max_or_none(r.api_worker_rss_mb for r in runs),
        rq_worker_rss_mb=_max_or_none(r.rq_worker_rss_mb for r in runs),
        extra={
            **first.extra,
            "runs": [{"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "ratio": r.ratio} for r in runs],
        },
    )


def _max_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
