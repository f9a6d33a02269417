"""Logging in and out, the 401 round trip, and navigation that follows the roles."""

from __future__ import annotations


def test_desk_logs_in_sees_its_pages_and_logs_out(desk, staff):
    staff("desk-kdl", "desk", "150203")
    tab = desk()
    tab.login("desk-kdl", "wrong password")
    assert tab.page.locator("[data-test=login-error]").inner_text() == "用户名或密码错误"
    tab.shot("wrong-password")

    tab.login("desk-kdl")
    tab.page.wait_for_selector("[data-test=card-clues]")
    assert tab.page.locator("input[name=password]").count() == 0, "the login form is gone"
    assert tab.nav() == ["工作台", "义警", "线索研判", "巡逻任务", "24小时警局", "参与情况"]
    assert "昆都仑区·值班民警" in tab.page.locator("[data-test=scope]").inner_text()
    tab.shot("dashboard")

    tab.page.locator("[data-test=logout]").click()
    tab.page.wait_for_selector("input[name=username]")
    assert tab.page.evaluate("Object.keys(sessionStorage)") == []


def test_a_leader_never_meets_a_403(desk, staff):
    staff("leader-zt", "leader", "150203-01-01")
    tab = desk()
    refused: list[str] = []
    tab.page.on("response", lambda r: refused.append(r.url) if r.status == 403 else None)
    tab.login("leader-zt")
    assert tab.nav() == ["工作台", "义警", "参与情况"]
    tab.page.wait_for_selector("[data-test=card-applications]")
    for title in ("义警", "参与情况", "工作台"):
        tab.go(title)
        tab.page.wait_for_load_state("networkidle")
        tab.shot(title)
    tab.open("/desk/clues")  # typed by hand: sent back to the dashboard, nothing asked of the API
    tab.page.wait_for_selector("[data-test=card-applications]")
    assert tab.page.url.endswith("/desk/")
    assert refused == []


def test_a_401_returns_to_the_login_page(desk, staff, client):
    staff("desk-kdl", "desk", "150203")
    tab = desk()
    tab.login("desk-kdl")
    tab.page.wait_for_selector("[data-test=card-clues]")
    token = tab.page.evaluate("sessionStorage.getItem('yijing.desk.token')")
    assert (
        client.post("/api/v1/desk/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code
        == 204
    )

    tab.go("线索研判")
    tab.page.wait_for_selector("[data-test=login-error]")
    assert tab.page.locator("[data-test=login-error]").inner_text() == "登录状态已失效，请重新登录"
    tab.shot("expired")
