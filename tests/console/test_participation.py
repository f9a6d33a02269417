"""参与情况: a community leader sees only their community, the charts, and downloads a roster export
after watching its progress (a real RQ worker builds the file)."""

from __future__ import annotations

import csv
import io


def test_leader_sees_only_the_community_charts_and_downloads_the_roster(
    desk, staff, volunteers, rq_worker, tree
):
    desk_headers = staff("desk-kdl", "desk", "150203")
    for name in ("a", "b", "c"):
        volunteers.approved(desk_headers, name)
    volunteers.approved(desk_headers, "far", jurisdiction_id=tree["150203-01-02"])  # 友谊社区, not theirs
    staff("leader-zt", "leader", "150203-01-01")

    tab = desk()
    tab.login("leader-zt")
    tab.go("参与情况")
    tab.page.locator("[data-test=report-scope]", has_text="沼潭社区").wait_for()
    tab.page.wait_for_function("document.querySelector('[data-test=series-chart] canvas') !== null")
    summary = tab.page.locator("[data-test=summary]").inner_text()
    assert "在册义警\n3" in summary
    tab.page.locator(".el-radio-button", has_text="按周").click()
    tab.page.wait_for_load_state("networkidle")
    tab.shot("charts")

    tab.page.locator("[data-test=request-export]").click()
    tab.page.locator("[data-test=export-progress]").wait_for()
    tab.page.locator("[data-test=download]").wait_for(timeout=60000)
    assert tab.page.locator("[data-test=export-status]").inner_text() == "已完成"
    tab.shot("export-done")
    with tab.page.expect_download() as info:
        tab.page.locator("[data-test=download]").click()
    text = info.value.path().read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 1 + 3, rows  # the header and the community's three volunteers
