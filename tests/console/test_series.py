"""巡逻任务: a weekly series created on the map; the worker makes its occurrences, which reach the board."""

from __future__ import annotations


def test_desk_creates_a_weekly_series_and_its_tasks_reach_the_board(desk, staff, rq_worker):
    staff("desk-kdl", "desk", "150203")
    tab = desk()
    tab.login("desk-kdl")
    tab.go("巡逻任务")
    tab.page.locator("[data-test=new-task]").click()
    tab.page.fill("[data-test=task-title]", "沼潭社区护校安园")
    for depth, name in enumerate(("昆都仑区", "沼潭街道", "沼潭社区")):
        tab.page.locator(f"[data-test=task-jurisdiction] [data-test=level-{depth}]").click()
        tab.page.locator(".el-select-dropdown__item:visible", has_text=name).click()
    tab.page.wait_for_load_state("networkidle")
    tab.page.locator("[data-test=task-map]").click()
    tab.page.locator("[data-test=task-repeat]").click()
    for day in ("周六", "周日"):
        tab.page.locator(".el-checkbox", has_text=day).click()  # every day of the week
    tab.page.locator("[data-test=create-task]").click()
    tab.page.locator("[data-test=series-note]", has_text="沼潭社区护校安园").wait_for()
    row = tab.page.locator("[data-test=series-table] .el-table__body tr", has_text="沼潭社区护校安园")
    assert "周一" in row.inner_text() and "周日" in row.inner_text() and "进行中" in row.inner_text()
    tab.shot("series")

    tab.page.locator(".el-tabs__item", has_text="任务看板").click()
    board = tab.page.locator("[data-test=task-table] .el-table__body tr", has_text="沼潭社区护校安园")
    for _ in range(30):  # the worker generates the occurrences; the board shows today's
        if board.count():
            break
        tab.page.wait_for_timeout(500)
        tab.page.get_by_role("button", name="搜索").click()
    assert board.count() == 1
    tab.shot("board")
