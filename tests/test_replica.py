"""Reports and exports read from DATABASE_REPLICA_URL; writes never go through it.

The "replica" here is the test database itself opened through a second, read-only engine: which
engine each statement went through is what is checked (the cluster simulation, ``make cluster-test``,
runs a real streaming replica).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rq import SimpleWorker
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError

from yijing import jobs, replica
from yijing.extensions import db, redis_client
from yijing.models import Jurisdiction, ReportExport


@contextmanager
def statements(engine) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def replica_app(make_app, database_url):  # type: ignore[no-untyped-def]
    other = make_app(DATABASE_REPLICA_URL=database_url, REPLICA_MAX_LAG_SECONDS="30")
    yield other
    replica.dispose(other)


def _engines(other):  # type: ignore[no-untyped-def]
    with other.app_context():
        engine = replica.replica_engine()
        assert engine is not None
        return db.engine, engine


def _touches(seen: list[str], table: str) -> int:
    return sum(table in s for s in seen)


def test_the_participation_review_reads_from_the_replica(replica_app, tree, staff):
    headers = staff("leader-kdl", "leader", "150203")
    primary, engine = _engines(replica_app)
    client = replica_app.test_client()
    with statements(engine) as on_replica, statements(primary) as on_primary:
        summary = client.get("/api/v1/desk/reports/summary", headers=headers)
        coverage = client.get("/api/v1/desk/reports/coverage", headers=headers)
        board = client.get("/api/v1/desk/reports/leaderboard", headers=headers)
    assert summary.status_code == coverage.status_code == board.status_code == 200, summary.get_json()
    assert summary.get_json()["jurisdiction"]["id"] == tree["150203"]
    assert _touches(on_replica, "daily_stats") and _touches(on_replica, "volunteers")
    assert _touches(on_primary, "daily_stats") == _touches(on_primary, "volunteer_days") == 0


def test_an_export_reads_its_rows_from_the_replica_and_writes_its_progress_to_the_primary(
    replica_app, tree, staff
):
    headers = staff("leader-kdl", "leader", "150203")
    primary, engine = _engines(replica_app)
    client = replica_app.test_client()
    started = client.post("/api/v1/desk/exports", json={"kind": "coverage"}, headers=headers)
    assert started.status_code == 202, started.get_json()
    with statements(engine) as on_replica, statements(primary) as on_primary, replica_app.app_context():
        worker = SimpleWorker([jobs.get_queue(jobs.REPORTS)], connection=redis_client())
        worker.work(burst=True, with_scheduler=False)
        db.session.remove()
    done = client.get(f"/api/v1/desk/exports/{started.get_json()['id']}", headers=headers).get_json()
    assert done["status"] == "done" and done["total"] > 0, done
    assert _touches(on_replica, "teams") and not _touches(on_primary, "FROM teams")
    assert not any(s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")) for s in on_replica)
    assert any(s.startswith("UPDATE report_exports") for s in on_primary)
    with replica_app.app_context():
        assert db.session.get(ReportExport, done["id"]).status == "done"


def test_a_write_through_the_replica_is_refused_and_orm_writes_go_to_the_primary(replica_app, tree):
    primary, engine = _engines(replica_app)
    with replica_app.app_context(), replica.reads():
        with pytest.raises(DBAPIError) as refused:
            db.session.execute(text("UPDATE jurisdictions SET name = name || '!'"))
        assert "read-only" in str(refused.value) or "readonly" in str(refused.value)
        db.session.rollback()
        with statements(engine) as on_replica, statements(primary) as on_primary:
            node = db.session.scalar(select(Jurisdiction).where(Jurisdiction.id == tree["150203"]))
            node.name = "昆都仑区（改）"
            db.session.commit()
        assert _touches(on_replica, "SELECT") and not _touches(on_replica, "UPDATE")
        assert _touches(on_primary, "UPDATE jurisdictions")
    with replica_app.app_context():
        assert db.session.get(Jurisdiction, tree["150203"]).name == "昆都仑区（改）"
        db.session.remove()


def test_a_replica_lagging_beyond_the_bound_is_not_read(replica_app, tree, staff, monkeypatch):
    headers = staff("leader-kdl", "leader", "150203")
    primary, engine = _engines(replica_app)
    monkeypatch.setattr(replica, "replica_lag", lambda _engine: 31.0)
    replica_app.extensions["yijing_replica"].checked_at = float("-inf")  # check again now
    with statements(engine) as on_replica, statements(primary) as on_primary:
        response = replica_app.test_client().get("/api/v1/desk/reports/summary", headers=headers)
    assert response.status_code == 200
    assert not on_replica and _touches(on_primary, "daily_stats")


def test_without_a_replica_url_reports_read_the_primary(app_ctx):
    assert app_ctx.config["YIJING"].database_replica_url == ""
    with replica.reads():
        assert replica.replica_engine() is None
        assert db.session.get_bind() is db.engine
