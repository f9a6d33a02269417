"""Reused ID numbers (issue 13): the vetting list and detail tell the reviewer that an ID number was
rejected, withdrawn or used by another WeChat account before, with the earlier decision's reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _flags(client, desk, volunteer_id: int) -> tuple[list[dict], list[dict]]:
    listed = client.get("/api/v1/desk/volunteers", headers=desk).get_json()["items"]
    (item,) = [v for v in listed if v["id"] == volunteer_id]
    detail = client.get(f"/api/v1/desk/volunteers/{volunteer_id}", headers=desk).get_json()["volunteer"]
    return item["id_number_flags"], detail["id_number_flags"]


def test_an_id_number_rejected_or_withdrawn_elsewhere_is_flagged_with_the_earlier_reason(
    app, client, volunteers, staff, id_number
):
    from workers import privacy
    from yijing.extensions import db

    desk = staff("desk-kdl", "desk", "150203")
    reused, withdrawn_number = id_number(seq=301), id_number(seq=302)

    _, first = volunteers.apply("first", id_number=reused)
    rejected = client.post(
        f"/api/v1/desk/volunteers/{first['id']}/review",
        json={"decision": "reject", "reason": "身份证照片与本人不符"},
        headers=desk,
    )
    assert rejected.status_code == 200, rejected.get_json()
    _, second = volunteers.apply("second", id_number=reused)

    listed, detailed = _flags(client, desk, second["id"])
    assert listed == detailed
    (flag,) = listed
    assert flag["message"] == "此身份证号曾被驳回（曾由其他账号申请）"
    assert (
        flag["reason"] == "身份证照片与本人不符" and flag["status"] == "rejected" and flag["another_account"]
    )
    assert "name" not in flag and "id" not in flag  # the other applicant is not named
    # The rejected one is told about the later application by another account too.
    (back,) = _flags(client, desk, first["id"])[0]
    assert back["message"] == "此身份证号曾由其他账号申请" and back["status"] == "pending"

    third_headers, _ = volunteers.apply("third", id_number=withdrawn_number)
    assert client.post("/api/v1/volunteers/me/withdraw", json={}, headers=third_headers).status_code == 200
    _, fourth = volunteers.apply("fourth", id_number=withdrawn_number)
    (flag,) = _flags(client, desk, fourth["id"])[0]
    assert flag["message"] == "此身份证号的申请曾被撤回（曾由其他账号申请）" and flag["status"] == "withdrawn"

    _, fresh = volunteers.apply("fresh", id_number=id_number(seq=303))
    assert _flags(client, desk, fresh["id"]) == ([], [])

    # Retention erases the rejected application's personal information, not the warning.
    from sqlalchemy import update

    from yijing.models import Volunteer

    with app.app_context():
        long_ago = datetime.now(UTC) - timedelta(days=app.config["YIJING"].retain_closed_application_days + 1)
        db.session.execute(update(Volunteer).where(Volunteer.id == first["id"]).values(updated_at=long_ago))
        db.session.commit()
        assert privacy.enforce_retention()["closed_applications"] == 1
        db.session.remove()
    (flag,) = _flags(client, desk, second["id"])[0]
    assert (
        flag["message"] == "此身份证号曾被驳回（曾由其他账号申请）"
        and flag["reason"] == "身份证照片与本人不符"
    )
