"""Reporting clues through HTTP: storing first, the reporter's own view, anonymity, limits."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select


def _rows(app, model, *where):
    from yijing.extensions import db

    with app.app_context():
        rows = db.session.scalars(select(model).where(*where)).all()
        db.session.expunge_all()
        db.session.remove()
    return rows


def _count(app, model) -> int:
    from yijing.extensions import db

    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(model))
        db.session.remove()
    return int(count or 0)


def test_a_named_clue_is_stored_in_the_community_it_falls_in(app, client, wechat_login, report_clue, tree):
    from yijing.models import Clue, ClueEvent, Notification

    headers = wechat_login("ann")
    response = report_clue(
        headers, category="fraud", description="有人冒充客服让老人转账", occurred_at="2024-05-01T09:30:00"
    )

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "submitted"
    assert body["status_label"] == "待受理"
    assert body["category_label"] == "诈骗"
    assert body["anonymous"] is False
    assert body["tracking_code"] is None
    assert body["occurred_at"] == "2024-05-01T01:30:00+00:00"  # no offset given: Beijing time
    assert [entry["status"] for entry in body["timeline"]] == ["submitted"]
    assert body["can_reply"] is True
    (clue,) = _rows(app, Clue)
    assert clue.jurisdiction_id == tree["150203-01-01"]  # 沼潭社区, the nearest community centre
    assert clue.reporter_id is not None and clue.reporter_enc is None
    assert len(_rows(app, ClueEvent)) == 1
    (note,) = _rows(app, Notification)
    assert (note.user_id, note.kind, note.status) == (clue.reporter_id, "clue_received", "pending")
    assert note.data["clue_id"] == clue.id

    mine = client.get("/api/v1/clues", headers=headers).get_json()
    assert [item["id"] for item in mine["items"]] == [body["id"]]
    detail = client.get(f"/api/v1/clues/{body['id']}", headers=headers)
    assert detail.status_code == 200
    assert detail.get_json()["description"] == "有人冒充客服让老人转账"


class _LogCapture(logging.Handler):
    """Records as the app's own log handler sees them (with its request-context filter)."""

    def __init__(self) -> None:
        from yijing.web.request_log import RequestContextFilter

        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def access(self, prefix: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == "yijing.access" and r.path.startswith(prefix)]


@pytest.fixture
def app_logs(caplog):
    caplog.set_level(logging.INFO)
    capture = _LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    yield capture
    root.removeHandler(capture)


def test_an_anonymous_clue_is_followed_by_code_and_leaves_no_clear_trace_of_its_reporter(
    app, client, wechat_login, report_clue, upload_image, app_logs, release_sealed
):
    from yijing import pii
    from yijing.models import AuditEntry, Clue, IdempotencyRecord, Media, Notification, User

    headers = wechat_login("bea")
    photo = upload_image(headers).get_json()["id"]
    response = report_clue(
        headers, anonymous=True, photos=[photo], extra_headers={"Idempotency-Key": "anon-1"}
    )

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    code = body["tracking_code"]
    assert re.fullmatch(r"[2-9A-HJ-NP-Z]{4}(-[2-9A-HJ-NP-Z]{4}){3}", code)
    (user,) = _rows(app, User)
    (clue,) = _rows(app, Clue)
    assert clue.reporter_id is None
    assert clue.reporter_enc.startswith("demo1:")  # encrypted under the active PII key
    assert code.replace("-", "") not in (clue.tracking_hash or "")
    with app.app_context():
        assert pii.decrypt(clue.reporter_enc, context="clue.reporter") == str(user.id)
    (media,) = _rows(app, Media)
    assert media.owner_id is None  # the photo no longer points at its uploader
    assert _rows(app, Notification) == []  # sealed, released later in a batch (issue 13)
    release_sealed()
    (note,) = _rows(app, Notification)
    assert note.user_id == user.id and note.sealed  # it must reach them ...
    assert note.data["clue_no"] == "ANONYMOUS" and "clue_id" not in note.data
    assert re.fullmatch(r"clue-anon:[0-9a-f]{48}", note.dedupe_key)
    assert "id=" not in (note.page or "")
    assert _rows(app, IdempotencyRecord) == []  # ... but nothing stored ties them to the clue
    assert _rows(app, AuditEntry) == []
    access = app_logs.access("/api/v1/clues")
    assert access and all(r.user_id is None and r.ip is None for r in access)

    mine = client.get("/api/v1/clues", headers=headers).get_json()["items"]
    assert [item["id"] for item in mine] == [clue.id]
    tracked = client.get(f"/api/v1/clues/track/{code.lower()}")  # no login; any case
    assert tracked.status_code == 200
    assert tracked.get_json()["id"] == clue.id
    assert tracked.get_json()["photos"][0]["id"] == photo
    photo_url = tracked.get_json()["photos"][0]["url"]
    assert client.get(photo_url, headers={"X-Clue-Tracking-Code": code}).status_code == 200
    assert client.get(photo_url, headers={"X-Clue-Tracking-Code": "AAAA-BBBB-CCCC-DDDD"}).status_code == 404
    assert client.get(f"/api/v1/clues/track/{code}x").status_code == 404
    wrong = client.get("/api/v1/clues/track/AAAA-BBBB-CCCC-DDDD")
    assert wrong.status_code == 404
    assert wrong.get_json()["error"]["code"] == "tracking_code_invalid"
    track_logs = app_logs.access("/api/v1/clues/track/")
    assert track_logs and all(r.path == "/api/v1/clues/track/<string:code>" for r in track_logs)
    client.get("/api/v1/me", headers=headers)
    (me,) = [r for r in app_logs.records if r.name == "yijing.access" and r.path == "/api/v1/me"]
    assert me.user_id is not None and me.ip is not None  # other requests are logged as before


