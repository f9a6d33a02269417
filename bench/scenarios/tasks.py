"""Patrol-task benchmarks (issue 4).

* ``tasks_list`` (HTTP, wrk): ``GET /api/v1/tasks?limit=20`` for an approved volunteer, with
  2,000 published open tasks spread over the city (100 km × 100 km) and 40 more in the
  volunteer's own community: the volunteer and their assignments (one query), the candidates
  from the Redis index of open tasks (repaired from the database after seeding, as the periodic
  job would), exact distances in Python, then the page's 20 cards, kept rendered in the index.
* ``tasks_nearby_dispatch`` (timed in-process): the first ring of a nearby dispatch among
  100,000 on-duty volunteers spread uniformly over 100 km × 100 km around Baotou (GEO index
  seeded with :func:`yijing.services.duty_index.add_many`, the same volunteers in the database):
  GEO search, eligibility and no-show ranking, the ring's compare-and-set, 10 invitations with
  their outbox rows, the commit and the next ring's delayed job; called as the ring's job calls
  it, with the task as the job saw it (:class:`yijing.services.tasks.RingHint`; on PostgreSQL the
  ring is then the search and one statement). A second row,
  ``tasks_nearby_dispatch:floor``, is what any ring must do on this stack, measured in the same
  run (:func:`ring_floor`): the same GEO search, one INSERT statement of the same rows (the ring,
  10 invitations, their 10 messages; ``synchronous_commit`` off, autocommit) and enqueuing the
  same jobs; no read, no compare-and-set, no ranking, no message built. A third times the GEO
  search alone (:func:`duty_index.nearest`, 1 km).
* ``tasks_accept_race`` (timed, real HTTP, PostgreSQL): 50 approved volunteers accept a 5-slot
  task at the same instant, ten rounds; every round must give exactly 5 × 200 and 45 × 409
  ``task_full`` (otherwise the run fails). Reported: requests per second over the races,
  per-request latency, and the median wall time of one race in ``extra``. With gunicorn's sync
  workers the server takes two requests at a time; ``--gunicorn gthread`` makes it eight. A second
  row, ``baseline:constant_race``, is the floor: the same 50 client threads racing the bare
  baseline app's ``GET /const`` as many rounds (the client threads share the machine's cores
  with the server, so their own work is in every latency).

Seeding runs in-process with an app built from the benchmark's ``DATABASE_URL``/``REDIS_URL``
(the same Redis prefix and queue names as the app under test) and is idempotent: volunteers and
jurisdictions are kept between runs (keys and openids start with ``bench-``); tasks in the
benchmark's jurisdictions are replaced each run. Each ``*_SCENARIO`` object below is what
``bench/scenarios/__init__.py`` registers.

Sizes (the growth table): ``TaskListScenario(city_tasks=N)`` lists among N live open tasks in
the city (default ``BENCH_OPEN_TASKS``, else 2,000) and ``NearbyDispatchScenario(on_duty=N)``
rings among N on duty (default ``BENCH_ON_DUTY``, else 100,000); :data:`GROWTH` runs each at its
three sizes (``make bench-growth``).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import requests

from bench.harness import (
    BenchError,
    Context,
    Growth,
    Request,
    Result,
    percentile,
    time_alternating,
    time_calls,
)
from bench.scenarios.city import CITY_NODE, ensure_city

# The fake WeChat server the harness starts accepts this pair (see bench/run.py).
WECHAT_APPID = "wx-bench-appid"
WECHAT_SECRET = "bench-secret"

CENTRE = (40.657, 109.840)  # 包头市
BENCH_TREE = [
    CITY_NODE,
    {
        "key": "bench-district",
        "parent_key": "bench-city",
        "name": "压测区",
        "level": "district",
        "lat": 40.66,
        "lng": 109.84,
    },
    {
        "key": "bench-street",
        "parent_key": "bench-district",
        "name": "压测街道",
        "level": "street",
        "lat": 40.655,
        "lng": 109.835,
    },
    {
        "key": "bench-community",
        "parent_key": "bench-street",
        "name": "压测社区",
        "level": "community",
        "lat": 40.652,
        "lng": 109.832,
    },
    {
        "key": "bench-community-2",
        "parent_key": "bench-street",
        "name": "压测二社区",
        "level": "community",
        "lat": 40.70,
        "lng": 109.90,
    },
]
DESK_USERNAME = "bench-tasks-desk"
DESK_PASSWORD = "bench tasks desk password"

ON_DUTY = 100_000
AREA_KM = 100.0
RACERS = 50
RACE_SLOTS = 5
RACE_ROUNDS = 10
CITY_TASKS = 2000
COMMUNITY_TASKS = 40

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_apps: dict[tuple[str, str, str | None], Any] = {}


# -- plumbing -----------------------------------------------------------------------------------


@contextmanager
def app_context(ctx: Context) -> Iterator[Any]:
    """An in-process app on the benchmark's database and Redis, for seeding and timing."""
    from yijing import create_app
    from yijing.config import Config
    from yijing.extensions import db

    key = (ctx.database_url, ctx.redis_url, ctx.fake_wechat_url)
    if key not in _apps:
        env = {
            **os.environ,
            "DATABASE_URL": ctx.database_url,
            "REDIS_URL": ctx.redis_url,
            "YIJING_ENV": "development",
            "WECHAT_APPID": WECHAT_APPID,
            "WECHAT_SECRET": WECHAT_SECRET,
            "LOG_LEVEL": "WARNING",
        }
        if ctx.fake_wechat_url:
            env["WECHAT_API_BASE_URL"] = ctx.fake_wechat_url
        _apps[key] = create_app(Config.from_env(env))
    app = _apps[key]
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()


