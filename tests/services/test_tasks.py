"""The rules of yijing.services.tasks called directly against the database: taking a place on a
task (full, not eligible, twice) and the state machines' refusals. Tasks and volunteers are made
through HTTP, as the desk and the phone make them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select


@pytest.fixture
def desk(staff):
    return staff("desk-kdl", "desk", "150203")


@pytest.fixture
def volunteer_users(volunteers, staff, tree):
    """User ids of approved volunteers in 沼潭社区: two couriers and a taxi driver."""
    from yijing.extensions import db
    from yijing.models import Volunteer

    reviewer = staff("reviewer", "desk", "150200")

    def make(name: str, category: str) -> int:
        _, body = volunteers.approved(
            reviewer, name, category=category, jurisdiction_id=tree["150203-01-01"], skills=[]
        )
        return db.session.get(Volunteer, body["id"]).user_id

    return make


def _assignments(task_id: int) -> int:
    from yijing.extensions import db
    from yijing.models import Assignment

    return db.session.scalar(
        select(func.count()).select_from(Assignment).where(Assignment.task_id == task_id)
    )


def test_a_full_task_refuses_with_409_task_full(app, tasks, desk, volunteer_users):
    from yijing.errors import Conflict
    from yijing.extensions import db
    from yijing.models import Task
    from yijing.services import tasks as task_service

    task_id = tasks.create(desk, slots=1)["id"]
    with app.app_context():
        first, second = volunteer_users("first", "courier"), volunteer_users("second", "courier")
        held = task_service.accept(first, task_id, lat=None, lng=None)
        assert held.status == "accepted"
        with pytest.raises(Conflict) as refused:
            task_service.accept(second, task_id, lat=None, lng=None)
        assert (refused.value.status, refused.value.code) == (409, "task_full")
        task = db.session.get(Task, task_id)
        assert (task.filled, task.slots) == (1, 1)
        assert _assignments(task_id) == 1
        db.session.remove()


def test_a_volunteer_of_another_category_is_not_eligible(app, tasks, desk, volunteer_users):
    from yijing.errors import Forbidden
    from yijing.extensions import db
    from yijing.models import Task
    from yijing.services import tasks as task_service

    task_id = tasks.create(desk, categories=["taxi_driver"])["id"]
    with app.app_context():
        courier = volunteer_users("courier", "courier")
        with pytest.raises(Forbidden) as refused:
            task_service.accept(courier, task_id, lat=None, lng=None)
        assert (refused.value.status, refused.value.code) == (403, "not_eligible")
        assert refused.value.message == "该任务仅限以下职业类别的义警：出租车司机"
        assert db.session.get(Task, task_id).filled == 0
        # The taxi driver it is meant for may take it.
        driver = volunteer_users("driver", "taxi_driver")
        assert task_service.accept(driver, task_id, lat=None, lng=None).status == "accepted"
        db.session.remove()


def test_accepting_twice_returns_the_same_place(app, tasks, desk, volunteer_users):
    from yijing.extensions import db
    from yijing.models import Task
    from yijing.services import tasks as task_service

    task_id = tasks.create(desk, slots=2)["id"]
    with app.app_context():
        user_id = volunteer_users("twice", "courier")
        first = task_service.accept(user_id, task_id, lat=None, lng=None)
        again = task_service.accept(user_id, task_id, lat=None, lng=None)
        assert again.id == first.id and again.status == "accepted"
        assert db.session.get(Task, task_id).filled == 1
        assert _assignments(task_id) == 1
        db.session.remove()


@pytest.mark.parametrize(("meanwhile", "answer"), [("accepted", 200), ("declined", 409)])
def test_an_invitation_changed_between_the_read_and_the_write_is_not_taken_twice(
    app, client, tasks, desk, volunteers, monkeypatch, meanwhile, answer
):
    """The rules read the invitation outside a transaction; the write moves it only if it is still
    as they saw it (UPDATE … WHERE status = the status read), else the slot just taken is rolled
    back and the place as it now is decides. Here the volunteer's other tap answers first: it
    accepted (the same place is the answer, counted once) or declined (409 ``bad_status``)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from yijing.extensions import db
    from yijing.models import Assignment, Task
    from yijing.services.tasks import signup

    headers, body = volunteers.approved(desk, "invitee")
    task_id = tasks.create(desk, dispatch_mode="assigned", slots=2)["id"]
    invited = client.post(
        f"/api/v1/desk/tasks/{task_id}/invitations",
        json={
            "volunteer_ids": [body["id"]],
            "expires_at": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
        },
        headers=desk,
    ).get_json()[0]
    read = signup.read_rows

    def read_then_answer_elsewhere(session, statement, params):  # type: ignore[no-untyped-def]
        rows = read(session, statement, params)
        with db.engine.begin() as other:  # the other tap, committed before this one writes
            other.execute(update(Assignment).where(Assignment.id == invited["id"]).values(status=meanwhile))
            if meanwhile == "accepted":
                other.execute(update(Task).where(Task.id == task_id).values(filled=Task.filled + 1))
        return rows

    monkeypatch.setattr(signup, "read_rows", read_then_answer_elsewhere)
    response = tasks.post(headers, task_id, "accept")
    assert response.status_code == answer
    if answer == 200:
        assert (response.get_json()["id"], response.get_json()["status"]) == (invited["id"], "accepted")
    else:
        assert response.get_json()["error"] == {
            "code": "bad_status",
            "message": "任务状态已变化，请刷新后重试",
            "fields": {},
        }
    with app.app_context():
        assert db.session.get(Task, task_id).filled == (1 if meanwhile == "accepted" else 0)
        assert db.session.get(Assignment, invited["id"]).status == meanwhile
        db.session.remove()


