"""Checking a pooled database connection before use, only when it has been idle.

SQLAlchemy's ``pool_pre_ping`` pings every connection it hands out: one more round trip to
PostgreSQL on every checkout, which on a hot path (a task's 409 ``task_full`` is one SELECT; a
dispatch ring checks a connection out for each read it makes outside a transaction) is a large
share of the database work. Here the ping happens only for a connection that has sat in the pool
for at least :data:`IDLE_SECONDS`: after a quiet spell, when a database restart or a firewall's
idle timeout may have killed it unnoticed, a dead connection is replaced before the request sees
it (the pool's "pessimistic" check, raising ``DisconnectionError`` from the ``checkout`` event).

Under load every connection comes back within milliseconds and is not pinged. If the database
restarts while connections are busy, the next statement on each one fails; that request answers
503 ``service_unavailable`` (:mod:`yijing.web.outages`) and SQLAlchemy invalidates the whole pool
on that disconnect, so the process's next request connects afresh. That is at most one 503 per
worker process per database restart under load, where the restart itself answers 503 while the
database is down anyway.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

#: A connection back in the pool for this long is pinged when it is next checked out.
IDLE_SECONDS = 1.0

_CHECKED_IN_AT = "yijing_checked_in_at"


def ping_when_idle(engine: Engine, idle_seconds: float = IDLE_SECONDS) -> None:
    """Ping the engine's connections on checkout only after ``idle_seconds`` in the pool (use it
    instead of ``pool_pre_ping``)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        # A new connection (no check-in yet) has just been made: nothing to check.
        if since is None or monotonic() - since < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error:  # e.g. the server's "terminating connection" notice
            alive = False
        if not alive:
            raise DisconnectionError("a pooled connection idle for a while no longer answers")
