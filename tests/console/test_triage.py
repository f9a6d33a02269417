"""线索研判: an anonymous clue with a photo, accepted, then transferred to 110 with the reference."""

from __future__ import annotations


def test_desk_triages_an_anonymous_clue_to_110_and_the_reporter_sees_the_note(
    desk, staff, client, wechat_login, upload_image, report_clue
):
    resident = wechat_login("rosa")
    photo = upload_image(resident).get_json()
    submitted = report_clue(
        resident,
        anonymous=True,
        photos=[photo["id"]],
        category="drugs",
        description="楼下有人深夜交易可疑物品",
    ).get_json()
    report_clue(resident, description="电动车被盗")
    staff("desk-kdl", "desk", "150203")

    tab = desk()
    tab.login("desk-kdl")
    tab.go("线索研判")
    rows = tab.page.locator("[data-test=clue-table] .el-table__body tr")
    rows.first.wait_for()
    assert rows.count() == 2
    tab.page.fill("[data-test=clue-search]", "交易")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_function(
        "document.querySelectorAll('[data-test=clue-table] .el-table__body tr').length === 1"
    )
    assert "涉毒" in rows.first.inner_text() or "毒" in rows.first.inner_text()
    rows.first.click()

    detail = tab.page.locator("[data-test=clue-detail]")
    detail.wait_for()
    assert "匿名（身份不可见）" in detail.inner_text()
    tab.page.locator("[data-test=photo]").wait_for()  # fetched with the token, shown from a blob
    assert tab.page.locator("[data-test=photo]").evaluate("img => img.naturalWidth") == 64
    assert tab.page.locator("[data-test=map] [data-test=map-point]").count() == 1
    tab.shot("detail")

    tab.page.locator("[data-test=take]").click()
    tab.page.wait_for_function("document.querySelector('[data-test=assignee]').innerText === 'desk-kdl'")

    tab.page.locator("[data-test=to-accepted]").click()
    tab.page.fill("[data-test=public-note]", "已受理，民警将前往核实")
    tab.page.locator("[data-test=confirm-transition]").click()
    tab.page.wait_for_function("document.querySelector('[data-test=clue-status]').innerText === '已受理'")

    tab.page.locator("[data-test=to-transferred]").click()
    tab.page.locator("[data-test=confirm-transition]").click()  # no reference: the API says what is missing
    tab.page.locator("[data-test=transition-error]").wait_for()
    tab.shot("transfer-needs-reference")
    tab.page.fill("[data-test=transfer-reference]", "JJ20261130-0042")
    tab.page.fill("[data-test=public-note]", "已移交110指挥中心处置")
    tab.page.locator("[data-test=confirm-transition]").click()
    tab.page.wait_for_function("document.querySelector('[data-test=clue-status]').innerText === '已移交'")
    assert "JJ20261130-0042" in tab.page.locator("[data-test=transfer]").inner_text()
    tab.shot("transferred")

    followed = client.get(f"/api/v1/clues/track/{submitted['tracking_code']}").get_json()
    assert followed["status"] == "transferred"
    notes = [e["note"] for e in followed["timeline"]]
    assert "已受理，民警将前往核实" in notes and "已移交110指挥中心处置" in notes


def test_desk_marks_a_suggested_duplicate_in_one_click(
    desk, staff, client, wechat_login, report_clue, places, run_jobs
):
    first, second = wechat_login("fin"), wechat_login("gia")
    near = dict(places["kundulun"], lat=places["kundulun"]["lat"] + 0.001)  # about 110 m away
    earlier = report_clue(first, category="gambling", description="地下室有人聚众赌博").get_json()["id"]
    later = report_clue(
        second, category="gambling", place=near, description="晚上地下室赌博声很大"
    ).get_json()["id"]
    run_jobs("default")  # the duplicate check runs in a job
    desk_headers = staff("desk-kdl", "desk", "150203")

    tab = desk()
    tab.login("desk-kdl")
    tab.go("线索研判")
    tab.page.locator("[data-test=clue-table] .el-table__body tr", has_text="晚上地下室赌博声很大").click()
    tab.page.locator("[data-test=clue-detail]").wait_for()
    suggestion = tab.page.locator("h4:has-text('可能重复') ~ div", has_text=f"#{earlier}")
    suggestion.wait_for()
    assert "地下室有人聚众赌博" in suggestion.inner_text()
    tab.shot("suggested")
    suggestion.get_by_role("button", name="标为重复").click()
    tab.page.locator("[data-test=clue-status]", has_text="重复").wait_for()
    tab.shot("marked")

    body = client.get(f"/api/v1/desk/clues/{later}", headers=desk_headers).get_json()
    assert body["status"] == "duplicate" and body["duplicate_of_id"] == earlier
    mine = client.get(f"/api/v1/clues/{later}", headers=second).get_json()
    assert mine["status"] == "duplicate"
