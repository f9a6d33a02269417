"""Vetting volunteers at the desk: scope, decisions, personal information, cards, on-duty search."""

from __future__ import annotations

import math

import pytest
import redis
from sqlalchemy import select, text

from yijing.localtime import local_today


def _haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance with the Earth radius Redis GEO uses."""
    radius = 6372797.560856
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(a))


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_the_full_path(client, volunteers, staff):
    """apply → other district can't see it → right district approves → card verifies → on duty and
    found at the right distance → suspension removes them and the card stops verifying."""
    kdl = staff("desk-kdl", "desk", "150203")
    qs = staff("desk-qs", "desk", "150204")
    headers, application = volunteers.apply("walker")
    vid = application["id"]

    # Another district sees nothing and may do nothing.
    assert _ids(client.get("/api/v1/desk/volunteers", headers=qs)) == []
    assert client.get(f"/api/v1/desk/volunteers/{vid}", headers=qs).status_code == 403
    denied = client.post(
        f"/api/v1/desk/volunteers/{vid}/review", json={"decision": "approve", "reason": "越权"}, headers=qs
    )
    assert denied.status_code == 403
    assert denied.get_json()["error"]["code"] == "out_of_jurisdiction"
    assert client.get("/api/v1/volunteers/me", headers=headers).get_json()["status"] == "pending"

    # The right district sees and approves it.
    assert _ids(client.get("/api/v1/desk/volunteers?status=pending", headers=kdl)) == [vid]
    approved = volunteers.approve(kdl, vid)
    assert approved["status"] == "approved"
    year = local_today().year
    assert approved["volunteer_number"] == f"BTYJ-{year}-000001"
    assert approved["team"]["name"] == "沼潭社区义警队"

    # The card verifies, for staff of any district.
    card = client.get("/api/v1/volunteers/me/card", headers=headers).get_json()
    assert card["volunteer_number"] == approved["volunteer_number"]
    assert card["name_masked"] == "张*三"
    assert card["category_label"] == "快递员"
    assert card["team"]["name"] == "沼潭社区义警队"
    verified = client.get(
        "/api/v1/desk/volunteers/verify", query_string={"code": card["qr_payload"]}, headers=qs
    )
    assert verified.get_json()["genuine"] is True
    assert verified.get_json()["valid"] is True
    assert verified.get_json()["volunteer_number"] == card["volunteer_number"]

    # On duty, found at the right distance from the search point.
    volunteers.on_duty(headers, 40.6520, 109.8320)
    found = client.get(
        "/api/v1/desk/volunteers/on-duty", query_string={"lat": 40.6600, "lng": 109.8400}, headers=kdl
    ).get_json()
    assert [item["volunteer_id"] for item in found["items"]] == [vid]
    item = found["items"][0]
    expected = _haversine_m(40.6600, 109.8400, 40.6520, 109.8320)
    assert 1000 < expected < 1200
    assert item["distance_m"] == pytest.approx(expected, abs=2)
    assert item["name_masked"] == "张*三"
    assert item["category"] == "courier"
    # The other district's desk does not see another district's volunteer.
    other = client.get(
        "/api/v1/desk/volunteers/on-duty", query_string={"lat": 40.6600, "lng": 109.8400}, headers=qs
    ).get_json()
    assert other["items"] == []

    # Suspension: out of the on-duty search, card no longer valid.
    suspended = client.post(
        f"/api/v1/desk/volunteers/{vid}/suspend", json={"reason": "多次无故缺岗"}, headers=kdl
    )
    assert suspended.status_code == 200
    assert suspended.get_json()["status"] == "suspended"
    found = client.get(
        "/api/v1/desk/volunteers/on-duty", query_string={"lat": 40.6600, "lng": 109.8400}, headers=kdl
    ).get_json()
    assert found["items"] == []
    verified = client.get(
        "/api/v1/desk/volunteers/verify", query_string={"code": card["qr_payload"]}, headers=qs
    )
    assert verified.get_json()["genuine"] is True
    assert verified.get_json()["valid"] is False
    assert verified.get_json()["status"] == "suspended"
    # And a suspended volunteer cannot go back on duty or ping.
    again = client.post(
        "/api/v1/volunteers/me/duty", json={"on_duty": True, "lat": 40.65, "lng": 109.83}, headers=headers
    )
    assert again.status_code == 403
    assert again.get_json()["error"]["code"] == "volunteer_not_approved"
    ping = client.post("/api/v1/volunteers/me/location", json={"lat": 40.65, "lng": 109.83}, headers=headers)
    assert ping.status_code == 409


def test_every_endpoint_is_403_outside_the_jurisdiction(client, volunteers, staff, tree):
    kdl = staff("desk-kdl", "desk", "150203")
    qs = staff("desk-qs", "desk", "150204")
    _, approved = volunteers.approved(kdl, "scoped")
    vid = approved["id"]
    reason = {"reason": "核查需要"}
    attempts = [
        client.get(f"/api/v1/desk/volunteers/{vid}", headers=qs),
        client.post(
            f"/api/v1/desk/volunteers/{vid}/review", json={"decision": "reject", **reason}, headers=qs
        ),
        client.post(f"/api/v1/desk/volunteers/{vid}/suspend", json=reason, headers=qs),
        client.post(f"/api/v1/desk/volunteers/{vid}/reinstate", json=reason, headers=qs),
        client.post(f"/api/v1/desk/volunteers/{vid}/pii", json=reason, headers=qs),
        client.get(f"/api/v1/desk/volunteers?jurisdiction_id={tree['150203']}", headers=qs),
        client.get(f"/api/v1/desk/volunteers/on-duty?jurisdiction_id={tree['150203']}", headers=qs),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)
    assert _ids(client.get("/api/v1/desk/volunteers", headers=qs)) == []
    lookup = client.post("/api/v1/desk/volunteers/lookup", json={"phone": "13812345678"}, headers=qs)
    assert lookup.get_json() == []


def test_a_mini_program_user_is_403_at_the_desk(client, volunteers, wechat_login):
    _, body = volunteers.apply("nosy")
    resident = wechat_login("resident")
    assert client.get("/api/v1/desk/volunteers", headers=resident).status_code == 403
    assert client.get(f"/api/v1/desk/volunteers/{body['id']}", headers=resident).status_code == 403
    assert client.get("/api/v1/desk/volunteers/verify?code=x", headers=resident).status_code == 403


def test_list_filters_and_pagination(client, volunteers, staff, tree):
    city = staff("desk-city", "desk", "150200")
    _, a = volunteers.apply("a", category="courier", employer="顺丰速运", real_name="王大锤")
    _, b = volunteers.apply("b", category="taxi_driver", employer="鹿城出租", real_name="刘小明")
    _, c = volunteers.apply(
        "c", category="courier", employer="京东物流", jurisdiction_id=tree["150204-01-01"]
    )
    volunteers.approve(city, b["id"])

    assert _ids(client.get("/api/v1/desk/volunteers", headers=city)) == [c["id"], b["id"], a["id"]]
    assert _ids(client.get("/api/v1/desk/volunteers?status=approved", headers=city)) == [b["id"]]
    assert _ids(client.get("/api/v1/desk/volunteers?status=pending&status=approved", headers=city)) == [
        c["id"],
        b["id"],
        a["id"],
    ]
    assert _ids(client.get("/api/v1/desk/volunteers?category=courier", headers=city)) == [c["id"], a["id"]]
    assert _ids(client.get(f"/api/v1/desk/volunteers?jurisdiction_id={tree['150204']}", headers=city)) == [
        c["id"]
    ]
    assert _ids(client.get("/api/v1/desk/volunteers", query_string={"q": "顺丰"}, headers=city)) == [a["id"]]
    assert _ids(client.get("/api/v1/desk/volunteers", query_string={"q": "刘*明"}, headers=city)) == [b["id"]]
    assert _ids(client.get("/api/v1/desk/volunteers", query_string={"q": "王"}, headers=city)) == [a["id"]]
    # The clear name is not searchable: only its mask is stored.
    assert _ids(client.get("/api/v1/desk/volunteers", query_string={"q": "王大锤"}, headers=city)) == []
    number = client.get(f"/api/v1/desk/volunteers/{b['id']}", headers=city).get_json()["volunteer"][
        "volunteer_number"
    ]
    assert _ids(client.get("/api/v1/desk/volunteers", query_string={"q": number}, headers=city)) == [b["id"]]

    first = client.get("/api/v1/desk/volunteers?limit=2", headers=city).get_json()
    assert [i["id"] for i in first["items"]] == [c["id"], b["id"]]
    second = client.get(
        "/api/v1/desk/volunteers", query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=city
    ).get_json()
    assert [i["id"] for i in second["items"]] == [a["id"]]
    assert second["next_cursor"] is None

    community_leader = staff("leader", "leader", "150203-01-02")
    assert _ids(client.get("/api/v1/desk/volunteers", headers=community_leader)) == []


def test_lookup_by_id_number_or_phone_uses_the_keyed_hash(client, volunteers, staff, id_number):
    desk = staff("desk-look", "desk", "150203")
    number = id_number(seq=42)
    _, body = volunteers.apply("look", id_number=number, phone="13700001111")
    by_id = client.post("/api/v1/desk/volunteers/lookup", json={"id_number": number.lower()}, headers=desk)
    assert [v["id"] for v in by_id.get_json()] == [body["id"]]
    by_phone = client.post("/api/v1/desk/volunteers/lookup", json={"phone": "137 0000 1111"}, headers=desk)
    assert [v["id"] for v in by_phone.get_json()] == [body["id"]]
    assert client.post("/api/v1/desk/volunteers/lookup", json={}, headers=desk).status_code == 422


def test_decisions_are_audited_notify_and_grant_or_revoke_the_role(app, client, volunteers, staff, tree):
    desk = staff("desk-dec", "desk", "150203")
    headers, body = volunteers.apply("decided")
    vid = body["id"]
    volunteers.approve(desk, vid, reason="材料齐全")
    me = client.get("/api/v1/me", headers=headers).get_json()
    assert "volunteer" in me["roles"]
    assert {
        "role": "volunteer",
        "role_label": "义警",
        "jurisdiction": {
            "id": tree["150203-01-01"],
            "name": "沼潭社区",
            "level": "community",
            "level_label": "嘎查村/社区",
        },
    } in me["grants"]
    assert (
        client.post(
            f"/api/v1/desk/volunteers/{vid}/suspend", json={"reason": "违反纪律"}, headers=desk
        ).status_code
        == 200
    )
    assert "volunteer" not in client.get("/api/v1/me", headers=headers).get_json()["roles"]
    assert (
        client.post(
            f"/api/v1/desk/volunteers/{vid}/reinstate", json={"reason": "已整改"}, headers=desk
        ).status_code
        == 200
    )
    assert "volunteer" in client.get("/api/v1/me", headers=headers).get_json()["roles"]
    mine = client.get("/api/v1/volunteers/me", headers=headers).get_json()
    assert mine["status"] == "approved"
    assert mine["decision_reason"] == "已整改"

    from yijing.extensions import db
    from yijing.models import AuditEntry, Notification

    with app.app_context():
        entries = db.session.scalars(
            select(AuditEntry).where(AuditEntry.target_type == "volunteer").order_by(AuditEntry.id)
        ).all()
        assert [(e.action, e.reason) for e in entries] == [
            ("volunteer.apply", None),
            ("volunteer.approve", "材料齐全"),
            ("volunteer.suspend", "违反纪律"),
            ("volunteer.reinstate", "已整改"),
        ]
        assert all(e.ip == "127.0.0.1" and e.request_id for e in entries)
        roles = db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.target_type == "user").order_by(AuditEntry.id)
        ).all()
        assert roles.count("role.grant") >= 3 and roles.count("role.revoke") == 1
        notes = db.session.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(n.kind, n.dedupe_key) for n in notes] == [
            ("volunteer.approve", f"volunteer:{vid}:decision:1"),
            ("volunteer.suspend", f"volunteer:{vid}:decision:2"),
            ("volunteer.reinstate", f"volunteer:{vid}:decision:3"),
        ]
        assert {n.status for n in notes} == {"pending"}
        assert "违反纪律" in notes[1].body
    detail = client.get(f"/api/v1/desk/volunteers/{vid}", headers=desk).get_json()
    assert [h["action"] for h in detail["history"]] == [
        "volunteer.apply",
        "volunteer.approve",
        "volunteer.suspend",
        "volunteer.reinstate",
    ]
    assert detail["history"][1]["actor"] == "desk-dec"


def test_reject_with_reason_then_the_applicant_may_apply_again(app, client, volunteers, staff):
    desk = staff("desk-rej", "desk", "150203")
    headers, body = volunteers.apply("rejected")
    response = client.post(
        f"/api/v1/desk/volunteers/{body['id']}/review",
        json={"decision": "reject", "reason": "照片不清"},
        headers=desk,
    )
    assert response.status_code == 200
    mine = client.get("/api/v1/volunteers/me", headers=headers).get_json()
    assert (mine["status"], mine["decision_reason"]) == ("rejected", "照片不清")
    assert "volunteer" not in client.get("/api/v1/me", headers=headers).get_json()["roles"]
    assert (
        client.post("/api/v1/volunteers", json=volunteers.application(), headers=headers).status_code == 201
    )

    from yijing.extensions import db
    from yijing.models import Notification

    with app.app_context():
        note = db.session.scalars(select(Notification)).one()
        assert (note.kind, note.title) == ("volunteer.reject", "义警申请未通过")


def test_reason_is_required_and_transitions_are_checked(client, volunteers, staff):
    desk = staff("desk-rules", "desk", "150203")
    _, body = volunteers.apply("rules")
    vid = body["id"]
    missing = client.post(f"/api/v1/desk/volunteers/{vid}/review", json={"decision": "approve"}, headers=desk)
    assert missing.status_code == 422 and missing.get_json()["error"]["fields"]["reason"] == ["必填"]
    assert (
        client.post(
            f"/api/v1/desk/volunteers/{vid}/suspend", json={"reason": "不行"}, headers=desk
        ).status_code
        == 409
    )
    volunteers.approve(desk, vid)
    twice = client.post(
        f"/api/v1/desk/volunteers/{vid}/review", json={"decision": "approve", "reason": "再批"}, headers=desk
    )
    assert twice.status_code == 409 and twice.get_json()["error"] == {
        "code": "illegal_transition",
        "message": "义警当前为「已通过」，不能审核",
        "fields": {},
    }
    assert (
        client.post(
            f"/api/v1/desk/volunteers/{vid}/reinstate", json={"reason": "恢复"}, headers=desk
        ).status_code
        == 409
    )
    assert (
        client.post(
            "/api/v1/desk/volunteers/999999/review",
            json={"decision": "approve", "reason": "无此人"},
            headers=desk,
        ).status_code
        == 404
    )


def test_volunteer_numbers_are_sequential(volunteers, staff):
    desk = staff("desk-num", "desk", "150203")
    year = local_today().year
    numbers = [volunteers.approved(desk, f"n{i}")[1]["volunteer_number"] for i in range(3)]
    assert numbers == [f"BTYJ-{year}-00000{i}" for i in (1, 2, 3)]


def test_leaders_review_but_cannot_read_personal_information(client, volunteers, staff):
    leader = staff("leader-1", "leader", "150203-01-01")
    _, body = volunteers.apply("led")
    assert volunteers.approve(leader, body["id"])["status"] == "approved"
    response = client.post(
        f"/api/v1/desk/volunteers/{body['id']}/pii", json={"reason": "核实"}, headers=leader
    )
    assert response.status_code == 403


def test_clear_reads_are_audited_and_raw_rows_hold_no_clear_values(app, client, volunteers, staff, id_number):
    desk = staff("desk-pii", "desk", "150203")
    name, number, phone = "欧阳明月", id_number(seq=777), "13900001111"
    headers = volunteers.login("pii")
    client.post("/api/v1/auth/phone", json={"code": f"phone-{phone}"}, headers=headers)
    body = volunteers.application(real_name=name, id_number=number)
    del body["phone"]  # the bound phone
    created = client.post("/api/v1/volunteers", json=body, headers={**headers, "Idempotency-Key": "k1"})
    assert created.status_code == 201
    vid = created.get_json()["id"]
    volunteers.approve(desk, vid)
    volunteers.on_duty(headers, 40.652, 109.832)
    client.get("/api/v1/volunteers/me/card", headers=headers)

    # Every response masks them.
    for response in (
        created,
        client.get("/api/v1/volunteers/me", headers=headers),
        client.get(f"/api/v1/desk/volunteers/{vid}", headers=desk),
        client.get("/api/v1/desk/volunteers", headers=desk),
        client.get("/api/v1/desk/volunteers/on-duty?lat=40.652&lng=109.832", headers=desk),
    ):
        page = response.get_data(as_text=True)
        assert name not in page and number not in page and phone not in page
        assert "欧**月" in page

    missing_reason = client.post(f"/api/v1/desk/volunteers/{vid}/pii", json={}, headers=desk)
    assert missing_reason.status_code == 422
    read = client.post(
        f"/api/v1/desk/volunteers/{vid}/pii",
        json={"reason": "核实身份：现场盘查"},
        headers={**desk, "X-Request-ID": "req-pii-000001"},
    )
    assert read.status_code == 200
    assert read.headers["Cache-Control"] == "no-store"
    assert read.get_json() == {"volunteer_id": vid, "real_name": name, "id_number": number, "phone": phone}
    only_phone = client.post(
        f"/api/v1/desk/volunteers/{vid}/pii", json={"reason": "联系本人", "fields": ["phone"]}, headers=desk
    )
    assert only_phone.get_json() == {"volunteer_id": vid, "phone": phone}

    from yijing.extensions import db
    from yijing.models import AuditEntry, User

    with app.app_context():
        desk_user = db.session.scalar(select(User).where(User.username == "desk-pii"))
        reads = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "volunteer.read_pii").order_by(AuditEntry.id)
        ).all()
        assert [(r.actor_id, r.reason, r.data["fields"]) for r in reads] == [
            (desk_user.id, "核实身份：现场盘查", ["real_name", "id_number", "phone"]),
            (desk_user.id, "联系本人", ["phone"]),
        ]
        assert all(r.target_id == str(vid) and r.created_at and r.ip == "127.0.0.1" for r in reads)
        assert reads[0].request_id == "req-pii-000001"

        # No table holds a clear name, ID number or phone.
        with db.engine.connect() as conn:
            for table in db.metadata.sorted_tables:
                for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                    dump = " ".join(str(value) for value in row)
                    for secret in (name, number, phone, number[6:14] + number[14:]):
                        assert secret not in dump, f"{secret} found in {table.name}"
    # Nor does Redis (the duty index keeps the masked name only).
    raw = redis.Redis.from_url(app.config["YIJING"].redis_url)
    for key in raw.keys("*"):
        kind = raw.type(key)
        values = raw.hvals(key) if kind == b"hash" else [raw.get(key)] if kind == b"string" else []
        for value in values:
            decoded = (value or b"").decode(errors="replace")
            assert name not in decoded and number not in decoded and phone not in decoded


def test_the_list_costs_the_same_queries_for_any_page_size(app, client, volunteers, staff):
    from sqlalchemy import event

    from yijing.extensions import db

    desk = staff("desk-q", "desk", "150203")
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def queries_for_list() -> int:
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert client.get("/api/v1/desk/volunteers", headers=desk).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    volunteers.approved(desk, "one")
    few = queries_for_list()
    for i in range(5):
        volunteers.approved(desk, f"more{i}")
    assert queries_for_list() == few
    # Token and principal come from Redis; the page is one query, the reused-ID-number flags one more.
    assert sum(1 for s in statements if s.lstrip().upper().startswith("SELECT")) == 2
