"""The one datum (GCJ-02) and the conversion at the edges, checked against points whose offset is known."""

from __future__ import annotations

import pytest

from yijing.geo import gcj02_to_wgs84, haversine_m, wgs84_to_gcj02

# (WGS-84) -> (GCJ-02), as computed by an independent implementation (the eviltransform package).
KNOWN = [
    ((39.915, 116.404), (39.91640430528012, 116.41024460490651)),  # Beijing
    ((40.6523, 109.8331), (40.653458128499274, 109.83882113249055)),  # 沼潭社区, Baotou
]


@pytest.mark.parametrize(("wgs", "gcj"), KNOWN)
def test_wgs84_to_gcj02_matches_the_known_offset(wgs, gcj):
    lat, lng = wgs84_to_gcj02(*wgs)
    assert lat == pytest.approx(gcj[0], abs=1e-6) and lng == pytest.approx(gcj[1], abs=1e-6)  # 0.1 m
    back = gcj02_to_wgs84(lat, lng)
    assert haversine_m(*back, *wgs) < 0.01


def test_the_offset_in_baotou_exceeds_a_geofence():
    assert 450 < haversine_m(*KNOWN[1][0], *KNOWN[1][1]) < 550


def test_outside_china_nothing_changes():
    assert wgs84_to_gcj02(48.8584, 2.2945) == (48.8584, 2.2945)


def test_the_document_declares_the_datum(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["x-datum"] == "GCJ-02" and "GCJ-02" in spec["info"]["description"]


def test_a_wgs84_check_in_is_converted_at_the_edge(client, tasks, volunteers, staff):
    """A task placed on a GCJ-02 map; the volunteer's phone sends raw GPS of the same spot: inside the
    geofence once converted, 500 m outside when taken as GCJ-02."""
    desk = staff("desk-kdl", "desk", "150203")
    headers, _ = volunteers.approved(desk, "v")
    wgs = KNOWN[1][0]
    gcj = KNOWN[1][1]
    task = tasks.create(desk, lat=gcj[0], lng=gcj[1], geofence_radius_m=100)
    tasks.accept(headers, task["id"])
    wrong = tasks.post(headers, task["id"], "check-in", {"lat": wgs[0], "lng": wgs[1]})
    assert wrong.status_code == 422, wrong.get_json()
    right = tasks.post(headers, task["id"], "check-in", {"lat": wgs[0], "lng": wgs[1], "coord_type": "wgs84"})
    assert right.status_code == 200, right.get_json()
