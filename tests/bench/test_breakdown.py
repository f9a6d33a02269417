"""The per-request breakdown (bench/breakdown.py) on a small Flask app of known parts.

The app dumps with marshmallow, logs one line and sleeps inside a wrapped "Redis" call, so each
part the breakdown reports can be checked against what the view really did.
"""

from __future__ import annotations

import logging
import time

import pytest
from flask import Flask, jsonify
from marshmallow import Schema, fields

from bench import breakdown
from bench.harness import BenchError, Request


class _Item(Schema):
    id = fields.Integer()
    name = fields.String()


class _SlowRedis:
    """Stands in for a client whose round trip takes 2 ms: ``Redis.execute_command`` (what the
    breakdown wraps) is called on it unbound and hands over to ``_execute_command``."""

    def _execute_command(self, *args: object, **options: object) -> bytes:
        time.sleep(0.002)
        return b"OK"


def _app() -> Flask:
    app = Flask(__name__)
    log = logging.getLogger("tests.breakdown")

    @app.get("/items")
    def items():  # type: ignore[no-untyped-def]
        from redis.client import Redis

        Redis.execute_command(_SlowRedis(), "PING")  # the wrapped entry point, without a server
        log.warning("listing")
        return jsonify(_Item(many=True).dump([{"id": i, "name": f"n{i}"} for i in range(50)]))

    return app


def test_parts_add_up_to_the_request_and_land_where_the_work_was() -> None:
    result = breakdown.measure(_app(), "items", Request(path="/items"), requests=40)

    assert result.requests == 40
    parts = result.parts_us
    assert set(parts) == set(breakdown.PARTS)
    # the 2 ms sleep is the "Redis round trip"; nothing else sleeps
    assert 1_900 <= parts["redis"] <= 6_000
    assert parts["response dump"] > 0
    assert parts["logging"] > 0
    assert parts["JSON encoding"] > 0
    assert parts["postgres"] == 0 and parts["sqlalchemy"] == 0
    # exclusive parts: their sum is the timed request, give or take the loop around it
    assert sum(parts.values()) == pytest.approx(result.timed_wall_us, rel=0.1)
    assert result.plain_wall_us >= 2_000
    assert result.plain_cpu_us < result.plain_wall_us


def test_the_wrappers_are_gone_afterwards() -> None:
    from redis.client import Redis

    app = _app()
    before = (Redis.execute_command, logging.Logger.handle, dict(app.view_functions))
    breakdown.measure(app, "items", Request(path="/items"), requests=3)
    assert (Redis.execute_command, logging.Logger.handle, dict(app.view_functions)) == before
    assert "dumps" not in vars(app.json)


def test_an_unexpected_status_fails_the_row() -> None:
    with pytest.raises(BenchError, match="answered 404"):
        breakdown.measure(_app(), "missing", Request(path="/nothing"), requests=2)


def test_the_table_shows_each_used_part_per_request() -> None:
    row = breakdown.Breakdown(
        label="me",
        requests=10,
        plain_wall_us=800.0,
        plain_cpu_us=600.0,
        timed_wall_us=850.0,
        parts_us={**dict.fromkeys(breakdown.PARTS, 0.0), "redis": 300.0, "framework": 550.0},
    )
    table = breakdown.format_table([row])
    lines = table.splitlines()
    assert lines[0].split() == ["µs", "per", "request", "me"]
    assert any(line.startswith("redis") and line.endswith("300") for line in lines)
    assert not any(line.startswith("postgres") for line in lines)  # a part nobody used is left out
    assert lines[-1].endswith("50")  # what the timing added: 850 - 800
