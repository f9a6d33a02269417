"""One distance function and one place for Baotou's local time."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from yijing.geo import bounding_box, haversine_m
from yijing.localtime import SHANGHAI, day_bounds, local, local_day, local_today

ROOT = Path(__file__).resolve().parents[2]
CODE = [
    p for folder in ("yijing", "workers", "desk", "miniprogram_api") for p in (ROOT / folder).rglob("*.py")
]


def test_one_degree_of_latitude_is_about_111_km_and_distance_is_symmetric():
    assert haversine_m(40.0, 109.8, 41.0, 109.8) == pytest.approx(111_195, abs=5)
    a, b = (40.6525, 109.8330), (40.6680, 109.8480)
    assert haversine_m(*a, *b) == pytest.approx(haversine_m(*b, *a))
    assert haversine_m(*a, *a) == 0


def test_the_bounding_box_holds_the_circle():
    min_lat, max_lat, min_lng, max_lng = bounding_box(40.65, 109.83, 3000)
    assert haversine_m(40.65, 109.83, max_lat, 109.83) == pytest.approx(3000, rel=1e-6)
    assert haversine_m(40.65, 109.83, 40.65, max_lng) == pytest.approx(3000, rel=1e-3)
    assert min_lat < 40.65 < max_lat and min_lng < 109.83 < max_lng


def test_the_code_has_one_earth_radius_and_one_time_zone():
    radius = re.compile(r"6_?37[18]_?\d{3}")
    for path in CODE:
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT).as_posix()
        if name != "yijing/geo.py":
            assert not radius.search(source), f"{name} has an Earth radius of its own"
            assert "math.asin" not in source, f"{name} computes a great-circle distance of its own"
        if name != "yijing/localtime.py":
            assert "ZoneInfo(" not in source, f"{name} builds a time zone of its own"


def test_today_in_baotou_turns_at_local_midnight_not_utc_midnight():
    assert local_today(datetime(2026, 3, 1, 15, 59, tzinfo=UTC)) == date(2026, 3, 1)
    assert local_today(datetime(2026, 3, 1, 16, 0, tzinfo=UTC)) == date(2026, 3, 2)
    assert local_today() == datetime.now(SHANGHAI).date()


def test_a_local_day_is_a_utc_range_starting_at_16_00_the_day_before():
    start, end = day_bounds(date(2026, 3, 2))
    assert start == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    assert (end - start).total_seconds() == 24 * 3600
    assert local_day(start) == date(2026, 3, 2) and local_day(end) == date(2026, 3, 3)


def test_a_naive_time_is_taken_as_utc():
    assert local(datetime(2026, 3, 1, 16, 0)).hour == 0
    assert local(datetime(2026, 3, 1, 16, 0, tzinfo=UTC)).utcoffset().total_seconds() == 8 * 3600


def test_redis_scripts_measure_distances_exactly_as_python_does(redis_url):
    """The task list ranks in a Redis script and pages in Python: both must agree to the last bit."""
    import random

    import redis

    from yijing.geo import EARTH_RADIUS_M, HAVERSINE_LUA

    rng = random.Random(7)
    points = [
        [round(rng.uniform(40.2, 41.1), rng.randint(3, 9)) for _ in range(2)]
        + [round(rng.uniform(109.3, 110.4), rng.randint(3, 9)) for _ in range(2)]
        for _ in range(300)
    ]
    points += [[40.65, 40.65, 109.84, 109.84], [40.0, 40.0, 109.0, 109.00001]]  # the same point; a hair apart
    script = (
        "local earth = tonumber(ARGV[1])\n" + HAVERSINE_LUA + "local out = {}\n"
        "for i = 2, #ARGV, 4 do\n"
        "  out[#out + 1] = string.format('%.17g', haversine(tonumber(ARGV[i]), tonumber(ARGV[i + 2]),"
        " tonumber(ARGV[i + 1]), tonumber(ARGV[i + 3])))\n"
        "end\n"
        "return out\n"
    )
    args = [repr(EARTH_RADIUS_M)] + [repr(v) for p in points for v in p]
    client = redis.Redis.from_url(redis_url)
    from_lua = [float(x) for x in client.eval(script, 0, *args)]
    from_python = [haversine_m(lat1, lng1, lat2, lng2) for lat1, lat2, lng1, lng2 in points]
    assert from_lua == from_python
