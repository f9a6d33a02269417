"""巡逻任务: a task's track drawn on the map from the points a volunteer uploaded; named volunteers
invited to an assigned task, one accepting, then the task cancelled with a reason that reaches them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.fixtures.tasks import TASK_PLACE


def _xy(points_attr: str) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in pair.split(",")) for pair in points_attr.split()]


def test_the_track_of_a_volunteer_on_patrol_is_drawn_on_the_task_map(desk, staff, volunteers, tasks, client):
    desk_headers = staff("desk-kdl", "desk", "150203")
    task = tasks.create(desk_headers, title="沼潭社区轨迹巡逻")
    volunteer, _ = volunteers.approved(desk_headers, "v")
    tasks.accept(volunteer, task["id"])
    placed = tasks.check_in(volunteer, task["id"])
    base = datetime.fromisoformat(placed["checkin_at"])
    walk = [(TASK_PLACE[0] + 0.0004 * i, TASK_PLACE[1] + 0.0002 * i) for i in range(1, 5)]  # north-east
    uploaded = tasks.post(
        volunteer,
        task["id"],
        "track",
        {
            "points": [
                {
                    "lat": lat,
                    "lng": lng,
                    "accuracy_m": 8,
                    "recorded_at": (base + timedelta(seconds=10 * i)).isoformat(),
                }
                for i, (lat, lng) in enumerate(walk, start=1)
            ]
        },
    )
    assert uploaded.status_code == 200 and uploaded.get_json()["stored"] == 4

    tab = desk()
    tab.login("desk-kdl")
    tab.go("巡逻任务")
    tab.page.locator("[data-test=task-table] .el-table__body tr", has_text="沼潭社区轨迹巡逻").click()
    line = tab.page.locator(".el-drawer [data-test=map-line]")
    line.wait_for()
    drawn = _xy(line.get_attribute("points"))
    assert len(drawn) == 4
    xs, ys = [x for x, _ in drawn], [y for _, y in drawn]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # east is right, north is up
    tab.shot("track")


def test_desk_invites_named_volunteers_then_cancels_the_task(app, desk, staff, volunteers, tasks, client):
    desk_headers = staff("desk-kdl", "desk", "150203")
    starts = datetime.now(UTC) + timedelta(minutes=5)
    task = tasks.create(
        desk_headers,
        title="沼潭社区护校安园",
        kind="campus_guard",
        dispatch_mode="assigned",
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
    )
    first, v1 = volunteers.approved(desk_headers, "a", real_name="王大锤", employer="鹿城保安服务公司")
    _, v2 = volunteers.approved(desk_headers, "b", real_name="赵小飞", employer="包头顺丰速运")

    tab = desk()
    tab.login("desk-kdl")
    tab.go("巡逻任务")
    tab.page.locator("[data-test=task-table] .el-table__body tr", has_text="沼潭社区护校安园").click()
    tab.page.locator("[data-test=task-detail]").wait_for()
    tab.page.locator(".el-drawer .el-select", has_text="搜索工作单位").click()
    for name in ("王*锤", "赵*飞"):
        tab.page.locator(".el-select-dropdown__item:visible", has_text=name).click()
    tab.page.locator(".el-drawer h4", has_text="指派义警").click()  # close the dropdown
    tab.page.get_by_role("button", name="邀请", exact=True).click()
    rows = tab.page.locator("[data-test=assignment-table] .el-table__body tr")
    tab.page.wait_for_function(
        "document.querySelectorAll('[data-test=assignment-table] .el-table__body tr').length === 2"
    )
    tab.shot("invited")

    tasks.accept(first, task["id"])
    tab.page.locator("[data-test=task-filled]", has_text="1/").wait_for()  # the page polls

    tab.page.locator(".el-drawer button", has_text="取消任务").click()
    tab.page.locator("[data-test=confirm]").click()  # without a reason: refused where it was tried
    assert tab.page.locator("[data-test=dialog-error]").inner_text()
    tab.page.fill("[data-test=reason]", "学校临时放假")
    tab.page.locator("[data-test=confirm]").click()
    tab.page.locator("[data-test=task-status]", has_text="已取消").wait_for()
    assert rows.count() == 2
    tab.shot("cancelled")

    listed = client.get(f"/api/v1/desk/tasks/{task['id']}/assignments", headers=desk_headers).get_json()
    by_volunteer = {a["volunteer"]["id"]: a["status"] for a in listed["items"]}
    assert by_volunteer == {v1["id"]: "cancelled", v2["id"]: "cancelled"}

    from yijing.extensions import db
    from yijing.models import Notification

    with app.app_context():
        told = db.session.scalars(select(Notification).where(Notification.kind == "task.cancelled")).all()
        assert len(told) == 2 and all("学校临时放假" in n.body for n in told)
        db.session.remove()
