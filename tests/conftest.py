"""Test fixtures: real PostgreSQL or SQLite (``YIJING_TEST_DB``), real Redis, the fake WeChat.

The schema is built by running the migrations. Every test starts from empty tables, an empty
Redis database of our own and a reset fake WeChat server. Any connection to a host other than
this machine fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text

from fakewechat import DEFAULT_APPID, DEFAULT_SECRET, FakeWeChatServer
from yijing import create_app
from yijing.config import Config

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_DB = os.environ.get("YIJING_TEST_DB", "sqlite")
PG_SERVER_URL = os.environ.get("YIJING_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_TEST_DATABASE = os.environ.get("YIJING_TEST_PG_DATABASE", "yijing_test")
REDIS_URL = os.environ.get("YIJING_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")

# A small tree used by most tests: two districts, each with a street, communities and grids.
TEST_TREE = [
    {
        "key": "150200",
        "parent_key": None,
        "name": "包头市",
        "level": "city",
        "code": "150200",
        "lat": 40.657,
        "lng": 109.840,
    },
    {
        "key": "150203",
        "parent_key": "150200",
        "name": "昆都仑区",
        "level": "district",
        "code": "150203",
        "lat": 40.661,
        "lng": 109.822,
    },
    {
        "key": "150203-01",
        "parent_key": "150203",
        "name": "沼潭街道",
        "level": "street",
        "code": None,
        "lat": 40.650,
        "lng": 109.830,
    },
    {
        "key": "150203-01-01",
        "parent_key": "150203-01",
        "name": "沼潭社区",
        "level": "community",
        "code": None,
        "lat": 40.652,
        "lng": 109.832,
    },
    {
        "key": "150203-01-01-1",
        "parent_key": "150203-01-01",
        "name": "第一网格",
        "level": "grid",
        "code": None,
        "lat": 40.6525,
        "lng": 109.8325,
    },
    {
        "key": "150203-01-02",
        "parent_key": "150203-01",
        "name": "友谊社区",
        "level": "community",
        "code": None,
        "lat": 40.660,
        "lng": 109.815,
    },
    {
        "key": "150204",
        "parent_key": "150200",
        "name": "青山区",
        "level": "district",
        "code": "150204",
        "lat": 40.643,
        "lng": 109.901,
    },
    {
        "key": "150204-01",
        "parent_key": "150204",
        "name": "先锋道街道",
        "level": "street",
        "code": None,
        "lat": 40.640,
        "lng": 109.900,
    },
    {
        "key": "150204-01-01",
        "parent_key": "150204-01",
        "name": "先锋社区",
        "level": "community",
        "code": None,
        "lat": 40.641,
        "lng": 109.905,
    },
]


def _service_missing(what: str) -> None:
    message = f"{what} is not reachable"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: the suite needs it)", pytrace=False)
    pytest.skip(f"{message}; start it or run under CI=true to make this a failure")


@pytest.fixture(scope="session", autouse=True)
def _only_local_network() -> Iterator[None]:
    """Fail any connection that leaves this machine (the fake WeChat is the only WeChat)."""
    original = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if not (host in {"localhost", "::1"} or str(host).startswith("127.")):
                raise AssertionError(f"test tried to reach {address!r}: only 127.0.0.1 is allowed")
        return original(self, address)

    socket.socket.connect = guarded  # type: ignore[method-assign]
    yield
    socket.socket.connect = original  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError:
        _service_missing(f"Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if TEST_DB == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'yijing-test.db'}"
    if TEST_DB != "postgresql":
        pytest.fail(f"YIJING_TEST_DB must be sqlite or postgresql, not {TEST_DB!r}")
    try:
        with psycopg.connect(PG_SERVER_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_TEST_DATABASE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_TEST_DATABASE}"')
    except psycopg.OperationalError:
        _service_missing(f"PostgreSQL at {PG_SERVER_URL}")
    base = PG_SERVER_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{PG_TEST_DATABASE}"


@pytest.fixture(scope="session")
def fake_wechat() -> Iterator[FakeWeChatServer]:
    with FakeWeChatServer() as server:
        yield server


def make_config(database_url: str, redis_url: str, wechat_url: str, **overrides: str) -> Config:
    env = {
        "YIJING_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": "yjtest:",
        "QUEUE_PREFIX": "yjtest-",
        "WECHAT_APPID": DEFAULT_APPID,
        "WECHAT_SECRET": DEFAULT_SECRET,
        "WECHAT_API_BASE_URL": wechat_url,
        "WECHAT_TIMEOUT": "2",
        "LOG_JSON": "true",
        "LOG_LEVEL": "INFO",
        "MEDIA_ROOT": os.environ.get("YIJING_TEST_MEDIA_ROOT", "/tmp/yijing-test-media"),
    }
    env.update(overrides)
    return Config.from_env(env)


@pytest.fixture(scope="session")
def app(database_url: str, redis_url: str, fake_wechat: FakeWeChatServer) -> Iterator[Flask]:
    app = create_app(make_config(database_url, redis_url, fake_wechat.base_url))
    app.config["TESTING"] = True
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        from yijing.extensions import db

        db.engine.dispose()


def _truncate_all(app: Flask) -> None:
    from yijing.extensions import db

    with app.app_context():
        db.session.remove()
        tables = [t.name for t in db.metadata.sorted_tables]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                return
            for name in reversed(tables):
                conn.execute(text(f"DELETE FROM {name}"))
            if conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
                conn.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty tables, our own Redis database and the fake WeChat before each test that uses the app."""
    if "app" not in request.fixturenames:
        yield
        return
    app: Flask = request.getfixturevalue("app")
    fake: FakeWeChatServer = request.getfixturevalue("fake_wechat")
    _truncate_all(app)
    redis.Redis.from_url(app.config["YIJING"].redis_url).flushdb()
    fake.state.reset()
    from yijing.extensions import limiter

    limiter.reset()
    yield


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app
        from yijing.extensions import db

        db.session.remove()


