"""Operator commands of the volunteers feature: PII key rotation."""

from __future__ import annotations

import base64
from dataclasses import replace

from sqlalchemy import select

NEW_KEY = base64.b64encode(b"n" * 32).decode()


def _stored_values(app) -> list[str]:
    from yijing.extensions import db
    from yijing.models import User, Volunteer

    with app.app_context():
        values = []
        for user in db.session.scalars(select(User)):
            values += [v for v in (user.phone_enc, user.session_key_enc) if v]
        for v in db.session.scalars(select(Volunteer)):
            values += [v.real_name_enc, v.id_number_enc, v.phone_enc]
        db.session.remove()
        return values


def test_rotate_pii_keys_re_encrypts_every_column(app, client, volunteers, staff, id_number):
    from yijing.config import parse_pii_keys

    desk = staff("desk-rot", "desk", "150203")
    headers = volunteers.login("rotating")
    client.post("/api/v1/auth/phone", json={"code": "phone-13600002222"}, headers=headers)
    number = id_number(seq=808)
    body = volunteers.application(real_name="赵六", id_number=number, phone="13500003333")
    vid = client.post("/api/v1/volunteers", json=body, headers=headers).get_json()["id"]
    before = _stored_values(app)
    assert len(before) == 5 and all(v.startswith("demo1:") for v in before)

    original = app.config["YIJING"]
    old_keys = parse_pii_keys("demo1:" + base64.b64encode(original.pii_keys["demo1"]).decode())
    runner = app.test_cli_runner()
    try:
        # Deploy the new key as the active one; old values still decrypt.
        app.config["YIJING"] = replace(
            original, pii_keys={**old_keys, "k2": b"n" * 32}, pii_active_key_id="k2"
        )
        dry = runner.invoke(args=["yijing", "rotate-pii-keys", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "under an old key      1 volunteers.id_number_enc" in dry.output
        assert _stored_values(app) == before

        result = runner.invoke(args=["yijing", "rotate-pii-keys", "--batch-size", "2"])
        assert result.exit_code == 0, result.output
        assert "re-encrypted        1 users.phone_enc" in result.output
        assert "re-encrypted        1 volunteers.real_name_enc" in result.output
        assert "every value is under the active key 'k2'" in result.output
        after = _stored_values(app)
        assert all(v.startswith("k2:") for v in after)
        assert not set(after) & set(before)

        again = runner.invoke(args=["yijing", "rotate-pii-keys"])
        assert "re-encrypted        0 volunteers.phone_enc" in again.output

        # The old key is retired: everything still decrypts with the new one alone.
        app.config["YIJING"] = replace(original, pii_keys={"k2": b"n" * 32}, pii_active_key_id="k2")
        read = client.post(f"/api/v1/desk/volunteers/{vid}/pii", json={"reason": "轮换后核对"}, headers=desk)
        assert read.status_code == 200, read.get_json()
        assert read.get_json() == {
            "volunteer_id": vid,
            "real_name": "赵六",
            "id_number": number,
            "phone": "13500003333",
        }
        from yijing import pii
        from yijing.extensions import db
        from yijing.models import User

        with app.app_context():
            user = db.session.scalar(select(User).where(User.kind == "wechat"))
            assert pii.decrypt(user.phone_enc, context="user.phone") == "13600002222"
            assert pii.decrypt(user.session_key_enc, context="user.session_key")
            db.session.remove()
    finally:
        app.config["YIJING"] = original
