"""`flask yijing demo-activity`: a month of activity that every page of the desk console can show."""

from __future__ import annotations

from sqlalchemy import func, select


def test_demo_activity_fills_every_page_once(app, client):
    from yijing.extensions import db
    from yijing.models import Clue, Post, Volunteer
    from yijing.models.feed import Comment, CommentStatus, PostStatus
    from yijing.models.message import Message
    from yijing.models.volunteer import VolunteerStatus

    runner = app.test_cli_runner()
    assert runner.invoke(args=["yijing", "seed-demo"]).exit_code == 0
    first = runner.invoke(args=["yijing", "demo-activity"])
    assert first.exit_code == 0, first.output
    with app.app_context():
        count = lambda *where: db.session.scalar(select(func.count()).select_from(where[0]).where(*where[1:]))  # noqa: E731
        assert count(Volunteer, Volunteer.status == VolunteerStatus.PENDING) > 0
        assert count(Clue, Clue.photo_count > 0) == 5
        assert count(Comment, Comment.status == CommentStatus.REVIEW) == 3
        assert count(Post, Post.status == PostStatus.SCHEDULED) == 1
        assert count(Message) == 3
        volunteers = count(Volunteer)
        db.session.remove()

    login = client.post(
        "/api/v1/desk/auth/login", json={"username": "desk-kdl", "password": "demo-desk-2026"}
    )
    headers = {"Authorization": f"Bearer {login.get_json()['token']}"}
    on_duty = client.get("/api/v1/desk/volunteers/on-duty", headers=headers).get_json()
    assert on_duty["items"], "volunteers on duty around the district"
    summary = client.get("/api/v1/desk/reports/summary", headers=headers).get_json()
    assert summary["clues"]["reported"] > 0

    again = runner.invoke(args=["yijing", "demo-activity"])
    assert "nothing added" in again.output
    with app.app_context():
        assert db.session.scalar(select(func.count(Volunteer.id))) == volunteers
        db.session.remove()