@pytest.fixture
def tree(app: Flask) -> dict[str, int]:
    """Import :data:`TEST_TREE`; returns key → id."""
    from yijing.extensions import db
    from yijing.models import Jurisdiction
    from yijing.services import jurisdictions

    with app.app_context():
        jurisdictions.import_nodes(TEST_TREE)
        ids = {j.key: j.id for j in db.session.query(Jurisdiction)}
        db.session.remove()
    return ids


@pytest.fixture
def wechat_login(client: FlaskClient) -> Callable[[str], dict[str, str]]:
    """Log a mini-program user in through the fake WeChat; returns auth headers."""

    def login(name: str = "alice") -> dict[str, str]:
        response = client.post("/api/v1/auth/wechat-login", json={"code": f"{name}.{uuid.uuid4().hex[:8]}"})
        assert response.status_code == 200, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['token']}"}

    return login


@pytest.fixture
def staff(app: Flask, client: FlaskClient, tree: dict[str, int]) -> Callable[..., dict[str, str]]:
    """Create a staff user with ``role`` over the jurisdiction ``key`` and log in; returns auth headers."""
    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import Role
    from yijing.services import auth

    def make(username: str, role: str = "desk", key: str = "150203") -> dict[str, str]:
        password = "correct horse battery"
        with app.app_context():
            user = auth.create_staff(username, password, username)
            auth.grant_role(user.id, Role(role), tree[key], Actor.system("test"))
            db.session.remove()
        response = client.post("/api/v1/desk/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['token']}"}

    return make


@pytest.fixture
def make_app(
    app: Flask, database_url: str, redis_url: str, fake_wechat: FakeWeChatServer
) -> Iterator[Callable[..., Flask]]:
    """Build another app on the same (migrated) database, with environment overrides.

    Flask-Limiter keeps one storage per limiter (one app per process in production), so the
    session app's limiter storage is restored afterwards.
    """
    from yijing.extensions import limiter

    built: list[Flask] = []

    def build(**overrides: str) -> Flask:
        other = create_app(make_config(database_url, redis_url, fake_wechat.base_url, **overrides))
        other.config["TESTING"] = True
        built.append(other)
        return other

    yield build
    for other in built:
        with other.app_context():
            from yijing.extensions import db

            db.session.remove()
            db.engine.dispose()
    limiter.init_app(app)


