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
    assert tab.nav() == ["工作台", "义警", "线索研判", "巡逻任务", "24小时警局", "群发提醒", "参与情况"]
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
    tab.go("义警")
    for name in ("在岗地图", "队伍", "验证义警证"):
        tab.page.locator(".el-tabs__item", has_text=name).click()
        tab.page.wait_for_load_state("networkidle")
    tab.page.locator(".el-tabs__item", has_text="在岗地图").click()
    tab.page.locator("[data-test=on-duty-count]").wait_for()
    tab.shot("on-duty")
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


def test_desk_broadcasts_to_the_district_volunteers_and_sees_the_progress(desk, staff, volunteers, rq_worker):
    desk_headers = staff("desk-kdl", "desk", "150203")
    volunteers.approved(desk_headers, "a")
    tab = desk()
    tab.login("desk-kdl")
    tab.go("群发提醒")
    tab.page.locator(".el-card [data-test=level-0]").click()
    tab.page.locator(".el-select-dropdown__item:visible", has_text="昆都仑区").click()
    tab.page.locator(".el-form-item", has_text="标题").locator("input").fill("今晚降温，巡逻注意保暖")
    tab.page.get_by_role("button", name="发送").click()
    row = tab.page.locator(".el-table__body tr", has_text="今晚降温")
    row.wait_for()
    row.filter(has_text="已完成").wait_for(timeout=30000)  # the worker writes it out; the page polls
    assert "100%" in row.inner_text() and "辖区义警" in row.inner_text()
    tab.shot("broadcast-done")
