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
