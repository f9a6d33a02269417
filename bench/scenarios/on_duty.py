"""``GET /api/v1/desk/volunteers/on-duty`` with 100,000 on-duty volunteers spread over Baotou,
against a raw Redis ``GEOSEARCH`` of the same query from the same client.

Seeding goes straight through the service layer (no HTTP): a jurisdiction tree (the city and
its nine districts, keys ``bench-*``), a desk user over the city, and N on-duty volunteers put
in the Redis index with :func:`yijing.services.duty_index.add_many`, uniformly over
100 km × 100 km around the city centre (as in docs/performance.md). The search touches Redis only, so the
volunteers need no database rows. The query is docs/performance.md's: 3 km around the centre, nearest 20.

Rows this scenario reports (``run(ctx)``):

* ``on_duty`` — wrk against the endpoint, ratio to the harness's constant baseline;
* ``on_duty:geosearch_raw`` — ``GEOSEARCH … BYRADIUS 3000 m ASC COUNT 20 WITHDIST`` timed
  from this process with one redis-py client;
* ``on_duty:http_1client`` — the endpoint timed from this process with one HTTP client,
  sequentially; its ratio is to the raw GEOSEARCH row: what the HTTP stack, authentication,
  scope filtering and JSON add to the Redis work;
* ``on_duty:search_inprocess`` — the endpoint's own work without HTTP: the desk search service
  (:func:`yijing.services.duty.on_duty_json`: the token's cache entries, scope filtering and
  freshness in one Lua script, the hits rendered as the response's bytes)
  called in this process, its ratio to the raw GEOSEARCH row;
* ``baseline:constant_1client`` and ``baseline:redis_get_1client`` — the bare baseline app's
  ``/const`` and ``/redis-get`` timed from the same HTTP client the same way: the least one HTTP
  round trip through gunicorn and Flask costs this client, without and with one Redis read. Their
  p99 over the raw GEOSEARCH's p99 is the floor of the one-client goal (p99 ≤ 2× the raw search)
  for any endpoint served over HTTP.

Size: ``BENCH_ON_DUTY_N`` (default 100,000) on duty, or ``OnDutyScenario(n)``; growth mode
measures 10,000 / 100,000 / 1,000,000 through ``OnDutyScenario(size)``.

Wiring: add ``on_duty`` to ``_MODULES`` in ``bench/scenarios/__init__.py``; then
``python -m bench.run --scenarios on_duty``. Seeding 100,000 takes a few seconds and happens
once per run (later rounds only refresh the ping times so nobody goes stale).

Standalone (no harness, an app already running against the same database and Redis)::

    python -m bench.scenarios.on_duty --database-url postgresql+psycopg://…/yijing_bench \\
        --redis-url redis://127.0.0.1:6379/13 --app-url http://127.0.0.1:8000 [--n 100000]

seeds, then prints calls/s and p50/p99 of the raw GEOSEARCH and of the endpoint (one client each)
and their ratio. ``--seed-only`` just seeds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

N_VOLUNTEERS = 100_000
CENTRE = (40.657, 109.840)  # 包头市
HALF_SIDE_DEG = (0.45, 0.59)  # ±50 km of latitude and of longitude at 40.7° N
RADIUS_M = 3000
COUNT = 20
STAFF_USERNAME = "bench-desk-city"
STAFF_PASSWORD = "bench-desk-password"  # a benchmark account in a benchmark database
CATEGORIES = ("security_guard", "courier", "taxi_driver", "ride_hailing_driver", "food_delivery_rider")
DISTRICTS = [  # key suffix, name, centre
    ("150202", "东河区", 40.576, 110.044),
    ("150203", "昆都仑区", 40.661, 109.822),
    ("150204", "青山区", 40.643, 109.901),
    ("150205", "石拐区", 40.676, 110.272),
    ("150206", "白云鄂博矿区", 41.769, 109.973),
    ("150207", "九原区", 40.606, 109.968),
    ("150221", "土默特右旗", 40.569, 110.524),
    ("150222", "固阳县", 41.034, 110.060),
    ("150223", "达尔罕茂明安联合旗", 41.698, 110.432),
]


@dataclass(frozen=True)
class Seeded:
    """What a measurement needs after seeding."""

    n: int
    geo_key: str  # the Redis key holding every on-duty volunteer
    staff_username: str
    staff_password: str
    seeded_at: float


def make_app(database_url: str, redis_url: str, **env: str):  # type: ignore[no-untyped-def]
    """The app as the harness runs it (same database, Redis and key prefix), for seeding."""
    from yijing import create_app
    from yijing.config import Config

    return create_app(
        Config.from_env(
            {"YIJING_ENV": "development", "DATABASE_URL": database_url, "REDIS_URL": redis_url, **env}
        )
    )


def _points(
    n: int, rng: random.Random, district_paths: list[str]
) -> Iterator[tuple[Any, float, float, None]]:
    from yijing.services.duty_index import DutyEntry

    for i in range(1, n + 1):
        lat = CENTRE[0] + rng.uniform(-HALF_SIDE_DEG[0], HALF_SIDE_DEG[0])
        lng = CENTRE[1] + rng.uniform(-HALF_SIDE_DEG[1], HALF_SIDE_DEG[1])
        path = district_paths[i % len(district_paths)]
        entry = DutyEntry(
            volunteer_id=i,
            user_id=i,
            category=CATEGORIES[i % len(CATEGORIES)],
            path=path,
            jurisdiction_id=int(path.strip("/").split("/")[-1]),
            name_masked="张*",
        )
        yield entry, lat, lng, None


def seed(app, n: int = N_VOLUNTEERS, *, rng_seed: int = 2026) -> Seeded:  # type: ignore[no-untyped-def]
    """Create the tree and the desk user (idempotent) and put ``n`` volunteers on duty in Redis."""
    from sqlalchemy import select

    from bench.scenarios.city import CITY_NODE, ensure_city
    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import Jurisdiction, Role, User
    from yijing.services import auth, duty_index, jurisdictions

    with app.app_context():
        nodes = [
            CITY_NODE,
            *(
                {
                    "key": f"bench-{code}",
                    "parent_key": "bench-city",
                    "name": name,
                    "level": "district",
                    "lat": lat,
                    "lng": lng,
                }
                for code, name, lat, lng in DISTRICTS
            ),
        ]
        jurisdictions.import_nodes(nodes)
        ensure_city()
        city = jurisdictions.get_by_key("bench-city")
        paths = list(
            db.session.scalars(
                select(Jurisdiction.path).where(Jurisdiction.parent_id == city.id).order_by(Jurisdiction.id)
            )
        )
        user = db.session.scalar(select(User).where(User.username == STAFF_USERNAME))
        if user is None:
            user = auth.create_staff(STAFF_USERNAME, STAFF_PASSWORD, "压测值班台")
        auth.grant_role(user.id, Role.DESK, city.id, Actor.system("bench"))
        db.session.remove()
        added = duty_index.add_many(_points(n, random.Random(rng_seed), paths))
        duty_index.mark_built()  # a running evictor must not "rebuild" these away from the database
        return Seeded(
            n=added,
            geo_key=duty_index.key_all(),
            staff_username=STAFF_USERNAME,
            staff_password=STAFF_PASSWORD,
            seeded_at=time.time(),
        )


def refresh(app, seeded: Seeded) -> None:  # type: ignore[no-untyped-def]
    """Mark every seeded volunteer as just pinged (so a long run never drifts out of the window)."""
    from yijing.extensions import redis_client
    from yijing.services import duty_index

    with app.app_context():
        client = redis_client()
        now = time.time()
        for start in range(1, seeded.n + 1, duty_index.BATCH):
            ids = range(start, min(start + duty_index.BATCH, seeded.n + 1))
            client.zadd(duty_index.key_seen(), {str(i): now for i in ids}, xx=True)


def query_path() -> str:
    return (
        f"/api/v1/desk/volunteers/on-duty?lat={CENTRE[0]}&lng={CENTRE[1]}&radius_m={RADIUS_M}&limit={COUNT}"
    )


def staff_token(session, app_url: str, seeded: Seeded) -> str:  # type: ignore[no-untyped-def]
    response = session.post(
        app_url + "/api/v1/desk/auth/login",
        json={"username": seeded.staff_username, "password": seeded.staff_password},
        timeout=10,
    )
    if response.status_code != 200:
        raise RuntimeError(f"on_duty: staff login answered {response.status_code}: {response.text[:300]}")
    return response.json()["token"]


def raw_geosearch(redis_url: str, geo_key: str) -> Callable[[], object]:
    """The same query as the endpoint, straight to Redis, as a callable to time."""
    import redis

    client = redis.Redis.from_url(redis_url)

    def call() -> object:
        return client.geosearch(
            geo_key,
            longitude=CENTRE[1],
            latitude=CENTRE[0],
            radius=RADIUS_M,
            unit="m",
            sort="ASC",
            count=COUNT,
            withdist=True,
        )

    return call


def endpoint_call(session, app_url: str, token: str) -> Callable[[], object]:  # type: ignore[no-untyped-def]
    url, headers = app_url + query_path(), {"Authorization": f"Bearer {token}"}

    def call() -> object:
        response = session.get(url, headers=headers, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"on_duty: {response.status_code}: {response.text[:300]}")
        return response

    return call


def baseline_call(session, baseline_url: str, path: str) -> Callable[[], object]:  # type: ignore[no-untyped-def]
    """One GET of the bare baseline app from the same client as :func:`endpoint_call`."""
    url = baseline_url + path

    def call() -> object:
        response = session.get(url, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"baseline {path}: {response.status_code}: {response.text[:300]}")
        return response

    return call


def service_call(app, session, app_url: str, token: str) -> Callable[[], object]:  # type: ignore[no-untyped-def]
    """The endpoint's service call in this process, as the bearer of the token: the token's cache
    entries, the search and the answer's bytes in one round trip (``duty.on_duty_json``)."""
    from yijing.services import duty

    def admit(principal: object) -> None:  # the web layer's audience check has nothing to refuse here
        return None

    def call() -> object:
        with app.app_context():
            body = duty.on_duty_json(
                token,
                admit,
                lat=CENTRE[0],
                lng=CENTRE[1],
                radius_m=RADIUS_M,
                jurisdiction_id=None,
                categories=None,
                limit=COUNT,
            )
        if body.count(b'"volunteer_id"') != COUNT:
            raise RuntimeError(f"on_duty: the search service did not find {COUNT}: {body[:300]!r}")
        return body

    return call


