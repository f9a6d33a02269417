"""A database or Redis that cannot be reached is an outage, not a bug: 503 in the error shape.

PostgreSQL restarting, stopped or unreachable, and Redis down, reach a handler as exceptions from
deep inside a service. The answer is ``503 service_unavailable`` with ``Retry-After`` (the header, and
``retry_after`` in ``fields``) in the one error shape, never a 500 with a traceback. The app recovers
by itself when the service is back: the connection pool checks a connection that sat idle before
using it, and throws the whole pool away when a statement finds its connection killed by a restart
(:mod:`yijing.connection_check`).

Expected outage errors are logged as one warning per service per ``LOG_INTERVAL_SECONDS`` (with the
number of requests it answered 503 since), so an outage at peak does not write a traceback per request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis.exceptions as redis_errors
from flask import Flask, Response
from sqlalchemy import exc as sa_exc

from yijing.errors import ServiceUnavailable
from yijing.extensions import db
from yijing.web.errors import error_response, handle_domain_error, handle_unexpected

log = logging.getLogger(__name__)

#: What a client is told to wait before retrying (seconds): a PostgreSQL restart takes a few.
RETRY_AFTER_SECONDS = 5
#: One warning per service per this many seconds while it is down.
LOG_INTERVAL_SECONDS = 60.0

MESSAGES = {
    "database": "数据库暂时无法连接，请稍后再试",
    "redis": "缓存服务暂时无法连接，请稍后再试",
}

# SQLSTATE classes and codes that mean "the server is not there for us right now".
_OUTAGE_SQLSTATE_PREFIXES = ("08",)  # connection exception
_OUTAGE_SQLSTATES = {
    "57P01",  # admin_shutdown (terminating connection due to administrator command)
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (the database system is starting up / shutting down)
    "53300",  # too_many_connections
}
_SQLITE_OUTAGES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")


class _Throttle:
    """Logs the first outage error of a service, then one per interval with how many it swallowed."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def report(self, service: str, exc: BaseException) -> None:
        now = self.clock()
        with self._lock:
            last = self._last.get(service)
            if last is not None and now - last < LOG_INTERVAL_SECONDS:
                self._suppressed[service] = self._suppressed.get(service, 0) + 1
                return
            self._last[service] = now
            suppressed = self._suppressed.pop(service, 0)
        log.warning(
            "%s unavailable: answering 503",
            service,
            extra={
                "service": service,
                "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "suppressed_since_last": suppressed,
            },
        )


throttle = _Throttle()


def is_database_outage(exc: BaseException) -> bool:
    """True for errors that mean the database cannot be reached (not for a bad query)."""
    if isinstance(exc, sa_exc.TimeoutError):  # no connection free in the pool in time
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    if sqlite_name is not None:  # SQLite: locked, busy or unreadable, but not a wrong query
        return sqlite_name.startswith(_SQLITE_OUTAGES)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    if not isinstance(orig, psycopg.Error):
        return False
    if orig.sqlstate:
        return orig.sqlstate in _OUTAGE_SQLSTATES or orig.sqlstate.startswith(_OUTAGE_SQLSTATE_PREFIXES)
    # No SQLSTATE: psycopg could not connect, or lost the socket mid-query.
    return isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError)


def unavailable(service: str) -> Response:
    response = error_response(
        503, "service_unavailable", MESSAGES[service], {"retry_after": RETRY_AFTER_SECONDS}
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _rollback_quietly() -> None:
    try:
        db.session.rollback()
    except Exception:  # the connection is gone; the pool discards it
        db.session.remove()


def handle_database_error(exc: sa_exc.SQLAlchemyError) -> Response:
    if not is_database_outage(exc):
        return handle_unexpected(exc)
    _rollback_quietly()
    throttle.report("database", exc)
    return unavailable("database")


def handle_redis_error(exc: redis_errors.RedisError) -> Response:
    _rollback_quietly()
    throttle.report("redis", exc)
    return unavailable("redis")


def handle_service_unavailable(exc: ServiceUnavailable) -> Response:
    """A service said it could not go on (WeChat or Redis down): the shape, with Retry-After."""
    response = handle_domain_error(exc)
    response.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return response


def _remove_session_quietly(_exc: BaseException | None) -> None:
    """End the request's session even when the database died after the answer was made.

    Flask-SQLAlchemy's own teardown rolls the session back; on a connection the database has just
    closed that rollback raises, and a write already committed and answered would reach the client
    as a 500. The dead connection is invalidated (the pool drops it) and the session forgotten.
    """
    try:
        db.session.remove()
    except sa_exc.DBAPIError as exc:
        if not is_database_outage(exc):
            raise
        db.session.registry.clear()


def register(app: Flask) -> None:
    """Registered beside the app's other error handlers (each exception class picks its own), after
    the database extension (so the quiet session teardown runs before its own)."""
    app.teardown_appcontext(_remove_session_quietly)
    for cls in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
        app.register_error_handler(cls, handle_database_error)
    for cls in (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError):
        app.register_error_handler(cls, handle_redis_error)
    app.register_error_handler(ServiceUnavailable, handle_service_unavailable)
