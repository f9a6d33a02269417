"""One ring of a nearby dispatch, sent by calling :func:`yijing.services.dispatch.advance`
directly: whom it invites, what it records, and that sending the same ring again does nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

PLACE = (40.6525, 109.8330)
METRES_PER_DEGREE = 111_195.0


@pytest.fixture
def desk(staff):
    return staff("desk-city", "desk", "150200")


def _on_duty(volunteers, desk, tree, name, metres, **overrides) -> int:
    headers, body = volunteers.approved(desk, name, jurisdiction_id=tree["150203-01-01"], **overrides)
    volunteers.on_duty(headers, PLACE[0] + metres / METRES_PER_DEGREE, PLACE[1])
    return body["id"]


def test_one_ring_invites_the_eligible_within_its_radius_once(app, tasks, volunteers, desk, tree):
    from yijing.extensions import db
    from yijing.models import Assignment, DispatchRing, Task
    from yijing.services import dispatch

    near = _on_duty(volunteers, desk, tree, "near", 300)
    close_other_kind = _on_duty(volunteers, desk, tree, "guard", 500, category="security_guard")
    beyond = _on_duty(volunteers, desk, tree, "beyond", 2000)
    # Publishing only queues the first ring; the test sends it itself.
    task_id = tasks.create(
        desk, dispatch_mode="nearby", kind="missing_person", slots=2, categories=["courier"]
    )["id"]

    with app.app_context():
        assert dispatch.ring_radii()[0] == 1000
        assert dispatch.advance(task_id, 0) == 1
        task = db.session.get(Task, task_id)
        assert task.dispatch_ring == 1 and task.dispatch_next_at is not None
        ring = db.session.scalars(select(DispatchRing).where(DispatchRing.task_id == task_id)).one()
        assert (ring.ring_no, ring.radius_m, ring.found, ring.invited, ring.slots_open) == (1, 1000, 1, 1, 2)
        invited = db.session.scalars(select(Assignment).where(Assignment.task_id == task_id)).all()
        assert [(a.volunteer_id, a.status, a.source, a.ring_id) for a in invited] == [
            (near, "invited", "nearby", ring.id)
        ]
        assert invited[0].distance_m == pytest.approx(300, abs=3)
        assert close_other_kind not in {a.volunteer_id for a in invited}  # wrong category
        assert beyond not in {a.volunteer_id for a in invited}  # outside the first ring

        # The same ring again (a duplicate job, the sweep): the compare-and-set stops it.
        assert dispatch.advance(task_id, 0) == 0
        assert db.session.scalar(select(DispatchRing.id).where(DispatchRing.ring_no == 2)) is None

        view = dispatch.dispatch_view(_principal("desk-city"), task_id)
        assert isinstance(view, dispatch.DispatchView)
        assert (view.ring, [r.ring_no for r in view.rings]) == (1, [1])
        assert [i.volunteer_id for i in view.rings[0].invitations] == [near]
        db.session.remove()


def test_a_ring_that_finds_nobody_widens_at_once(app, tasks, volunteers, desk, tree):
    from yijing.extensions import db
    from yijing.models import DispatchRing
    from yijing.services import dispatch

    mid = _on_duty(volunteers, desk, tree, "mid", 2000)
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]

    with app.app_context():
        assert dispatch.advance(task_id, 0) == 1
        rings = db.session.execute(
            select(DispatchRing.ring_no, DispatchRing.radius_m, DispatchRing.found, DispatchRing.invited)
            .where(DispatchRing.task_id == task_id)
            .order_by(DispatchRing.ring_no)
        ).all()
        assert [tuple(r) for r in rings] == [(1, 1000, 0, 0), (2, 3000, 1, 1)]
        assert (
            dispatch.dispatch_view(_principal("desk-city"), task_id).rings[1].invitations[0].volunteer_id
            == mid
        )
        db.session.remove()


def test_each_invitation_and_its_message_name_the_same_place(app, tasks, volunteers, desk, tree):
    """A ring of several invitations: on PostgreSQL the ring's row and its invitations are one
    statement (the ids come back by volunteer) and the messages one more; elsewhere the ring, the
    invitations, the messages. Either way each volunteer's message names their own invitation,
    nearest first, with the ring's id on every invitation."""
    from sqlalchemy import event

    from yijing.extensions import db
    from yijing.models import Assignment, DispatchRing, Notification
    from yijing.services import dispatch

    metres = {"d1": 200, "d2": 450, "d3": 700}
    ids = {name: _on_duty(volunteers, desk, tree, name, m) for name, m in metres.items()}
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=2)["id"]
    statements: list[str] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", remember)
        try:
            assert dispatch.advance(task_id, 0) == 3
        finally:
            event.remove(db.engine, "before_cursor_execute", remember)
        ring = db.session.scalars(select(DispatchRing).where(DispatchRing.task_id == task_id)).one()
        invited = db.session.scalars(
            select(Assignment).where(Assignment.task_id == task_id).order_by(Assignment.distance_m)
        ).all()
        assert [a.volunteer_id for a in invited] == [ids["d1"], ids["d2"], ids["d3"]]
        assert {a.ring_id for a in invited} == {ring.id} and ring.invited == 3
        for a in invited:
            message = db.session.scalars(
                select(Notification).where(
                    Notification.user_id == a.user_id, Notification.kind == "task.invitation"
                )
            ).one()
            assert message.dedupe_key == f"task:{task_id}:assignment:{a.id}:invite:1"
            assert message.data["assignment_id"] == a.id
            assert message.data["distance_m"] == a.distance_m
        inserts = [s for s in statements if "INSERT" in s.upper()]
        if db.engine.dialect.name == "postgresql":
            assert len(inserts) == 2
            assert "dispatch_rings" in inserts[0] and "assignments" in inserts[0]
            assert "notifications" in inserts[1] and "unnest" in inserts[1]
        db.session.remove()


def _principal(username: str):
    from yijing.extensions import db
    from yijing.models import User
    from yijing.services import auth

    return auth.load_principal(db.session.scalar(select(User.id).where(User.username == username)))
