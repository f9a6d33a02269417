"""Rate-limit keys and messages (limits are stored in Redis by Flask-Limiter)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

from flask import Flask, Response, g
from flask.globals import request_ctx
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

T = TypeVar("T")

_UNITS = {"second": "秒", "minute": "分钟", "hour": "小时", "day": "天", "month": "月", "year": "年"}


def user_key() -> str:
    """Limit per logged-in user (per address when anonymous). Use under ``login_required``."""
    principal = getattr(g, "principal", None)
    return f"user:{principal.user_id}" if principal else f"ip:{get_remote_address()}"


def failed_login(response: Response) -> bool:
    """Whether a login attempt counts against its address: only refused ones (4xx) do.

    Behind a carrier's NAT thousands of phones share one address; counting their successful logins
    (or the 503s of a WeChat outage) would lock the whole carrier out. Counting failures still stops
    someone trying codes or passwords from one address.
    """
    return 400 <= response.status_code < 500


def _drop_retry_after_unless_refused(response: Response) -> Response:
    # Flask-Limiter writes Retry-After on every limited response; it means "wait" only on a 429 or 503.
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def init_ratelimit_headers(app: Flask) -> None:
    """Run after every other after-request hook (Flask-Limiter's header injection included)."""
    app.after_request_funcs.setdefault(None, []).insert(0, _drop_retry_after_unless_refused)


def check_decorated_views_only(app: Flask, limiter: Limiter) -> None:
    """Drop Flask-Limiter's before-request check when the app declares no default or application limit.

    That hook only applies default and application limits (a ``@limiter.limit`` view checks its own
    limits when it is called), so with none declared it found nothing to count on every request and
    still cost about 40 µs of CPU (docs/performance.md, "Per-request overhead"). It makes no Redis
    round trip either way; the limited views make one or two for each of their limits.
    """
    if limiter.limit_manager.default_limits or limiter.limit_manager.application_limits:
        return
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    _only_where_a_limit_was_checked(app, limiter)


def _only_where_a_limit_was_checked(app: Flask, limiter: Limiter) -> None:
    """Run Flask-Limiter's after-request and teardown hooks only on a request that checked a limit.

    Both read the limiter's per-request context, which a check creates; on a request without one
    (every route without ``@limiter.limit``, now that nothing checks before the view) they created an
    empty context just to find nothing in it: no header to add, nothing to deduct or reset.
    """
    after = app.after_request_funcs[None]
    for i, hook in enumerate(after):
        if isinstance(hook, partial) and hook.func is Limiter._Limiter__inject_headers:  # type: ignore[attr-defined]
            after[i] = _when_limited(hook)
    teardown = app.teardown_request_funcs[None]
    for i, hook in enumerate(teardown):
        if getattr(hook, "__func__", None) is Limiter._Limiter__release_context:  # type: ignore[attr-defined]
            teardown[i] = _when_limited(hook)


def _when_limited(hook: Callable[[T], T]) -> Callable[[T], T]:
    def run_if_limited(value: T) -> T:
        if hasattr(request_ctx._get_current_object(), "_limiter_request_context"):
            return hook(value)
        return value

    return run_if_limited


def describe(limit_item: object) -> str:
    """``10 per 1 hour`` → ``每 1 小时最多 10 次``."""
    amount = getattr(limit_item, "amount", None)
    multiples = getattr(limit_item, "multiples", 1)
    granularity = getattr(limit_item, "GRANULARITY", None)
    unit = _UNITS.get(getattr(granularity, "name", ""), "")
    if amount is None or not unit:
        return str(limit_item)
    return f"每 {multiples} {unit}最多 {amount} 次"