def test_someone_else_cannot_see_my_clue(client, wechat_login, report_clue):
    clue_id = report_clue(wechat_login("cas")).get_json()["id"]
    other = wechat_login("dov")
    assert client.get(f"/api/v1/clues/{clue_id}", headers=other).status_code == 404
    assert client.get("/api/v1/clues", headers=other).get_json()["items"] == []
    assert client.get("/api/v1/clues").status_code == 401


def test_invalid_clues_are_refused_with_field_messages(app, wechat_login, report_clue, upload_image):
    from yijing.models import Clue

    headers = wechat_login("eli")
    far_away = {"lat": 39.9042, "lng": 116.4074}  # Beijing
    cases = [
        ({"category": "weather"}, "category"),
        ({"description": "短"}, "description"),
        ({"place": far_away}, "place"),
        ({"place": {"lat": 95, "lng": 109.8}}, "place"),
        ({"photos": ["x"] * 10}, "photos"),
        ({"photos": ["not-a-real-media-id"]}, "photos"),
        ({"occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "occurred_at"),
    ]
    for fields, field in cases:
        response = report_clue(headers, **fields)
        assert response.status_code == 422, (fields, response.get_json())
        error = response.get_json()["error"]
        assert field in error["fields"], (fields, error)
        assert error["message"]
    assert report_clue(headers, place=far_away).get_json()["error"]["code"] == "place_out_of_area"
    assert _count(app, Clue) == 0


def test_submission_is_rate_limited_per_user_with_a_clear_message(
    app, client, wechat_login, report_clue, monkeypatch
):
    config = app.config["YIJING"]
    monkeypatch.setitem(app.config, "YIJING", dataclasses.replace(config, clue_rate_limit="2/hour"))
    spammer = wechat_login("fox")
    assert report_clue(spammer, category="weather").status_code == 422  # refused input does not count
    assert report_clue(spammer).status_code == 201
    assert report_clue(spammer).status_code == 201
    limited = report_clue(spammer)
    assert limited.status_code == 429
    error = limited.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert "每 1 小时最多 2 次" in error["message"]
    assert report_clue(wechat_login("gil")).status_code == 201  # another user is not affected


def test_a_retried_submission_creates_one_clue(app, client, wechat_login, report_clue):
    from yijing.models import Clue

    headers = wechat_login("hob")
    first = report_clue(headers, anonymous=True, extra_headers={"Idempotency-Key": "k-1"})
    again = report_clue(headers, anonymous=True, extra_headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert _count(app, Clue) == 1
    # The replay is the first answer: the same tracking code, and the first one keeps working.
    assert again.get_json() == first.get_json()
    assert client.get(f"/api/v1/clues/track/{first.get_json()['tracking_code']}").status_code == 200
    third = report_clue(headers, anonymous=True, extra_headers={"Idempotency-Key": "k-1"})
    assert third.get_json()["tracking_code"] == first.get_json()["tracking_code"]
    assert client.get(f"/api/v1/clues/track/{first.get_json()['tracking_code']}").status_code == 200
    reused = report_clue(headers, description="另一件事情完全不同", extra_headers={"Idempotency-Key": "k-1"})
    assert reused.status_code == 422
    assert reused.get_json()["error"]["code"] == "idempotency_key_reused"
    # The same key from another user is another request.
    other = report_clue(wechat_login("ivo"), anonymous=True, extra_headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 201 and other.get_json()["id"] != first.get_json()["id"]
    assert other.get_json()["tracking_code"] != first.get_json()["tracking_code"]


def test_the_reporter_answers_on_the_thread_while_the_clue_is_open(
    app, client, wechat_login, report_clue, staff
):
    reporter = wechat_login("jax")
    clue_id = report_clue(reporter).get_json()["id"]
    desk = staff("desk-1", "desk", "150203")
    asked = client.post(
        f"/api/v1/desk/clues/{clue_id}/messages", json={"body": "车是什么颜色？"}, headers=desk
    )
    assert asked.status_code == 201

    answer = client.post(
        f"/api/v1/clues/{clue_id}/messages",
        json={"body": "白色面包车"},
        headers={**reporter, "Idempotency-Key": "r-1"},
    )
    assert answer.status_code == 201
    retried = client.post(
        f"/api/v1/clues/{clue_id}/messages",
        json={"body": "白色面包车"},
        headers={**reporter, "Idempotency-Key": "r-1"},
    )
    assert retried.status_code == 201
    thread = [(m["sender"], m["body"]) for m in retried.get_json()["messages"]]
    assert thread == [("desk", "车是什么颜色？"), ("reporter", "白色面包车")]
    assert "author" not in json.dumps(retried.get_json()["messages"])  # the reporter sees no staff names

    transition = {"to": "rejected", "public_note": "经核实不属实"}
    assert (
        client.post(f"/api/v1/desk/clues/{clue_id}/transitions", json=transition, headers=desk).status_code
        == 200
    )
    closed = client.post(f"/api/v1/clues/{clue_id}/messages", json={"body": "还有一点"}, headers=reporter)
    assert closed.status_code == 409
    assert closed.get_json()["error"]["code"] == "clue_closed"