class OnDutyScenario:
    name = "on_duty"
    description = "GET /api/v1/desk/volunteers/on-duty, 100,000 on duty, vs raw GEOSEARCH (3 km, 20)"
    needs_app = True

    def __init__(self, n: int | None = None) -> None:
        self.n = n or int(os.environ.get("BENCH_ON_DUTY_N", N_VOLUNTEERS))
        self._app = None
        self._seeded: Seeded | None = None

    def run(self, ctx):  # type: ignore[no-untyped-def]
        from bench.harness import BASELINES, Request, time_calls

        if self._seeded is None:
            self._app = make_app(ctx.database_url, ctx.redis_url)
            started = time.perf_counter()
            self._seeded = seed(self._app, self.n)
            took = time.perf_counter() - started
            print(f"on_duty: seeded {self._seeded.n:,} on-duty volunteers in {took:.1f} s")
        else:
            refresh(self._app, self._seeded)
        token = staff_token(ctx.session, ctx.app_url, self._seeded)
        check = endpoint_call(ctx.session, ctx.app_url, token)().json()
        if len(check["items"]) != COUNT:
            raise RuntimeError(
                f"on_duty: expected {COUNT} volunteers within {RADIUS_M} m, got {len(check['items'])}"
            )

        raw = time_calls(
            "on_duty:geosearch_raw",
            raw_geosearch(ctx.redis_url, self._seeded.geo_key),
            duration=ctx.duration,
            target=f"GEOSEARCH BYRADIUS {RADIUS_M} m ASC COUNT {COUNT}",
            extra={"points": self._seeded.n},
        )
        one = time_calls(
            "on_duty:http_1client",
            endpoint_call(ctx.session, ctx.app_url, token),
            duration=ctx.duration,
            target="GET " + query_path(),
            extra={"points": self._seeded.n},
        )
        one.baseline, one.ratio = raw.scenario, one.rps / raw.rps
        print(
            f"on_duty: endpoint {one.rps:,.0f}/s vs raw GEOSEARCH {raw.rps:,.0f}/s from one client: "
            f"ratio {one.ratio:.3f} (p50 {one.p50_ms:.2f} vs {raw.p50_ms:.2f} ms)"
        )
        service = time_calls(
            "on_duty:search_inprocess",
            service_call(self._app, ctx.session, ctx.app_url, token),
            duration=ctx.duration,
            target="duty.on_duty_json (3 km, 20), in process",
            extra={"points": self._seeded.n},
        )
        service.baseline, service.ratio = raw.scenario, service.rps / raw.rps
        print(
            f"on_duty: search service {service.rps:,.0f}/s vs raw GEOSEARCH {raw.rps:,.0f}/s: "
            f"ratio {service.ratio:.3f} (p50 {service.p50_ms:.2f} vs {raw.p50_ms:.2f} ms, "
            f"p99 {service.p99_ms:.2f} vs {raw.p99_ms:.2f} ms)"
        )
        floors = [
            time_calls(
                f"baseline:{name}_1client",
                baseline_call(ctx.session, ctx.baseline_url, BASELINES[name]),
                duration=ctx.duration,
                target=f"GET {BASELINES[name]} (bare app), one client",
            )
            for name in ("constant", "redis_get")
        ]
        for floor in floors:
            floor.baseline, floor.ratio = raw.scenario, floor.rps / raw.rps
            print(
                f"on_duty: {floor.scenario} p50 {floor.p50_ms:.2f} ms, p99 {floor.p99_ms:.2f} ms "
                f"(raw GEOSEARCH p99 {raw.p99_ms:.2f} ms: ×{floor.p99_ms / raw.p99_ms:.2f})"
            )
        loaded = ctx.measure_http(
            self.name, Request(path=query_path(), headers={"Authorization": f"Bearer {token}"})
        )
        loaded.baseline = "baseline:constant"
        return [loaded, raw, one, service, *floors]


