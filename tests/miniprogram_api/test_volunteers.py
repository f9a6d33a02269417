"""Applying to the corps from the mini-program: validation, the bound phone, editing, withdrawing."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select


def _count(app, model) -> int:
    from yijing.extensions import db

    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(model))
        db.session.remove()
        return n


def _nothing_stored(app) -> None:
    from yijing.models import AuditEntry, PrivacyConsent, Volunteer

    assert _count(app, Volunteer) == 0
    assert _count(app, PrivacyConsent) == 0
    assert _count(app, AuditEntry) == 0


def _years_ago(years: int, days: int = 0) -> date:
    from datetime import timedelta

    from yijing.localtime import local_today

    today = local_today()
    return today.replace(year=today.year - years, day=min(today.day, 28)) - timedelta(days=days)


def test_form_lists_categories_skills_and_privacy_version(client):
    body = client.get("/api/v1/volunteers/form").get_json()
    assert {"value": "courier", "label": "快递员"} in body["categories"]
    assert {"value": "first_aid", "label": "急救"} in body["skills"]
    assert body["privacy_terms"]["version"] == "2026-01"
    assert body["age_limits"] == {"min": 18, "max": 65}


def test_apply_stores_a_pending_application_with_masked_values(app, client, volunteers):
    headers, body = volunteers.apply("alice", real_name="张小三", phone="13812345678")
    assert body["status"] == "pending"
    assert body["status_label"] == "待审核"
    assert body["name_masked"] == "张*三"
    assert body["phone_masked"] == "138****5678"
    assert body["id_number_masked"].startswith("150") and body["id_number_masked"].count("*") == 11
    assert body["home"]["name"] == "沼潭社区"
    assert body["community"]["name"] == "沼潭社区"
    assert body["skills"] == ["driving", "first_aid"]
    assert body["consent"]["version"] == "2026-01"
    assert body["consent"]["accepted_at"]
    assert body["volunteer_number"] is None
    mine = client.get("/api/v1/volunteers/me", headers=headers).get_json()
    assert mine["id"] == body["id"] and mine["status"] == "pending"
    text = client.get("/api/v1/volunteers/me", headers=headers).get_data(as_text=True)
    assert "张小三" not in text and "13812345678" not in text

    from yijing.extensions import db
    from yijing.models import AuditEntry, PrivacyConsent

    with app.app_context():
        consent = db.session.scalars(select(PrivacyConsent)).one()
        assert (consent.document, consent.version) == ("volunteer_privacy", "2026-01")
        assert consent.ip == "127.0.0.1"
        assert db.session.scalars(select(AuditEntry.action)).all() == ["volunteer.apply"]


def test_grid_as_home_joins_its_community(client, volunteers, tree):
    _, body = volunteers.apply("grid", jurisdiction_id=tree["150203-01-01-1"])
    assert body["home"]["name"] == "第一网格"
    assert body["community"]["name"] == "沼潭社区"


def test_home_must_be_a_community_or_grid(app, client, volunteers, tree):
    _, body = volunteers.apply("street", expect=422, jurisdiction_id=tree["150203-01"])
    assert body["error"]["fields"]["jurisdiction_id"] == ["请选择所在的社区（村）或网格"]
    _nothing_stored(app)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda idn: idn(check="0") if idn()[-1] != "0" else idn(check="1"),
            "身份证号码校验位不正确，请核对是否输错",
        ),
        (lambda idn: idn("19900230"), "身份证号码中的出生日期不存在，请核对第 7–14 位"),
        (lambda idn: idn("19901301"), "身份证号码中的出生日期不存在，请核对第 7–14 位"),
        (lambda idn: idn(region="990203"), "身份证号码的地区码无效，请核对前 6 位"),
        (lambda idn: idn()[:17], "身份证号码应为 18 位"),
        (lambda idn: idn(_years_ago(18, days=-1)), "义警年龄须在 18 至 65 周岁之间"),
        (lambda idn: idn(_years_ago(66)), "义警年龄须在 18 至 65 周岁之间"),
    ],
    ids=["check-digit", "30-february", "month-13", "region", "short", "under-18", "over-65"],
)
def test_bad_id_numbers_get_a_field_error_and_store_nothing(app, volunteers, id_number, make, message):
    _, body = volunteers.apply("bad", expect=422, id_number=make(id_number))
    assert body["error"]["code"] == "invalid_input"
    assert body["error"]["fields"]["id_number"] == [message]
    _nothing_stored(app)


def test_age_limits_are_inclusive(volunteers, id_number):
    volunteers.apply("eighteen", id_number=id_number(_years_ago(18)))
    volunteers.apply("sixty-five", id_number=id_number(_years_ago(65, days=-1), seq=7))


def test_age_limits_come_from_configuration(app, volunteers, id_number):
    from dataclasses import replace

    config = app.config["YIJING"]
    app.config["YIJING"] = replace(config, volunteer_min_age=20)
    try:
        _, body = volunteers.apply("nineteen", expect=422, id_number=id_number(_years_ago(19)))
        assert body["error"]["fields"]["id_number"] == ["义警年龄须在 20 至 65 周岁之间"]
    finally:
        app.config["YIJING"] = config


def test_the_same_id_number_cannot_belong_to_two_users(app, volunteers, id_number):
    number = id_number(seq=555)
    volunteers.apply("first", id_number=number)
    # Lower-case x, spaces: the keyed hash is of the normalised number.
    _, body = volunteers.apply("second", expect=422, id_number=" " + number.lower() + " ")
    assert body["error"]["fields"]["id_number"] == ["该身份证号码已被其他账号用于义警申请"]
    from yijing.models import PrivacyConsent, Volunteer

    assert _count(app, Volunteer) == 1
    assert _count(app, PrivacyConsent) == 1


def test_several_errors_are_reported_together(app, client, wechat_login, volunteers, id_number):
    headers = wechat_login("many")
    body = volunteers.application(
        id_number=id_number(check="0") if id_number()[-1] != "0" else id_number(check="1"),
        phone="12345",
        consent_version="2025-01",
    )
    response = client.post("/api/v1/volunteers", json=body, headers=headers)
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"id_number", "phone", "consent_version"}
    assert fields["phone"] == ["请填写 11 位中国大陆手机号"]
    _nothing_stored(app)


def test_schema_errors_are_in_chinese(client, wechat_login, volunteers):
    headers = wechat_login("schema")
    body = volunteers.application(category="pilot", real_name="X", employer="")
    del body["consent_accepted"]
    fields = client.post("/api/v1/volunteers", json=body, headers=headers).get_json()["error"]["fields"]
    assert fields["category"] == ["请从列表中选择职业类别"]
    assert fields["real_name"] == ["请填写与身份证一致的真实姓名（2–30 个字）"]
    assert fields["consent_accepted"] == ["必填"]


def test_consent_must_be_given(app, volunteers):
    _, body = volunteers.apply("noconsent", expect=422, consent_accepted=False)
    assert body["error"]["fields"]["consent_accepted"] == ["请阅读并同意《义警个人信息保护条款》"]
    _nothing_stored(app)


def test_bound_phone_is_the_default(app, client, wechat_login, volunteers):
    headers = wechat_login("bound")
    assert (
        client.post("/api/v1/auth/phone", json={"code": "phone-13987654321"}, headers=headers).status_code
        == 200
    )
    body = volunteers.application()
    del body["phone"]
    response = client.post("/api/v1/volunteers", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["phone_masked"] == "139****4321"

    from yijing import pii
    from yijing.extensions import db
    from yijing.models import Volunteer

    with app.app_context():
        stored = db.session.scalars(select(Volunteer)).one()
        assert pii.decrypt(stored.phone_enc, context="volunteer.phone") == "13987654321"


def test_without_a_bound_phone_one_must_be_given(app, client, wechat_login, volunteers):
    headers = wechat_login("unbound")
    body = volunteers.application()
    del body["phone"]
    response = client.post("/api/v1/volunteers", json=body, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"]["phone"] == ["请填写手机号，或先授权绑定微信手机号"]
    _nothing_stored(app)


def test_one_open_application_per_user(client, volunteers):
    headers, _ = volunteers.apply("twice")
    again = client.post("/api/v1/volunteers", json=volunteers.application(), headers=headers)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "application_exists"


def test_idempotency_key_replays_the_application(client, wechat_login, volunteers):
    headers = {**wechat_login("retry"), "Idempotency-Key": "apply-1"}
    body = volunteers.application()
    first = client.post("/api/v1/volunteers", json=body, headers=headers)
    second = client.post("/api/v1/volunteers", json=body, headers=headers)
    assert first.status_code == second.status_code == 201, second.get_json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.get_json()["id"] == second.get_json()["id"]


def test_me_without_application_is_404(client, wechat_login):
    response = client.get("/api/v1/volunteers/me", headers=wechat_login("nobody"))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "no_application"


def test_applicant_edits_while_pending(client, volunteers, tree, id_number):
    headers, body = volunteers.apply("editor")
    response = client.patch(
        "/api/v1/volunteers/me",
        json={
            "real_name": "李四",
            "employer": "北方重工保卫处",
            "category": "security_guard",
            "jurisdiction_id": tree["150203-01-02"],
            "id_number": id_number(seq=901),
            "skills": ["mongolian"],
        },
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()
    edited = response.get_json()
    assert edited["id"] == body["id"]
    assert edited["name_masked"] == "李*"
    assert edited["category"] == "security_guard"
    assert edited["home"]["name"] == "友谊社区"
    assert edited["skills"] == ["mongolian"]
    assert edited["id_number_masked"].endswith(id_number(seq=901)[-4:])

    bad = client.patch("/api/v1/volunteers/me", json={"id_number": "150203199001011230"}, headers=headers)
    assert bad.status_code == 422
    assert "id_number" in bad.get_json()["error"]["fields"]


def test_no_edit_once_reviewed(client, volunteers, staff):
    desk = staff("desk-edit", "desk", "150203")
    headers, body = volunteers.apply("late-editor")
    volunteers.approve(desk, body["id"])
    response = client.patch("/api/v1/volunteers/me", json={"employer": "新单位"}, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "not_pending"


def test_withdraw_pending_then_apply_again(client, volunteers, id_number):
    number = id_number(seq=321)
    headers, body = volunteers.apply("changer", id_number=number)
    response = client.post("/api/v1/volunteers/me/withdraw", json={"reason": "暂时没空"}, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["status"] == "withdrawn"
    assert client.get("/api/v1/volunteers/me", headers=headers).get_json()["status"] == "withdrawn"
    # A closed application releases the ID number; the same user applies again.
    again = client.post("/api/v1/volunteers", json=volunteers.application(id_number=number), headers=headers)
    assert again.status_code == 201
    assert again.get_json()["id"] != body["id"]


def test_withdraw_without_application_is_404(client, wechat_login):
    response = client.post("/api/v1/volunteers/me/withdraw", json={}, headers=wechat_login("none"))
    assert response.status_code == 404


def test_withdrawing_an_approved_volunteer_revokes_the_role_and_takes_them_off_duty(
    client, volunteers, staff
):
    desk = staff("desk-w", "desk", "150203")
    headers, _ = volunteers.approved(desk, "leaver")
    assert "volunteer" in client.get("/api/v1/me", headers=headers).get_json()["roles"]
    volunteers.on_duty(headers, 40.652, 109.832)
    response = client.post("/api/v1/volunteers/me/withdraw", json={"reason": "搬家"}, headers=headers)
    assert response.get_json()["status"] == "withdrawn"
    assert "volunteer" not in client.get("/api/v1/me", headers=headers).get_json()["roles"]
    assert client.get("/api/v1/volunteers/me/duty", headers=headers).status_code == 404
    found = client.get("/api/v1/desk/volunteers/on-duty?lat=40.652&lng=109.832", headers=desk).get_json()
    assert found["items"] == []


def test_login_required(client):
    assert client.post("/api/v1/volunteers", json={}).status_code == 401
    assert client.get("/api/v1/volunteers/me").status_code == 401
