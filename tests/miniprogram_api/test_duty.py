"""Going on and off duty and location pings from the mini-program."""

from __future__ import annotations

from tests.fixtures.outages import redis_refused


def _row(app, volunteer_id: int):
    from yijing.extensions import db
    from yijing.models import Volunteer

    with app.app_context():
        row = db.session.get(Volunteer, volunteer_id)
        db.session.expunge(row)
        db.session.remove()
        return row


def test_on_duty_ping_and_off_duty(app, client, volunteers, staff):
    desk = staff("desk-d", "desk", "150203")
    headers, body = volunteers.approved(desk, "duty")
    state = volunteers.on_duty(headers, 40.652, 109.832)
    assert state["on_duty"] is True and state["since"] and state["indexed"] is True
    assert state["ping_window_seconds"] == 600
    row = _row(app, body["id"])
    assert row.on_duty and (row.duty_lat, row.duty_lng) == (40.652, 109.832)

    pinged = client.post(
        "/api/v1/volunteers/me/location", json={"lat": 40.660, "lng": 109.840}, headers=headers
    )
    assert pinged.status_code == 200
    assert pinged.get_json()["indexed"] is True
    found = client.get(
        "/api/v1/desk/volunteers/on-duty", query_string={"lat": 40.660, "lng": 109.840}, headers=desk
    ).get_json()["items"]
    assert [(i["volunteer_id"], i["distance_m"] < 1) for i in found] == [(body["id"], True)]
    # Pings within DUTY_DB_SYNC_SECONDS do not write the database (Redis has them).
    assert (_row(app, body["id"]).duty_lat, _row(app, body["id"]).duty_lng) == (40.652, 109.832)

    current = client.get("/api/v1/volunteers/me/duty", headers=headers).get_json()
    assert current["on_duty"] is True and current["last_ping_at"]

    off = client.post("/api/v1/volunteers/me/duty", json={"on_duty": False}, headers=headers)
    assert off.status_code == 200 and off.get_json()["on_duty"] is False
    assert _row(app, body["id"]).on_duty is False
    found = client.get("/api/v1/desk/volunteers/on-duty?lat=40.66&lng=109.84", headers=desk).get_json()[
        "items"
    ]
    assert found == []
    late = client.post("/api/v1/volunteers/me/location", json={"lat": 40.66, "lng": 109.84}, headers=headers)
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "not_on_duty"


def test_pings_write_the_database_once_the_sync_interval_passed(app, client, volunteers, staff):
    from dataclasses import replace

    desk = staff("desk-s", "desk", "150203")
    headers, body = volunteers.approved(desk, "sync")
    volunteers.on_duty(headers, 40.652, 109.832)
    config = app.config["YIJING"]
    app.config["YIJING"] = replace(config, duty_db_sync_seconds=0)
    try:
        client.post("/api/v1/volunteers/me/location", json={"lat": 40.7, "lng": 109.9}, headers=headers)
    finally:
        app.config["YIJING"] = config
    assert (_row(app, body["id"]).duty_lat, _row(app, body["id"]).duty_lng) == (40.7, 109.9)


def test_only_approved_volunteers_go_on_duty(client, volunteers, wechat_login):
    headers, _ = volunteers.apply("pending")
    response = client.post(
        "/api/v1/volunteers/me/duty", json={"on_duty": True, "lat": 40.65, "lng": 109.83}, headers=headers
    )
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "volunteer_not_approved"
    assert response.get_json()["error"]["message"] == "只有审核通过且未被暂停的义警才能上岗"
    nobody = client.post(
        "/api/v1/volunteers/me/duty",
        json={"on_duty": True, "lat": 40.65, "lng": 109.83},
        headers=wechat_login("x"),
    )
    assert nobody.status_code == 404


def test_going_on_duty_needs_a_valid_location(client, volunteers, staff):
    desk = staff("desk-l", "desk", "150203")
    headers, _ = volunteers.approved(desk, "loc")
    missing = client.post("/api/v1/volunteers/me/duty", json={"on_duty": True}, headers=headers)
    assert missing.status_code == 422 and missing.get_json()["error"]["code"] == "location_required"
    wrong = client.post(
        "/api/v1/volunteers/me/duty", json={"on_duty": True, "lat": 95, "lng": 109.83}, headers=headers
    )
    assert wrong.status_code == 422
    assert wrong.get_json()["error"]["fields"]["lat"] == ["纬度超出范围"]


def test_duty_survives_a_redis_outage_and_the_index_is_rebuilt(app, client, volunteers, staff):
    """Redis down: going on duty still commits (the database is the truth), the desk search says
    503, and once Redis is back ``flask yijing rebuild-duty-index`` restores the index."""
    desk = staff("desk-o", "desk", "150203")
    headers, body = volunteers.approved(desk, "outage")
    with redis_refused(app):  # every Redis call is refused
        state = volunteers.on_duty(headers, 40.652, 109.832)
        assert state["on_duty"] is True and state["indexed"] is False
        ping = client.post(
            "/api/v1/volunteers/me/location", json={"lat": 40.653, "lng": 109.833}, headers=headers
        )
        assert ping.status_code == 200 and ping.get_json()["indexed"] is False
        search = client.get("/api/v1/desk/volunteers/on-duty?lat=40.653&lng=109.833", headers=desk)
        assert search.status_code == 503
        assert search.get_json()["error"]["code"] == "duty_index_unavailable"
    # The ping during the outage went to the database at once.
    assert (_row(app, body["id"]).duty_lat, _row(app, body["id"]).duty_lng) == (40.653, 109.833)
    assert (
        client.get("/api/v1/desk/volunteers/on-duty?lat=40.653&lng=109.833", headers=desk).get_json()["items"]
        == []
    )
    result = app.test_cli_runner().invoke(args=["yijing", "rebuild-duty-index"])
    assert result.exit_code == 0, result.output
    assert "1 on duty" in result.output
    items = client.get("/api/v1/desk/volunteers/on-duty?lat=40.653&lng=109.833", headers=desk).get_json()[
        "items"
    ]
    assert [i["volunteer_id"] for i in items] == [body["id"]]
    assert items[0]["distance_m"] < 1
