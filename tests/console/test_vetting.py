"""义警: a district desk finds an applicant by search, reads the clear values for a reason, approves."""

from __future__ import annotations


def test_desk_approves_an_applicant_found_by_search_after_a_clear_read(desk, staff, volunteers, client):
    desk_headers = staff("desk-kdl", "desk", "150203")
    volunteers.apply("a", employer="包头顺丰速运", real_name="张小三")
    _, wanted = volunteers.apply(
        "b", employer="鹿城保安服务公司", real_name="李四海", category="security_guard"
    )

    tab = desk()
    tab.login("desk-kdl")
    tab.go("义警")
    rows = tab.page.locator("[data-test=volunteer-table] .el-table__body tr")
    rows.first.wait_for()
    assert rows.count() == 2
    tab.page.fill("[data-test=search]", "鹿城保安")
    tab.page.locator("[data-test=search-button]").click()
    tab.page.wait_for_function(
        "document.querySelectorAll('[data-test=volunteer-table] .el-table__body tr').length === 1"
    )
    row_text = rows.first.inner_text()
    assert "李*海" in row_text and "保安员" in row_text and "待审核" in row_text
    assert "security_guard" not in row_text and "pending" not in row_text
    tab.shot("search")

    rows.first.click()
    detail = tab.page.locator("[data-test=volunteer-detail]")
    detail.wait_for()
    assert tab.page.locator("[data-test=name]").inner_text() == "李*海"

    tab.page.locator("[data-test=read-pii]").click()
    tab.page.locator("[data-test=confirm]").click()  # no reason: the API's message is shown in the dialog
    assert "事由" in tab.page.locator("[data-test=dialog-error]").inner_text()
    tab.page.fill("[data-test=reason]", "核实申请人身份")
    tab.page.locator("[data-test=confirm]").click()
    tab.page.wait_for_function("document.querySelector('[data-test=name]').innerText === '李四海'")
    assert tab.page.locator("[data-test=phone]").inner_text() == "13812345678"
    tab.page.locator("[data-test=history]", has_text="核实申请人身份").wait_for()
    tab.shot("clear-read")

    tab.page.locator("[data-test=approve]").click()
    tab.page.fill("[data-test=reason]", "材料齐全，同意加入")
    tab.page.locator("[data-test=confirm]").click()
    tab.page.wait_for_function("document.querySelector('[data-test=status-label]').innerText === '已通过'")
    tab.page.locator("[data-test=history]", has_text="材料齐全，同意加入").wait_for()
    tab.shot("approved")

    body = client.get(f"/api/v1/desk/volunteers/{wanted['id']}", headers=desk_headers).get_json()
    assert body["volunteer"]["status"] == "approved"
    assert body["volunteer"]["decision_reason"] == "材料齐全，同意加入"


def test_desk_verifies_a_card_by_pasting_its_qr_payload(desk, staff, volunteers, client):
    desk_headers = staff("desk-kdl", "desk", "150203")
    headers, approved = volunteers.approved(desk_headers, "c", real_name="王大锤", category="courier")
    card = client.get("/api/v1/volunteers/me/card", headers=headers).get_json()

    tab = desk()
    tab.login("desk-kdl")
    tab.go("义警")
    tab.page.locator(".el-tabs__item", has_text="验证义警证").click()
    tab.page.fill("[data-test=card-code]", card["qr_payload"])
    tab.page.get_by_role("button", name="验证", exact=True).click()
    verdict = tab.page.locator(".el-result", has_text="义警证有效")
    verdict.wait_for()
    text = verdict.inner_text()
    assert "王*锤" in text and approved["volunteer_number"] in text and "快递员" in text
    assert "王大锤" not in text
    tab.shot("card-valid")

    tab.page.fill("[data-test=card-code]", card["qr_payload"][:-3] + "xyz")  # a forged signature
    tab.page.locator("[data-test=card-code]").press("Enter")
    tab.page.locator(".el-result", has_text="不是本系统签发的").wait_for()

    suspended = client.post(
        f"/api/v1/desk/volunteers/{approved['id']}/suspend", json={"reason": "多次缺勤"}, headers=desk_headers
    )
    assert suspended.status_code == 200
    tab.page.fill("[data-test=card-code]", card["qr_payload"])
    tab.page.locator("[data-test=card-code]").press("Enter")
    tab.page.locator(".el-result", has_text="义警证已失效").wait_for()
    tab.shot("card-suspended")
