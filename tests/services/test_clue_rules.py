"""The clue's state machine and triage rules, called on the service against the real database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.fixtures.people import actor_of
from yijing.errors import Forbidden, InvalidInput
from yijing.extensions import db
from yijing.models import Clue, ClueEvent, ClueStatus, PointsEntry
from yijing.models.clue import STATUS_LABELS
from yijing.services import clues as clue_service
from yijing.states import IllegalTransition

KUNDULUN = {"lat": 40.6523, "lng": 109.8331, "address": "沼潭社区 3 号楼"}


@pytest.fixture
def clue(resident):
    reporter = resident("reporter")
    submitted = clue_service.submit(
        reporter.id, category="suspicious_person", description="楼道里有人反复撬门锁", **KUNDULUN
    )
    return db.session.get(Clue, submitted.clue_id)


def _events(clue_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(ClueEvent).where(ClueEvent.clue_id == clue_id))


def test_a_move_the_machine_refuses_is_a_409_and_changes_nothing(principal, clue):
    desk = principal("desk-cr1")
    events_before = _events(clue.id)
    with pytest.raises(IllegalTransition) as refused:
        clue_service.transition(desk, actor_of(desk), clue.id, ClueStatus.INVESTIGATING, valid=True)
    error = refused.value
    assert (error.status, error.code) == (409, "illegal_transition")
    submitted, investigating = STATUS_LABELS[ClueStatus.SUBMITTED], STATUS_LABELS[ClueStatus.INVESTIGATING]
    assert error.message == f"线索当前为「{submitted}」，不能改为「{investigating}」"
    db.session.expire_all()
    assert db.session.get(Clue, clue.id).status == ClueStatus.SUBMITTED
    assert _events(clue.id) == events_before


def test_a_closed_clue_moves_nowhere(principal, clue):
    desk = principal("desk-cr2")
    closed = clue_service.transition(desk, actor_of(desk), clue.id, ClueStatus.REJECTED)
    assert closed.status == ClueStatus.REJECTED and closed.closed_at is not None
    assert closed.allowed_transitions == []
    for target in (ClueStatus.ACCEPTED, ClueStatus.RESOLVED, ClueStatus.SUBMITTED):
        with pytest.raises(IllegalTransition):
            clue_service.transition(desk, actor_of(desk), clue.id, target, valid=True)


def test_resolving_needs_a_verdict_and_a_valid_clue_earns_points_once(principal, clue):
    desk = principal("desk-cr3")
    accepted = clue_service.transition(desk, actor_of(desk), clue.id, ClueStatus.ACCEPTED)
    assert ClueStatus.RESOLVED in accepted.allowed_transitions
    with pytest.raises(InvalidInput):
        clue_service.transition(desk, actor_of(desk), clue.id, ClueStatus.RESOLVED)
    resolved = clue_service.transition(desk, actor_of(desk), clue.id, ClueStatus.RESOLVED, valid=True)
    assert (resolved.status, resolved.valid) == (ClueStatus.RESOLVED, True)
    moves = [e.to_status for e in resolved.events if e.to_status]
    assert moves[-2:] == [ClueStatus.ACCEPTED, ClueStatus.RESOLVED]
    awarded = db.session.scalars(select(PointsEntry).where(PointsEntry.user_id == clue.reporter_id)).all()
    assert [e.reason for e in awarded] == ["clue_valid"]
    with pytest.raises(IllegalTransition):  # resolving twice awards nothing more
        clue_service.transition(desk, actor_of(desk), clue.id, ClueStatus.RESOLVED, valid=True)
    assert db.session.scalar(select(func.count()).where(PointsEntry.user_id == clue.reporter_id)) == 1


def test_staff_of_another_district_may_not_move_it(principal, clue):
    elsewhere = principal("desk-cr4", "desk", "150204")
    with pytest.raises(Forbidden):
        clue_service.transition(elsewhere, actor_of(elsewhere), clue.id, ClueStatus.ACCEPTED)
    db.session.expire_all()
    assert db.session.get(Clue, clue.id).status == ClueStatus.SUBMITTED
