"""The desk's on-duty search: nearest first with distances, categories, jurisdiction, freshness."""

from __future__ import annotations

import math
import time

import pytest

# Around 沼潭社区 (40.652, 109.832).
ORIGIN = (40.6520, 109.8320)


def _haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    radius = 6372797.560856  # the Earth radius Redis GEO uses
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(a))


@pytest.fixture
def crowd(client, volunteers, staff, tree):
    """Five on-duty volunteers: four in 昆都仑区 at growing distances, one in 青山区."""
    desk = staff("desk-city", "desk", "150200")
    people = [
        ("near", "courier", "150203-01-01", (40.6530, 109.8330)),  # ~140 m
        ("mid", "taxi_driver", "150203-01-02", (40.6600, 109.8400)),  # ~1.1 km
        ("far", "courier", "150203-01-01-1", (40.6800, 109.8600)),  # ~3.9 km
        ("qs", "courier", "150204-01-01", (40.6550, 109.8350)),  # ~420 m, other district
        ("away", "security_guard", "150203-01-01", (40.7500, 109.9500)),  # ~14.8 km
    ]
    out = {}
    for name, category, key, (lat, lng) in people:
        headers, body = volunteers.approved(desk, name, category=category, jurisdiction_id=tree[key])
        volunteers.on_duty(headers, lat, lng)
        out[name] = {"id": body["id"], "headers": headers, "lat": lat, "lng": lng}
    return desk, out


def _search(client, headers, **params):
    response = client.get("/api/v1/desk/volunteers/on-duty", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_nearest_first_with_distances_within_the_radius(client, crowd):
    desk, people = crowd
    body = _search(client, desk, lat=ORIGIN[0], lng=ORIGIN[1])
    assert body["radius_m"] == 3000
    assert body["origin"] == {"lat": ORIGIN[0], "lng": ORIGIN[1]}
    ids = [i["volunteer_id"] for i in body["items"]]
    assert ids == [people["near"]["id"], people["qs"]["id"], people["mid"]["id"]]
    for item in body["items"]:
        person = next(p for p in people.values() if p["id"] == item["volunteer_id"])
        assert item["distance_m"] == pytest.approx(_haversine_m(*ORIGIN, person["lat"], person["lng"]), abs=2)
        assert item["lat"] == pytest.approx(person["lat"], abs=1e-4)
        assert "*" in item["name_masked"]
    wider = _search(client, desk, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=5000)
    assert [i["volunteer_id"] for i in wider["items"]][-1] == people["far"]["id"]
    assert len(_search(client, desk, lat=ORIGIN[0], lng=ORIGIN[1], radius_m=50000, limit=2)["items"]) == 2


def test_category_filters(client, crowd):
    desk, people = crowd
    taxis = _search(client, desk, lat=ORIGIN[0], lng=ORIGIN[1], category="taxi_driver")
    assert [i["volunteer_id"] for i in taxis["items"]] == [people["mid"]["id"]]
    assert taxis["items"][0]["category_label"] == "出租车司机"
    two = client.get(
        "/api/v1/desk/volunteers/on-duty?lat=40.652&lng=109.832&radius_m=20000&category=taxi_driver&category=security_guard",
        headers=desk,
    ).get_json()
    assert [i["volunteer_id"] for i in two["items"]] == [people["mid"]["id"], people["away"]["id"]]


def test_inside_the_jurisdiction_nearest_its_centre(client, crowd, staff, tree):
    _, people = crowd
    kdl = staff("desk-kdl", "desk", "150203")
    body = _search(client, kdl)  # no point: the whole of 昆都仑区, nearest its centre first
    assert body["origin"] == {"lat": 40.661, "lng": 109.822}
    ids = [i["volunteer_id"] for i in body["items"]]
    assert sorted(ids) == sorted(people[n]["id"] for n in ("near", "mid", "far", "away"))
    distances = [i["distance_m"] for i in body["items"]]
    assert distances == sorted(distances)
    community = _search(client, kdl, jurisdiction_id=tree["150203-01-02"])
    assert [i["volunteer_id"] for i in community["items"]] == [people["mid"]["id"]]
    # A point search by the district desk still shows only its own district's volunteers.
    point = _search(client, kdl, lat=ORIGIN[0], lng=ORIGIN[1])
    assert people["qs"]["id"] not in [i["volunteer_id"] for i in point["items"]]
    leader = staff("leader-qs", "leader", "150204-01-01")
    assert [i["volunteer_id"] for i in _search(client, leader)["items"]] == [people["qs"]["id"]]


def test_bad_search_arguments(client, crowd):
    desk, _ = crowd
    half = client.get("/api/v1/desk/volunteers/on-duty?lat=40.65", headers=desk)
    assert half.status_code == 422 and half.get_json()["error"]["fields"]["lat"] == ["经纬度须同时提供"]
    big = client.get("/api/v1/desk/volunteers/on-duty?lat=40.65&lng=109.8&radius_m=900000", headers=desk)
    assert big.status_code == 422


def test_stale_volunteers_drop_out_and_the_job_takes_them_off_duty(app, client, crowd):
    from rq import SimpleWorker

    from workers import schedule
    from workers.duty import evict_stale
    from yijing import jobs
    from yijing.extensions import redis_client
    from yijing.services import duty_index

    desk, people = crowd
    stale = people["near"]
    with app.app_context():  # the last ping was 11 minutes ago (the window is 10)
        duty_index.mark_built()  # as on a running system (else the job first rebuilds from the database)
        redis_client().zadd(duty_index.key_seen(), {str(stale["id"]): time.time() - 660})
    ids = [i["volunteer_id"] for i in _search(client, desk, lat=ORIGIN[0], lng=ORIGIN[1])["items"]]
    assert stale["id"] not in ids and people["mid"]["id"] in ids

    assert any(job.func is evict_stale for job in schedule.PERIODIC_JOBS)
    with app.app_context():
        jobs.get_queue(jobs.DEFAULT).enqueue("workers.duty.evict_stale")
        worker = SimpleWorker([jobs.get_queue(jobs.DEFAULT)], connection=redis_client())
        assert worker.work(burst=True)
        assert stale["id"] not in duty_index.members()
        assert people["mid"]["id"] in duty_index.members()
    state = client.get("/api/v1/volunteers/me/duty", headers=stale["headers"]).get_json()
    assert state["on_duty"] is False
    ping = client.post(
        "/api/v1/volunteers/me/location", json={"lat": 40.65, "lng": 109.83}, headers=stale["headers"]
    )
    assert ping.status_code == 409
    # Back on duty, back in the search.
    client.post(
        "/api/v1/volunteers/me/duty",
        json={"on_duty": True, "lat": 40.6530, "lng": 109.8330},
        headers=stale["headers"],
    )
    ids = [i["volunteer_id"] for i in _search(client, desk, lat=ORIGIN[0], lng=ORIGIN[1])["items"]]
    assert ids[0] == stale["id"]


def test_the_job_rebuilds_a_lost_index(app, client, crowd):
    from workers.duty import evict_stale
    from yijing.extensions import redis_client

    desk, people = crowd
    with app.app_context():
        redis_client().flushdb()  # our own test database: Redis lost everything
    assert _search(client, desk, lat=ORIGIN[0], lng=ORIGIN[1])["items"] == []
    with app.app_context():
        assert evict_stale() == 0
    ids = [i["volunteer_id"] for i in _search(client, desk, lat=ORIGIN[0], lng=ORIGIN[1])["items"]]
    assert ids == [people["near"]["id"], people["qs"]["id"], people["mid"]["id"]]
