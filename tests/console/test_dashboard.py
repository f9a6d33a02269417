"""工作台: refreshes by itself; a new urgent clue is announced on screen and with a sound."""

from __future__ import annotations

ALARM_PROBE = """
window.__alarms = 0;
const Real = window.AudioContext;
window.AudioContext = class extends Real {
  createOscillator() { const osc = super.createOscillator(); const start = osc.start.bind(osc);
    osc.start = (...a) => { window.__alarms += 1; return start(...a); }; return osc; }
};
"""


def test_a_new_urgent_clue_is_announced_without_reloading(desk, staff, client, wechat_login, report_clue):
    desk_headers = staff("desk-kdl", "desk", "150203")
    resident = wechat_login("rosa")
    assert report_clue(resident, description="楼道里堆放杂物影响通行").status_code == 201
    tab = desk()
    tab.page.add_init_script(ALARM_PROBE)
    tab.page.clock.install()
    tab.login("desk-kdl")
    card = tab.page.locator("[data-test=card-clues]")
    card.locator("text=1").first.wait_for()
    assert tab.page.locator("[data-test=urgent-alert]").count() == 0

    urgent = report_clue(resident, description="有人持刀在小区门口徘徊").get_json()
    marked = client.patch(f"/api/v1/desk/clues/{urgent['id']}", json={"urgent": True}, headers=desk_headers)
    assert marked.status_code == 200
    tab.page.clock.run_for(16_000)  # the next poll (every 15 s), without a reload
    alert = tab.page.locator("[data-test=urgent-alert]")
    alert.wait_for()
    assert "有人持刀在小区门口徘徊" in alert.inner_text()
    tab.page.locator(".el-notification", has_text="紧急线索").wait_for()
    assert tab.page.evaluate("window.__alarms") >= 1
    assert "其中紧急 1 条" in card.inner_text()
    tab.shot("urgent")
