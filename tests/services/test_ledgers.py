"""The outbox, the points ledger and the audit log: written in the caller's transaction, once."""

from __future__ import annotations

from sqlalchemy import func, select

from yijing.actor import Actor
from yijing.extensions import db
from yijing.models import AuditEntry, Notification, PointsEntry, User
from yijing.services import audit, outbox, points


def make_user(openid: str = "o-test") -> int:
    user = User(kind="wechat", openid=openid, display_name="")
    db.session.add(user)
    db.session.commit()
    return user.id


def test_outbox_row_once_per_dedupe_key(app_ctx):
    user_id = make_user()
    assert outbox.notify(user_id, "clue.status_changed", title="线索已受理", dedupe_key="clue:1:event:1")
    assert not outbox.notify(user_id, "clue.status_changed", title="线索已受理", dedupe_key="clue:1:event:1")
    db.session.commit()
    rows = db.session.scalars(select(Notification)).all()
    assert len(rows) == 1
    assert rows[0].status == "pending" and rows[0].attempts == 0


def test_outbox_row_rolls_back_with_the_change(app_ctx):
    user_id = make_user()
    outbox.notify(user_id, "alert", title="x", dedupe_key="k")
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_points_once_per_source_and_balance(app_ctx):
    user_id = make_user()
    assert points.award(user_id, 10, reason="task_completed", source_key="task:1:assignment:1")
    assert not points.award(user_id, 10, reason="task_completed", source_key="task:1:assignment:1")
    assert points.award(user_id, 5, reason="clue_valid", source_key="clue:3:valid")
    db.session.commit()
    assert points.balance(user_id) == 15
    assert db.session.scalar(select(func.count()).select_from(PointsEntry)) == 2
    assert points.balance(make_user("o-other")) == 0


def test_audit_entry_carries_actor_and_address(app_ctx):
    user_id = make_user()
    audit.record(Actor(user_id, "10.0.0.1", "req-1"), "volunteer.pii_read", "volunteer", 7, reason="核实身份")
    db.session.commit()
    entry = db.session.scalar(select(AuditEntry))
    assert (entry.actor_id, entry.action, entry.target_type, entry.target_id) == (
        user_id,
        "volunteer.pii_read",
        "volunteer",
        "7",
    )
    assert (entry.reason, entry.ip, entry.request_id) == ("核实身份", "10.0.0.1", "req-1")
    assert entry.created_at.tzinfo is not None
