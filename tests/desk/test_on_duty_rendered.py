"""The desk's on-duty search served as bytes in one Redis round trip (``duty.on_duty_json``).

The bytes must be exactly what ``@blp.response(200, OnDutySchema)`` would send for the same search,
and resolving the token inside the search's script must keep every guarantee of ``login_required``:
a bad, expired or revoked token is a 401 with no data, the audience and password checks still apply,
and a staff member only ever sees their own scope, whatever the cache holds.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.fixtures.outages import redis_refused
from tests.fixtures.redis_commands import RedisCommands

ORIGIN = (40.6520, 109.8320)
URL = "/api/v1/desk/volunteers/on-duty"
NAMES = ['O"Brien', "张\\三", "李*四 😀", "王\u2028五", "tab\there", "<b>&amp;</b>", "", "赵*"]
CATEGORIES = ["courier", "taxi_driver", "security_guard", "food_delivery_rider", "not_a_known_category"]


def _path(app, tree, key):
    from yijing.extensions import db
    from yijing.models import Jurisdiction

    with app.app_context():
        path = db.session.get(Jurisdiction, tree[key]).path
        db.session.remove()
        return path


def _user_id(app, username):
    from sqlalchemy import select

    from yijing.extensions import db
    from yijing.models import User

    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        db.session.remove()
        return user_id


@pytest.fixture
def varied(app, tree):
    """120 on-duty volunteers in Redis around ORIGIN: awkward names, some in no team, every category,
    homes in 昆都仑区 and 青山区, pings at odd fractions of a second."""
    from yijing.services import duty_index
    from yijing.services.duty_index import DutyEntry

    rng = random.Random(11)
    kdl, qs = _path(app, tree, "150203-01-01"), _path(app, tree, "150204-01-01")
    items = []
    for i in range(1, 121):
        path = kdl if i % 3 else qs
        entry = DutyEntry(
            volunteer_id=10_000 + i,
            user_id=20_000 + i,
            category=CATEGORIES[i % len(CATEGORIES)],
            path=path,
            jurisdiction_id=tree["150203-01-01"] if i % 3 else tree["150204-01-01"],
            name_masked=NAMES[i % len(NAMES)],
            team_id=None if i % 4 == 0 else 500 + i,
        )
        lat = ORIGIN[0] + rng.uniform(-0.03, 0.03)
        lng = ORIGIN[1] + rng.uniform(-0.04, 0.04)
        items.append((entry, lat, lng, time.time() - rng.uniform(0, 300) - 1e-7 * i))
    # One right on the origin (distance 0.0) with a whole-second ping time.
    items.append(
        (DutyEntry(1, 1, "courier", kdl, tree["150203-01-01"], "零*"), *ORIGIN, float(int(time.time())))
    )
    with app.app_context():
        duty_index.add_many(items)
    return {"kdl": kdl, "qs": qs}


def _schema_bytes(app, username, **search):
    """What the blueprint's schema and the app's JSON provider make of the same search."""
    from desk.volunteers import OnDutySchema
    from yijing.services import auth, duty
    from yijing.web import rendered

    args = {
        "lat": None,
        "lng": None,
        "radius_m": None,
        "jurisdiction_id": None,
        "categories": None,
        "limit": 20,
    }
    args.update(search)
    with app.test_request_context():
        result = duty.search_for_staff(auth.load_principal(_user_id(app, username)), **args)
        return rendered.render(OnDutySchema(), result)


@pytest.mark.parametrize(
    ("params", "search"),
    [
        (
            {"lat": ORIGIN[0], "lng": ORIGIN[1], "limit": 200},
            {"lat": ORIGIN[0], "lng": ORIGIN[1], "limit": 200},
        ),
        ({"lat": 40.65, "lng": 109.83, "radius_m": 1500}, {"lat": 40.65, "lng": 109.83, "radius_m": 1500}),
        (
            {"lat": 40, "lng": 110, "radius_m": 50000, "limit": 5},
            {"lat": 40.0, "lng": 110.0, "radius_m": 50000, "limit": 5},
        ),
        (
            {"lat": ORIGIN[0], "lng": ORIGIN[1], "category": "taxi_driver"},
            {"lat": ORIGIN[0], "lng": ORIGIN[1], "categories": ["taxi_driver"]},
        ),
        (
            {
                "lat": ORIGIN[0],
                "lng": ORIGIN[1],
                "category": ["courier", "food_delivery_rider"],
                "limit": 50,
            },
            {
                "lat": ORIGIN[0],
                "lng": ORIGIN[1],
                "categories": ["courier", "food_delivery_rider"],
                "limit": 50,
            },
        ),
    ],
)
def test_the_bytes_are_the_schemas_dump(app, client, staff, varied, params, search):
    desk = staff("desk-city", "desk", "150200")
    response = client.get(URL, query_string=params, headers=desk)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    assert response.get_data() == _schema_bytes(app, "desk-city", **search)


def test_the_bytes_are_the_schemas_dump_for_the_other_searches(app, client, staff, tree, varied):
    """A district's own search (nearest its centre) and one in a given community: the plain way."""
    kdl = staff("desk-kdl", "desk", "150203")
    own = client.get(URL, query_string={"limit": 200}, headers=kdl)
    assert own.status_code == 200 and len(own.get_json()["items"]) == 81
    assert own.get_data() == _schema_bytes(app, "desk-kdl", limit=200)
    community = client.get(URL, query_string={"jurisdiction_id": tree["150203-01-01"]}, headers=kdl)
    assert community.get_data() == _schema_bytes(app, "desk-kdl", jurisdiction_id=tree["150203-01-01"])


