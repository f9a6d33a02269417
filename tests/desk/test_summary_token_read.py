"""The dashboard's summary read in the token's own Redis round trip (``reports.summary_json_for_token``,
``login_required_in_view``): the same bytes and the same refusals as authenticating first."""

from __future__ import annotations

from datetime import date

import pytest

from tests.desk.test_reports import _period, dataset  # noqa: F401 (a fixture)
from tests.fixtures.redis_commands import RedisCommands

URL = "/api/v1/desk/reports/summary"


def _schema_dump(app, node_id: int, first: date, last: date) -> bytes:
    """The summary computed afresh and dumped by the declared schema, as ``@blp.response`` would."""
    from desk.reports import SummarySchema
    from yijing.extensions import db
    from yijing.models import Jurisdiction
    from yijing.services import reports
    from yijing.web import rendered

    with app.test_request_context():
        body = rendered.render(
            SummarySchema(), reports.figures_with_children(db.session.get(Jurisdiction, node_id), first, last)
        )
        db.session.remove()
    return body


def _drop_token_cache(app) -> None:
    from yijing.extensions import redis_client

    with app.app_context():
        for key in redis_client().scan_iter("yjtest:tok:*"):
            redis_client().delete(key)


@pytest.mark.usefixtures("dataset")
def test_a_cached_summary_is_one_script_and_the_bytes_of_the_schema(app, client, tree, staff, monkeypatch):
    first, last = _period()
    period = f"from={first}&to={last}"
    admin = staff("admin-tr", "admin", "150200")
    leader = staff("leader-tr", "leader", "150203")
    for headers, query, node in (
        (admin, f"jurisdiction_id={tree['150203']}&{period}", tree["150203"]),
        (admin, period, tree["150200"]),  # the principal's own node, chosen by the script
        (leader, period, tree["150203"]),
        (leader, f"jurisdiction_id={tree['150203-01']}&{period}", tree["150203-01"]),
        (leader, "", tree["150203"]),  # the default period
    ):
        miss = client.get(f"{URL}?{query}", headers=headers)
        assert miss.status_code == 200, miss.get_json()
        counting = RedisCommands(monkeypatch)
        hit = client.get(f"{URL}?{query}", headers=headers)
        assert counting.commands == ["EVALSHA"], query
        monkeypatch.undo()
        assert hit.status_code == 200 and hit.mimetype == "application/json"
        assert hit.data == miss.data
        if query:
            assert hit.data == _schema_dump(app, node, first, last)
    assert client.get(f"{URL}?{period}", headers=admin).get_json()["service"]["published"] > 0


def test_the_node_the_script_chose_is_checked_against_the_principals_own(
    app, client, tree, staff, monkeypatch
):
    """With several grants the script picks the lowest path, as ``scope_paths`` does; a script that
    picked another node (here: told of fewer roles) is not believed: the usual MGET answers."""
    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import Role, User
    from yijing.services import auth
    from yijing.services import reports as report_service

    desk = staff("desk-two", "desk", "150203-01-02")
    with app.app_context():
        user_id = db.session.query(User.id).filter_by(username="desk-two").scalar()
        auth.grant_role(user_id, Role.LEADER, tree["150203-01-01"], Actor.system("test"))
        db.session.remove()
    own = client.get(URL, headers=desk)
    assert own.get_json()["jurisdiction"]["key"] == "150203-01-01"
    counting = RedisCommands(monkeypatch)
    assert client.get(URL, headers=desk).data == own.data
    assert counting.commands == ["EVALSHA"]
    monkeypatch.undo()

    two = client.get(f"{URL}?jurisdiction_id={tree['150203-01-02']}", headers=desk)
    assert two.status_code == 200 and two.data != own.data  # in the cache too
    monkeypatch.setattr(report_service, "_REPORT_ROLES", ("desk",))  # the script now picks 150203-01-02
    counting = RedisCommands(monkeypatch)
    assert client.get(URL, headers=desk).data == own.data
    assert counting.commands == ["EVALSHA", "MGET"]


def test_a_bad_expired_or_revoked_token_is_a_401_with_no_figures(app, client, tree, staff):
    import json

    from sqlalchemy import update

    from yijing.extensions import db, redis_client
    from yijing.models import AuthToken
    from yijing.models.base import utcnow
    from yijing.services import auth

    query = f"?jurisdiction_id={tree['150203']}"
    missing = client.get(URL + query)
    assert missing.status_code == 401 and missing.get_json()["error"]["code"] == "missing_token"
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": "Bearer yjd_nope"}):
        for bad_args in ("", "&from=not-a-day", "&from=2026-02-01&to=2026-01-01"):
            bad = client.get(URL + query + bad_args, headers=headers)
            assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_token"

    leader = staff("leader-expiring", "leader", "150203")
    assert client.get(URL + query, headers=leader).status_code == 200  # cached: token, principal, summary
    token_hash = auth.hash_token(leader["Authorization"].split()[1])
    with app.app_context():  # the token's cache entry says it has expired
        key = f"yjtest:tok:{token_hash}"
        entry = json.loads(redis_client().get(key))
        redis_client().set(key, json.dumps({**entry, "exp": utcnow().timestamp() - 1}))
    expired = client.get(URL + query, headers=leader)
    assert expired.status_code == 401 and expired.get_json()["error"]["code"] == "token_expired"
    assert "service" not in expired.get_json()

    with app.app_context():  # expired in the database, nothing cached
        db.session.execute(update(AuthToken).values(expires_at=utcnow()))
        db.session.commit()
    _drop_token_cache(app)
    expired = client.get(URL + query, headers=leader)
    assert expired.status_code == 401 and expired.get_json()["error"]["code"] == "token_expired"

    other = staff("leader-leaving", "leader", "150203")
    assert client.get(URL + query, headers=other).status_code == 200
    assert client.post("/api/v1/desk/auth/logout", headers=other).status_code in (200, 204)
    revoked = client.get(URL + query, headers=other)
    assert revoked.status_code == 401 and revoked.get_json()["error"]["code"] == "invalid_token"
    assert "service" not in revoked.get_json()


