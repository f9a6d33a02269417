"""The database itself keeps one open application per user and per ID number (race-proof)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError


def _copy(original, **changes):
    from yijing.models import Volunteer

    columns = {c.key: getattr(original, c.key) for c in Volunteer.__table__.columns if c.key != "id"}
    columns.update(changes)
    return Volunteer(**columns)


@pytest.mark.parametrize("column", ["open_user_id", "open_id_number_hash"])
def test_unique_while_open_free_once_closed(app, volunteers, wechat_login, column):
    from yijing.extensions import db
    from yijing.models import User, Volunteer

    volunteers.apply("first")
    wechat_login("second")
    with app.app_context():
        original = db.session.scalars(select(Volunteer)).one()
        other = db.session.scalar(select(User.id).where(User.id != original.user_id))
        # Another open row sharing the value the column guards is refused by the database.
        clash = {"user_id": other, "open_user_id": other, "open_id_number_hash": "x" * 64}
        clash[column] = getattr(original, column)
        db.session.add(_copy(original, **clash))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        # A closed application (both columns NULL) may repeat the user and the ID number.
        db.session.add(_copy(original, status="withdrawn", open_user_id=None, open_id_number_hash=None))
        db.session.commit()
        assert db.session.query(Volunteer).count() == 2
        db.session.remove()


def test_a_lost_race_on_the_id_number_is_a_field_error_and_stores_nothing(
    app, volunteers, id_number, monkeypatch
):
    """Two users submit the same ID number at once: the check before the insert passes for both,
    the unique constraint stops the second, which gets the same field error as usual."""
    from yijing import pii, resident_id
    from yijing.extensions import db
    from yijing.models import PrivacyConsent, Volunteer
    from yijing.services import volunteers as service

    number = id_number(seq=606)
    volunteers.apply("winner", id_number=number)

    def check_without_lookup(value, user_id, errors):
        normalised = resident_id.normalise(value)
        return normalised, pii.blind_index(normalised, context=service.ID_NUMBER_CONTEXT)

    monkeypatch.setattr(service, "_check_id_number", check_without_lookup)
    _, body = volunteers.apply("loser", expect=422, id_number=number)
    assert body["error"]["code"] == "id_number_taken"
    assert body["error"]["fields"] == {"id_number": ["该身份证号码已被其他账号用于义警申请"]}
    with app.app_context():
        assert db.session.query(Volunteer).count() == 1
        assert db.session.query(PrivacyConsent).count() == 1
        db.session.remove()


def test_a_lost_race_on_a_second_application_is_a_conflict(app, client, volunteers, monkeypatch):
    from yijing.services import volunteers as service

    headers, _ = volunteers.apply("double")
    real = service._open_application
    calls = []

    def first_misses(user_id, **kwargs):
        calls.append(user_id)
        return None if len(calls) == 1 else real(user_id, **kwargs)

    monkeypatch.setattr(service, "_open_application", first_misses)
    response = client.post("/api/v1/volunteers", json=volunteers.application(), headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "application_exists"
