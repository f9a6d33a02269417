"""A copy of one's personal data: what it holds, who it leaves out, and that it is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.fixtures.people import actor_of
from yijing import pii
from yijing.actor import Actor
from yijing.errors import NotFound
from yijing.extensions import db
from yijing.models import AuditEntry
from yijing.models.base import utcnow
from yijing.services import clues as clue_service
from yijing.services import personal_data
from yijing.services.auth import PHONE_CONTEXT

KUNDULUN = {"lat": 40.6523, "lng": 109.8331, "address": "沼潭社区 3 号楼"}


def test_the_copy_holds_the_phone_in_clear_and_only_the_persons_own_clues_and_notes(resident, principal):
    me, someone = resident("me"), resident("someone")
    me.phone_enc = pii.encrypt("13800001111", context=PHONE_CONTEXT)
    db.session.commit()
    mine = clue_service.submit(me.id, category="suspicious_person", description="我报的线索", **KUNDULUN)
    clue_service.submit(someone.id, category="suspicious_person", description="别人的线索", **KUNDULUN)
    desk = principal("desk-pd1")
    clue_service.transition(desk, actor_of(desk), mine.clue_id, "accepted", internal_note="民警内部备注")
    actor = Actor(user_id=me.id, ip="127.0.0.1", request_id="pd-test")

    copy = personal_data.copy_for(me.id, actor)

    assert copy.account["id"] == me.id and copy.account["phone"] == "13800001111"
    assert [c["description"] for c in copy.clues] == ["我报的线索"]
    assert "民警内部备注" not in repr(copy)  # staff notes are the police's records, not the person's data
    audited = db.session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "personal_data.copy", AuditEntry.target_id == str(me.id)
        )
    ).all()
    assert [(a.actor_id, a.request_id) for a in audited] == [(me.id, "pd-test")]


def test_a_cancelled_account_has_no_copy(resident):
    gone = resident("gone")
    gone.cancelled_at = utcnow()
    db.session.commit()
    with pytest.raises(NotFound):
        personal_data.copy_for(gone.id, Actor(user_id=gone.id))
    assert db.session.scalars(select(AuditEntry).where(AuditEntry.target_id == str(gone.id))).all() == []