def id_number(seq: int) -> str:
    """A valid resident ID number (GB 11643) of someone born in 1990, distinct per ``seq``."""
    born = datetime(1990, 1, 1) + timedelta(days=seq // 900)
    body = f"150203{born:%Y%m%d}{seq % 900 + 100:03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return body + check


def ensure_tree() -> dict[str, int]:
    from sqlalchemy import select

    from yijing.extensions import db
    from yijing.models import Jurisdiction
    from yijing.services import jurisdictions

    jurisdictions.import_nodes(BENCH_TREE)
    ensure_city()
    keys = [n["key"] for n in BENCH_TREE]
    return dict(
        db.session.execute(select(Jurisdiction.key, Jurisdiction.id).where(Jurisdiction.key.in_(keys))).all()
    )


def ensure_desk(tree: dict[str, int]) -> Any:
    """The benchmark's desk user (desk role over the benchmark city) as a principal."""
    from sqlalchemy import select

    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import Role, RoleGrant, User
    from yijing.services import auth

    user = db.session.scalar(select(User).where(User.username == DESK_USERNAME))
    if user is None:
        user = auth.create_staff(DESK_USERNAME, DESK_PASSWORD, "压测值班台")
    granted = db.session.scalar(
        select(RoleGrant).where(RoleGrant.user_id == user.id, RoleGrant.jurisdiction_id == tree["bench-city"])
    )
    if granted is None:
        auth.grant_role(user.id, Role.DESK, tree["bench-city"], Actor.system("bench"))
    return auth.load_principal(user.id)


def approved_volunteer(name: str, seq: int, desk: Any, home_id: int) -> tuple[str, int]:
    """Log ``name`` in through the fake WeChat (in-process, so no login rate limit) and make sure
    they are an approved volunteer of ``home_id``; returns (token, volunteer id)."""
    from yijing.actor import Actor
    from yijing.models import VolunteerStatus
    from yijing.services import auth, tasks, volunteers

    actor = Actor.system("bench")
    issued = auth.wechat_login(f"{name}.{uuid.uuid4().hex[:8]}", actor)
    volunteer = tasks.my_volunteer(issued.user.id)
    if volunteer is None:
        data = {
            "category": "courier",
            "employer": "压测快递",
            "real_name": "压测义警",
            "id_number": id_number(seq),
            "phone": f"139{seq:08d}",
            "jurisdiction_id": home_id,
            "skills": ["first_aid"],
            "consent_accepted": True,
            "consent_version": _config().volunteer_privacy_version,
        }
        volunteer = volunteers.apply(issued.user.id, data, actor)
    if volunteer.status == VolunteerStatus.PENDING:
        volunteer = volunteers.review(desk, volunteer.id, "approve", "压测数据", actor)
    if volunteer.status != VolunteerStatus.APPROVED:
        raise BenchError(f"bench volunteer {name} is {volunteer.status}, not approved")
    return issued.token, volunteer.id


def _config() -> Any:
    from flask import current_app

    return current_app.config["YIJING"]


def clear_tasks(tree: dict[str, int]) -> None:
    """Remove every task of the benchmark's jurisdictions (and what hangs off them)."""
    from sqlalchemy import delete, select

    from yijing.extensions import db
    from yijing.models import Assignment, DispatchRing, Task, TrackPoint
    from yijing.services import task_index
    from yijing.sql import vacuum_analyze

    ids = select(Task.id).where(Task.jurisdiction_id.in_(list(tree.values())))
    task_index.remove_many(db.session.scalars(ids).all())  # deleted by hand: out of the index too
    assignment_ids = select(Assignment.id).where(Assignment.task_id.in_(ids))
    db.session.execute(delete(TrackPoint).where(TrackPoint.assignment_id.in_(assignment_ids)))
    db.session.execute(delete(Assignment).where(Assignment.task_id.in_(ids)))
    db.session.execute(delete(DispatchRing).where(DispatchRing.task_id.in_(ids)))
    db.session.execute(delete(Task).where(Task.id.in_(ids)))
    db.session.commit()
    # Vacuumed as autovacuum would (it may be off, as on the benchmark machine's PostgreSQL): else
    # each run measures on the dead rows of the runs before it.
    vacuum_analyze(db.session(), TrackPoint, Assignment, DispatchRing, Task)


def task_row(tree: dict[str, int], **values: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    row = {
        "jurisdiction_id": tree["bench-community"],
        "kind": "patrol",
        "title": "压测巡逻任务",
        "description": "",
        "lat": CENTRE[0],
        "lng": CENTRE[1],
        "address": "压测地点",
        "geofence_radius_m": 200,
        "route": None,
        "starts_at": now + timedelta(hours=1),
        "ends_at": now + timedelta(hours=3),
        "slots": 5,
        "filled": 0,
        "categories": [],
        "skills": [],
        "points": 10,
        "dispatch_mode": "open",
        "status": "published",
        "published_at": now,
        "dispatch_ring": 0,
        "created_at": now,
    }
    row.update(values)
    return row


def insert_tasks(rows: list[dict[str, Any]]) -> list[int]:
    from sqlalchemy import insert

    from yijing.extensions import db
    from yijing.models import Task

    ids = list(db.session.scalars(insert(Task).returning(Task.id), rows))
    db.session.commit()
    return ids


# -- the volunteer's task list --------------------------------------------------------------------


def seed_task_list(ctx: Context, city_tasks: int) -> str:
    """``city_tasks`` published open tasks spread over the city (AREA_KM × AREA_KM) plus
    COMMUNITY_TASKS in the list volunteer's own community (replacing the benchmark's tasks), the
    open-task index repaired from the database as the periodic job would; returns the volunteer's
    token."""
    from sqlalchemy import text

    from yijing.extensions import db
    from yijing.services import task_index

    rng = random.Random(4)
    with app_context(ctx):
        tree = ensure_tree()
        desk = ensure_desk(tree)
        token, _ = approved_volunteer("bench-tasks-list", 1, desk, tree["bench-community"])
        clear_tasks(tree)
        now = datetime.now(UTC)
        half_lat, half_lng = AREA_KM / 2 / 111.195, AREA_KM / 2 / (111.195 * 0.7585)
        rows = []
        for i in range(city_tasks + COMMUNITY_TASKS):
            if i < COMMUNITY_TASKS:  # the volunteer's community, within about 2 km
                home = tree["bench-community"]
                lat = CENTRE[0] + rng.uniform(-0.018, 0.018)
                lng = CENTRE[1] + rng.uniform(-0.024, 0.024)
            else:  # elsewhere in the city
                home = tree["bench-community-2"]
                lat = CENTRE[0] + rng.uniform(-half_lat, half_lat)
                lng = CENTRE[1] + rng.uniform(-half_lng, half_lng)
            start = now + timedelta(hours=rng.randint(1, 96))
            rows.append(
                task_row(
                    tree,
                    jurisdiction_id=home,
                    lat=lat,
                    lng=lng,
                    starts_at=start,
                    ends_at=start + timedelta(hours=2),
                )
            )
            if len(rows) == 5000:
                insert_tasks(rows)
                rows = []
        if rows:
            insert_tasks(rows)
        # As autovacuum would after a bulk change (it may be off or late on a benchmark machine):
        # without it the planner takes the new live tasks for a handful.
        db.session.execute(text("ANALYZE tasks"))
        db.session.commit()
        task_index.repair()
    return token


class TaskListScenario:
    """The open-task list with ``city_tasks`` live open tasks in the city (default
    ``BENCH_OPEN_TASKS``, else CITY_TASKS) besides the volunteer's community's 40."""

    name = "tasks_list"
    needs_app = True
    baseline = "constant"

    def __init__(self, city_tasks: int | None = None):
        self.city_tasks = city_tasks or int(os.environ.get("BENCH_OPEN_TASKS") or CITY_TASKS)
        self.description = (
            f"GET /api/v1/tasks?limit=20: open tasks near an approved volunteer, nearest first "
            f"({self.city_tasks:,} live open tasks)"
        )

    def setup(self, ctx: Context) -> Request:
        token = seed_task_list(ctx, self.city_tasks)
        request = Request(path="/api/v1/tasks?limit=20", headers={"Authorization": f"Bearer {token}"})
        check = ctx.session.get(ctx.url(request.path), headers=request.headers, timeout=10)
        if check.status_code != 200 or not check.json().get("items"):
            raise BenchError(
                f"tasks_list: GET /api/v1/tasks answered {check.status_code}: {check.text[:500]}"
            )
        return request


# -- nearby dispatch among 100,000 on-duty volunteers ------------------------------------------------


def seed_on_duty(
    tree: dict[str, int], count: int = ON_DUTY, seed: int = 100
) -> list[tuple[int, float, float]]:
    """``count`` approved, on-duty volunteers in the database (kept between runs; the missing ones
    added by ``INSERT … SELECT generate_series``) at uniform random points over AREA_KM × AREA_KM,
    and the same in the Redis GEO index (rebuilt every run, since the harness flushes Redis).
    Returns (volunteer id, lat, lng)."""
    from sqlalchemy import func, select, text

    from yijing import pii
    from yijing.extensions import db, redis_client
    from yijing.models import PrivacyConsent, User, Volunteer
    from yijing.services import duty_index
    from yijing.services.duty_index import DutyEntry
    from yijing.sql import vacuum_analyze

    prefix = "bench-duty-"
    have = db.session.scalar(select(func.count()).select_from(User).where(User.openid.startswith(prefix)))
    if have < count:
        now = datetime.now(UTC)
        half_lat = AREA_KM / 2 / 111.195
        half_lng = AREA_KM / 2 / (111.195 * 0.7585)
        name_enc = pii.encrypt("压测义警", context="volunteer.real_name")
        id_enc = pii.encrypt(id_number(0), context="volunteer.id_number")
        phone_enc = pii.encrypt("13900000000", context="volunteer.phone")
        db.session.execute(text("SELECT setseed(:s)"), {"s": seed / 1000.0})  # for random() below
        batch = 100_000  # one INSERT … SELECT generate_series per batch (users, consents, volunteers)
        for start in range(have, count, batch):
            db.session.execute(
                text(
                    "WITH u AS ("
                    " INSERT INTO users (kind, openid, display_name, is_active, created_at)"
                    " SELECT 'wechat', :prefix || i, '', true, :now"
                    " FROM generate_series(:start, :stop - 1) AS i"
                    " RETURNING id, openid),"
                    " c AS ("
                    " INSERT INTO privacy_consents (user_id, document, version, created_at)"
                    " SELECT id, 'volunteer_privacy', 'bench', :now FROM u RETURNING id, user_id)"
                    " INSERT INTO volunteers (user_id, status, category, employer, skills, real_name_enc,"
                    " name_masked, id_number_enc, id_number_hash, id_number_masked, phone_enc, phone_hash,"
                    " phone_masked, jurisdiction_id, community_id, consent_id, open_user_id,"
                    " open_id_number_hash, decision_seq, on_duty, duty_started_at, duty_seen_at, duty_lat,"
                    " duty_lng, created_at)"
                    " SELECT c.user_id, 'approved', 'courier', '', CAST('[]' AS json), :name_enc, '压*警',"
                    " :id_enc, 'bench-' || n, '150***********0000', :phone_enc, 'bench-' || n, '139****0000',"
                    " :community, :community, c.id, c.user_id, 'bench-' || n, 1, true, :now, :now,"
                    " :lat + (random() * 2 - 1) * :half_lat, :lng + (random() * 2 - 1) * :half_lng, :now"
                    " FROM c JOIN u ON u.id = c.user_id,"
                    " LATERAL (SELECT substr(u.openid, length(:prefix) + 1) AS n) AS seq"
                ),
                {
                    "prefix": prefix,
                    "start": start,
                    "stop": min(count, start + batch),
                    "now": now,
                    "name_enc": name_enc,
                    "id_enc": id_enc,
                    "phone_enc": phone_enc,
                    "community": tree["bench-community"],
                    "lat": CENTRE[0],
                    "lng": CENTRE[1],
                    "half_lat": half_lat,
                    "half_lng": half_lng,
                },
            )
            db.session.commit()
        # Vacuumed, not only analyzed: the rows just written would otherwise get their hint bits
        # (a write per page) and their visibility map from the measured rings' reads and autovacuum.
        vacuum_analyze(db.session(), User, Volunteer, PrivacyConsent)
    found = db.session.execute(
        select(Volunteer.id, Volunteer.user_id, Volunteer.duty_lat, Volunteer.duty_lng)
        .join(User, User.id == Volunteer.user_id)
        .where(User.openid.startswith(prefix))
        .order_by(Volunteer.id)
        .limit(count)
    ).all()
    community_path = _path_of(tree["bench-community"])
    now_ts = time.time()
    # Exactly these on duty: an earlier, larger run in the same Redis must not linger.
    redis_client().delete(
        duty_index.key_all(),
        duty_index.key_seen(),
        duty_index.key_info(),
        duty_index.key_category("courier"),
        duty_index.key_partition(duty_index.partition_of(community_path) or "-"),
    )
    duty_index.add_many(
        (
            DutyEntry(vid, uid, "courier", community_path, tree["bench-community"], "压*警"),
            lat,
            lng,
            now_ts,
        )
        for vid, uid, lat, lng in found
    )
    return [(vid, lat, lng) for vid, _, lat, lng in found]


def _path_of(jurisdiction_id: int) -> str:
    from yijing.extensions import db
    from yijing.models import Jurisdiction

    return db.session.get(Jurisdiction, jurisdiction_id).path


class NearbyDispatchScenario:
    """The first ring among ``on_duty`` volunteers on duty (default ``BENCH_ON_DUTY``, else
    ON_DUTY)."""

    name = "tasks_nearby_dispatch"
    needs_app = True  # for the migrated database; the ring itself runs in-process, as in a worker
    iterations = 300

    def __init__(self, on_duty: int | None = None):
        self.on_duty = on_duty or int(os.environ.get("BENCH_ON_DUTY") or ON_DUTY)
        self.description = (
            f"first ring of a nearby dispatch among {self.on_duty:,} on-duty volunteers (in-process)"
        )

    def run(self, ctx: Context) -> list[Result]:
        from yijing.extensions import db
        from yijing.models import Notification
        from yijing.services import dispatch, duty_index
        from yijing.services import tasks as task_service
        from yijing.sql import vacuum_analyze

        rng = random.Random(7)
        with app_context(ctx):
            tree = ensure_tree()
            clear_tasks(tree)
            # The rings write messages; the fan-out's runs leave theirs deleted (see clear_tasks).
            vacuum_analyze(db.session(), Notification)
            started = time.perf_counter()
            seed_on_duty(tree, self.on_duty)
            seeded_s = time.perf_counter() - started
            # Task places well inside the seeded square, so a 1 km ring finds ~30 volunteers.
            points = [
                (CENTRE[0] + rng.uniform(-0.3, 0.3), CENTRE[1] + rng.uniform(-0.4, 0.4))
                for _ in range(self.iterations + 10)
            ]
            now = datetime.now(UTC)
            rows = [
                task_row(
                    tree,
                    kind="missing_person",
                    title="压测就近调度",
                    lat=lat,
                    lng=lng,
                    starts_at=now,
                    ends_at=now + timedelta(hours=2),
                    dispatch_mode="nearby",
                    dispatch_next_at=now,
                )
                for lat, lng in points
            ]
            ids = insert_tasks(rows)
            # Each ring as its job sends it: the task's id and where to search.
            queue = iter(
                [
                    (tid, task_service.ring_hint(SimpleNamespace(**row)))
                    for tid, row in zip(ids, rows, strict=True)
                ]
            )
            invited: list[int] = []

            def ring() -> None:
                task_id, hint = next(queue)
                invited.append(dispatch.advance(task_id, 0, hint))

            # The ring and its floor alternate, call by call: the same minutes of a shared machine.
            with ring_floor(tree, points, now) as floor:
                dispatch_row, floor_row = time_alternating(
                    [
                        (
                            self.name,
                            ring,
                            "dispatch.advance(task, 0): GEO search + ranking + 10 invitations",
                            {"on_duty": self.on_duty, "seed_seconds": round(seeded_s, 1)},
                        ),
                        (
                            f"{self.name}:floor",
                            floor,
                            "floor: GEO search + one INSERT of a ring, 10 invitations, messages + the jobs",
                            {"on_duty": self.on_duty},
                        ),
                    ],
                    iterations=self.iterations,
                    warmup=10,
                )
            # At 100,000 on duty a 1 km ring holds ~30; at 10,000 only ~3, so an empty one happens.
            if max(invited) < 1 or (self.on_duty >= ON_DUTY and min(invited) < 1):
                raise BenchError(f"{self.name}: a ring invited nobody ({invited.count(0)} of {len(invited)})")
            dispatch_row.extra["invited_median"] = statistics.median(invited)
            dispatch_row.extra["rings_inviting_nobody"] = invited.count(0)
            probe = itertools.cycle(points)

            def geo() -> None:
                lat, lng = next(probe)
                duty_index.nearest(lat, lng, radius_m=1000, limit=42)

            geo_row = time_calls(
                f"{self.name}:geo",
                geo,
                duration=min(ctx.duration, 5),
                warmup=20,
                target=f"duty_index.nearest(1 km, 42) among {self.on_duty:,}",
                extra={"on_duty": self.on_duty},
            )
        for row in (dispatch_row, floor_row, geo_row):
            row.baseline = "baseline:constant"
        return [dispatch_row, floor_row, geo_row]


# What the floor writes in one statement: a ring's row, its invitations and their messages.
_FLOOR_SQL = """
WITH ring AS (
  INSERT INTO dispatch_rings (task_id, ring_no, radius_m, found, invited, slots_open, next_at, created_at)
  VALUES (:task_id, 1, 1000, :found, :invited, :slots, :next_at, :now) RETURNING id
), invited AS (
  INSERT INTO assignments (task_id, volunteer_id, user_id, ring_id, distance_m, status, source, invite_seq,
                           invited_at, invite_expires_at, checkout_auto, points_awarded, created_at)
  SELECT :task_id, x.volunteer_id, x.user_id, ring.id, x.distance_m, 'invited', 'nearby', 1,
         :now, :ends_at, false, 0, :now
  FROM ring, unnest(CAST(:volunteer_ids AS bigint[]), CAST(:user_ids AS bigint[]),
                    CAST(:distances AS float8[])) AS x(volunteer_id, user_id, distance_m)
  RETURNING id, user_id
), messages AS (
  INSERT INTO notifications (user_id, kind, title, body, data, page, dedupe_key, status, attempts,
                             created_at, sweep_after, sealed)
  SELECT invited.user_id, 'task.invitation', :title, :body, CAST(:data AS json), :page,
         'bench-floor:' || invited.id, 'pending', 0, :now, :now, false
  FROM invited RETURNING id
)
SELECT (SELECT array_agg(id) FROM messages) AS message_ids, set_config('synchronous_commit', 'off', true)
"""


@contextmanager
def ring_floor(
    tree: dict[str, int], points: list[tuple[float, float]], now: datetime, invite: int = 10
) -> Iterator[Callable[[], None]]:
    """What any ring must do on this stack, as a call to time beside the ring (one task of its
    own per call, at the ring's places in turn): the GEO search at the task's place (the same
    script, radius and limit), one INSERT statement of the ring's row, the nearest ``invite`` found
    as invitations and their messages (about the size of a ring's), in autocommit with
    ``synchronous_commit`` off as the ring writes, then the same jobs enqueued (the messages'
    delivery, the next ring with its hint). No read of the task or the candidates, no
    compare-and-set, no ranking, no message built."""
    from flask import current_app
    from sqlalchemy import text

    from yijing import jobs
    from yijing.extensions import db
    from yijing.services import duty_index, outbox
    from yijing.services import tasks as task_service

    ends_at = now + timedelta(hours=2)
    floor_rows = [
        task_row(tree, kind="missing_person", title="压测调度下限", lat=lat, lng=lng, ends_at=ends_at)
        for lat, lng in points
    ]
    floor_ids = insert_tasks(floor_rows)
    queue = iter(zip(floor_ids, points, floor_rows, strict=True))
    data = json.dumps(
        {
            "task_id": 0,
            "task_title": "压测调度下限",
            "starts_at": now.isoformat(),
            "place": "压测地点",
            "assignment_id": 0,
            "expires_at": ends_at.isoformat(),
            "distance_m": 512.3,
        },
        ensure_ascii=False,
    )
    statement = text(_FLOOR_SQL)
    urgent = outbox.is_urgent("task.invitation")
    timeout = current_app.config["YIJING"].dispatch_ring_timeout_seconds
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")

        def floor() -> None:
            task_id, (lat, lng), row = next(queue)
            rows = duty_index.search_rows(lat, lng, 1000, invite * 4 + 16)
            chosen = rows[:invite]
            at = datetime.now(UTC) + timedelta(seconds=timeout)
            message_ids = conn.execute(
                statement,
                {
                    "task_id": task_id,
                    "found": len(rows),
                    "invited": len(chosen),
                    "slots": 5,
                    "next_at": at,
                    "now": datetime.now(UTC),
                    "ends_at": ends_at,
                    "volunteer_ids": [r[0] for r in chosen],
                    "user_ids": [r[5]["u"] for r in chosen],
                    "distances": [r[1] for r in chosen],
                    "title": "任务邀请：压测调度下限",
                    "body": "12月1日 16:00 开始，地点：压测地点。",
                    "data": data,
                    "page": f"pages/task/detail?id={task_id}",
                },
            ).scalar_one()
            specs = outbox.delivery_specs(message_ids or [], urgent=urgent)
            hint = task_service.ring_hint(SimpleNamespace(**row), len(chosen))
            specs.append(task_service.dispatch_job(task_id, 1, at=at, hint=hint))
            jobs.enqueue_committed(specs)

        yield floor


# -- 50 volunteers accept a 5-slot task at once ------------------------------------------------------


class AcceptRaceScenario:
    name = "tasks_accept_race"
    description = (
        f"{RACERS} volunteers accept a {RACE_SLOTS}-slot task at once over HTTP ({RACE_ROUNDS} rounds)"
    )
    needs_app = True

    def run(self, ctx: Context) -> list[Result]:
        with app_context(ctx):
            tree = ensure_tree()
            desk = ensure_desk(tree)
            tokens = [
                approved_volunteer(f"bench-race-{i}", 1000 + i, desk, tree["bench-community"])[0]
                for i in range(RACERS)
            ]
            clear_tasks(tree)
            now = datetime.now(UTC)
            # One round a day ahead of the last: nobody's earlier place overlaps the next task.
            task_ids = insert_tasks(
                [
                    task_row(
                        tree,
                        title="压测抢单",
                        slots=RACE_SLOTS,
                        starts_at=now + timedelta(days=r + 1),
                        ends_at=now + timedelta(days=r + 1, hours=1),
                    )
                    for r in range(RACE_ROUNDS)
                ]
            )
        latencies: list[float] = []
        races: list[float] = []
        for task_id in task_ids:
            statuses, took, race = _race(
                tokens, functools.partial(self._accept, ctx.url(f"/api/v1/tasks/{task_id}/accept"))
            )
            latencies.extend(took)
            races.append(race)
            if sorted(statuses) != [200] * RACE_SLOTS + [409] * (RACERS - RACE_SLOTS):
                raise BenchError(f"{self.name}: task {task_id} answered {sorted(statuses)}")
        with app_context(ctx):
            from yijing.extensions import db
            from yijing.models import Task

            filled = [db.session.get(Task, t).filled for t in task_ids]
        if filled != [RACE_SLOTS] * RACE_ROUNDS:
            raise BenchError(f"{self.name}: filled slots per round {filled}")
        # The floor: the same client racing the bare baseline app's constant, as many rounds.
        floor_latencies: list[float] = []
        floor_races: list[float] = []
        for _ in range(RACE_ROUNDS):
            statuses, took, race = _race(
                tokens, functools.partial(_get_constant, ctx.baseline_url + "/const")
            )
            if set(statuses) != {200}:
                raise BenchError(f"{self.name}: the baseline's constant answered {sorted(statuses)}")
            floor_latencies.extend(took)
            floor_races.append(race)
        return [
            _race_row(
                self.name,
                latencies,
                races,
                f"POST /api/v1/tasks/<id>/accept ×{RACERS} at once",
                accepted_per_round=RACE_SLOTS,
                database=ctx.database_url.split("@")[-1],
            ),
            _race_row(
                "baseline:constant_race",
                floor_latencies,
                floor_races,
                f"GET /const (bare app) ×{RACERS} at once",
            ),
        ]

    def _accept(self, url: str, session: requests.Session, token: str) -> requests.Response:
        response = session.post(url, json={}, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        if response.status_code == 409 and response.json()["error"]["code"] != "task_full":
            raise BenchError(f"{self.name}: unexpected 409 {response.text[:300]}")
        return response


def _get_constant(url: str, session: requests.Session, token: str) -> requests.Response:
    return session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _race(
    tokens: list[str], send: Callable[[requests.Session, str], requests.Response]
) -> tuple[list[int], list[float], float]:
    """One request per token from as many threads released at once by a barrier: the statuses,
    each request's latency (ms) and the race's wall time (s, first send to last answer)."""
    barrier = threading.Barrier(len(tokens))

    def one(token: str) -> tuple[int, float, float, float]:
        with requests.Session() as session:
            barrier.wait(timeout=60)
            t0 = time.perf_counter()
            response = send(session, token)
            t1 = time.perf_counter()
        return response.status_code, (t1 - t0) * 1000, t0, t1

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        answers = list(pool.map(one, tokens))
    race = max(a[3] for a in answers) - min(a[2] for a in answers)
    return [a[0] for a in answers], [a[1] for a in answers], race


def _race_row(name: str, latencies: list[float], races: list[float], target: str, **extra: Any) -> Result:
    latencies = sorted(latencies)
    return Result(
        scenario=name,
        rps=len(latencies) / sum(races),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        baseline="baseline:constant",
        kind="python",
        target=target,
        requests=len(latencies),
        extra={"rounds": len(races), "race_ms_median": round(statistics.median(races) * 1000, 1), **extra},
    )


TASK_LIST_SCENARIO = TaskListScenario()
NEARBY_DISPATCH_SCENARIO = NearbyDispatchScenario()
ACCEPT_RACE_SCENARIO = AcceptRaceScenario()
SCENARIOS = [TASK_LIST_SCENARIO, NEARBY_DISPATCH_SCENARIO, ACCEPT_RACE_SCENARIO]


def _growth_tasks_list(ctx: Context, size: int) -> list[Result]:
    """Growth mode: ``GET /api/v1/tasks`` with ``size`` live open tasks (replaced at each size)."""
    scenario = TaskListScenario(city_tasks=size)
    row = ctx.measure_http(scenario.name, scenario.setup(ctx))
    row.baseline = "baseline:constant"
    return [row]


def _growth_dispatch(ctx: Context, size: int) -> list[Result]:
    """Growth mode: the first ring among ``size`` on duty (the database keeps the largest size's
    volunteers; the GEO index, flushed before each size, holds exactly ``size``)."""
    return NearbyDispatchScenario(on_duty=size).run(ctx)


GROWTH = [
    Growth("tasks_list", "open tasks", (1_000, 10_000, 100_000), _growth_tasks_list),
    Growth("nearby_dispatch", "on duty", (10_000, 100_000, 1_000_000), _growth_dispatch),
]