def test_withdrawing_gives_the_place_back_and_a_second_decline_is_refused(app, tasks, desk, volunteer_users):
    from yijing.errors import Conflict
    from yijing.extensions import db
    from yijing.models import Task
    from yijing.services import tasks as task_service

    task_id = tasks.create(desk, slots=1)["id"]
    with app.app_context():
        user_id = volunteer_users("withdrawer", "courier")
        task_service.accept(user_id, task_id, lat=None, lng=None)
        gone = task_service.withdraw(user_id, task_id, "临时有事")
        assert (gone.status, gone.cancelled_by) == ("cancelled", "volunteer")
        assert db.session.get(Task, task_id).filled == 0
        with pytest.raises(Conflict) as refused:  # only an invitation can be declined
            task_service.decline(user_id, task_id, None)
        assert refused.value.code == "bad_status"
        db.session.remove()


def test_the_task_machine_refuses_a_move_its_table_does_not_allow(app, tasks, desk):
    from yijing.extensions import db
    from yijing.models import Task
    from yijing.services import tasks as task_service
    from yijing.states import IllegalTransition

    task_id = tasks.create(desk, publish=False)["id"]
    with app.app_context():
        task = task_service.get_task(task_id)
        with pytest.raises(IllegalTransition) as refused:
            task_service.move_task(task, task_service.S.COMPLETED)  # a draft never completes
        assert (refused.value.status, refused.value.code) == (409, "illegal_transition")
        assert refused.value.message == "任务当前为「草稿」，不能改为「已完成」"
        assert db.session.get(Task, task_id).status == "draft"
        db.session.remove()


def test_a_move_another_change_won_returns_false_and_refreshes(app, tasks, desk):
    """Two changes race: the second finds the status moved on and changes nothing."""
    from sqlalchemy import update

    from yijing.extensions import db
    from yijing.models import Task
    from yijing.services import tasks as task_service

    task_id = tasks.create(desk, publish=False)["id"]
    with app.app_context():
        task = task_service.get_task(task_id)
        db.session.execute(update(Task).where(Task.id == task_id).values(status="cancelled"))
        assert task_service.move_task(task, task_service.S.PUBLISHED, expect=["draft"]) is False
        assert task.status == "cancelled"
        db.session.rollback()
        db.session.remove()


def test_the_assignment_machine_refuses_completing_without_a_check_in(app, tasks, desk, volunteer_users):
    from yijing.extensions import db
    from yijing.services import tasks as task_service
    from yijing.states import IllegalTransition

    task_id = tasks.create(desk)["id"]
    with app.app_context():
        assignment = task_service.accept(volunteer_users("early", "courier"), task_id, lat=None, lng=None)
        with pytest.raises(IllegalTransition) as refused:
            task_service.move_assignment(assignment, task_service.A.COMPLETED)
        assert refused.value.message == "报名当前为「已接受」，不能改为「已完成」"
        db.session.remove()


def test_cancelling_a_closed_task_is_refused(app, tasks, desk):
    from yijing.actor import Actor
    from yijing.errors import Conflict
    from yijing.extensions import db
    from yijing.models import User
    from yijing.services import auth
    from yijing.services import tasks as task_service

    task_id = tasks.create(desk)["id"]
    with app.app_context():
        assert task_service.close_task(task_id)  # nobody served: unserved
        assert task_service.get_task(task_id).status == "unserved"
        staff_user = db.session.scalar(select(User).where(User.username == "desk-kdl"))
        with pytest.raises(Conflict) as refused:
            task_service.cancel(auth.load_principal(staff_user.id), task_id, "天气原因", Actor.system("test"))
        assert refused.value.code == "task_closed"
        db.session.remove()
