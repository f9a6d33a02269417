"""Reads that may go to a PostgreSQL streaming replica: the participation review and exports.

``DATABASE_REPLICA_URL`` names the replica (none: everything reads the primary). Code that may
read stale data runs inside :func:`reads` (or a function decorated with :func:`reads_from_replica`);
there, the session sends its SELECTs to the replica and everything else to the primary:

- a flush (the ORM's INSERT/UPDATE/DELETE) and any DML statement always go to the primary;
- rows of :data:`PRIMARY_ONLY` models (an export's own progress) are always read from the primary;
- the replica's connections open read-only transactions (``default_transaction_read_only``), so a
  write that slipped through would be refused by the server, not applied.

Lag: before sending reads to the replica, its replay lag is checked (at most every
``LAG_CHECK_SECONDS`` per process); above ``REPLICA_MAX_LAG_SECONDS`` — or if the replica does not
answer — the reads go to the primary. Report figures are cached for two minutes and their rollups
refreshed every 15, so a lag within the bound changes nothing a person sees; an export may miss
rows written during the last ``REPLICA_MAX_LAG_SECONDS``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from flask import current_app
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from yijing.connection_check import ping_when_idle

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

LAG_CHECK_SECONDS = 5.0
_EXTENSION = "yijing_replica"
_reading: ContextVar[bool] = ContextVar("yijing_replica_reads", default=False)

# Tables whose rows are read back after this process wrote them (so never from a lagging copy).
PRIMARY_ONLY = frozenset({"report_exports"})

_LAG_SQL = text(
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)


class _Replica:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.checked_at = float("-inf")
        self.usable = False
        self.lag: float | None = None


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 10})

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        return engine
    engine = create_engine(
        url,
        pool_size=3,
        max_overflow=5,
        connect_args={"options": "-c default_transaction_read_only=on", "connect_timeout": 3},
    )
    ping_when_idle(engine)
    return engine


def _replica() -> _Replica | None:
    url = current_app.config["YIJING"].database_replica_url
    if not url:
        return None
    current = current_app.extensions.get(_EXTENSION)
    if current is None or current.url != url:
        current = current_app.extensions[_EXTENSION] = _Replica(url)
    return current


def replica_lag(engine: Engine) -> float:
    """Seconds the replica's replay is behind (0 when it has replayed all it received)."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        return float(conn.execute(_LAG_SQL).scalar_one())


def replica_engine() -> Engine | None:
    """The replica's engine if one is configured, answers and lags within the bound; else None."""
    replica = _replica()
    if replica is None:
        return None
    now = time.monotonic()
    if now - replica.checked_at >= LAG_CHECK_SECONDS:
        replica.checked_at = now
        bound = current_app.config["YIJING"].replica_max_lag_seconds
        try:
            replica.lag = replica_lag(replica.engine)
        except SQLAlchemyError as exc:
            replica.lag = None
            log.warning("replica unreachable; reading from the primary", extra={"error": type(exc).__name__})
        usable = replica.lag is not None and replica.lag <= bound
        if usable != replica.usable and replica.lag is not None and not usable:
            log.warning("replica lags %.1f s (bound %d s); reading from the primary", replica.lag, bound)
        replica.usable = usable
    return replica.engine if replica.usable else None


@contextlib.contextmanager
def reads() -> Iterator[None]:
    """SELECTs inside go to the replica (when configured and fresh enough); writes still to the primary."""
    token = _reading.set(True)
    try:
        yield
    finally:
        _reading.reset(token)


def reads_from_replica(func: F) -> F:
    """Run ``func`` inside :func:`reads`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with reads():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _is_primary_only(mapper: Any) -> bool:
    table = getattr(getattr(mapper, "persist_selectable", None), "name", None)
    return table in PRIMARY_ONLY


class ReplicaAwareSession(FlaskSession):
    """Flask-SQLAlchemy's session, which inside :func:`reads` sends plain reads to the replica."""

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kwargs: Any) -> Any:
        if (
            bind is None
            and _reading.get()
            and not self._flushing
            and not getattr(clause, "is_dml", False)
            and not _is_primary_only(mapper)
        ):
            engine = replica_engine()
            if engine is not None:
                return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


def dispose(app: Any) -> None:
    """Close the replica's pooled connections (tests, and a worker's forked child)."""
    replica = app.extensions.pop(_EXTENSION, None)
    if replica is not None:
        replica.engine.dispose()


def dispose_in_child(app: Any) -> None:
    """In a forked child: forget the parent's pooled replica connections without closing them."""
    replica = app.extensions.get(_EXTENSION)
    if replica is not None:
        replica.engine.dispose(close=False)
