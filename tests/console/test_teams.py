"""义警 → 队伍: a district desk names a team's liaison officer and captain from the console."""

from __future__ import annotations


def test_desk_names_the_liaison_and_the_captain_of_a_team(app, desk, staff, volunteers, client):
    desk_headers = staff("desk-kdl", "desk", "150203")
    staff("zt-desk", "desk", "150203-01")  # a street desk covering the community: a candidate
    staff("far-desk", "desk", "150204")  # another district: never offered
    _, first = volunteers.approved(desk_headers, "a", real_name="王大锤")
    _, second = volunteers.approved(desk_headers, "b", real_name="赵小飞")
    team_id = first["team"]["id"]

    tab = desk()
    tab.login("desk-kdl")
    tab.go("义警")
    tab.page.locator(".el-tabs__item", has_text="队伍").click()
    row = tab.page.locator(".el-table__body tr", has_text="沼潭社区义警队")
    row.wait_for()
    assert row.inner_text().count("未指定") == 2
    row.locator("[data-test=edit-team]").click()

    tab.page.locator("[data-test=liaison-select]").click()
    offered = tab.page.locator(".el-select-dropdown__item:visible")
    offered.first.wait_for()
    names = offered.all_inner_texts()
    assert any("zt-desk" in n and "沼潭街道" in n for n in names)
    assert not any("far-desk" in n for n in names)
    offered.filter(has_text="zt-desk").click()

    tab.page.locator("[data-test=captain-select]").click()
    tab.page.locator(".el-select-dropdown__item:visible", has_text="赵*飞").click()
    tab.page.fill("[data-test=team-reason]", "社区民警调整")
    tab.shot("edit-team")
    tab.page.locator("[data-test=save-team]").click()
    tab.page.locator(".el-table__body tr", has_text="赵*飞").wait_for()
    assert "zt-desk" in row.inner_text()
    tab.shot("team-saved")

    team = client.get(f"/api/v1/desk/teams/{team_id}", headers=desk_headers).get_json()
    assert team["liaison"]["display_name"] == "zt-desk"
    assert team["captain"]["volunteer_id"] == second["id"]

    from sqlalchemy import select

    from yijing.extensions import db
    from yijing.models import AuditEntry

    with app.app_context():
        entry = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "team.update", AuditEntry.target_id == str(team_id))
        ).one()
        assert entry.reason == "社区民警调整"
        db.session.remove()
