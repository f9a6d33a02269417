"""Correcting a volunteer's name, phone or ID number (issue 13): asked in the mini-program, reviewed
at the desk like an application, audited, and the volunteer told."""

from __future__ import annotations

from sqlalchemy import select


def test_a_volunteer_asks_for_a_correction_and_the_desk_rejects_then_approves_it(
    app, client, volunteers, staff, id_number
):
    from yijing.extensions import db
    from yijing.models import AuditEntry, Notification

    desk = staff("desk-kdl", "desk", "150203")
    elsewhere = staff("desk-qs", "desk", "150204")
    headers, volunteer = volunteers.approved(desk, "cora", real_name="王小明", phone="13812345678")
    user_id = client.get("/api/v1/me", headers=headers).get_json()["id"]
    _, other = volunteers.apply("dora", id_number=id_number(seq=901))

    empty = client.post("/api/v1/volunteers/me/corrections", json={}, headers=headers)
    assert empty.status_code == 422
    taken = client.post(
        "/api/v1/volunteers/me/corrections", json={"id_number": id_number(seq=901)}, headers=headers
    )
    assert taken.status_code == 422
    assert taken.get_json()["error"]["fields"]["id_number"] == ["该身份证号码已被其他账号用于义警申请"]

    new_number = id_number(seq=902)
    asked = client.post(
        "/api/v1/volunteers/me/corrections",
        json={"real_name": "王晓明", "phone": "13900002222", "id_number": new_number, "note": "姓名录入错误"},
        headers=headers,
    )
    assert asked.status_code == 201, asked.get_json()
    body = asked.get_json()
    assert (
        body["status"] == "pending"
        and body["name_masked"] == "王*明"
        and body["phone_masked"] == "139****2222"
    )
    again = client.post("/api/v1/volunteers/me/corrections", json={"real_name": "王晓明"}, headers=headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "correction_pending"

    # The desk of another district sees nothing and may not decide.
    assert client.get("/api/v1/desk/volunteer-corrections", headers=elsewhere).get_json()["items"] == []
    refused = client.post(
        f"/api/v1/desk/volunteer-corrections/{body['id']}/review",
        json={"decision": "approve", "reason": "核对无误"},
        headers=elsewhere,
    )
    assert refused.status_code == 403

    listed = client.get("/api/v1/desk/volunteer-corrections", headers=desk)
    (item,) = listed.get_json()["items"]
    assert item["volunteer_id"] == volunteer["id"] and item["fields"] == ["real_name", "phone", "id_number"]
    assert (
        item["current"]["phone_masked"] == "138****5678" and item["proposed"]["phone_masked"] == "139****2222"
    )
    assert "王晓明" not in listed.get_data(as_text=True) and new_number not in listed.get_data(as_text=True)

    rejected = client.post(
        f"/api/v1/desk/volunteer-corrections/{body['id']}/review",
        json={"decision": "reject", "reason": "请携带身份证到社区核验"},
        headers=desk,
    )
    assert rejected.status_code == 200 and rejected.get_json()["status"] == "rejected"
    unchanged = client.post(
        f"/api/v1/desk/volunteers/{volunteer['id']}/pii", json={"reason": "核对更正"}, headers=desk
    ).get_json()
    assert (unchanged["real_name"], unchanged["phone"]) == ("王小明", "13812345678")
    twice = client.post(
        f"/api/v1/desk/volunteer-corrections/{body['id']}/review",
        json={"decision": "approve", "reason": "核对无误"},
        headers=desk,
    )
    assert twice.status_code == 409

    second = client.post(
        "/api/v1/volunteers/me/corrections",
        json={"real_name": "王晓明", "id_number": new_number},
        headers=headers,
    ).get_json()
    approved = client.post(
        f"/api/v1/desk/volunteer-corrections/{second['id']}/review",
        json={"decision": "approve", "reason": "已现场核验身份证"},
        headers=desk,
    )
    assert approved.status_code == 200, approved.get_json()
    clear = client.post(
        f"/api/v1/desk/volunteers/{volunteer['id']}/pii", json={"reason": "核对更正"}, headers=desk
    ).get_json()
    assert (clear["real_name"], clear["id_number"], clear["phone"]) == ("王晓明", new_number, "13812345678")
    mine = client.get("/api/v1/volunteers/me/corrections", headers=headers).get_json()
    assert [(c["status"], c["decision_reason"]) for c in mine] == [
        ("approved", "已现场核验身份证"),
        ("rejected", "请携带身份证到社区核验"),
    ]
    # The desk's lookup finds the volunteer by the new number, not the old one.
    found = client.post(
        "/api/v1/desk/volunteers/lookup", json={"id_number": new_number}, headers=desk
    ).get_json()
    assert [v["id"] for v in found] == [volunteer["id"]]
    assert other["id"] != volunteer["id"]

    with app.app_context():
        actions = db.session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.target_type == "volunteer", AuditEntry.target_id == str(volunteer["id"]))
            .where(AuditEntry.action.like("volunteer.correction%"))
            .order_by(AuditEntry.id)
        ).all()
        assert actions == [
            "volunteer.correction_request",
            "volunteer.correction_reject",
            "volunteer.correction_request",
            "volunteer.correction_approve",
        ]
        told = db.session.scalars(
            select(Notification.title).where(
                Notification.user_id == user_id, Notification.kind == "volunteer.correction"
            )
        ).all()
        assert sorted(told) == ["信息更正已通过", "信息更正未通过"]
        db.session.remove()
    history = client.get(f"/api/v1/desk/volunteers/{volunteer['id']}", headers=desk).get_json()["history"]
    assert "volunteer.correction_approve" in [h["action"] for h in history]
