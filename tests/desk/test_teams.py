"""Teams: one per community, joined on approval, with a liaison officer and a captain."""

from __future__ import annotations

from sqlalchemy import select


def _user_id(app, username: str) -> int:
    from yijing.extensions import db
    from yijing.models import User

    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        db.session.remove()
        return user_id


def test_approval_joins_the_team_of_the_home_community(client, volunteers, staff, tree):
    desk = staff("desk-t", "desk", "150203")
    _, a = volunteers.approved(desk, "a")
    headers_b, b = volunteers.approved(desk, "b", jurisdiction_id=tree["150203-01-01-1"])  # a grid of it
    _, c = volunteers.approved(desk, "c", jurisdiction_id=tree["150203-01-02"])
    assert a["team"]["id"] == b["team"]["id"] != c["team"]["id"]
    team = client.get("/api/v1/volunteers/me/team", headers=headers_b).get_json()
    assert team["name"] == "沼潭社区义警队"
    assert team["community"]["name"] == "沼潭社区"
    assert team["member_count"] == 2
    assert team["captain"] is None and team["liaison"] is None

    listed = client.get("/api/v1/desk/teams", headers=desk).get_json()
    assert sorted(t["name"] for t in listed["items"]) == ["友谊社区义警队", "沼潭社区义警队"]
    detail = client.get(f"/api/v1/desk/teams/{a['team']['id']}", headers=desk).get_json()
    assert sorted(m["id"] for m in detail["members"]) == sorted([a["id"], b["id"]])
    assert all("*" in m["name_masked"] for m in detail["members"])


def test_pending_applicant_has_no_team(client, volunteers):
    headers, _ = volunteers.apply("p")
    response = client.get("/api/v1/volunteers/me/team", headers=headers)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "no_team"


def test_desk_sets_liaison_and_captain(app, client, volunteers, staff, tree):
    desk = staff("desk-kdl", "desk", "150203")
    staff("liaison-ok", "desk", "150203-01")
    staff("liaison-far", "desk", "150204")
    headers, captain = volunteers.approved(desk, "cap")
    _, pending = volunteers.apply("pend")
    team_id = captain["team"]["id"]

    ok = client.patch(
        f"/api/v1/desk/teams/{team_id}",
        json={
            "liaison_user_id": _user_id(app, "liaison-ok"),
            "captain_volunteer_id": captain["id"],
            "reason": "新建队伍",
        },
        headers=desk,
    )
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["liaison"]["display_name"] == "liaison-ok"
    assert ok.get_json()["captain"] == {"volunteer_id": captain["id"], "name_masked": "张*三"}
    mine = client.get("/api/v1/volunteers/me/team", headers=headers).get_json()
    assert mine["captain"]["volunteer_id"] == captain["id"]

    far = client.patch(
        f"/api/v1/desk/teams/{team_id}", json={"liaison_user_id": _user_id(app, "liaison-far")}, headers=desk
    )
    assert far.status_code == 422
    assert far.get_json()["error"]["fields"]["liaison_user_id"] == ["不是负责该社区的值班台民警"]
    not_member = client.patch(
        f"/api/v1/desk/teams/{team_id}", json={"captain_volunteer_id": pending["id"]}, headers=desk
    )
    assert not_member.status_code == 422
    assert "captain_volunteer_id" in not_member.get_json()["error"]["fields"]

    from yijing.extensions import db
    from yijing.models import AuditEntry, Notification

    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "team.update")).one()
        assert entry.reason == "新建队伍"
        assert entry.data["after"]["captain_user_id"] is not None
        note = db.session.scalars(select(Notification).where(Notification.kind == "team.captain")).one()
        assert note.title == "您已被任命为义警队长"

    # A suspended captain is no longer captain.
    client.post(f"/api/v1/desk/volunteers/{captain['id']}/suspend", json={"reason": "停职检查"}, headers=desk)
    assert client.get(f"/api/v1/desk/teams/{team_id}", headers=desk).get_json()["captain"] is None

    cleared = client.patch(
        f"/api/v1/desk/teams/{team_id}", json={"liaison_user_id": None, "name": "沼潭一队"}, headers=desk
    )
    assert cleared.get_json()["liaison"] is None and cleared.get_json()["name"] == "沼潭一队"


def test_create_team_once_per_community_and_only_in_scope(client, staff, tree):
    desk = staff("desk-c", "desk", "150203")
    qs = staff("desk-q", "desk", "150204")
    created = client.post("/api/v1/desk/teams", json={"community_id": tree["150203-01-02"]}, headers=desk)
    assert created.status_code == 201
    assert created.get_json()["name"] == "友谊社区义警队"
    again = client.post("/api/v1/desk/teams", json={"community_id": tree["150203-01-02"]}, headers=desk)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "team_exists"
    street = client.post("/api/v1/desk/teams", json={"community_id": tree["150203-01"]}, headers=desk)
    assert street.status_code == 422
    outside = client.post("/api/v1/desk/teams", json={"community_id": tree["150204-01-01"]}, headers=desk)
    assert outside.status_code == 403
    team_id = created.get_json()["id"]
    assert client.get(f"/api/v1/desk/teams/{team_id}", headers=qs).status_code == 403
    assert client.patch(f"/api/v1/desk/teams/{team_id}", json={"name": "改名"}, headers=qs).status_code == 403
    assert client.get("/api/v1/desk/teams", headers=qs).get_json()["items"] == []


def test_liaison_candidates_are_the_desks_covering_the_community(app, client, volunteers, staff, tree):
    desk = staff("desk-kdl", "desk", "150203")
    staff("liaison-street", "desk", "150203-01")
    staff("liaison-far", "desk", "150204")
    staff("leader-here", "leader", "150203-01-01")
    leader_far = staff("leader-far", "leader", "150204")
    _, member = volunteers.approved(desk, "cap")
    team_id = member["team"]["id"]

    listed = client.get(f"/api/v1/desk/teams/{team_id}/liaison-candidates", headers=desk)
    assert listed.status_code == 200, listed.get_json()
    names = {c["display_name"]: c for c in listed.get_json()}
    assert set(names) == {"desk-kdl", "liaison-street"}  # no leader, no desk of another district
    assert names["liaison-street"]["jurisdiction"]["name"] == "沼潭街道"
    assert set(names["liaison-street"]) == {"id", "display_name", "jurisdiction", "current"}
    assert not any(c["current"] for c in names.values())

    picked = names["liaison-street"]["id"]
    assert (
        client.patch(
            f"/api/v1/desk/teams/{team_id}", json={"liaison_user_id": picked}, headers=desk
        ).status_code
        == 200
    )
    again = client.get(f"/api/v1/desk/teams/{team_id}/liaison-candidates", headers=desk).get_json()
    assert again[0]["id"] == picked and again[0]["current"] is True

    outside = client.get(f"/api/v1/desk/teams/{team_id}/liaison-candidates", headers=leader_far)
    assert outside.status_code == 403
