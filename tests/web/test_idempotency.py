"""The Idempotency-Key mechanism, on a small endpoint that writes an audit row per call."""

from __future__ import annotations

import pytest
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import func, select

from yijing.extensions import db
from yijing.models import AuditEntry
from yijing.services import audit
from yijing.web.auth import current_actor, login_required
from yijing.web.idempotency import idempotent


class NoteSchema(Schema):
    text = fields.String(required=True)


class NoteOutSchema(Schema):
    id = fields.Integer()
    text = fields.String()


@pytest.fixture
def notes_app(make_app):
    other = make_app()
    blp = Blueprint("notes_test", __name__, url_prefix="/api/v1/test-notes")

    @blp.route("", methods=["POST"])
    @login_required
    @idempotent
    @blp.arguments(NoteSchema)
    @blp.response(201, NoteOutSchema)
    def create(data):
        entry = audit.record(current_actor(), "note.create", "note", 0, reason=data["text"])
        db.session.commit()
        return {"id": entry.id, "text": data["text"]}

    other.extensions["yijing_api"].register_blueprint(blp)
    return other


def _count(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "note.create")
        )


def test_replayed_key_returns_the_first_answer_and_creates_nothing(notes_app, wechat_login):
    client = notes_app.test_client()
    headers = {**wechat_login("idem"), "Idempotency-Key": "k-1"}
    first = client.post("/api/v1/test-notes", json={"text": "hello"}, headers=headers)
    second = client.post("/api/v1/test-notes", json={"text": "hello"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _count(notes_app) == 1


def test_same_key_with_another_body_is_422(notes_app, wechat_login):
    client = notes_app.test_client()
    headers = {**wechat_login("idem2"), "Idempotency-Key": "k-2"}
    assert client.post("/api/v1/test-notes", json={"text": "a"}, headers=headers).status_code == 201
    response = client.post("/api/v1/test-notes", json={"text": "b"}, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert _count(notes_app) == 1


def test_keys_are_per_user_and_optional(notes_app, wechat_login):
    client = notes_app.test_client()
    alice, bob = wechat_login("idem-a"), wechat_login("idem-b")
    for headers in (alice, bob):
        response = client.post(
            "/api/v1/test-notes", json={"text": "x"}, headers={**headers, "Idempotency-Key": "same"}
        )
        assert response.status_code == 201
    client.post("/api/v1/test-notes", json={"text": "x"}, headers=alice)
    client.post("/api/v1/test-notes", json={"text": "x"}, headers=alice)
    assert _count(notes_app) == 4


def test_a_failed_validation_is_not_replayed_as_success(notes_app, wechat_login):
    client = notes_app.test_client()
    headers = {**wechat_login("idem3"), "Idempotency-Key": "k-3"}
    assert client.post("/api/v1/test-notes", json={}, headers=headers).status_code == 422
    assert _count(notes_app) == 0
