"""PostgreSQL killed and restarted under write load: 503 in the error shape, nothing acknowledged is lost,
and the app recovers by itself.

The test starts a PostgreSQL cluster of its own on a free port (initdb + pg_ctl, run as the ``postgres``
user when the tests run as root); the machine's PostgreSQL is never touched.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import select

from yijing.web import outages


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class OwnPostgres:
    """A throw-away PostgreSQL cluster (fsync off) that the test stops and starts."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.root = root
        self.data = root / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, timeout=60, text=True)
        assert done.returncode == 0, f"{args[0]}: {done.stderr or done.stdout}"

    def init(self) -> None:
        if self._as:
            shutil.chown(self.root, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def kill(self) -> None:
        """Stop without a shutdown checkpoint, closing every connection (what a crash does)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        subprocess.run(
            [*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    if _pg_bin("initdb") is None or _pg_bin("pg_ctl") is None:
        pytest.skip("initdb/pg_ctl not installed (this test runs a PostgreSQL of its own)")
    # Not under pytest's temporary directory: as root, that one is closed to the postgres user.
    root = Path(tempfile.mkdtemp(prefix="yijing-own-pg-"))
    server = OwnPostgres(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


TREE = [
    {"key": "150203", "parent_key": None, "name": "昆都仑区", "level": "district", "code": "150203"},
    {"key": "150203-01", "parent_key": "150203", "name": "沼潭街道", "level": "street", "code": None},
    {
        "key": "150203-01-01",
        "parent_key": "150203-01",
        "name": "沼潭社区",
        "level": "community",
        "code": None,
    },
]


def _prepare(other) -> tuple[dict[str, str], int]:
    """Migrate the new cluster, add a district and a desk account; returns its headers and a community."""
    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import Jurisdiction, Role
    from yijing.services import auth, jurisdictions

    with other.app_context():
        upgrade()
        jurisdictions.import_nodes([{**n, "lat": 40.66, "lng": 109.82} for n in TREE])
        ids = {j.key: j.id for j in db.session.query(Jurisdiction)}
        user = auth.create_staff("desk-outage", "correct horse battery", "值班台")
        auth.grant_role(user.id, Role("desk"), ids["150203"], Actor.system("test"))
        db.session.remove()
    login = other.test_client().post(
        "/api/v1/desk/auth/login", json={"username": "desk-outage", "password": "correct horse battery"}
    )
    assert login.status_code == 200, login.get_json()
    return {"Authorization": f"Bearer {login.get_json()['token']}"}, ids["150203-01-01"]


def _task(title: str, community: int) -> dict:
    now = datetime.now(UTC)
    return {
        "kind": "patrol",
        "title": title,
        "description": "沿社区主干道巡逻",
        "jurisdiction_id": community,
        "lat": 40.65,
        "lng": 109.83,
        "address": "沼潭社区北门",
        "geofence_radius_m": 200,
        "starts_at": (now + timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=3)).isoformat(),
        "slots": 3,
        "points": 10,
        "dispatch_mode": "open",
        "publish": False,
    }


def test_postgresql_killed_and_restarted_under_write_load(make_app, own_postgres, caplog, monkeypatch):
    monkeypatch.setattr(outages, "throttle", outages._Throttle())
    other = make_app(DATABASE_URL=own_postgres.url)
    desk, community = _prepare(other)
    results: list[tuple[str, int, dict, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        client = other.test_client()
        while not stop.is_set():
            title = f"巡逻{n}-{uuid.uuid4().hex[:8]}"
            response = client.post("/api/v1/desk/tasks", json=_task(title, community), headers=desk)
            with lock:
                results.append(
                    (title, response.status_code, response.get_json(), response.headers.get("Retry-After"))
                )

    def count(status: int) -> int:
        with lock:
            return sum(1 for r in results if r[1] == status)

    def wait_for(condition, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)

    caplog.set_level(logging.WARNING)
    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: count(201) >= 10)
        own_postgres.kill()
        wait_for(lambda: count(503) >= 10)
        ok_before_restart = count(201)
        own_postgres.start()
        wait_for(lambda: count(201) >= ok_before_restart + 10)  # recovered without a restart of the app
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    statuses = {status for _, status, _, _ in results}
    assert statuses <= {201, 503}, statuses
    for _, status, body, retry_after in results:
        if status == 503:
            assert body["error"]["code"] == "service_unavailable"
            assert body["error"]["message"] == outages.MESSAGES["database"]
            assert body["error"]["fields"] == {"retry_after": outages.RETRY_AFTER_SECONDS}
            assert retry_after == str(outages.RETRY_AFTER_SECONDS)
        else:
            assert retry_after is None

    # Every write the client saw acknowledged is stored.
    from yijing.extensions import db
    from yijing.models import Task

    with other.app_context():
        stored = set(db.session.scalars(select(Task.title)))
        db.session.remove()
    acknowledged = {title for title, status, _, _ in results if status == 201}
    assert acknowledged <= stored

    # The outage is one warning (this test lasts less than the log interval), not a traceback per request.
    outage_logs = [r for r in caplog.records if r.name == outages.log.name]
    assert len(outage_logs) == 1 and outage_logs[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.exc_info], [
        r.getMessage() for r in caplog.records if r.exc_info
    ]


def test_the_outage_warning_is_repeated_once_per_interval(monkeypatch, caplog):
    now = [1000.0]
    throttle = outages._Throttle(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger=outages.log.name)
    error = ConnectionError("connection refused")
    for _ in range(50):
        throttle.report("database", error)
    now[0] += outages.LOG_INTERVAL_SECONDS + 1
    throttle.report("database", error)
    records = [r for r in caplog.records if r.name == outages.log.name]
    assert len(records) == 2
    assert records[1].suppressed_since_last == 49


def test_redis_down_and_a_service_saying_so_answer_503_with_retry_after_and_a_bug_stays_a_500(
    make_app, caplog, monkeypatch
):
    import redis
    from sqlalchemy import exc as sa_exc

    from yijing.errors import ServiceUnavailable

    other = make_app()
    monkeypatch.setattr(outages, "throttle", outages._Throttle())

    def redis_down():
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    def wechat_down():
        raise ServiceUnavailable("微信服务暂时无法连接，请稍后再试", code="wechat_unavailable")

    def wrong_query():
        raise sa_exc.OperationalError("SELECT nope", {}, Exception("no such column: nope"))

    for name, view in (("redis", redis_down), ("wechat", wechat_down), ("bug", wrong_query)):
        other.add_url_rule(f"/test-outage/{name}", name, view)
    client = other.test_client()
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        down = client.get("/test-outage/redis")
        assert down.status_code == 503 and down.headers["Retry-After"] == str(outages.RETRY_AFTER_SECONDS)
        assert down.get_json()["error"] == {
            "code": "service_unavailable",
            "message": outages.MESSAGES["redis"],
            "fields": {"retry_after": outages.RETRY_AFTER_SECONDS},
        }
    assert len([r for r in caplog.records if r.name == outages.log.name]) == 1  # once, not per request
    wechat = client.get("/test-outage/wechat")
    assert wechat.status_code == 503 and wechat.get_json()["error"]["code"] == "wechat_unavailable"
    assert wechat.headers["Retry-After"] == str(outages.RETRY_AFTER_SECONDS)
    bug = client.get("/test-outage/bug")
    assert bug.status_code == 500 and "Retry-After" not in bug.headers
