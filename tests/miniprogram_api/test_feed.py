"""Reading the feed through HTTP: scopes, scheduling, pinning, withdrawal, caching, views and likes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.fixtures.redis_commands import RedisCommands


def _post(
    client, headers, tree, *, key="150203", kind="notice", title="通知", body="正文", publish=True, **extra
):
    response = client.post(
        "/api/v1/desk/posts",
        json={"kind": kind, "title": title, "body": body, "jurisdiction_id": tree[key], **extra},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    post_id = response.get_json()["id"]
    if publish:
        published = client.post(f"/api/v1/desk/posts/{post_id}/publish", json={}, headers=headers)
        assert published.status_code == 200, published.get_json()
    return post_id


def _feed_ids(client, headers=None, **params):
    response = client.get("/api/v1/feed", query_string=params, headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def _follow(client, headers, tree, key):
    response = client.put("/api/v1/me/district", json={"district_id": tree[key]}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def city_desk(staff):
    return staff("desk-city", "desk", "150200")


@pytest.fixture
def kdl_desk(staff):
    return staff("desk-kdl", "desk", "150203")


def test_anonymous_reader_sees_city_posts_and_a_chosen_district(client, tree, city_desk):
    city = _post(client, city_desk, tree, key="150200", title="全市通知")
    kdl = _post(client, city_desk, tree, key="150203", title="昆区通知")
    qs = _post(client, city_desk, tree, key="150204", title="青山通知")
    assert _feed_ids(client) == [city]
    assert _feed_ids(client, district_id=tree["150203"]) == [kdl, city]
    assert _feed_ids(client, district_id=tree["150204"]) == [qs, city]


def test_district_filter_must_name_a_district(client, tree):
    response = client.get("/api/v1/feed", query_string={"district_id": tree["150203-01"]})
    assert response.status_code == 422
    assert "district_id" in response.get_json()["error"]["fields"]
    assert client.get("/api/v1/feed", query_string={"district_id": 99999}).status_code == 422


def test_logged_in_user_sees_their_home_district(client, tree, city_desk, wechat_login):
    city = _post(client, city_desk, tree, key="150200")
    kdl = _post(client, city_desk, tree, key="150203")
    _post(client, city_desk, tree, key="150204")
    user = wechat_login("resident")
    assert _feed_ids(client, user) == [city]  # no home yet
    me = _follow(client, user, tree, "150203")
    assert me["home_jurisdiction"]["id"] == tree["150203"]
    assert _feed_ids(client, user) == [kdl, city]


def test_following_a_district_keeps_a_finer_home_inside_it(app, client, tree, wechat_login):
    from yijing.extensions import db
    from yijing.models import User

    headers = wechat_login("volunteer")
    me = client.get("/api/v1/me", headers=headers).get_json()
    with app.app_context():
        db.session.get(User, me["id"]).home_jurisdiction_id = tree["150203-01-01"]
        db.session.commit()
    from yijing.services import auth

    with app.app_context():
        auth.forget_principal(me["id"])
    assert _follow(client, headers, tree, "150203")["home_jurisdiction"]["id"] == tree["150203-01-01"]
    assert _follow(client, headers, tree, "150204")["home_jurisdiction"]["id"] == tree["150204"]
    bad = client.put("/api/v1/me/district", json={"district_id": tree["150200"]}, headers=headers)
    assert bad.status_code == 422


def test_pinned_first_then_newest_and_kind_filter(client, tree, city_desk):
    first = _post(client, city_desk, tree, key="150200", kind="notice")
    second = _post(client, city_desk, tree, key="150200", kind="anti_fraud")
    third = _post(client, city_desk, tree, key="150200", kind="notice")
    assert _feed_ids(client) == [third, second, first]
    assert client.post(f"/api/v1/desk/posts/{first}/pin", headers=city_desk).status_code == 200
    assert _feed_ids(client) == [first, third, second]
    assert _feed_ids(client, kind="notice") == [first, third]
    assert _feed_ids(client, kind="anti_fraud") == [second]
    assert client.post(f"/api/v1/desk/posts/{first}/unpin", headers=city_desk).status_code == 200
    assert _feed_ids(client) == [third, second, first]


def test_cursor_pages_walk_the_whole_feed_in_order(client, tree, city_desk, wechat_login):
    ids = [
        _post(client, city_desk, tree, key="150200" if i % 2 else "150203", title=f"第{i}条")
        for i in range(7)
    ]
    client.post(f"/api/v1/desk/posts/{ids[2]}/pin", headers=city_desk)
    user = wechat_login("pager")
    _follow(client, user, tree, "150203")
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/feed", query_string=params, headers=user).get_json()
        seen.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [ids[2], *[i for i in reversed(ids) if i != ids[2]]]
    # A large limit (beyond the cached page) gives the same order from the database.
    assert _feed_ids(client, user, limit=100) == seen
    bad = client.get("/api/v1/feed", query_string={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


def test_scheduled_post_shows_at_its_time_pinned_first_and_withdraw_removes_it(app, client, tree, city_desk):
    """The issue's check: schedule → not before its time → after it, pinned first → withdraw removes it."""
    older = _post(client, city_desk, tree, key="150200", title="已发布")
    draft = _post(client, city_desk, tree, key="150200", title="定时发布", publish=False)
    publish_at = datetime.now(UTC) + timedelta(seconds=2)
    response = client.post(
        f"/api/v1/desk/posts/{draft}/publish", json={"publish_at": publish_at.isoformat()}, headers=city_desk
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "scheduled"
    assert client.post(f"/api/v1/desk/posts/{draft}/pin", headers=city_desk).status_code == 200

    # Before its time: not in the feed (this also fills the caches), no detail.
    assert _feed_ids(client) == [older]
    assert client.get(f"/api/v1/feed/{draft}").status_code == 404

    time.sleep(max(0.0, (publish_at - datetime.now(UTC)).total_seconds()) + 0.05)
    # After its time, before the publishing job ran: the read path shows it, pinned first.
    assert _feed_ids(client) == [draft, older]
    assert client.get(f"/api/v1/feed/{draft}").status_code == 200
    with app.app_context():
        from workers import feed as feed_jobs

        assert feed_jobs.publish_due() == [draft]
        assert feed_jobs.publish_due() == []
    assert client.get(f"/api/v1/desk/posts/{draft}", headers=city_desk).get_json()["status"] == "published"
    assert _feed_ids(client) == [draft, older]

    withdrawn = client.post(
        f"/api/v1/desk/posts/{draft}/withdraw", json={"reason": "信息有误"}, headers=city_desk
    )
    assert withdrawn.status_code == 200
    assert withdrawn.get_json()["status"] == "withdrawn"
    assert _feed_ids(client) == [older]
    assert client.get(f"/api/v1/feed/{draft}").status_code == 404


def test_cached_reads_answer_from_redis_and_writes_invalidate_only_their_scope(app, client, tree, city_desk):
    from yijing.extensions import db

    city = _post(client, city_desk, tree, key="150200", title="全市")
    kdl = _post(client, city_desk, tree, key="150203", title="昆区")
    assert _feed_ids(client, district_id=tree["150203"]) == [kdl, city]
    client.get(f"/api/v1/feed/{city}")

    statements = []

    def count(*_args, **_kwargs):
        statements.append(1)

    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert _feed_ids(client, district_id=tree["150203"]) == [kdl, city]
        assert client.get(f"/api/v1/feed/{city}").status_code == 200
        assert statements == []  # hits: no SQL at all

        # A post in 青山区 leaves 昆都仑区's and the city's cached pages alone.
        _post(client, city_desk, tree, key="150204", title="青山")
        statements.clear()
        assert _feed_ids(client, district_id=tree["150203"]) == [kdl, city]
        assert statements == []

        # A post in 昆都仑区 invalidates that scope only: one statement rebuilds it.
        new = _post(client, city_desk, tree, key="150203", title="昆区新")
        statements.clear()
        assert _feed_ids(client, district_id=tree["150203"]) == [new, kdl, city]
        assert len(statements) == 1
        # An edit shows at once in the detail.
        client.patch(f"/api/v1/desk/posts/{city}", json={"title": "全市（更正）"}, headers=city_desk)
        statements.clear()
        detail = client.get(f"/api/v1/feed/{city}").get_json()
        assert detail["title"] == "全市（更正）"
        assert statements == []
        assert _feed_ids(client, district_id=tree["150203"])[0] == new
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_feed_works_without_redis(app, client, tree, city_desk, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    city = _post(client, city_desk, tree, key="150200")

    def down(*_args, **_kwargs):
        raise RedisConnectionError("down")

    import redis

    monkeypatch.setattr(redis.Redis, "mget", down)
    monkeypatch.setattr(redis.Redis, "get", down)
    monkeypatch.setattr(redis.Redis, "set", down)
    monkeypatch.setattr(redis.client.Pipeline, "execute", down)
    monkeypatch.setattr(redis.commands.core.Script, "__call__", down)
    assert _feed_ids(client) == [city]
    assert client.get(f"/api/v1/feed/{city}").get_json()["id"] == city


def test_detail_counts_views_and_the_flush_moves_them_to_the_database(app, client, tree, city_desk):
    from yijing.extensions import db
    from yijing.models import Post

    post = _post(client, city_desk, tree, key="150200")
    counts = [client.get(f"/api/v1/feed/{post}").get_json()["view_count"] for _ in range(5)]
    assert counts == [1, 2, 3, 4, 5]
    with app.app_context():
        assert db.session.get(Post, post).view_count == 0  # no row written per view
        from workers import feed as feed_jobs

        assert feed_jobs.flush_counters()["views"] == 5
        db.session.expire_all()
        assert db.session.get(Post, post).view_count == 5
        assert feed_jobs.flush_counters()["views"] == 0  # nothing is applied twice
        db.session.expire_all()
        assert db.session.get(Post, post).view_count == 5
    assert client.get(f"/api/v1/feed/{post}").get_json()["view_count"] == 6
    with app.app_context():
        feed_jobs.flush_counters()
        db.session.expire_all()
        assert db.session.get(Post, post).view_count == 6


def test_likes_are_idempotent_and_counted(app, client, tree, city_desk, wechat_login):
    from yijing.extensions import db
    from yijing.models import Post, PostLike

    post = _post(client, city_desk, tree, key="150200")
    alice, bob = wechat_login("alice"), wechat_login("bob")
    assert client.post(f"/api/v1/feed/{post}/like", headers=alice).get_json() == {
        "liked": True,
        "like_count": 1,
    }
    assert client.post(f"/api/v1/feed/{post}/like", headers=alice).get_json() == {
        "liked": True,
        "like_count": 1,
    }
    assert client.post(f"/api/v1/feed/{post}/like", headers=bob).get_json()["like_count"] == 2
    detail = client.get(f"/api/v1/feed/{post}", headers=alice).get_json()
    assert detail["like_count"] == 2 and detail["liked"] is True
    assert client.delete(f"/api/v1/feed/{post}/like", headers=bob).get_json() == {
        "liked": False,
        "like_count": 1,
    }
    assert client.delete(f"/api/v1/feed/{post}/like", headers=bob).get_json()["like_count"] == 1
    assert client.get(f"/api/v1/feed/{post}", headers=bob).get_json()["liked"] is False
    assert client.post(f"/api/v1/feed/{post}/like").status_code == 401
    assert client.post("/api/v1/feed/999999/like", headers=alice).status_code == 404
    with app.app_context():
        from workers import feed as feed_jobs

        feed_jobs.flush_counters()
        assert db.session.get(Post, post).like_count == 1
        assert db.session.scalar(select(func.count()).select_from(PostLike)) == 1
    assert client.get(f"/api/v1/feed/{post}").get_json()["like_count"] == 1


def test_like_burst_counts_each_user_once(app, client, tree, city_desk):
    """Concurrent likes (threads), each user liking several times: exactly one like per user."""
    from concurrent.futures import ThreadPoolExecutor

    from yijing.extensions import db
    from yijing.models import Post, User, UserKind
    from yijing.services import feed as feed_service

    post = _post(client, city_desk, tree, key="150200")
    with app.app_context():
        users = [User(kind=UserKind.WECHAT, openid=f"burst-{i}", display_name="") for i in range(40)]
        db.session.add_all(users)
        db.session.commit()
        user_ids = [u.id for u in users]

    def like(user_id: int) -> None:
        with app.app_context():
            feed_service.like(post, user_id)
            db.session.remove()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(like, [u for u in user_ids for _ in range(5)]))
    assert client.get(f"/api/v1/feed/{post}").get_json()["like_count"] == 40
    with app.app_context():
        from workers import feed as feed_jobs

        feed_jobs.flush_counters()
        assert db.session.get(Post, post).like_count == 40
    assert client.get(f"/api/v1/feed/{post}").get_json()["like_count"] == 40


def test_feed_items_are_what_their_schema_documents(app, client, tree, city_desk, wechat_login):
    """The first page is served rendered (yijing/web/rendered.py): miss and hit equal the schema's dump."""
    from miniprogram_api.feed import FeedItemSchema

    _post(client, city_desk, tree, key="150200", images=["https://media.example.cn/p.jpg"])
    _post(client, city_desk, tree, key="150203", kind="alert")
    schema = FeedItemSchema()
    for params in ({"district_id": tree["150203"]}, {"district_id": tree["150203"], "limit": 100}):
        for _ in range(2):  # a miss, then a hit
            body = client.get("/api/v1/feed", query_string=params).get_json()
            assert set(body) == {"items", "next_cursor"}
            assert len(body["items"]) == 2
            for item in body["items"]:
                assert set(item) == set(schema.fields)
                published_at = datetime.fromisoformat(item["published_at"])
                assert published_at.tzinfo is not None
                assert schema.dump({**item, "published_at": published_at}) == item


def test_logged_in_first_page_is_one_round_trip_and_the_same_bytes(
    app, client, tree, city_desk, wechat_login, monkeypatch
):
    """The token, the reader's scopes and the rendered page in one script (``feed.reader_first_page``)."""
    from yijing.extensions import db
    from yijing.models import User

    city = _post(client, city_desk, tree, key="150200", title="全市通知")
    kdl = _post(client, city_desk, tree, key="150203", title="昆区通知")
    qs = _post(client, city_desk, tree, key="150204", title="青山通知")
    reader = wechat_login("rita")
    assert _feed_ids(client, reader) == [city]  # no home: the city alone
    _follow(client, reader, tree, "150203")
    anonymous = client.get("/api/v1/feed", query_string={"district_id": tree["150203"]}).get_data()
    first = client.get("/api/v1/feed", headers=reader)
    assert [i["id"] for i in first.get_json()["items"]] == [kdl, city]
    assert first.get_data() == anonymous
    counting = RedisCommands(monkeypatch)
    hit = client.get("/api/v1/feed", headers=reader)
    assert hit.get_data() == anonymous
    assert counting.commands == ["EVALSHA"]
    monkeypatch.undo()

    # A new district and a newer post retire what the script read; a home below a district is
    # resolved the usual way.
    _follow(client, reader, tree, "150204")
    assert _feed_ids(client, reader) == [qs, city]
    newer = _post(client, city_desk, tree, key="150204", title="青山新通知")
    assert _feed_ids(client, reader) == [newer, qs, city]
    with app.app_context():
        user_id = client.get("/api/v1/me", headers=reader).get_json()["id"]
        db.session.get(User, user_id).home_jurisdiction_id = tree["150203-01-01"]
        db.session.commit()
        from yijing.services import auth

        auth.forget_principal(user_id)
    assert _feed_ids(client, reader) == [kdl, city]
    assert _feed_ids(client, reader, kind="notice", limit=5) == [kdl, city]


def test_logged_in_first_page_refuses_bad_and_expired_tokens(app, client, tree, wechat_login):
    from sqlalchemy import update

    from yijing.extensions import db, redis_client
    from yijing.models import AuthToken
    from yijing.models.base import utcnow

    bad = client.get("/api/v1/feed", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.get_json()["error"]["code"] == "invalid_token"
    reader = wechat_login("tess")
    assert client.get("/api/v1/feed", headers=reader).status_code == 200
    with app.app_context():
        db.session.execute(update(AuthToken).values(expires_at=utcnow()))
        db.session.commit()
        for key in redis_client().scan_iter("yjtest:tok:*"):
            redis_client().delete(key)
    for params in ({}, {"cursor": None, "district_id": tree["150203"]}):
        expired = client.get(
            "/api/v1/feed", headers=reader, query_string={k: v for k, v in params.items() if v}
        )
        assert expired.status_code == 401
        assert expired.get_json()["error"]["code"] == "token_expired"


def test_a_bad_token_is_refused_before_bad_feed_arguments(client):
    """As with ``login_optional``: the 401 comes first, whatever else is wrong with the request."""
    response = client.get("/api/v1/feed", query_string={"limit": 0}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"
    assert client.get("/api/v1/feed", query_string={"limit": 0}).status_code == 422
