"""The pool checks a connection before use only after it sat idle (yijing.connection_check)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from yijing import connection_check
from yijing.extensions import db


@pytest.fixture
def engine(app):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the pool check is PostgreSQL's (SQLite has no server to lose)")
        db.engine.dispose()  # an empty pool: the next connection is the only one in it
        yield db.engine
        db.engine.dispose()


@pytest.fixture
def pings(engine, monkeypatch):
    """How many times the pool pinged a connection on checkout."""
    count = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: count.append(1) or real(conn))
    return count


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(engine, pid: int) -> None:
    other = create_engine(engine.url, poolclass=NullPool)
    with other.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    other.dispose()


def _later(monkeypatch, seconds: float) -> None:
    """From now on the pool's clock reads ``seconds`` later."""
    real = connection_check.monotonic
    monkeypatch.setattr(connection_check, "monotonic", lambda: real() + seconds)


def test_a_connection_taken_again_at_once_is_not_pinged(engine, pings):
    first = _backend_pid(engine)
    for _ in range(5):
        assert _backend_pid(engine) == first
    assert pings == []


def test_a_connection_idle_for_a_while_is_pinged_and_a_dead_one_replaced_before_use(
    engine, pings, monkeypatch
):
    first = _backend_pid(engine)
    _terminate(engine, first)  # a database restart or a firewall's idle timeout, unnoticed
    _later(monkeypatch, connection_check.IDLE_SECONDS + 1)
    second = _backend_pid(engine)  # the statement runs on a fresh connection: no error
    assert second != first
    assert pings == [1]


def test_a_connection_killed_while_in_use_fails_one_statement_and_the_pool_starts_afresh(engine, pings):
    first = _backend_pid(engine)
    _terminate(engine, first)
    with pytest.raises(OperationalError) as raised:  # the web layer answers it 503
        _backend_pid(engine)
    assert raised.value.connection_invalidated
    assert _backend_pid(engine) != first  # the next request connects again by itself
    assert pings == []
