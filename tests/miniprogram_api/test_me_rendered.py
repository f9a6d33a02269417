"""``GET /api/v1/me`` is served rendered (yijing/web/rendered.py, ``auth.me_body``): its bytes are
the schema's dump of the same user, on a miss and on a hit, and after every change that retires the
profile."""

from __future__ import annotations

import pytest
from sqlalchemy import update


def _expected(app, user_id: int) -> bytes:
    """What ``@blp.response(200, MeSchema)`` sends for the user as the database has it now."""
    from yijing import cache
    from yijing.services import auth
    from yijing.web import rendered
    from yijing.web.schemas import MeSchema

    with app.test_request_context():
        cache.delete(("principal", user_id), ("me", user_id))
        return rendered.render(MeSchema(), auth.me(user_id))


def _me_twice(app, client, headers, monkeypatch) -> bytes:
    """A miss, then a hit that must not dump (``auth.me`` fails if called); both bodies equal."""
    from yijing.services import auth

    miss = client.get("/api/v1/me", headers=headers)
    assert miss.status_code == 200
    assert miss.mimetype == "application/json"
    with monkeypatch.context() as patched:
        patched.setattr(auth, "me", lambda *a, **k: pytest.fail("a hit dumped the profile again"))
        hit = client.get("/api/v1/me", headers=headers)
    assert hit.status_code == 200
    assert hit.get_data() == miss.get_data()
    user_id = hit.get_json()["id"]
    assert hit.get_data() == _expected(app, user_id)
    return hit.get_data()


def test_me_bytes_follow_every_change_of_the_profile(
    app, client, wechat_login, staff, volunteers, tree, monkeypatch
):
    import json

    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import Role, User
    from yijing.services import auth

    headers, application = volunteers.apply("mel")
    desk = staff("desk-mel")
    first = json.loads(_me_twice(app, client, headers, monkeypatch))
    user_id = first["id"]
    assert first["phone_masked"] is None and first["roles"] == ["resident"]

    # the phone bound
    bound = client.post("/api/v1/auth/phone", json={"code": "phone-13812345678"}, headers=headers)
    assert bound.status_code == 200
    assert json.loads(_me_twice(app, client, headers, monkeypatch))["phone_masked"] == "138****5678"

    # the volunteer approved: a role and its jurisdiction
    volunteers.approve(desk, application["id"])
    approved = json.loads(_me_twice(app, client, headers, monkeypatch))
    assert "volunteer" in approved["roles"]

    # suspended: the role goes
    suspended = client.post(
        f"/api/v1/desk/volunteers/{application['id']}/suspend", json={"reason": "多次无故缺岗"}, headers=desk
    )
    assert suspended.status_code == 200
    assert "volunteer" not in json.loads(_me_twice(app, client, headers, monkeypatch))["roles"]

    # roles granted and revoked directly
    with app.app_context():
        auth.grant_role(user_id, Role.LEADER, tree["150203"], Actor.system("test"))
    assert "leader" in json.loads(_me_twice(app, client, headers, monkeypatch))["roles"]
    with app.app_context():
        auth.revoke_role(user_id, Role.LEADER, tree["150203"], Actor.system("test"))
    assert "leader" not in json.loads(_me_twice(app, client, headers, monkeypatch))["roles"]

    # the district followed
    district = client.put("/api/v1/me/district", json={"district_id": tree["150203"]}, headers=headers)
    assert district.status_code == 200
    assert (
        json.loads(_me_twice(app, client, headers, monkeypatch))["home_jurisdiction"]["id"] == tree["150203"]
    )

    # the display name, changed by any writer that forgets the principal
    with app.app_context():
        db.session.execute(update(User).where(User.id == user_id).values(display_name="梅"))
        db.session.commit()
        auth.forget_principal(user_id)
    assert json.loads(_me_twice(app, client, headers, monkeypatch))["display_name"] == "梅"


def test_a_rendered_body_is_served_only_beside_the_profile_it_was_rendered_from(app, client, wechat_login):
    """Whatever rebuilds the principal entry with other data retires the body, without being told."""
    from yijing.extensions import db, redis_client, redis_key
    from yijing.models import User
    from yijing.services import auth

    headers = wechat_login("nell")
    before = client.get("/api/v1/me", headers=headers)
    user_id = before.get_json()["id"]
    with app.app_context():
        assert redis_client().get(redis_key("me", user_id)) is not None
        db.session.execute(update(User).where(User.id == user_id).values(display_name="内尔"))
        db.session.commit()
        # The principal entry rebuilt from the database (as after its TTL), the old body left behind.
        redis_client().delete(redis_key("principal", user_id))
        auth.profile(user_id)
    after = client.get("/api/v1/me", headers=headers)
    assert after.get_json()["display_name"] == "内尔"
    assert after.get_data() == _expected(app, user_id)
