"""Where one request's time goes: a wrk row's request replayed in-process, split into parts.

``python -m bench.run`` does this for every wrk row (``--breakdown N`` requests each, default
1,000; ``--breakdown 0`` skips it): after wrk has measured the row, the harness builds the app in its
own process with the app's environment (the same database, Redis and settings as the gunicorn
workers) and calls its WSGI callable with the row's request, first N times plain, then N times with
the parts below timed. The bare baseline app gets the same treatment, so the table shows what a
request costs over Flask itself. Nothing here goes through sockets or gunicorn: the gap between
this figure and the wrk row is gunicorn's HTTP handling and wrk's own share of the 2 cores.

Each part is *exclusive* wall time, measured by wrapping the library's entry points: while an
inner part runs (a Redis call made by the rate limiter, a SQL round trip under the ORM), the outer
part's clock stops. So the parts add up to the whole request:

==================  ======================================================================
part                what is timed
==================  ======================================================================
postgres            psycopg's ``execute``/``fetch*``/``commit``/``rollback``: the round trip
sqlalchemy          Session/Connection calls around them: ORM, Core compilation, the pool
redis               ``Redis.execute_command`` and ``Pipeline.execute``: the round trip
rate limiter        Flask-Limiter's checks and its after-request and teardown hooks
request parsing     webargs parsing the query string or body (its marshmallow ``load``)
response dump       marshmallow ``Schema.dump``
JSON encoding       the app's JSON provider (``dumps``/``response``)
logging             ``Logger.handle``: formatting and writing a record (the access line)
our hooks           the app's own before/after/teardown hooks (request id, metrics, the
                    access line's fields), less the parts above inside them
view (app code)     the view function: our handler and services, flask-smorest's decorators,
                    less the parts above inside it
framework           everything else: Werkzeug, Flask's dispatch, flask-smorest, hooks of
                    other libraries, building and closing the response
==================  ======================================================================

The wrappers themselves cost about a microsecond per wrapped call; ``overhead_us`` (timed minus
plain per request) says how much they added to the row.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.harness import BenchError, Request

#: The parts, in the order they are shown.
PARTS = (
    "postgres",
    "sqlalchemy",
    "redis",
    "rate limiter",
    "request parsing",
    "response dump",
    "JSON encoding",
    "logging",
    "our hooks",
    "view (app code)",
    "framework",
)

# (part, module, class, method): the library entry points each part is timed at.
_ENTRY_POINTS = (
    ("postgres", "psycopg", "Cursor", "execute"),
    ("postgres", "psycopg", "Cursor", "executemany"),
    ("postgres", "psycopg", "Cursor", "fetchone"),
    ("postgres", "psycopg", "Cursor", "fetchmany"),
    ("postgres", "psycopg", "Cursor", "fetchall"),
    ("postgres", "psycopg", "Connection", "commit"),
    ("postgres", "psycopg", "Connection", "rollback"),
    ("sqlalchemy", "sqlalchemy.orm", "Session", "execute"),
    ("sqlalchemy", "sqlalchemy.orm", "Session", "scalars"),
    ("sqlalchemy", "sqlalchemy.orm", "Session", "scalar"),
    ("sqlalchemy", "sqlalchemy.orm", "Session", "get"),
    ("sqlalchemy", "sqlalchemy.orm", "Session", "flush"),
    ("sqlalchemy", "sqlalchemy.orm", "Session", "commit"),
    ("sqlalchemy", "sqlalchemy.orm", "Session", "rollback"),
    ("sqlalchemy", "sqlalchemy.orm", "Session", "close"),
    ("sqlalchemy", "sqlalchemy.engine", "Connection", "execute"),
    ("redis", "redis.client", "Redis", "execute_command"),
    ("redis", "redis.client", "Pipeline", "execute"),
    ("rate limiter", "flask_limiter", "Limiter", "_check_request_limit"),
    ("request parsing", "webargs.core", "Parser", "parse"),
    ("response dump", "marshmallow", "Schema", "dump"),
    ("logging", "logging", "Logger", "handle"),
)


@dataclass
class Breakdown:
    """One request's cost: per-request wall and CPU time, and the wall time of each part (µs)."""

    label: str
    requests: int
    plain_wall_us: float
    plain_cpu_us: float
    timed_wall_us: float
    parts_us: dict[str, float] = field(default_factory=dict)

    @property
    def overhead_us(self) -> float:
        return self.timed_wall_us - self.plain_wall_us

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "overhead_us": round(self.overhead_us, 1)}


