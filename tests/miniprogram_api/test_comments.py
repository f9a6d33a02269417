"""Comments through HTTP: held until WeChat's content check, the desk's queue, reports, rate limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select


def _run_jobs(app, *names: str) -> None:
    from workers.runner import AppSimpleWorker
    from yijing import jobs
    from yijing.extensions import redis_client

    with app.app_context():
        worker = AppSimpleWorker(
            [jobs.get_queue(n) for n in names or ("default",)], connection=redis_client()
        )
        worker.work(burst=True)


@pytest.fixture
def desk(staff):
    return staff("desk-kdl", "desk", "150203")


@pytest.fixture
def post(client, tree, desk):
    created = client.post(
        "/api/v1/desk/posts",
        json={
            "kind": "anti_fraud",
            "title": "反诈提示",
            "body": "谨防冒充客服诈骗",
            "jurisdiction_id": tree["150203"],
        },
        headers=desk,
    )
    post_id = created.get_json()["id"]
    assert client.post(f"/api/v1/desk/posts/{post_id}/publish", json={}, headers=desk).status_code == 200
    return post_id


def _comment(client, headers, post_id, body):
    response = client.post(f"/api/v1/feed/{post_id}/comments", json={"body": body}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _visible(client, post_id):
    return [c["id"] for c in client.get(f"/api/v1/feed/{post_id}/comments").get_json()["items"]]


def _notifications(app, kind):
    from yijing.extensions import db
    from yijing.models import Notification

    with app.app_context():
        return [
            (n.user_id, n.body)
            for n in db.session.scalars(select(Notification).where(Notification.kind == kind))
        ]


def test_comment_is_held_until_the_check_passes(app, client, post, wechat_login, fake_wechat):
    from yijing.extensions import db
    from yijing.models import User

    alice = wechat_login("alice")
    comment = _comment(client, alice, post, "提醒大家注意防范")
    assert comment["status"] == "pending_check"
    assert _visible(client, post) == []
    assert client.get(f"/api/v1/feed/{post}").get_json()["comment_count"] == 0

    _run_jobs(app)
    assert _visible(client, post) == [comment["id"]]
    assert client.get(f"/api/v1/feed/{post}").get_json()["comment_count"] == 1
    (checked,) = fake_wechat.state.requests("/wxa/msg_sec_check")
    with app.app_context():
        user_id = client.get("/api/v1/me", headers=alice).get_json()["id"]
        openid = db.session.get(User, user_id).openid
    assert checked.json == {"version": 2, "openid": openid, "scene": 2, "content": "提醒大家注意防范"}


def test_risky_comment_never_appears_and_the_author_is_told(app, client, post, wechat_login, desk):
    alice = wechat_login("alice")
    comment = _comment(client, alice, post, "这是有风险的内容")
    _run_jobs(app)
    assert _visible(client, post) == []
    assert client.get(f"/api/v1/feed/{post}").get_json()["comment_count"] == 0
    queue = client.get("/api/v1/desk/comments", headers=desk).get_json()["items"]
    assert queue == []  # not for review: hidden
    hidden = client.get("/api/v1/desk/comments", query_string={"status": "hidden"}, headers=desk).get_json()
    assert [c["id"] for c in hidden["items"]] == [comment["id"]]
    assert hidden["items"][0]["check_suggest"] == "risky"
    assert len(_notifications(app, "comment.hidden")) == 1


def test_comment_for_review_appears_only_after_the_desk_approves_it(app, client, post, wechat_login, desk):
    alice = wechat_login("alice")
    comment = _comment(client, alice, post, "这条需要待审一下")
    _run_jobs(app)
    assert _visible(client, post) == []
    queue = client.get("/api/v1/desk/comments", headers=desk).get_json()["items"]
    assert [(c["id"], c["status"], c["check_suggest"]) for c in queue] == [
        (comment["id"], "review", "review")
    ]

    restored = client.post(f"/api/v1/desk/comments/{comment['id']}/restore", json={}, headers=desk)
    assert restored.status_code == 200
    assert restored.get_json()["status"] == "visible"
    assert _visible(client, post) == [comment["id"]]
    assert client.get(f"/api/v1/feed/{post}").get_json()["comment_count"] == 1
    assert client.get("/api/v1/desk/comments", headers=desk).get_json()["items"] == []
    assert len(_notifications(app, "comment.restore")) == 1


def test_desk_hides_and_restores_a_comment_and_the_author_is_told_why(app, client, post, wechat_login, desk):
    from yijing.extensions import db
    from yijing.models import AuditEntry

    alice = wechat_login("alice")
    comment = _comment(client, alice, post, "普通评论")
    _run_jobs(app)
    assert _visible(client, post) == [comment["id"]]

    hidden = client.post(
        f"/api/v1/desk/comments/{comment['id']}/hide", json={"reason": "含有个人隐私信息"}, headers=desk
    )
    assert hidden.status_code == 200
    assert hidden.get_json()["status"] == "hidden"
    assert _visible(client, post) == []
    assert client.get(f"/api/v1/feed/{post}").get_json()["comment_count"] == 0
    assert _notifications(app, "comment.hide")[0][1] == "含有个人隐私信息"
    again = client.post(f"/api/v1/desk/comments/{comment['id']}/hide", json={"reason": "x"}, headers=desk)
    assert again.status_code == 409
    assert (
        client.post(f"/api/v1/desk/comments/{comment['id']}/hide", json={}, headers=desk).status_code == 422
    )

    restored = client.post(
        f"/api/v1/desk/comments/{comment['id']}/restore", json={"reason": "复核后无隐私信息"}, headers=desk
    )
    assert restored.status_code == 200
    assert _visible(client, post) == [comment["id"]]
    assert _notifications(app, "comment.restore")[0][1] == "复核后无隐私信息"
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.target_type == "comment").order_by(AuditEntry.id)
        ).all()
    assert actions == ["comment.hide", "comment.restore"]


def test_wechat_outage_keeps_the_comment_pending_and_the_job_retries(
    app, client, post, wechat_login, fake_wechat
):
    from rq.job import Job

    from workers import comments as comment_jobs
    from yijing.extensions import redis_client

    alice = wechat_login("alice")
    fake_wechat.state.fail("/wxa/msg_sec_check", http_status=502, times=3)
    comment = _comment(client, alice, post, "网络不好时的评论")
    _run_jobs(app)
    assert _visible(client, post) == []
    with app.app_context():
        job = Job.fetch(f"yjtest-comment-check-{comment['id']}", connection=redis_client())
        assert job.get_status() == "scheduled"  # RQ retries it later
        assert job.retries_left == 4
        from yijing.wechat.errors import WeChatUnavailable

        with pytest.raises(WeChatUnavailable):
            comment_jobs.check_comment(comment["id"])  # still down: raises, nothing changes
    assert _visible(client, post) == []
    with app.app_context():
        with pytest.raises(WeChatUnavailable):
            comment_jobs.check_comment(comment["id"])
        assert comment_jobs.check_comment(comment["id"]) == "visible"  # WeChat is back
        assert comment_jobs.check_comment(comment["id"]) is None  # a second run changes nothing
    assert _visible(client, post) == [comment["id"]]


def test_sweeper_requeues_comments_left_pending(app, client, post, wechat_login, fake_wechat):
    from yijing.extensions import db, redis_client
    from yijing.models import Comment
    from yijing.models.base import utcnow

    alice = wechat_login("alice")
    comment = _comment(client, alice, post, "任务丢失的评论")
    with app.app_context():
        redis_client().delete(*redis_client().keys("rq:*"))  # the job is lost
        assert _sweep(app) == 0  # too recent to be stuck
        db.session.get(Comment, comment["id"]).created_at = utcnow() - timedelta(minutes=11)
        db.session.commit()
    assert _sweep(app) == 1
    _run_jobs(app)
    assert _visible(client, post) == [comment["id"]]


def _sweep(app) -> int:
    from workers import comments as comment_jobs

    with app.app_context():
        return comment_jobs.sweep_pending_comments()


def test_wechat_refusing_the_check_sends_the_comment_to_review(
    app, client, post, wechat_login, fake_wechat, desk
):
    alice = wechat_login("alice")
    fake_wechat.state.fail("/wxa/msg_sec_check", errcode=40003, errmsg="invalid openid")
    comment = _comment(client, alice, post, "普通评论")
    _run_jobs(app)
    assert _visible(client, post) == []
    queue = client.get("/api/v1/desk/comments", headers=desk).get_json()["items"]
    assert [(c["id"], c["check_label"]) for c in queue] == [(comment["id"], "error:40003")]


def test_comments_are_rate_limited_per_user(client, post, wechat_login):
    alice, bob = wechat_login("alice"), wechat_login("bob")
    for i in range(5):
        _comment(client, alice, post, f"评论{i}")
    limited = client.post(f"/api/v1/feed/{post}/comments", json={"body": "再一条"}, headers=alice)
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert "每 1 分钟最多 5 次" in limited.get_json()["error"]["message"]
    _comment(client, bob, post, "别人的评论不受影响")


def test_comment_input_and_access(client, tree, post, wechat_login, desk):
    alice = wechat_login("alice")
    assert client.post(f"/api/v1/feed/{post}/comments", json={"body": "x"}).status_code == 401
    assert (
        client.post(f"/api/v1/feed/{post}/comments", json={"body": "   "}, headers=alice).status_code == 422
    )
    assert (
        client.post(f"/api/v1/feed/{post}/comments", json={"body": "长" * 501}, headers=alice).status_code
        == 422
    )
    assert client.post("/api/v1/feed/99999/comments", json={"body": "x"}, headers=alice).status_code == 404
    client.post(f"/api/v1/desk/posts/{post}/withdraw", json={"reason": "撤回"}, headers=desk)
    assert client.post(f"/api/v1/feed/{post}/comments", json={"body": "x"}, headers=alice).status_code == 404
    assert client.get(f"/api/v1/feed/{post}/comments").status_code == 404


def test_reports_send_a_comment_to_review_at_the_threshold(app, client, post, wechat_login, desk):
    alice = wechat_login("alice")
    comment = _comment(client, alice, post, "被举报的评论")
    _run_jobs(app)
    reporters = [wechat_login(f"reporter{i}") for i in range(5)]
    own = client.post(f"/api/v1/feed/comments/{comment['id']}/report", json={}, headers=alice)
    assert own.status_code == 422
    for headers in reporters[:4]:
        for _ in range(2):  # reporting twice is one report
            response = client.post(
                f"/api/v1/feed/comments/{comment['id']}/report", json={"reason": "辱骂"}, headers=headers
            )
            assert response.get_json() == {"reported": True}
    assert _visible(client, post) == [comment["id"]]
    reported = client.get(
        "/api/v1/desk/comments", query_string={"reported": "true"}, headers=desk
    ).get_json()["items"]
    assert [(c["id"], c["report_count"], c["status"]) for c in reported] == [(comment["id"], 4, "visible")]

    client.post(
        f"/api/v1/feed/comments/{comment['id']}/report", json={"reason": "辱骂"}, headers=reporters[4]
    )
    assert _visible(client, post) == []
    assert client.get(f"/api/v1/feed/{post}").get_json()["comment_count"] == 0
    queue = client.get("/api/v1/desk/comments", headers=desk).get_json()["items"]
    assert [(c["id"], c["status"], c["report_count"]) for c in queue] == [(comment["id"], "review", 5)]
    # The desk keeps it: visible again, reports handled.
    kept = client.post(
        f"/api/v1/desk/comments/{comment['id']}/restore", json={"reason": "未发现违规"}, headers=desk
    )
    assert kept.get_json()["report_count"] == 0
    assert _visible(client, post) == [comment["id"]]
    assert (
        client.get("/api/v1/desk/comments", query_string={"reported": "true"}, headers=desk).get_json()[
            "items"
        ]
        == []
    )
    hidden_report = client.post(f"/api/v1/feed/comments/{99999}/report", json={}, headers=alice)
    assert hidden_report.status_code == 404


def test_moderation_is_limited_to_the_desks_jurisdiction(app, client, post, wechat_login, staff):
    other_desk = staff("desk-qs", "desk", "150204")
    leader = staff("leader", "leader", "150203")
    alice = wechat_login("alice")
    comment = _comment(client, alice, post, "待审内容")
    _run_jobs(app)
    assert client.get("/api/v1/desk/comments", headers=other_desk).get_json()["items"] == []
    hide = client.post(
        f"/api/v1/desk/comments/{comment['id']}/hide", json={"reason": "x"}, headers=other_desk
    )
    assert hide.status_code == 403
    assert client.get("/api/v1/desk/comments", headers=leader).status_code == 403
    assert client.get("/api/v1/desk/comments", headers=alice).status_code == 403
