"""管理: an admin creates a staff account for a street and grants it; the new user must change the
password at the first login and then sees only the street."""

from __future__ import annotations


def _choose(tab, picker: str, *names: str) -> None:
    for depth, name in enumerate(names):
        tab.page.locator(f"[data-test={picker}] [data-test=level-{depth}]").click()
        tab.page.locator(".el-select-dropdown__item:visible", has_text=name).click()


def test_admin_creates_a_street_account_which_changes_its_password_and_sees_only_the_street(
    desk, staff, client
):
    staff("admin-kdl", "admin", "150203")
    tab = desk()
    tab.login("admin-kdl")
    assert "管理" in tab.nav()
    tab.go("管理")
    tab.page.locator("[data-test=new-staff]").click()
    tab.page.fill("[data-test=new-username]", "zt-desk")
    tab.page.fill("[data-test=new-display-name]", "沼潭街道值班")
    tab.page.fill("[data-test=new-password]", "short")
    _choose(tab, "new-jurisdiction", "昆都仑区", "沼潭街道")
    tab.page.locator("[data-test=create-staff]").click()
    assert "至少 10 位" in tab.page.locator("[data-test=create-error]").inner_text()
    tab.page.fill("[data-test=new-password]", "Begin2026zt")
    tab.page.locator("[data-test=create-staff]").click()
    tab.page.locator("[data-test=admin-message]", has_text="已创建账号 zt-desk").wait_for()

    tab.page.locator("[data-test=staff-table] .el-table__body tr", has_text="zt-desk").click()
    _choose(tab, "grant-jurisdiction", "昆都仑区", "沼潭街道", "沼潭社区")
    tab.page.locator(".el-drawer .el-select").first.click()
    tab.page.locator(".el-select-dropdown__item:visible", has_text="社区/街道负责人").click()
    tab.page.locator("[data-test=add-grant]").click()
    tab.page.locator("[data-test=grant]", has_text="沼潭社区").wait_for()
    grants = tab.page.locator("[data-test=grant]").all_inner_texts()
    assert any("沼潭街道" in g and "值班民警" in g for g in grants)
    assert any("沼潭社区" in g and "社区/街道负责人" in g for g in grants)
    tab.shot("granted")

    new = desk()
    new.login("zt-desk", "Begin2026zt")
    new.page.wait_for_url("**/desk/password")
    assert new.page.locator("text=请先修改为只有您知道的密码").count() == 1
    new.shot("must-change")
    new.page.fill("input[name=current]", "Begin2026zt")
    new.page.fill("input[name=new]", "Mine2026zhaotan")
    new.page.fill("input[name=again]", "Mine2026zhaotan")
    new.page.get_by_role("button", name="确认修改").click()
    new.page.wait_for_selector("[data-test=card-clues]")
    scope = new.page.locator("[data-test=scope]").inner_text()
    assert "沼潭街道·值班民警" in scope and "昆都仑区" not in scope
    assert "管理" not in new.nav()
    new.go("线索研判")
    new.page.wait_for_selector("[data-test=clue-table]")
    new.shot("street-only")

    login = client.post(
        "/api/v1/desk/auth/login", json={"username": "zt-desk", "password": "Mine2026zhaotan"}
    )
    headers = {"Authorization": f"Bearer {login.get_json()['token']}"}
    roots = client.get("/api/v1/desk/jurisdictions", headers=headers).get_json()
    assert [r["name"] for r in roots] == ["沼潭街道"]


def test_admin_resets_a_password_then_deactivates_the_account(desk, staff, client):
    staff("admin-kdl", "admin", "150203")
    staff("zt-old", "desk", "150203-01")
    tab = desk()
    tab.login("admin-kdl")
    tab.go("管理")
    tab.page.locator("[data-test=staff-table] .el-table__body tr", has_text="zt-old").click()
    drawer = tab.page.locator(".el-drawer", has_text="账号：zt-old")
    drawer.wait_for()
    drawer.get_by_placeholder("新的初始密码").fill("short")
    drawer.get_by_role("button", name="重置密码").click()
    assert "至少 10 位" in tab.page.locator("[data-test=staff-error]").inner_text()
    drawer.get_by_placeholder("新的初始密码").fill("Reset2026zt")
    drawer.get_by_role("button", name="重置密码").click()
    tab.page.locator("[data-test=admin-message]", has_text="密码已重置").wait_for()
    assert "待修改密码" in drawer.inner_text()
    tab.shot("reset")

    reset = client.post("/api/v1/desk/auth/login", json={"username": "zt-old", "password": "Reset2026zt"})
    assert reset.status_code == 200
    me = client.get(
        "/api/v1/desk/auth/me", headers={"Authorization": f"Bearer {reset.get_json()['token']}"}
    ).get_json()
    assert me["must_change_password"] is True

    drawer.get_by_role("button", name="停用账号").click()
    tab.page.fill("[data-test=reason]", "调离岗位")
    tab.page.locator("[data-test=confirm]").click()
    drawer.get_by_role("button", name="启用账号").wait_for()
    assert "已停用" in drawer.inner_text()
    tab.shot("deactivated")

    user = desk()
    user.login("zt-old", "Reset2026zt")
    user.page.locator(".error-line, .el-alert, [data-test=login-error]").first.wait_for()
    assert "/desk/login" in user.page.url
    refused = client.post("/api/v1/desk/auth/login", json={"username": "zt-old", "password": "Reset2026zt"})
    assert refused.status_code in (401, 403)