class _Clock:
    """Exclusive time per part: entering a part stops the clock of the one it was called from."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        self.stack: list[str] = []
        self.mark = 0.0

    def start(self) -> None:
        self.stack = ["framework"]
        self.mark = time.perf_counter()

    def stop(self) -> None:
        self.totals[self.stack[-1]] += time.perf_counter() - self.mark
        self.stack = []

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = self

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not clock.stack:  # outside a replayed request (setup, another thread's work)
                return fn(*args, **kwargs)
            now = time.perf_counter()
            clock.totals[clock.stack[-1]] += now - clock.mark
            clock.stack.append(part)
            clock.mark = now
            try:
                return fn(*args, **kwargs)
            finally:
                now = time.perf_counter()
                clock.totals[clock.stack.pop()] += now - clock.mark
                clock.mark = now

        return timed


def _hook_part(fn: Callable[..., Any]) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    module = getattr(target, "__module__", "") or ""
    if module.startswith("flask_limiter"):
        return "rate limiter"
    if module.startswith("flask_sqlalchemy"):
        return "sqlalchemy"
    if module.startswith("yijing"):
        return "our hooks"
    return "framework"


@contextlib.contextmanager
def _instrumented(app: Any, clock: _Clock) -> Iterator[None]:
    """Wrap the entry points, the app's hooks and views, and its JSON provider; undo on exit."""
    undo: list[Callable[[], None]] = []

    def patch(owner: Any, name: str, part: str) -> None:
        if isinstance(owner, type):
            original = owner.__dict__[name]
            undo.append(lambda: setattr(owner, name, original))
        else:  # an instance: the wrapper shadows the class's method until deleted
            original = getattr(owner, name)
            undo.append(lambda: delattr(owner, name))
        setattr(owner, name, clock.wrap(part, original))

    for part, module_name, class_name, method in _ENTRY_POINTS:
        try:
            owner = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        if method in owner.__dict__:
            patch(owner, method, part)
    for name in ("dumps", "response"):
        patch(app.json, name, "JSON encoding")
    for registry in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        for key, funcs in registry.items():
            saved = list(funcs)
            registry[key] = [clock.wrap(_hook_part(f), f) for f in funcs]
            undo.append(functools.partial(registry.__setitem__, key, saved))
    saved_teardown = list(app.teardown_appcontext_funcs)
    app.teardown_appcontext_funcs[:] = [clock.wrap(_hook_part(f), f) for f in saved_teardown]
    undo.append(lambda: app.teardown_appcontext_funcs.__setitem__(slice(None), saved_teardown))
    saved_views = dict(app.view_functions)
    for endpoint, view in saved_views.items():
        app.view_functions[endpoint] = clock.wrap("view (app code)", view)
    undo.append(lambda: app.view_functions.update(saved_views))
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The access line goes to stderr: written (it is part of the cost), but to /dev/null."""
    saved = sys.stderr
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull
        try:
            yield
        finally:
            sys.stderr = saved


def _call(app: Any, builder: Any, expect_status: int, label: str) -> None:
    status: list[str] = []

    def start_response(s: str, headers: list[Any], exc_info: Any = None) -> Callable[[bytes], None]:
        status.append(s)
        return lambda _data: None

    body = app(builder.get_environ(), start_response)
    try:
        for _chunk in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    code = int(status[0].split(" ", 1)[0])
    if code != expect_status:
        raise BenchError(f"breakdown of {label}: the replayed request answered {code}, not {expect_status}")


def measure(app: Any, label: str, req: Request, requests: int) -> Breakdown:
    """Replay ``req`` against ``app`` (a Flask app) ``requests`` times plain, then as many timed."""
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(
        path=req.path,
        method=req.method,
        headers=req.headers,
        data=req.body_bytes,
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    access = logging.getLogger("yijing.access")
    level = access.level
    access.setLevel(logging.INFO)  # as in the workers, whatever this process's logging says
    clock = _Clock()
    try:
        with _quiet_stderr():
            for _ in range(min(50, requests)):  # warm caches and the connection pool
                _call(app, builder, req.expect_status, label)
            wall = cpu = 0.0
            for _ in range(requests):
                w0, c0 = time.perf_counter(), time.process_time()
                _call(app, builder, req.expect_status, label)
                wall += time.perf_counter() - w0
                cpu += time.process_time() - c0
            timed = 0.0
            with _instrumented(app, clock):
                for _ in range(requests):
                    w0 = time.perf_counter()
                    clock.start()
                    _call(app, builder, req.expect_status, label)
                    clock.stop()
                    timed += time.perf_counter() - w0
    finally:
        access.setLevel(level)
    per = 1e6 / requests
    return Breakdown(
        label=label,
        requests=requests,
        plain_wall_us=round(wall * per, 1),
        plain_cpu_us=round(cpu * per, 1),
        timed_wall_us=round(timed * per, 1),
        parts_us={part: round(total * per, 1) for part, total in clock.totals.items()},
    )


def format_table(rows: list[Breakdown]) -> str:
    """Parts as rows, requests as columns (µs per request), with each row's whole and overhead."""
    if not rows:
        return ""
    headers = ["µs per request", *(r.label for r in rows)]
    lines = [
        ["whole request (plain, wall)", *(f"{r.plain_wall_us:,.0f}" for r in rows)],
        ["whole request (plain, CPU)", *(f"{r.plain_cpu_us:,.0f}" for r in rows)],
        *(
            [part, *(f"{r.parts_us.get(part, 0.0):,.0f}" for r in rows)]
            for part in PARTS
            if any(r.parts_us.get(part, 0.0) >= 0.5 for r in rows)
        ),
        ["added by the timing", *(f"{r.overhead_us:,.0f}" for r in rows)],
    ]
    widths = [max(len(str(row[i])) for row in [headers, *lines]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in lines)])