def test_one_round_trip_and_only_my_scope(app, client, staff, tree, varied, monkeypatch):
    desk = staff("desk-city", "desk", "150200")
    kdl = staff("desk-kdl", "desk", "150203")
    leader = staff("leader-qs", "leader", "150204-01-01")
    params = {"lat": ORIGIN[0], "lng": ORIGIN[1], "radius_m": 50000, "limit": 200}
    for headers in (desk, kdl, leader):
        assert client.get(URL, query_string=params, headers=headers).status_code == 200  # warm the caches
    counting = RedisCommands(monkeypatch)
    everyone = client.get(URL, query_string=params, headers=desk)
    assert counting.commands == ["EVALSHA"]
    mine = client.get(URL, query_string=params, headers=kdl).get_json()["items"]
    theirs = client.get(URL, query_string=params, headers=leader).get_json()["items"]
    assert counting.commands == ["EVALSHA"] * 3
    monkeypatch.undo()
    assert len(everyone.get_json()["items"]) == 121
    assert len(mine) == 81 and len(theirs) == 40
    assert {i["jurisdiction_id"] for i in theirs} == {tree["150204-01-01"]}
    assert not {i["volunteer_id"] for i in mine} & {i["volunteer_id"] for i in theirs}
    assert client.get(URL, query_string=params, headers=kdl).get_data() == _schema_bytes(
        app, "desk-kdl", lat=ORIGIN[0], lng=ORIGIN[1], radius_m=50000, limit=200
    )


def test_hits_from_a_scope_the_principal_does_not_have_are_never_served(
    app, client, staff, tree, varied, monkeypatch
):
    """Python checks the paths and the GEO set the script used against the principal it decoded; a
    script that searched wider (stale grants, say) is ignored and the search is done again."""
    import dataclasses

    from yijing.services import duty_index

    kdl = staff("desk-kdl", "desk", "150203")
    params = {"lat": ORIGIN[0], "lng": ORIGIN[1], "radius_m": 50000, "limit": 200}
    expected = client.get(URL, query_string=params, headers=kdl).get_data()
    real = duty_index.search_as_bearer
    district, city = _path(app, tree, "150203"), _path(app, tree, "150200")
    calls = []

    def wider(*args, **kwargs):
        found = real(*args, **kwargs)
        assert found.paths == [district]
        everyone = duty_index.search_rows(ORIGIN[0], ORIGIN[1], 50000, 200)
        calls.append(len(everyone))
        return dataclasses.replace(found, paths=[city], key=duty_index.key_all(), rows=everyone)

    monkeypatch.setattr(duty_index, "search_as_bearer", wider)
    got = client.get(URL, query_string=params, headers=kdl)
    assert calls == [121]
    assert got.get_data() == expected and len(got.get_json()["items"]) == 81
    # The same paths in another order are the same scope; another GEO set is not.
    monkeypatch.setattr(
        duty_index,
        "search_as_bearer",
        lambda *a, **k: dataclasses.replace(real(*a, **k), key=duty_index.key_all(), rows=[]),
    )
    assert client.get(URL, query_string=params, headers=kdl).get_data() == expected


