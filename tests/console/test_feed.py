"""24小时警局: a desk schedules a post, approves a held comment and answers a message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def test_desk_schedules_a_post_approves_a_held_comment_and_answers_a_message(
    desk, staff, client, wechat_login, tree, rq_worker, media_storage
):
    desk_headers = staff("desk-kdl", "desk", "150203")
    created = client.post(
        "/api/v1/desk/posts",
        json={
            "kind": "anti_fraud",
            "title": "反诈提示",
            "body": "谨防冒充客服",
            "jurisdiction_id": tree["150203"],
        },
        headers=desk_headers,
    ).get_json()
    assert (
        client.post(f"/api/v1/desk/posts/{created['id']}/publish", json={}, headers=desk_headers).status_code
        == 200
    )
    alice = wechat_login("alice")
    held = client.post(
        f"/api/v1/feed/{created['id']}/comments", json={"body": "这条需要待审一下"}, headers=alice
    )
    assert held.status_code == 201
    sent = client.post(
        "/api/v1/messages",
        json={"body": "小区路灯坏了谁来修？", "district_id": tree["150203"]},
        headers=alice,
    )
    assert sent.status_code == 201

    tab = desk()
    tab.login("desk-kdl")
    tab.go("24小时警局")
    tab.page.locator("[data-test=new-post]").click()
    tab.page.fill("[data-test=post-title]", "周末社区反诈讲座")
    tab.page.fill("[data-test=post-body]", "本周六上午九点在沼潭社区活动室")
    tab.page.set_input_files(
        "[data-test=post-image]", files=[{"name": "poster.png", "mimeType": "image/png", "buffer": _png()}]
    )
    tab.page.locator("text=已上传 1 张").wait_for()
    tab.page.locator("[data-test=post-scope] [data-test=level-0]").click()
    tab.page.locator(".el-select-dropdown__item:visible", has_text="昆都仑区").click()
    when = (datetime.now(UTC) + timedelta(days=2)).astimezone().strftime("%Y-%m-%d") + "T09:00"
    tab.page.fill("[data-test=post-publish-at]", when)
    tab.page.locator("[data-test=publish-post]").click()
    tab.page.locator("[data-test=feed-note]", has_text="定时发布").wait_for()
    row = tab.page.locator("[data-test=post-table] .el-table__body tr", has_text="周末社区反诈讲座")
    assert "定时发布" in row.inner_text() and "09:00" in row.inner_text()
    tab.shot("scheduled")

    tab.page.locator(".el-tabs__item", has_text="评论审核").click()
    comment_row = tab.page.locator(
        "[data-test=comment-table] .el-table__body tr", has_text="这条需要待审一下"
    )
    for _ in range(20):  # the worker's content check puts it in the queue
        if comment_row.count():
            break
        tab.page.wait_for_timeout(500)
        tab.page.locator(".el-tabs__item", has_text="动态").click()
        tab.go("工作台")
        tab.go("24小时警局")
        tab.page.locator(".el-tabs__item", has_text="评论审核").click()
    assert "待审核" in comment_row.inner_text()
    comment_row.locator("[data-test=approve-comment]").click()
    tab.page.locator("[data-test=feed-note]", has_text="评论已通过").wait_for()
    visible = client.get(f"/api/v1/feed/{created['id']}/comments").get_json()["items"]
    assert [c["body"] for c in visible] == ["这条需要待审一下"]

    tab.page.locator(".el-tabs__item", has_text="群众留言").click()
    tab.page.locator("[data-test=message-table] .el-table__body tr", has_text="路灯").click()
    tab.page.fill("[data-test=reply-text]", "已通知物业，三天内修复")
    tab.page.locator("[data-test=send-reply]").click()
    tab.page.locator("[data-test=feed-note]", has_text="已回复").wait_for()
    tab.shot("answered")
    mine = client.get("/api/v1/messages", headers=alice).get_json()["items"]
    assert mine[0]["status"] == "answered"
    one = client.get(f"/api/v1/messages/{mine[0]['id']}", headers=alice).get_json()
    assert [r["body"] for r in one["replies"]] == ["已通知物业，三天内修复"]


def _png() -> bytes:
    from tests.fixtures.clues import make_image

    return make_image("PNG", (120, 80))
