"""The Redis GEO index of on-duty volunteers, the API other features reuse."""

from __future__ import annotations

import math
import random
import time

import pytest

from yijing.services import duty_index
from yijing.services.duty_index import DutyEntry

CENTRE = (40.657, 109.840)  # 包头


def _haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    radius = 6372797.560856
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(a))


def _entry(i: int, category: str = "courier", path: str = "/1/2/3/4/") -> DutyEntry:
    return DutyEntry(
        volunteer_id=i, user_id=1000 + i, category=category, path=path, jurisdiction_id=4, name_masked="张*"
    )


def test_nearest_matches_a_brute_force_search(app_ctx):
    rng = random.Random(7)
    points = {}
    items = []
    for i in range(1, 2001):
        lat = CENTRE[0] + rng.uniform(-0.1, 0.1)
        lng = CENTRE[1] + rng.uniform(-0.12, 0.12)
        category = rng.choice(["courier", "taxi_driver", "security_guard"])
        points[i] = (lat, lng, category)
        items.append((_entry(i, category), lat, lng, None))
    assert duty_index.add_many(items) == 2000

    found = duty_index.nearest(*CENTRE, radius_m=3000, limit=20)
    expected = sorted((_haversine_m(*CENTRE, lat, lng), i) for i, (lat, lng, _) in points.items())
    expected = [(i, d) for d, i in expected if d <= 3000][:20]
    assert [i for i, _ in found] == [i for i, _ in expected]
    for (_, got), (_, want) in zip(found, expected, strict=True):
        assert got == pytest.approx(want, abs=1)

    taxis = duty_index.nearest(*CENTRE, radius_m=3000, limit=10, categories=["taxi_driver"])
    assert taxis and all(points[i][2] == "taxi_driver" for i, _ in taxis)
    assert [d for _, d in taxis] == sorted(d for _, d in taxis)
    two = duty_index.nearest(*CENTRE, radius_m=3000, limit=50, categories=["taxi_driver", "courier"])
    assert {points[i][2] for i, _ in two} == {"taxi_driver", "courier"}


def test_stale_entries_are_skipped_even_when_they_are_the_nearest(app_ctx):
    old = time.time() - 3600
    # 60 stale volunteers right at the centre, 5 fresh ones a little further away.
    stale = [(_entry(i), CENTRE[0] + i * 1e-6, CENTRE[1], old) for i in range(1, 61)]
    fresh = [(_entry(100 + i), CENTRE[0] + 0.001 * i, CENTRE[1], None) for i in range(1, 6)]
    duty_index.add_many(stale + fresh)
    assert [i for i, _ in duty_index.nearest(*CENTRE, radius_m=3000, limit=5)] == [101, 102, 103, 104, 105]

    evicted = duty_index.evict_stale()
    assert sorted(evicted) == list(range(1, 61))
    assert duty_index.members() == {101, 102, 103, 104, 105}
    assert duty_index.evict_stale() == []


def test_filters_by_home_subtree_and_partition(app_ctx):
    duty_index.add_many(
        [
            (_entry(1, path="/1/2/5/9/"), CENTRE[0], CENTRE[1], None),
            (_entry(2, path="/1/2/6/10/"), CENTRE[0] + 0.001, CENTRE[1], None),
            (_entry(3, path="/1/3/7/11/"), CENTRE[0] + 0.002, CENTRE[1], None),
        ]
    )
    hits = duty_index.search(*CENTRE, 3000, 10, within_paths=["/1/2/"])
    assert [h.volunteer_id for h in hits] == [1, 2]
    hits = duty_index.search(*CENTRE, 3000, 10, within_paths=["/1/2/6/", "/1/3/"])
    assert [h.volunteer_id for h in hits] == [2, 3]
    hits = duty_index.search(*CENTRE, 3000, 10, partition="3", within_paths=["/1/3/"])
    assert [h.volunteer_id for h in hits] == [3]
    assert hits[0].name_masked == "张*" and hits[0].user_id == 1003


def test_remove_takes_a_volunteer_out_of_every_set(app_ctx):
    from yijing.extensions import redis_client

    duty_index.add(_entry(1, category="taxi_driver", path="/1/2/5/"), *CENTRE)
    assert duty_index.remove(1) is True
    client = redis_client()
    for key in (duty_index.key_all(), duty_index.key_category("taxi_driver"), duty_index.key_partition("2")):
        assert client.zcard(key) == 0
    assert client.hlen(duty_index.key_info()) == 0
    assert duty_index.remove(1) is False


def test_rebuilding_never_undoes_a_fresher_ping(app_ctx):
    duty_index.add(_entry(1), 40.70, 109.90)  # pinged just now, here
    before = duty_index.last_seen(1)
    duty_index.add_many([(_entry(1), 40.60, 109.80, time.time() - 300)], keep_newer=True)  # the database's
    assert duty_index.last_seen(1) == before
    hit = duty_index.search(40.70, 109.90, 100, 1)[0]
    assert (round(hit.lat, 3), round(hit.lng, 3)) == (40.70, 109.90)
