"""Writing the feed from the desk through HTTP: scopes and permissions, edits, alerts pushed to a scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select


def _create(client, headers, tree, key="150203", **extra):
    body = {"kind": "notice", "title": "通知", "body": "正文", "jurisdiction_id": tree[key], **extra}
    return client.post("/api/v1/desk/posts", json=body, headers=headers)


def _run_jobs(app, *names: str) -> None:
    from workers.runner import AppSimpleWorker
    from yijing import jobs
    from yijing.extensions import redis_client

    with app.app_context():
        worker = AppSimpleWorker([jobs.get_queue(n) for n in names], connection=redis_client())
        worker.work(burst=True)


def _resident(app, openid: str, home_key: str | None, tree) -> int:
    from yijing.extensions import db
    from yijing.models import User, UserKind

    with app.app_context():
        user = User(
            kind=UserKind.WECHAT,
            openid=openid,
            display_name="",
            home_jurisdiction_id=tree[home_key] if home_key else None,
        )
        db.session.add(user)
        db.session.commit()
        return user.id


@pytest.fixture
def desk(staff):
    return staff("desk-kdl", "desk", "150203")


def test_desk_publishes_only_in_its_jurisdiction_and_only_to_city_or_district(
    client, tree, desk, staff, wechat_login
):
    assert _create(client, desk, tree, "150203").status_code == 201
    city = _create(client, desk, tree, "150200")
    assert city.status_code == 403
    other = _create(client, desk, tree, "150204")
    assert other.status_code == 403
    street = _create(client, desk, tree, "150203-01")
    assert street.status_code == 422
    assert "jurisdiction_id" in street.get_json()["error"]["fields"]
    leader = staff("leader", "leader", "150203")
    assert _create(client, leader, tree, "150203").status_code == 403
    assert _create(client, wechat_login("resident"), tree, "150203").status_code == 403
    assert client.post("/api/v1/desk/posts", json={"kind": "notice"}).status_code == 401
    qa = _create(client, desk, tree, "150203", kind="qa")
    assert qa.status_code == 422


def test_images_are_checked(client, tree, desk, upload_image):
    uploaded = upload_image(desk, purpose="feed")
    assert uploaded.status_code == 201, uploaded.get_json()
    key = uploaded.get_json()["id"]
    good = _create(client, desk, tree, images=[key, "https://media.example.cn/a.jpg"])
    assert good.status_code == 201
    public, external = good.get_json()["images"]
    assert external == "https://media.example.cn/a.jpg"
    with client.get(public) as image:  # the feed image is public: no token needed
        assert image.status_code == 200 and image.mimetype.startswith("image/")
    assert _create(client, desk, tree, images=["no-such-upload"]).status_code == 422
    assert _create(client, desk, tree, images=["ftp://x/a.jpg"]).status_code == 422
    assert _create(client, desk, tree, images=[f"https://x.cn/{i}.jpg" for i in range(10)]).status_code == 422


def test_publish_rules_and_audit(app, client, tree, desk):
    from yijing.extensions import db
    from yijing.models import AuditEntry

    post = _create(client, desk, tree).get_json()
    assert post["status"] == "draft"
    assert (
        client.post(f"/api/v1/desk/posts/{post['id']}/publish", json={"push": True}, headers=desk).status_code
        == 422
    )
    naive = client.post(
        f"/api/v1/desk/posts/{post['id']}/publish", json={"publish_at": "2030-01-01T08:00:00"}, headers=desk
    )
    assert naive.status_code == 422
    published = client.post(f"/api/v1/desk/posts/{post['id']}/publish", json={}, headers=desk)
    assert published.get_json()["status"] == "published"
    assert client.post(f"/api/v1/desk/posts/{post['id']}/publish", json={}, headers=desk).status_code == 409
    withdrawn = client.post(
        f"/api/v1/desk/posts/{post['id']}/withdraw", json={"reason": "重复发布"}, headers=desk
    )
    assert withdrawn.get_json()["withdrawn_reason"] == "重复发布"
    assert (
        client.patch(f"/api/v1/desk/posts/{post['id']}", json={"title": "x"}, headers=desk).status_code == 409
    )
    assert client.post(f"/api/v1/desk/posts/{post['id']}/pin", headers=desk).status_code == 409
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.target_type == "post").order_by(AuditEntry.id)
        ).all()
    assert actions == ["post.create", "post.publish", "post.withdraw"]


def test_editing_moves_a_post_between_scopes_at_once(client, tree, staff):
    city_desk = staff("desk-city", "desk", "150200")
    post = _create(client, city_desk, tree, "150203").get_json()
    client.post(f"/api/v1/desk/posts/{post['id']}/publish", json={}, headers=city_desk)

    def ids(key):
        items = client.get("/api/v1/feed", query_string={"district_id": tree[key]}).get_json()["items"]
        return [i["id"] for i in items]

    assert ids("150203") == [post["id"]] and ids("150204") == []
    moved = client.patch(
        f"/api/v1/desk/posts/{post['id']}",
        json={"jurisdiction_id": tree["150204"], "kind": "case_report"},
        headers=city_desk,
    )
    assert moved.status_code == 200
    assert ids("150203") == [] and ids("150204") == [post["id"]]
    items = client.get(
        "/api/v1/feed", query_string={"district_id": tree["150204"], "kind": "case_report"}
    ).get_json()
    assert [i["id"] for i in items["items"]] == [post["id"]]


def test_desk_list_filters_by_status_within_the_jurisdiction(client, tree, desk, staff):
    draft = _create(client, desk, tree).get_json()["id"]
    live = _create(client, desk, tree).get_json()["id"]
    client.post(f"/api/v1/desk/posts/{live}/publish", json={}, headers=desk)
    later = _create(client, desk, tree).get_json()["id"]
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    client.post(f"/api/v1/desk/posts/{later}/publish", json={"publish_at": at}, headers=desk)

    def listed(headers, **params):
        return [
            p["id"]
            for p in client.get("/api/v1/desk/posts", query_string=params, headers=headers).get_json()[
                "items"
            ]
        ]

    assert listed(desk) == [later, live, draft]
    assert listed(desk, status="draft") == [draft]
    assert listed(desk, status="published") == [live]
    assert listed(desk, status="scheduled") == [later]
    other = staff("desk-qs", "desk", "150204")
    assert listed(other) == []
    assert client.get(f"/api/v1/desk/posts/{draft}", headers=other).status_code == 403


def test_alert_is_pushed_to_the_residents_of_its_district_once(app, client, tree, desk):
    from yijing.extensions import db
    from yijing.models import Notification, Post

    inside = [_resident(app, f"in-{i}", "150203-01-01", tree) for i in range(3)]
    _resident(app, "district-home", "150203", tree)
    _resident(app, "outside", "150204-01-01", tree)
    _resident(app, "no-home", None, tree)
    post = _create(client, desk, tree, kind="alert", title="暴雨预警").get_json()
    published = client.post(f"/api/v1/desk/posts/{post['id']}/publish", json={"push": True}, headers=desk)
    assert published.get_json()["push_requested"] is True
    _run_jobs(app, "notify")
    with app.app_context():
        rows = db.session.scalars(select(Notification).where(Notification.kind == "feed.alert")).all()
        assert len(rows) == 4
        assert set(inside) <= {n.user_id for n in rows}
        assert {n.dedupe_key for n in rows} == {f"post:{post['id']}:alert:{n.user_id}" for n in rows}
        assert rows[0].title == "紧急预警：暴雨预警"
        assert db.session.get(Post, post["id"]).push_done_at is not None
        from workers import feed as feed_jobs

        feed_jobs.broadcast_alert(post["id"])  # a second run writes nothing new
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 4


def test_city_wide_alert_reaches_every_resident_in_batches(app, client, tree, staff, monkeypatch):
    from yijing.extensions import db
    from yijing.models import Notification
    from yijing.services.feed import publication

    monkeypatch.setattr(publication, "ALERT_BATCH", 2)
    monkeypatch.setattr(publication, "ALERT_BATCHES_PER_JOB", 1)
    city_desk = staff("desk-city", "desk", "150200")
    users = [
        _resident(app, f"u{i}", key, tree)
        for i, key in enumerate(["150203", "150204-01-01", None, "150203-01", None])
    ]
    post = _create(client, city_desk, tree, "150200", kind="alert").get_json()
    client.post(f"/api/v1/desk/posts/{post['id']}/publish", json={"push": True}, headers=city_desk)
    _run_jobs(app, "notify")  # the first job hands the rest over to follow-up jobs
    with app.app_context():
        notified = set(
            db.session.scalars(select(Notification.user_id).where(Notification.kind == "feed.alert"))
        )
    assert notified == set(users)


def test_scheduled_alert_is_pushed_when_the_job_publishes_it(app, client, tree, desk):
    from yijing.extensions import db
    from yijing.models import Notification
    from yijing.models.base import utcnow

    _resident(app, "in", "150203", tree)
    post = _create(client, desk, tree, kind="alert").get_json()
    at = datetime.now(UTC) + timedelta(minutes=5)
    scheduled = client.post(
        f"/api/v1/desk/posts/{post['id']}/publish",
        json={"publish_at": at.isoformat(), "push": True},
        headers=desk,
    )
    assert scheduled.get_json()["status"] == "scheduled"
    _run_jobs(app, "notify")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 0
        from yijing.models import Post
        from yijing.services import feed as feed_service

        assert feed_service.publish_due() == []
        db.session.get(Post, post["id"]).published_at = utcnow() - timedelta(seconds=1)  # time passes
        db.session.commit()
        assert feed_service.publish_due() == [post["id"]]
    _run_jobs(app, "notify")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


def test_a_lost_alert_job_is_requested_again(app, client, tree, desk):
    from yijing.extensions import db, redis_client
    from yijing.models import Notification
    from yijing.models.base import utcnow

    _resident(app, "in", "150203", tree)
    post = _create(client, desk, tree, kind="alert").get_json()
    client.post(f"/api/v1/desk/posts/{post['id']}/publish", json={"push": True}, headers=desk)
    with app.app_context():
        redis_client().delete(*redis_client().keys("rq:*"))  # the job is lost
        from yijing.services import feed as feed_service

        feed_service.publish_due(utcnow() + timedelta(minutes=16))
    _run_jobs(app, "notify")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 1
