"""巡逻任务: a desk creates a nearby task on the map and, without reloading, sees ring 1 go out and the
first acceptance arrive (the dispatch job runs in a real RQ worker)."""

from __future__ import annotations

from sqlalchemy import select


def test_desk_creates_a_nearby_task_on_the_map_and_follows_the_dispatch_live(
    app, desk, staff, volunteers, tasks, rq_worker
):
    desk_headers = staff("desk-kdl", "desk", "150203")
    near, _ = volunteers.approved(desk_headers, "near")
    other, _ = volunteers.approved(desk_headers, "other")
    volunteers.on_duty(near, 40.6525, 109.8325)
    volunteers.on_duty(other, 40.6540, 109.8350)

    tab = desk()
    tab.login("desk-kdl")
    tab.go("巡逻任务")
    tab.page.locator("[data-test=new-task]").click()
    tab.page.fill("[data-test=task-title]", "沼潭社区紧急协查")
    tab.page.locator("[data-test=task-mode] .el-radio", has_text="就近调度").click()
    for depth, name in enumerate(("昆都仑区", "沼潭街道", "沼潭社区")):
        tab.page.locator(f"[data-test=task-jurisdiction] [data-test=level-{depth}]").click()
        tab.page.locator(".el-select-dropdown__item:visible", has_text=name).click()
    tab.page.wait_for_load_state("networkidle")
    tab.page.locator("[data-test=task-map]").click()  # the middle of the map: the community's centre
    tab.page.locator("[data-test=task-map] [data-test=map-circle]").wait_for()
    tab.shot("placed")
    tab.page.locator("[data-test=create-task]").click()

    tab.page.locator("[data-test=task-detail]").wait_for()
    ring = tab.page.locator("[data-test=ring-1]")
    ring.wait_for(timeout=30000)  # the worker sends ring 1; the page polls, nobody reloads
    tab.page.locator("[data-test=ring-1] [data-test=invitation]").first.wait_for()
    assert "邀请 2 人" in ring.inner_text()
    tab.shot("ring-1")

    from yijing.extensions import db
    from yijing.models import Task

    with app.app_context():
        task_id = db.session.scalar(select(Task.id).where(Task.title == "沼潭社区紧急协查"))
        db.session.remove()
    tasks.accept(near, task_id)
    tab.page.locator("[data-test=invitation]", has_text="秒答复").wait_for(timeout=15000)
    assert tab.page.locator("[data-test=task-filled]").inner_text() == "1/2"
    assert "已接受" in tab.page.locator("[data-test=invitation]", has_text="秒答复").inner_text()
    tab.shot("accepted")
