"""巡逻任务: a desk edits a published task from the board (place picked again on the map, a wider
geofence, a new address); the volunteer who accepted it is told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select


def test_desk_moves_a_published_task_on_the_map(app, client, desk, staff, volunteers, tasks):
    desk_headers = staff("desk-kdl", "desk", "150203")
    starts = datetime.now(UTC) + timedelta(minutes=5)
    task = tasks.create(
        desk_headers, title="沼潭社区早班巡逻", starts_at=starts, ends_at=starts + timedelta(hours=1), slots=2
    )
    volunteer, _ = volunteers.approved(desk_headers, "v")
    tasks.accept(volunteer, task["id"])

    tab = desk()
    tab.login("desk-kdl")
    tab.go("巡逻任务")
    tab.page.locator("[data-test=task-table] .el-table__body tr", has_text="沼潭社区早班巡逻").click()
    tab.page.locator("[data-test=task-detail]").wait_for()
    tab.page.locator("[data-test=edit-task]").click()
    dialog = tab.page.locator(".el-dialog", has_text="修改任务")
    dialog.wait_for()
    assert dialog.locator("[data-test=task-title]").input_value() == "沼潭社区早班巡逻"
    board_map = dialog.locator("[data-test=task-map]")
    box = board_map.bounding_box()
    board_map.click(position={"x": box["width"] * 0.8, "y": box["height"] / 2})  # east of the old place
    dialog.locator(".el-form-item", has_text="地址").locator("input").fill("沼潭社区东门")
    dialog.locator(".el-form-item", has_text="签到范围").locator("input").fill("300")
    dialog.locator(".el-form-item", has_text="签到范围").locator("input").press("Tab")
    tab.shot("editing")
    dialog.locator("[data-test=save-task]").click()
    tab.page.locator("[data-test=task-detail]", has_text="沼潭社区东门").wait_for()
    assert "签到范围 300 米" in tab.page.locator("[data-test=task-detail]").inner_text()
    tab.shot("saved")

    body = client.get(f"/api/v1/desk/tasks/{task['id']}", headers=desk_headers).get_json()
    assert body["status"] == "published" and body["address"] == "沼潭社区东门"
    assert body["geofence_radius_m"] == 300
    assert body["lng"] > task["lng"] and abs(body["lat"] - task["lat"]) < 0.002

    from yijing.extensions import db
    from yijing.models import Notification

    with app.app_context():
        told = db.session.scalars(select(Notification).where(Notification.kind == "task.changed")).all()
        assert len(told) == 1 and "沼潭社区东门" in told[0].body
        db.session.remove()

    # What the rules forbid once published is refused with the API's message, where it was tried.
    tab.page.locator("[data-test=edit-task]").click()
    dialog.wait_for()
    dialog.locator(".el-form-item", has_text="名额").locator("input").first.fill("9")
    dialog.locator(".el-form-item", has_text="名额").locator("input").nth(1).fill("50")
    dialog.locator(".el-form-item", has_text="名额").locator("input").nth(1).press("Tab")
    dialog.locator("[data-test=save-task]").click()
    assert "不能修改" in tab.page.locator("[data-test=task-error]").inner_text()
