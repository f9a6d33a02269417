"""Staff accounts managed from the desk: scope, password policy, forced change, grants, audit."""

from __future__ import annotations

from sqlalchemy import select

PASSWORD = "Initial2026pass"


def _create(client, admin, tree, username="street-desk", role="desk", key="150203-01", password=PASSWORD):
    return client.post(
        "/api/v1/desk/staff",
        json={
            "username": username,
            "display_name": "街道值班",
            "password": password,
            "role": role,
            "jurisdiction_id": tree[key],
        },
        headers=admin,
    )


def _login(client, username, password):
    return client.post("/api/v1/desk/auth/login", json={"username": username, "password": password})


def test_admin_creates_street_account_which_must_change_its_password(app, client, staff, tree):
    admin = staff("district-admin", "admin", "150203")
    created = _create(client, admin, tree)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["must_change_password"] is True
    assert body["grants"][0]["role_label"] == "值班民警"
    assert body["grants"][0]["jurisdiction"]["level_label"] == "苏木乡镇/街道"

    login = _login(client, "street-desk", PASSWORD)
    assert login.status_code == 200
    assert login.get_json()["user"]["must_change_password"] is True
    headers = {"Authorization": f"Bearer {login.get_json()['token']}"}

    blocked = client.get("/api/v1/desk/clues", headers=headers)
    assert blocked.status_code == 403
    assert blocked.get_json()["error"]["code"] == "password_change_required"
    me = client.get("/api/v1/desk/auth/me", headers=headers).get_json()
    assert me["must_change_password"] is True
    assert "clue.triage" in me["permissions"] and "staff.manage" not in me["permissions"]

    weak = client.post(
        "/api/v1/desk/auth/password",
        json={"current_password": PASSWORD, "new_password": "onlyletters"},
        headers=headers,
    )
    assert weak.status_code == 422
    assert "字母和数字" in weak.get_json()["error"]["message"]
    wrong = client.post(
        "/api/v1/desk/auth/password",
        json={"current_password": "nope", "new_password": "Mine2026secret"},
        headers=headers,
    )
    assert wrong.get_json()["error"]["code"] == "wrong_password"
    changed = client.post(
        "/api/v1/desk/auth/password",
        json={"current_password": PASSWORD, "new_password": "Mine2026secret"},
        headers=headers,
    )
    assert changed.status_code == 204
    assert client.get("/api/v1/desk/clues", headers=headers).status_code == 200
    roots = client.get("/api/v1/desk/jurisdictions", headers=headers).get_json()
    assert [r["name"] for r in roots] == ["沼潭街道"]

    from yijing.extensions import db
    from yijing.models import AuditEntry

    with app.app_context():
        actions = set(db.session.scalars(select(AuditEntry.action)))
        db.session.remove()
    assert {"staff.create", "staff.password_change"} <= actions


def test_scope_a_district_admin_manages_its_district_only(client, staff, tree):
    city_admin = staff("city-admin", "admin", "150200")
    district_admin = staff("district-admin", "admin", "150203")
    desk = staff("plain-desk", "desk", "150203")

    outside = _create(client, district_admin, tree, username="qs-desk", key="150204-01")
    assert outside.status_code == 403
    assert client.post("/api/v1/desk/staff", json={}, headers=desk).status_code in (403, 422)
    assert client.get("/api/v1/desk/staff", headers=desk).status_code == 403

    listed = client.get("/api/v1/desk/staff", headers=district_admin).get_json()
    names = {s["username"] for s in listed["items"]}
    assert "plain-desk" in names and "district-admin" in names and "city-admin" not in names
    city_id = next(
        s["id"]
        for s in client.get("/api/v1/desk/staff", headers=city_admin).get_json()["items"]
        if s["username"] == "city-admin"
    )
    reset = client.post(
        f"/api/v1/desk/staff/{city_id}/password-reset",
        json={"password": "Another2026pw"},
        headers=district_admin,
    )
    assert reset.status_code == 403
    found = client.get("/api/v1/desk/staff?q=PLAIN", headers=district_admin).get_json()["items"]
    assert [s["username"] for s in found] == ["plain-desk"]


def test_weak_initial_password_and_taken_username(client, staff, tree):
    admin = staff("district-admin", "admin", "150203")
    weak = _create(client, admin, tree, password="short1")
    assert weak.status_code == 422
    assert weak.get_json()["error"]["fields"]["password"]
    with_name = _create(client, admin, tree, username="zhangsan", password="zhangsan12345")
    assert "用户名" in with_name.get_json()["error"]["message"]
    assert _create(client, admin, tree).status_code == 201
    again = _create(client, admin, tree)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "username_taken"


