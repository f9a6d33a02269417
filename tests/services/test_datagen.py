"""The generated demo and bench data is honest: liaisons are desk staff, approved volunteers have
their numbers, past tasks end as the close job ends them (a realistic share unserved), closed
clues carry their closing day and a verdict only when resolved."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select


def test_generated_data_looks_like_what_the_service_records(app, tree):
    from yijing.demo import datagen
    from yijing.extensions import db
    from yijing.models import (
        Assignment,
        Clue,
        Jurisdiction,
        RoleGrant,
        Task,
        Team,
        User,
        Volunteer,
    )

    with app.app_context():
        result = datagen.generate(300, 2500, 300, days=30, seed=8)
        now = datetime.now(UTC)

        # Liaisons: desk staff whose grant covers the community; never a volunteer.
        teams = db.session.scalars(select(Team)).all()
        liaisons = [t for t in teams if t.liaison_user_id is not None]
        assert liaisons and len(liaisons) < len(teams) + 1
        volunteer_users = set(db.session.scalars(select(Volunteer.user_id)))
        paths = dict(db.session.execute(select(Jurisdiction.id, Jurisdiction.path)).all())
        for team in liaisons:
            user = db.session.get(User, team.liaison_user_id)
            assert user.kind == "staff" and user.id not in volunteer_users
            grants = db.session.scalars(select(RoleGrant).where(RoleGrant.user_id == user.id)).all()
            assert any(
                g.role == "desk" and paths[team.jurisdiction_id].startswith(paths[g.jurisdiction_id])
                for g in grants
            )

        # Approved volunteers have their number and their approval time.
        volunteers = db.session.scalars(select(Volunteer)).all()
        approved = [v for v in volunteers if v.status == "approved"]
        assert approved and all(v.volunteer_number and v.approved_at for v in approved)
        numbers = [v.volunteer_number for v in volunteers if v.volunteer_number]
        assert len(numbers) == len(set(numbers)) and all(n.startswith("BTYJ-") for n in numbers)
        assert all(v.approved_at is None for v in volunteers if v.status in ("pending", "rejected"))

        # Past tasks end as the close job ends them; about one in five nobody served.
        served = dict(
            db.session.execute(
                select(Assignment.task_id, func.count())
                .where(Assignment.status == "completed")
                .group_by(Assignment.task_id)
            ).all()
        )
        tasks = db.session.scalars(select(Task)).all()
        past = [t for t in tasks if t.ends_at < now - timedelta(minutes=30) and t.status != "cancelled"]
        assert result.tasks == len(tasks) and past
        assert {t.status for t in past} <= {"completed", "unserved"}
        assert all((t.status == "completed") == (t.id in served) and t.closed_at for t in past)
        share = Counter(t.status for t in past)["unserved"] / len(past)
        assert 0.1 < share < 0.35, share

        # Closed clues: their closing time; a verdict on validity only when resolved.
        clues = db.session.scalars(select(Clue)).all()
        for clue in clues:
            closed = clue.status not in ("submitted", "accepted", "investigating")
            assert (clue.closed_at is not None) == closed
            assert (clue.valid is not None) == (clue.status == "resolved")
            assert clue.reporter_id is not None or clue.reporter_enc is not None
        db.session.remove()
