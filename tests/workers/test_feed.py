"""Feed jobs: view flushes that neither lose nor double-count, recounts after Redis loss, the schedule."""

from __future__ import annotations

import pytest


@pytest.fixture
def post_id(client, tree, staff):
    desk = staff("desk-city", "desk", "150200")
    created = client.post(
        "/api/v1/desk/posts",
        json={"kind": "notice", "title": "通知", "body": "正文", "jurisdiction_id": tree["150200"]},
        headers=desk,
    ).get_json()
    client.post(f"/api/v1/desk/posts/{created['id']}/publish", json={}, headers=desk)
    return created["id"]


def _views(client, post_id, n):
    for _ in range(n):
        assert client.get(f"/api/v1/feed/{post_id}").status_code == 200


def _db_counts(app, post_id):
    from yijing.extensions import db
    from yijing.models import Post

    with app.app_context():
        post = db.session.get(Post, post_id)
        return post.view_count, post.like_count, post.comment_count


def test_a_flush_that_dies_after_its_commit_is_not_applied_twice(app, client, post_id, monkeypatch):
    from workers import feed as feed_jobs
    from yijing.services.feed import counters

    _views(client, post_id, 4)

    def crash(*_args, **_kwargs):
        raise RuntimeError("worker killed")

    with app.app_context(), monkeypatch.context() as patch:
        patch.setattr(counters, "_release", crash)
        with pytest.raises(RuntimeError):
            feed_jobs.flush_counters()
    assert _db_counts(app, post_id)[0] == 4
    _views(client, post_id, 2)  # counted in a new pending batch meanwhile (these 2 views show 11, 12:
    # until the next flush the shown count also adds the applied-but-unreleased batch)
    with app.app_context():
        assert feed_jobs.flush_counters()["views"] == 0  # the claimed batch is only released
        assert feed_jobs.flush_counters()["views"] == 2
    assert _db_counts(app, post_id)[0] == 6
    assert client.get(f"/api/v1/feed/{post_id}").get_json()["view_count"] == 7


def test_a_flush_that_dies_before_its_commit_loses_nothing(app, client, post_id):
    from workers import feed as feed_jobs
    from yijing.services.feed import counters

    _views(client, post_id, 3)
    with app.app_context():
        assert counters._claim("views") is not None  # claimed, then the worker died
    _views(client, post_id, 2)
    assert client.get(f"/api/v1/feed/{post_id}").get_json()["view_count"] == 6
    with app.app_context():
        assert feed_jobs.flush_counters()["views"] == 3  # the claimed batch first, with its batch id
        assert feed_jobs.flush_counters()["views"] == 3
        assert feed_jobs.flush_counters()["views"] == 0
    assert _db_counts(app, post_id)[0] == 6
    assert client.get(f"/api/v1/feed/{post_id}").get_json()["view_count"] == 7


def test_likes_survive_the_loss_of_redis(app, client, post_id, wechat_login):
    import redis

    from workers import feed as feed_jobs

    for name in ("a", "b", "c"):
        client.post(f"/api/v1/feed/{post_id}/like", headers=wechat_login(name))
    redis.Redis.from_url(app.config["YIJING"].redis_url).flushdb()  # Redis lost, deltas with it
    assert _db_counts(app, post_id)[1] == 0
    with app.app_context():
        assert feed_jobs.reconcile_counts() == 1
        assert feed_jobs.reconcile_counts() == 0
    assert _db_counts(app, post_id)[1] == 3
    assert client.get(f"/api/v1/feed/{post_id}").get_json()["like_count"] == 3


def test_reconcile_fixes_a_drifted_comment_count(app, client, post_id):
    from yijing.extensions import db
    from yijing.models import Post

    with app.app_context():
        db.session.get(Post, post_id).comment_count = 9
        db.session.commit()
        from workers import feed as feed_jobs

        assert feed_jobs.reconcile_counts() == 1
    assert _db_counts(app, post_id) == (0, 0, 0)


def test_periodic_jobs_are_registered():
    from workers import schedule

    names = {f"{job.func.__module__}.{job.func.__name__}" for job in schedule.PERIODIC_JOBS}
    assert {
        "workers.feed.publish_due",
        "workers.feed.flush_counters",
        "workers.feed.reconcile_counts",
        "workers.comments.sweep_pending_comments",
    } <= names
