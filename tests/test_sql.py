"""Dialect-aware statements on the database under test."""

from __future__ import annotations


def test_insert_ignore_counts_the_rows_it_inserted(app_ctx, tree):
    from yijing.extensions import db
    from yijing.models import PointsEntry, User
    from yijing.sql import insert_ignore

    user = User(kind="wechat", openid="o-sql", display_name="")
    db.session.add(user)
    db.session.flush()
    row = {"user_id": user.id, "amount": 1, "reason": "test", "source_key": "k1"}
    assert insert_ignore(db.session(), PointsEntry, row) == 1
    assert insert_ignore(db.session(), PointsEntry, row) == 0
    assert insert_ignore(db.session(), PointsEntry, [row, {**row, "source_key": "k2"}]) == 1
    db.session.rollback()
