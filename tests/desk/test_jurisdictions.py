"""Roles are granted per jurisdiction and cover its subtree, nothing outside it."""

from __future__ import annotations


def test_district_desk_reads_inside_and_gets_403_outside(client, staff, tree):
    headers = staff("desk-kdl", "desk", "150203")
    inside = client.get(f"/api/v1/desk/jurisdictions/{tree['150203-01-01']}", headers=headers)
    assert inside.status_code == 200
    body = inside.get_json()
    assert body["name"] == "沼潭社区"
    assert [a["name"] for a in body["ancestors"]] == ["包头市", "昆都仑区", "沼潭街道"]
    assert [c["name"] for c in body["children"]] == ["第一网格"]
    outside = client.get(f"/api/v1/desk/jurisdictions/{tree['150204-01-01']}", headers=headers)
    assert outside.status_code == 403
    assert outside.get_json()["error"]["code"] == "out_of_jurisdiction"
    parent = client.get(f"/api/v1/desk/jurisdictions/{tree['150200']}", headers=headers)
    assert parent.status_code == 403


def test_community_leader_sees_only_their_community(client, staff, tree):
    headers = staff("leader", "leader", "150203-01-01")
    assert (
        client.get(f"/api/v1/desk/jurisdictions/{tree['150203-01-01-1']}", headers=headers).status_code == 200
    )
    assert (
        client.get(f"/api/v1/desk/jurisdictions/{tree['150203-01-02']}", headers=headers).status_code == 403
    )
    roots = client.get("/api/v1/desk/jurisdictions", headers=headers).get_json()
    assert [r["name"] for r in roots] == ["沼潭社区"]


def test_city_admin_reads_everything(client, staff, tree):
    headers = staff("admin", "admin", "150200")
    for key in ("150203-01-01", "150204-01-01", "150200"):
        assert client.get(f"/api/v1/desk/jurisdictions/{tree[key]}", headers=headers).status_code == 200


def test_resident_gets_403_and_anonymous_401(client, wechat_login, tree):
    assert client.get(f"/api/v1/desk/jurisdictions/{tree['150203']}").status_code == 401
    response = client.get(f"/api/v1/desk/jurisdictions/{tree['150203']}", headers=wechat_login("res"))
    assert response.status_code == 403


def test_me_lists_roles_and_jurisdictions(client, staff):
    headers = staff("desk-me", "desk", "150203")
    me = client.get("/api/v1/me", headers=headers).get_json()
    assert me["kind"] == "staff"
    assert me["roles"] == ["desk"]
    assert me["grants"] == [
        {
            "role": "desk",
            "role_label": "值班民警",
            "jurisdiction": {
                "id": me["grants"][0]["jurisdiction"]["id"],
                "name": "昆都仑区",
                "level": "district",
                "level_label": "旗县区",
            },
        }
    ]


def test_public_picker_walks_the_tree(client, tree):
    roots = client.get("/api/v1/jurisdictions").get_json()
    assert [r["name"] for r in roots] == ["包头市"]
    districts = client.get(f"/api/v1/jurisdictions?parent_id={tree['150200']}").get_json()
    assert {d["name"] for d in districts} == {"昆都仑区", "青山区"}
    assert client.get("/api/v1/jurisdictions?parent_id=999999").status_code == 404


def test_staff_logout_revokes(client, staff):
    headers = staff("bye", "desk", "150203")
    assert client.post("/api/v1/desk/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