def test_the_cached_summary_is_refused_as_before(app, client, tree, staff, wechat_login):
    from yijing.extensions import db
    from yijing.models import User
    from yijing.services import auth

    admin = staff("admin-fill", "admin", "150200")
    other = f"{URL}?jurisdiction_id={tree['150204']}"
    assert client.get(other, headers=admin).status_code == 200  # in the cache now
    leader = staff("leader-kdl", "leader", "150203")
    for _ in range(2):  # the principal cached or not
        refused = client.get(other, headers=leader)
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "out_of_jurisdiction"
    missing = client.get(f"{URL}?jurisdiction_id=987654321", headers=leader)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "jurisdiction_not_found"

    resident = client.get(URL, headers=wechat_login("rob"))
    assert resident.status_code == 403 and resident.get_json()["error"]["code"] == "staff_only"

    assert client.get(URL, headers=leader).status_code == 200
    with app.app_context():  # an account that must change its password first
        user = db.session.query(User).filter_by(username="leader-kdl").one()
        user.must_change_password = True
        db.session.commit()
        auth.forget_principal(user.id)
        db.session.remove()
    for query in ("", "?from=not-a-day"):  # before the arguments are looked at, as login_required
        for _ in range(2):
            forced = client.get(URL + query, headers=leader)
            assert forced.status_code == 403, forced.get_json()
            assert forced.get_json()["error"]["code"] == "password_change_required"


def test_a_rollup_version_bump_retires_the_cached_summary(app, client, tree, staff):
    from yijing import cache
    from yijing.extensions import redis_client
    from yijing.services import rollups

    first, last = _period()
    url = f"{URL}?jurisdiction_id={tree['150203']}&from={first}&to={last}"
    admin = staff("admin-bump", "admin", "150200")
    fresh = client.get(url, headers=admin)
    assert fresh.status_code == 200
    with app.app_context():  # a cached entry of the current version is served as it is
        key = f"yjtest:reports:summary-json:{tree['150203']}:{first.isoformat()}:{last.isoformat()}"
        version, path, _ = redis_client().get(key).split(b"\n", 2)
        redis_client().set(key, version + b"\n" + path + b'\n{"stale":true}')
    assert client.get(url, headers=admin).data == b'{"stale":true}'
    with app.app_context():
        cache.bump(*rollups.ROLLUP_VERSION)
    assert client.get(url, headers=admin).data == fresh.data


def test_with_redis_down_the_database_answers_as_before(make_app, client, tree, staff):
    first, last = _period()
    url = f"{URL}?jurisdiction_id={tree['150203']}&from={first}&to={last}"
    leader = staff("leader-down", "leader", "150203")
    up = client.get(url, headers=leader)
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with down.test_client() as other:
        answer = other.get(url, headers=leader)
        assert answer.status_code == 200, answer.get_json()
        assert answer.data == up.data
        own = other.get(URL + f"?from={first}&to={last}", headers=leader)
        assert own.status_code == 200 and own.get_json()["jurisdiction"]["id"] == tree["150203"]
        bad = other.get(url, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_token"
        refused = other.get(f"{URL}?jurisdiction_id={tree['150204']}", headers=leader)
        assert refused.status_code == 403


@pytest.mark.parametrize(
    ("query", "by_hand"),
    [
        ("", True),
        ("jurisdiction_id=7", True),
        ("jurisdiction_id=007&from=2026-11-01&to=2026-11-30", True),
        ("from=2026-11-01", True),
        ("to=2026-02-28", True),
        ("to=2026-02-30", False),
        ("from=20261101", False),
        ("from=2026-1-01", False),
        ("from=", False),
        ("jurisdiction_id=", False),
        ("jurisdiction_id=-3", False),
        ("jurisdiction_id=+3", False),
        ("jurisdiction_id=99999999999999999999", False),
        ("jurisdiction_id=%EF%BC%93", False),  # a full-width digit
        ("jurisdiction_id=1&jurisdiction_id=2", False),
        ("jurisdiction_id=1&extra=2", False),
        ("from=2026-11-01%00", False),
    ],
)
def test_the_plain_query_parsed_by_hand_is_what_the_schema_loads(app, query, by_hand):
    """``_plain_report_args`` answers what the schema would, or leaves the query to it."""
    from flask import request
    from webargs import ValidationError
    from werkzeug.exceptions import HTTPException

    from desk.reports import ReportArgsSchema, _plain_report_args
    from yijing.web import inputs

    schema = ReportArgsSchema()
    inputs.bound_integers(schema)
    with app.test_request_context(f"{URL}?{query}"):
        fast = _plain_report_args(request.args)
        try:
            loaded = inputs.PARSER.parse(schema, location="query")
        except (ValidationError, HTTPException):
            loaded = None
    assert (fast is not None) == by_hand
    assert fast is None or fast == loaded