SCENARIO = OnDutyScenario()


def _growth_run(ctx, size: int):  # type: ignore[no-untyped-def]
    """Growth mode: the same rows with ``size`` on duty (Redis is flushed before each size)."""
    return OnDutyScenario(size).run(ctx)


def _growth() -> list[Any]:
    from bench.harness import Growth

    return [Growth("on_duty_search", "on duty", (10_000, 100_000, 1_000_000), _growth_run)]


GROWTH = _growth()


def _time(fn: Callable[[], object], seconds: float) -> tuple[float, float, float]:
    for _ in range(10):
        fn()
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return (
        len(samples) / (time.perf_counter() - start),
        statistics.median(samples),
        samples[int(len(samples) * 0.99)],
    )


def main(argv: list[str] | None = None) -> None:
    import requests

    p = argparse.ArgumentParser(description="Seed the on-duty index and time the search (one client).")
    p.add_argument("--database-url", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--app-url", help="a running app using the same database and Redis")
    p.add_argument("--n", type=int, default=N_VOLUNTEERS)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--seed-only", action="store_true")
    args = p.parse_args(argv)

    app = make_app(args.database_url, args.redis_url)
    started = time.perf_counter()
    seeded = seed(app, args.n)
    print(f"seeded {seeded.n:,} on-duty volunteers in {time.perf_counter() - started:.1f} s")
    if args.seed_only:
        return
    raw = _time(raw_geosearch(args.redis_url, seeded.geo_key), args.seconds)
    print(f"raw GEOSEARCH   {raw[0]:>8,.0f}/s  p50 {raw[1]:.2f} ms  p99 {raw[2]:.2f} ms")
    if args.app_url:
        session = requests.Session()
        token = staff_token(session, args.app_url, seeded)
        http = _time(endpoint_call(session, args.app_url, token), args.seconds)
        print(f"endpoint        {http[0]:>8,.0f}/s  p50 {http[1]:.2f} ms  p99 {http[2]:.2f} ms")
        print(f"ratio endpoint / raw GEOSEARCH (one client each): {http[0] / raw[0]:.3f}")


if __name__ == "__main__":
    main()