# -- media and clues (issue 5) --

# Points near the test tree's communities: 沼潭社区 in 昆都仑区, 先锋社区 in 青山区.
PLACES = {
    "kundulun": {"lat": 40.6523, "lng": 109.8331, "address": "沼潭社区 3 号楼"},
    "qingshan": {"lat": 40.6412, "lng": 109.9046, "address": "先锋道 8 号"},
}


@pytest.fixture
def places() -> dict[str, dict[str, Any]]:
    """Places for clues: ``kundulun`` (沼潭社区, 昆都仑区) and ``qingshan`` (先锋社区, 青山区)."""
    return {name: dict(place) for name, place in PLACES.items()}


def make_image(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), exif: Any = None) -> bytes:
    """A small image in ``fmt`` (JPEG, PNG, WEBP), optionally with EXIF."""
    import io

    from PIL import Image

    image = Image.new("RGB", size, (200, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


@pytest.fixture
def media_storage(app: Flask, tmp_path: Any) -> Iterator[Any]:
    """Store uploads under this test's own directory; yields the directory."""
    from yijing.storage import LocalStorage

    previous = app.extensions.get("yijing_storage")
    root = tmp_path / "media"
    app.extensions["yijing_storage"] = LocalStorage(root)
    yield root
    if previous is None:
        app.extensions.pop("yijing_storage", None)
    else:
        app.extensions["yijing_storage"] = previous


@pytest.fixture
def upload_image(client: FlaskClient, media_storage: Any) -> Callable[..., Any]:
    """POST an image to /api/v1/media; returns the response.

    The multipart body is built here: the test client spools large bodies to a file it never closes.
    """

    def upload(
        headers: dict[str, str], data: bytes | None = None, purpose: str = "clue", filename: str = "photo.jpg"
    ) -> Any:
        boundary = "yijing-test-" + uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + (make_image() if data is None else data)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return client.post(
            "/api/v1/media",
            query_string={"purpose": purpose},
            data=body,
            headers=headers,
            content_type=f"multipart/form-data; boundary={boundary}",
        )

    return upload


@pytest.fixture
def report_clue(client: FlaskClient, tree: dict[str, int]) -> Callable[..., Any]:
    """POST a clue (a valid one by default, overridden by keyword); returns the response."""

    def report(headers: dict[str, str], extra_headers: dict[str, str] | None = None, **fields: Any) -> Any:
        body = {
            "category": "suspicious_person",
            "description": "小区门口有陌生人反复查看电动车",
            "place": dict(PLACES["kundulun"]),
            "anonymous": False,
        }
        body.update(fields)
        return client.post("/api/v1/clues", json=body, headers={**headers, **(extra_headers or {})})

    return report


@pytest.fixture
def run_jobs(app: Flask) -> Callable[..., None]:
    """Run the queued jobs of ``names`` (all queues by default) in this process until none is left."""
    from rq import SimpleWorker

    from workers import queues
    from yijing.extensions import redis_client

    def run(*names: str) -> None:
        with app.app_context():
            worker = SimpleWorker(
                [queues.get_queue(n) for n in (names or queues.ALL)], connection=redis_client()
            )
            worker.work(burst=True, with_scheduler=False)
            from yijing.extensions import db

            db.session.remove()

    return run


# -- volunteers ---------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id_number(
    birth: Any = None, *, region: str = "150203", seq: int = 123, check: str | None = None
) -> str:
    """A resident ID number (GB 11643) with a correct check digit unless ``check`` is given.

    ``birth`` is a ``date`` or ``YYYYMMDD`` text; by default someone aged 30.
    """
    from datetime import date

    if birth is None:
        today = date.today()
        birth = today.replace(year=today.year - 30, day=min(today.day, 28))
    text = birth if isinstance(birth, str) else birth.strftime("%Y%m%d")
    body = f"{region}{text}{seq:03d}"
    digit = "10X98765432"[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return body + (check if check is not None else digit)


class VolunteerHelper:
    """Apply, approve and put volunteers on duty through HTTP."""

    def __init__(self, client: FlaskClient, login: Callable[[str], dict[str, str]], tree: dict[str, int]):
        self.client = client
        self.login = login
        self.tree = tree
        self._seq = 100

    def application(self, **overrides: Any) -> dict[str, Any]:
        self._seq += 1
        body = {
            "category": "courier",
            "employer": "包头顺丰速运",
            "real_name": "张小三",
            "id_number": make_id_number(seq=self._seq),
            "phone": "13812345678",
            "jurisdiction_id": self.tree["150203-01-01"],
            "skills": ["first_aid", "driving"],
            "consent_accepted": True,
            "consent_version": "2026-01",
        }
        body.update(overrides)
        return body

    def apply(self, name: str = "vol", *, expect: int = 201, **overrides: Any) -> tuple[dict[str, str], dict]:
        headers = self.login(name)
        response = self.client.post("/api/v1/volunteers", json=self.application(**overrides), headers=headers)
        assert response.status_code == expect, response.get_json()
        return headers, response.get_json()

    def approve(self, desk: dict[str, str], volunteer_id: int, reason: str = "材料齐全，同意") -> dict:
        response = self.client.post(
            f"/api/v1/desk/volunteers/{volunteer_id}/review",
            json={"decision": "approve", "reason": reason},
            headers=desk,
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def approved(
        self, desk: dict[str, str], name: str = "vol", **overrides: Any
    ) -> tuple[dict[str, str], dict]:
        headers, body = self.apply(name, **overrides)
        return headers, self.approve(desk, body["id"])

    def on_duty(self, headers: dict[str, str], lat: float, lng: float) -> dict:
        response = self.client.post(
            "/api/v1/volunteers/me/duty", json={"on_duty": True, "lat": lat, "lng": lng}, headers=headers
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()


@pytest.fixture
def volunteers(client: FlaskClient, wechat_login: Callable[[str], dict[str, str]], tree: dict[str, int]):
    return VolunteerHelper(client, wechat_login, tree)


@pytest.fixture
def id_number() -> Callable[..., str]:
    """:func:`make_id_number`: build resident ID numbers (valid unless told otherwise)."""
    return make_id_number


# -- patrol tasks ---------------------------------------------------------------------------------

# A place in 沼潭社区 (centre 40.652, 109.832) and a point about 2 km north-east of it.
TASK_PLACE = (40.6525, 109.8330)
TWO_KM_AWAY = (40.6680, 109.8480)


class TaskHelper:
    """Create tasks at the desk and act on them as a volunteer, through HTTP."""

    def __init__(self, app: Flask, client: FlaskClient, tree: dict[str, int]):
        self.app = app
        self.client = client
        self.tree = tree

    def body(self, **overrides: Any) -> dict[str, Any]:
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        body = {
            "kind": "patrol",
            "title": "沼潭社区夜间巡逻",
            "description": "沿社区主干道巡逻，注意可疑人员和车辆",
            "jurisdiction_id": self.tree["150203-01-01"],
            "lat": TASK_PLACE[0],
            "lng": TASK_PLACE[1],
            "address": "沼潭社区北门",
            "geofence_radius_m": 200,
            "starts_at": (now - timedelta(minutes=10)).isoformat(),
            "ends_at": (now + timedelta(hours=2)).isoformat(),
            "slots": 3,
            "points": 10,
            "dispatch_mode": "open",
            "publish": True,
        }
        for key, value in overrides.items():
            body[key] = value.isoformat() if hasattr(value, "isoformat") else value
        return body

    def create(self, desk: dict[str, str], *, expect: int = 201, **overrides: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/desk/tasks", json=self.body(**overrides), headers=desk)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def post(
        self, headers: dict[str, str], task_id: int, action: str, body: Any = None, *, key: str | None = None
    ):
        extra = {"Idempotency-Key": key} if key else {}
        return self.client.post(
            f"/api/v1/tasks/{task_id}/{action}", json=body or {}, headers={**headers, **extra}
        )

    def accept(self, headers: dict[str, str], task_id: int, *, expect: int = 200, **body: Any) -> dict:
        response = self.post(headers, task_id, "accept", body)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def check_in(
        self, headers, task_id, at=TASK_PLACE, *, expect: int = 200, accuracy=None, key=None
    ) -> dict:
        response = self.post(
            headers, task_id, "check-in", {"lat": at[0], "lng": at[1], "accuracy_m": accuracy}, key=key
        )
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def check_out(self, headers, task_id, at=TASK_PLACE, *, expect: int = 200, key=None) -> dict:
        response = self.post(headers, task_id, "check-out", {"lat": at[0], "lng": at[1]}, key=key)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def set_rows(self, model_name: str, row_id: int, **values: Any) -> None:
        """Move times in the database (a task's window, a check-in) as if time had passed."""
        from sqlalchemy import update

        import yijing.models as models
        from yijing.extensions import db

        model = getattr(models, model_name)
        with self.app.app_context():
            db.session.execute(update(model).where(model.id == row_id).values(**values))
            db.session.commit()
            db.session.remove()

    def run_jobs(self, *queue_names: str) -> None:
        """Run every queued job of those queues (all by default) with a burst SimpleWorker and
        its scheduler, which first moves scheduled jobs that are due onto their queues."""
        from workers import queues
        from workers.runner import AppSimpleWorker
        from yijing.extensions import redis_client

        with self.app.app_context():
            names = queue_names or queues.ALL
            worker = AppSimpleWorker([queues.get_queue(n) for n in names], connection=redis_client())
            worker.work(burst=True, with_scheduler=True)

    def scheduled(self, queue_name: str) -> dict[str, Any]:
        """Scheduled (delayed) jobs of a queue: job id → when it is due."""
        from rq.registry import ScheduledJobRegistry

        from workers import queues

        with self.app.app_context():
            registry = ScheduledJobRegistry(queue=queues.get_queue(queue_name))
            return {job_id: registry.get_scheduled_time(job_id) for job_id in registry.get_job_ids()}

    def make_due(self, queue_name: str, job_id: str) -> None:
        """Time passes: the scheduled job becomes due now (its id, function and arguments unchanged)."""
        from datetime import UTC, datetime, timedelta

        from rq.job import Job
        from rq.registry import ScheduledJobRegistry

        from workers import queues
        from yijing.extensions import redis_client

        with self.app.app_context():
            registry = ScheduledJobRegistry(queue=queues.get_queue(queue_name))
            job = Job.fetch(job_id, connection=redis_client())
            registry.schedule(job, datetime.now(UTC) - timedelta(seconds=1))


@pytest.fixture
def tasks(app: Flask, client: FlaskClient, tree: dict[str, int]) -> TaskHelper:
    return TaskHelper(app, client, tree)


# -- a Redis of the test's own, for outages (the machine's Redis is never stopped) ---------------


class OwnRedis:
    """A throw-away redis-server on a free port that the test stops and starts."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        _service_missing("redis-server (this test starts and stops a Redis of its own)")
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- personal information (issue 13) ------------------------------------------------------------


@pytest.fixture
def release_sealed(app: Flask) -> Callable[[], dict[str, int]]:
    """Release every sealed envelope (what is due to anonymous reporters) as if their delay had passed."""

    def release() -> dict[str, int]:
        from datetime import UTC, datetime, timedelta

        from yijing.extensions import db
        from yijing.services import sealed

        with app.app_context():
            delay = app.config["YIJING"].sealed_delay_max_seconds
            released = sealed.release_due(now=datetime.now(UTC) + timedelta(seconds=delay + 1))
            db.session.remove()
        return released

    return release