def test_deactivate_reset_force_and_grants(client, staff, tree):
    admin = staff("district-admin", "admin", "150203")
    user_id = _create(client, admin, tree).get_json()["id"]
    token = _login(client, "street-desk", PASSWORD).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    client.post(
        "/api/v1/desk/auth/password",
        json={"current_password": PASSWORD, "new_password": "Mine2026secret"},
        headers=headers,
    )

    granted = client.post(
        f"/api/v1/desk/staff/{user_id}/grants",
        json={"role": "leader", "jurisdiction_id": tree["150203-01-01"]},
        headers=admin,
    ).get_json()
    assert sorted(g["role"] for g in granted["grants"]) == ["desk", "leader"]
    revoked = client.post(
        f"/api/v1/desk/staff/{user_id}/grants/revoke",
        json={"role": "leader", "jurisdiction_id": tree["150203-01-01"]},
        headers=admin,
    ).get_json()
    assert [g["role"] for g in revoked["grants"]] == ["desk"]
    last = client.post(
        f"/api/v1/desk/staff/{user_id}/grants/revoke",
        json={"role": "desk", "jurisdiction_id": tree["150203-01"]},
        headers=admin,
    )
    assert last.status_code == 409

    forced = client.post(f"/api/v1/desk/staff/{user_id}/force-password-change", headers=admin).get_json()
    assert forced["must_change_password"] is True
    assert (
        client.get("/api/v1/desk/clues", headers=headers).get_json()["error"]["code"]
        == "password_change_required"
    )

    reset = client.post(
        f"/api/v1/desk/staff/{user_id}/password-reset", json={"password": "Reset2026abcd"}, headers=admin
    )
    assert reset.status_code == 200
    assert client.get("/api/v1/desk/auth/me", headers=headers).status_code == 401
    assert _login(client, "street-desk", "Mine2026secret").status_code == 401
    fresh = _login(client, "street-desk", "Reset2026abcd")
    assert fresh.get_json()["user"]["must_change_password"] is True

    off = client.post(f"/api/v1/desk/staff/{user_id}/deactivate", json={"reason": "调离"}, headers=admin)
    assert off.get_json()["is_active"] is False
    fresh_headers = {"Authorization": f"Bearer {fresh.get_json()['token']}"}
    assert client.get("/api/v1/desk/auth/me", headers=fresh_headers).status_code == 401
    assert _login(client, "street-desk", "Reset2026abcd").get_json()["error"]["code"] == "account_disabled"


def test_labels_table(client, staff):
    desk = staff("desk", "desk", "150203")
    tables = client.get("/api/v1/desk/labels", headers=desk).get_json()["tables"]
    assert tables["clue_status"]["transferred"]
    assert tables["post_status"]["scheduled"] == "定时发布"
    assert tables["jurisdiction_level"]["community"] == "嘎查村/社区"
    roots = client.get("/api/v1/desk/jurisdictions", headers=desk).get_json()
    assert roots[0]["level_label"] == "旗县区"


def test_text_query_on_clues_posts_and_messages(client, staff, report_clue, wechat_login, tree):
    desk = staff("desk", "desk", "150203")
    reporter = wechat_login("reporter")
    report_clue(reporter, description="小区门口有可疑车辆 蒙B12345")
    report_clue(reporter, description="电信诈骗电话，冒充客服退款")
    found = client.get("/api/v1/desk/clues?q=蒙b12345", headers=desk).get_json()["items"]
    assert [c["description"] for c in found] == ["小区门口有可疑车辆 蒙B12345"]
    assert client.get("/api/v1/desk/clues?q=100%25", headers=desk).get_json()["items"] == []

    resident = wechat_login("r1")
    for body in ("路灯坏了好几天", "想咨询义警报名"):
        sent = client.post(
            "/api/v1/messages", json={"body": body, "district_id": tree["150203"]}, headers=resident
        )
        assert sent.status_code == 201, sent.get_json()
    messages = client.get("/api/v1/desk/messages?q=路灯", headers=desk).get_json()["items"]
    assert [m["body"] for m in messages] == ["路灯坏了好几天"]

    for title in ("沼潭社区夜间巡逻", "学校门口护学"):
        assert (
            client.post(
                "/api/v1/desk/posts",
                json={"kind": "notice", "title": title, "body": "正文", "jurisdiction_id": tree["150203"]},
                headers=desk,
            ).status_code
            == 201
        )
    posts = client.get("/api/v1/desk/posts?q=护学", headers=desk).get_json()["items"]
    assert [p["title"] for p in posts] == ["学校门口护学"]


def test_console_config_and_the_tile_url_setting(client, staff):
    import pytest

    from tests.fixtures.environment import make_config
    from yijing.config import ConfigError

    desk = staff("desk", "desk", "150203")
    config = client.get("/api/v1/desk/console-config", headers=desk).get_json()
    assert config == {"map_tile_url": None, "datum": "GCJ-02"}
    good = make_config(
        "sqlite://",
        "redis://127.0.0.1/5",
        "http://127.0.0.1:1",
        MAP_TILE_URL="https://t{s}.example/{z}/{x}/{y}.png",
    )
    assert good.map_tile_url.endswith("{y}.png")
    with pytest.raises(ConfigError):
        make_config(
            "sqlite://", "redis://127.0.0.1/5", "http://127.0.0.1:1", MAP_TILE_URL="https://tiles.example/"
        )


def test_text_query_on_the_task_board(client, staff, tasks):
    desk = staff("desk", "desk", "150203")
    tasks.create(desk, title="沼潭社区夜间巡逻")
    tasks.create(desk, title="学校门口护学岗", address="包钢一中东门")
    found = client.get("/api/v1/desk/tasks?q=一中", headers=desk).get_json()["items"]
    assert [t["title"] for t in found] == ["学校门口护学岗"]
    both = client.get("/api/v1/desk/tasks?q=沼潭 巡逻", headers=desk).get_json()["items"]
    assert [t["title"] for t in both] == ["沼潭社区夜间巡逻"]