def test_bad_expired_and_revoked_tokens_get_401_and_no_data(app, client, staff, varied):
    from sqlalchemy import select, update

    from yijing import cache
    from yijing.extensions import db
    from yijing.models import AuthToken
    from yijing.models.base import utcnow
    from yijing.services import auth

    params = {"lat": ORIGIN[0], "lng": ORIGIN[1]}
    missing = client.get(URL, query_string=params)
    assert missing.status_code == 401 and missing.get_json()["error"]["code"] == "missing_token"
    bad = client.get(URL, query_string=params, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_token"
    # A bad token is a 401 ahead of the arguments' 422, as with login_required.
    both = client.get(URL, query_string={"lat": 40.65}, headers={"Authorization": "Bearer nope"})
    assert both.status_code == 401

    desk = staff("desk-city", "desk", "150200")
    token = desk["Authorization"].split()[1]
    assert client.get(URL, query_string=params, headers=desk).status_code == 200
    # Expired while its cache entry still says otherwise is impossible (the entry lives no longer than
    # the token); an entry that says expired, found by the same script as the hits, is a 401.
    with app.app_context():
        token_hash = auth.hash_token(token)
        user_id = db.session.scalar(select(AuthToken.user_id).where(AuthToken.token_hash == token_hash))
        cache.set_json({"uid": user_id, "exp": time.time() - 1}, 60, "tok", token_hash)
    expired = client.get(URL, query_string=params, headers=desk)
    assert expired.status_code == 401
    assert expired.get_json()["error"]["code"] == "token_expired" and "items" not in expired.get_json()
    # Expired in the database, nothing cached.
    with app.app_context():
        db.session.execute(update(AuthToken).values(expires_at=utcnow()))
        db.session.commit()
        cache.delete(("tok", token_hash))
    expired = client.get(URL, query_string=params, headers=desk)
    assert expired.status_code == 401 and expired.get_json()["error"]["code"] == "token_expired"

    other = staff("desk-kdl", "desk", "150203")
    assert client.get(URL, query_string=params, headers=other).status_code == 200
    assert client.post("/api/v1/desk/auth/logout", headers=other).status_code in (200, 204)
    revoked = client.get(URL, query_string=params, headers=other)
    assert revoked.status_code == 401 and revoked.get_json()["error"]["code"] == "invalid_token"


def test_audience_permission_and_password_checks_still_apply(app, client, staff, wechat_login, varied):
    from yijing.extensions import db
    from yijing.models import User

    params = {"lat": ORIGIN[0], "lng": ORIGIN[1]}
    resident = wechat_login("rita")
    refused = client.get(URL, query_string=params, headers=resident)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "staff_only"
    # The audience is checked before the arguments, as with login_required.
    assert client.get(URL, query_string={"lat": 40.65}, headers=resident).status_code == 403

    desk = staff("desk-new", "desk", "150203")
    assert client.get(URL, query_string=params, headers=desk).status_code == 200
    with app.app_context():
        user_id = _user_id(app, "desk-new")
        db.session.get(User, user_id).must_change_password = True
        db.session.commit()
        from yijing.services import auth

        auth.forget_principal(user_id)
    blocked = client.get(URL, query_string=params, headers=desk)
    assert blocked.status_code == 403 and blocked.get_json()["error"]["code"] == "password_change_required"


def test_a_cache_miss_gives_the_same_answer(app, client, staff, varied):
    from yijing.extensions import redis_client, redis_key

    desk = staff("desk-kdl", "desk", "150203")
    params = {"lat": ORIGIN[0], "lng": ORIGIN[1], "radius_m": 50000, "limit": 200}
    expected = client.get(URL, query_string=params, headers=desk).get_data()
    for kind in ("tok", "principal"):
        with app.app_context():
            for key in redis_client().scan_iter(redis_key(kind, "*")):
                redis_client().delete(key)
        assert client.get(URL, query_string=params, headers=desk).get_data() == expected
    with app.app_context():  # the misses filled the caches again
        assert list(redis_client().scan_iter(redis_key("tok", "*")))
        assert list(redis_client().scan_iter(redis_key("principal", "*")))


def test_redis_down_is_503_for_a_good_token_and_401_for_a_bad_one(app, client, staff):
    desk = staff("desk-o", "desk", "150203")
    with redis_refused(app):  # every Redis call is refused
        down = client.get(URL, query_string={"lat": 40.653, "lng": 109.833}, headers=desk)
        assert down.status_code == 503 and down.get_json()["error"]["code"] == "duty_index_unavailable"
        bad = client.get(
            URL, query_string={"lat": 40.653, "lng": 109.833}, headers={"Authorization": "Bearer x"}
        )
        assert bad.status_code == 401
