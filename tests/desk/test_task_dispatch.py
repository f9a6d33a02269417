"""Nearby (urgent) dispatch: rings of the nearest on-duty volunteers, widening on their own,
first to accept fill the slots, the desk's view of each ring; and assigned invitations."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

PLACE = (40.6525, 109.8330)
METRES_PER_DEGREE = 111_195.0


def _north(metres: float) -> tuple[float, float]:
    return PLACE[0] + metres / METRES_PER_DEGREE, PLACE[1]


@pytest.fixture
def desk(staff):
    return staff("desk-city", "desk", "150200")


def _on_duty(volunteers, desk, tree, name, metres, **overrides):
    headers, body = volunteers.approved(desk, name, jurisdiction_id=tree["150203-01-01"], **overrides)
    volunteers.on_duty(headers, *_north(metres))
    return {"headers": headers, "id": body["id"]}


def _nearby(tasks, desk, **overrides):
    body = {"dispatch_mode": "nearby", "kind": "missing_person", "title": "寻找走失老人", **overrides}
    return tasks.create(desk, **body)


def _view(client, desk, task_id):
    response = client.get(f"/api/v1/desk/tasks/{task_id}/dispatch", headers=desk)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _invited(view, ring_no):
    ring = next(r for r in view["rings"] if r["ring_no"] == ring_no)
    return [i["volunteer_id"] for i in ring["invitations"]]


def test_too_few_in_the_first_ring_widens_to_the_next_on_its_own(app, client, tasks, volunteers, desk, tree):
    near = _on_duty(volunteers, desk, tree, "near", 300)
    mid1 = _on_duty(volunteers, desk, tree, "mid1", 2000)
    mid2 = _on_duty(volunteers, desk, tree, "mid2", 2500)
    far = _on_duty(volunteers, desk, tree, "far", 4000)
    volunteers.approved(desk, "off-duty", jurisdiction_id=tree["150203-01-01"])  # not on duty: never invited

    task = _nearby(tasks, desk, slots=3)
    assert task["status"] == "published" and task["dispatch_next_at"] is not None
    tasks.run_jobs("dispatch")  # the first ring goes out from the dispatch queue

    view = _view(client, desk, task["id"])
    assert [(r["ring_no"], r["radius_m"], r["invited"]) for r in view["rings"]] == [(1, 1000, 1)]
    assert _invited(view, 1) == [near["id"]]
    assert view["radii_m"] == [1000, 3000, 5000, 10000]
    invitation = view["rings"][0]["invitations"][0]
    assert invitation["status"] == "invited" and invitation["distance_m"] == pytest.approx(300, abs=3)

    # The next ring is a delayed job due DISPATCH_RING_TIMEOUT_SECONDS (120 s) later.
    scheduled = tasks.scheduled("dispatch")
    job_id = f"yjtest-task-dispatch-{task['id']}-2"
    assert list(scheduled) == [job_id]
    sent_at = datetime.fromisoformat(view["rings"][0]["sent_at"])
    assert scheduled[job_id] == pytest.approx(sent_at + timedelta(seconds=120), abs=timedelta(seconds=2))
    assert datetime.fromisoformat(view["next_ring_at"]) == pytest.approx(
        scheduled[job_id].replace(tzinfo=UTC), abs=timedelta(seconds=1)
    )

    tasks.run_jobs("dispatch")  # not due yet: nothing happens
    assert len(_view(client, desk, task["id"])["rings"]) == 1

    tasks.make_due("dispatch", job_id)  # two minutes pass with the slots still open …
    tasks.run_jobs("dispatch")  # … and the scheduler runs the job it had scheduled
    view = _view(client, desk, task["id"])
    assert [(r["ring_no"], r["radius_m"], r["invited"]) for r in view["rings"]] == [
        (1, 1000, 1),
        (2, 3000, 2),
    ]
    assert _invited(view, 2) == [mid1["id"], mid2["id"]]
    assert far["id"] not in _invited(view, 2)
    assert list(tasks.scheduled("dispatch")) == [f"yjtest-task-dispatch-{task['id']}-3"]

    # Invitations reach the phones through the outbox, and the invitees see the task.
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import Notification

        kinds = db.session.scalars(
            select(Notification.kind).where(Notification.kind == "task.invitation")
        ).all()
        assert len(kinds) == 3
        db.session.remove()
    mine = client.get("/api/v1/tasks/mine", headers=mid1["headers"]).get_json()["items"]
    assert [(i["task"]["id"], i["status"], i["source"]) for i in mine] == [(task["id"], "invited", "nearby")]


def test_first_to_accept_fill_the_slots_later_ones_are_told_it_is_full(
    app, client, tasks, volunteers, desk, tree
):
    first = _on_duty(volunteers, desk, tree, "first", 200)
    second = _on_duty(volunteers, desk, tree, "second", 400)
    task = _nearby(tasks, desk, slots=1)
    tasks.run_jobs("dispatch")
    assert sorted(_invited(_view(client, desk, task["id"]), 1)) == sorted([first["id"], second["id"]])

    accepted = tasks.accept(first["headers"], task["id"])
    assert accepted["status"] == "accepted" and accepted["source"] == "nearby"
    late = tasks.post(second["headers"], task["id"], "accept")
    assert late.status_code == 409
    assert late.get_json()["error"]["code"] == "task_full"
    assert "已满员" in late.get_json()["error"]["message"]

    view = _view(client, desk, task["id"])
    assert view["filled"] == 1 and view["next_ring_at"] is None
    answers = {i["volunteer_id"]: i for i in view["rings"][0]["invitations"]}
    assert answers[first["id"]]["status"] == "accepted"
    assert (
        answers[first["id"]]["response_seconds"] is not None and answers[first["id"]]["response_seconds"] >= 0
    )
    assert answers[second["id"]]["status"] == "invited" and answers[second["id"]]["response_seconds"] is None

    # The one still waiting was told the task is full, once.
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import Notification

        filled = db.session.scalars(select(Notification).where(Notification.kind == "task.filled")).all()
        assert len(filled) == 1 and "已满" in filled[0].body
        db.session.remove()

    # The ring-2 job still runs when due, and sends nothing: the task is full.
    tasks.make_due("dispatch", f"yjtest-task-dispatch-{task['id']}-2")
    tasks.run_jobs("dispatch")
    assert len(_view(client, desk, task["id"])["rings"]) == 1

    # A withdrawal reopens the slot and the dispatch goes on.
    third = _on_duty(volunteers, desk, tree, "third", 2000)
    assert tasks.post(first["headers"], task["id"], "withdraw", {"reason": "车坏了"}).status_code == 200
    tasks.run_jobs("dispatch")
    view = _view(client, desk, task["id"])
    assert view["filled"] == 0 and _invited(view, 2) == [third["id"]]
    assert (
        tasks.accept(second["headers"], task["id"])["status"] == "accepted"
    )  # the earlier invitee may still come


def test_a_lost_job_does_not_stall_the_dispatch(app, client, tasks, volunteers, desk, tree):
    near = _on_duty(volunteers, desk, tree, "near", 300)
    mid = _on_duty(volunteers, desk, tree, "mid", 2000)
    task = _nearby(tasks, desk, slots=2)
    tasks.run_jobs("dispatch")
    assert _invited(_view(client, desk, task["id"]), 1) == [near["id"]]

    with app.app_context():  # Redis loses the delayed job
        from rq.registry import ScheduledJobRegistry

        from yijing import jobs

        ScheduledJobRegistry(queue=jobs.get_queue(jobs.DISPATCH)).remove(
            f"yjtest-task-dispatch-{task['id']}-2"
        )
    assert tasks.scheduled("dispatch") == {}
    tasks.set_rows("Task", task["id"], dispatch_next_at=datetime.now(UTC) - timedelta(seconds=1))

    from workers import tasks as task_jobs

    with app.app_context():
        assert task_jobs.sweep_dispatches() == 1  # the periodic sweep sends the ring that was due
        assert task_jobs.sweep_dispatches() == 0
        assert task_jobs.advance_dispatch(task["id"], 1) == 0  # a late duplicate of the lost job: no-op
    view = _view(client, desk, task["id"])
    assert [r["ring_no"] for r in view["rings"]] == [1, 2] and _invited(view, 2) == [mid["id"]]


def test_an_empty_ring_widens_at_once_up_to_the_largest_radius(client, tasks, volunteers, desk, tree):
    far = _on_duty(volunteers, desk, tree, "far", 4000)
    task = _nearby(tasks, desk, slots=1)
    tasks.run_jobs("dispatch")
    view = _view(client, desk, task["id"])
    assert [(r["ring_no"], r["invited"]) for r in view["rings"]] == [(1, 0), (2, 0), (3, 1)]
    assert _invited(view, 3) == [far["id"]]

    lonely = _nearby(tasks, desk, slots=1, lat=41.5, lng=110.5)  # nobody within 10 km
    tasks.run_jobs("dispatch")
    view = _view(client, desk, lonely["id"])
    assert [r["radius_m"] for r in view["rings"]] == [1000, 3000, 5000, 10000]
    assert view["exhausted_at"] is not None and view["next_ring_at"] is None


def test_ranking_weighs_distance_by_the_no_show_record(
    app, client, tasks, volunteers, desk, tree, monkeypatch
):
    unreliable = _on_duty(volunteers, desk, tree, "unreliable", 400)
    reliable = _on_duty(volunteers, desk, tree, "reliable", 600)
    tasks.past_record(unreliable["id"], ["no_show"] * 3)  # three past patrols never shown up for
    config = app.config["YIJING"]
    monkeypatch.setitem(app.config, "YIJING", dataclasses.replace(config, dispatch_invites_per_slot=1))

    task = _nearby(tasks, desk, slots=1)
    tasks.run_jobs("dispatch")
    # 400 m × (1 + 2 × 3/5) = 880 > 600 m × 1: the reliable volunteer is invited first.
    assert _invited(_view(client, desk, task["id"]), 1) == [reliable["id"]]


def test_category_and_skills_filter_the_rings(client, tasks, volunteers, desk, tree):
    _on_duty(volunteers, desk, tree, "courier", 200, category="courier", skills=[])
    medic = _on_duty(volunteers, desk, tree, "medic", 300, category="security_guard", skills=["first_aid"])
    task = _nearby(tasks, desk, slots=1, skills=["first_aid"])
    tasks.run_jobs("dispatch")
    assert _invited(_view(client, desk, task["id"]), 1) == [medic["id"]]
    guards = _nearby(tasks, desk, slots=1, categories=["taxi_driver"], title="交通疏导", kind="traffic")
    tasks.run_jobs("dispatch")
    assert all(r["invited"] == 0 for r in _view(client, desk, guards["id"])["rings"])


def test_assigned_invitations_accept_decline_and_expire(app, client, tasks, volunteers, desk):
    one, one_body = volunteers.approved(desk, "one")
    two, two_body = volunteers.approved(desk, "two")
    three, three_body = volunteers.approved(desk, "three")
    one_id = one_body["id"]
    task = tasks.create(desk, dispatch_mode="assigned", slots=2, title="校门护校安园", kind="campus_guard")
    deadline = datetime.now(UTC) + timedelta(minutes=30)
    response = client.post(
        f"/api/v1/desk/tasks/{task['id']}/invitations",
        json={
            "volunteer_ids": [one_id, two_body["id"], three_body["id"]],
            "expires_at": deadline.isoformat(),
        },
        headers=desk,
    )
    assert response.status_code == 200, response.get_json()
    invitations = response.get_json()
    assert [i["status"] for i in invitations] == ["invited"] * 3
    assert datetime.fromisoformat(invitations[0]["invite_expires_at"]) == pytest.approx(
        deadline, abs=timedelta(seconds=1)
    )

    assert tasks.accept(one, task["id"])["status"] == "accepted"
    declined = tasks.post(two, task["id"], "decline", {"reason": "当天值班"})
    assert declined.status_code == 200 and declined.get_json()["status"] == "declined"
    assert tasks.post(two, task["id"], "accept").get_json()["error"]["code"] == "not_invited"

    # Nobody answers for three: the deadline passes and the job marks it expired.
    assignments = client.get(f"/api/v1/desk/tasks/{task['id']}/assignments", headers=desk).get_json()["items"]
    pending = next(a for a in assignments if a["volunteer"]["id"] == three_body["id"])
    tasks.set_rows("Assignment", pending["id"], invite_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    from workers import tasks as task_jobs

    # A late accept answers the same before and after the expiry job has marked the invitation.
    late = tasks.post(three, task["id"], "accept")
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "invitation_expired"
    with app.app_context():
        assert task_jobs.expire_invitations() == 1
    after_job = tasks.post(three, task["id"], "accept")
    assert after_job.status_code == 409 and after_job.get_json()["error"] == late.get_json()["error"]

    assignments = client.get(f"/api/v1/desk/tasks/{task['id']}/assignments", headers=desk).get_json()["items"]
    by_volunteer = {a["volunteer"]["id"]: a for a in assignments}
    assert by_volunteer[one_id]["status"] == "accepted" and by_volunteer[one_id]["response_seconds"] >= 0
    assert by_volunteer[two_body["id"]]["status"] == "declined"
    assert by_volunteer[two_body["id"]]["decline_reason"] == "当天值班"
    assert by_volunteer[three_body["id"]]["status"] == "expired"
    assert "*" in by_volunteer[one_id]["volunteer"]["name_masked"]
    board = client.get(f"/api/v1/desk/tasks/{task['id']}", headers=desk).get_json()
    assert board["counts"]["expired"] == 1 and board["counts"]["declined"] == 1 and board["filled"] == 1

    # Invited again after expiring: a new invitation (and a new outbox row).
    again = client.post(
        f"/api/v1/desk/tasks/{task['id']}/invitations",
        json={"volunteer_ids": [three_body["id"]]},
        headers=desk,
    )
    assert again.status_code == 200 and again.get_json()[0]["status"] == "invited"
    assert tasks.accept(three, task["id"])["status"] == "accepted"
    with app.app_context():
        from yijing.extensions import db
        from yijing.models import Notification

        rows = db.session.scalars(select(Notification).where(Notification.kind == "task.invitation")).all()
        assert len(rows) == 4 and len({r.dedupe_key for r in rows}) == 4
        db.session.remove()


def test_invitations_only_for_approved_volunteers_of_my_jurisdiction(client, tasks, volunteers, staff, tree):
    city = staff("desk-city", "desk", "150200")
    kdl = staff("desk-kdl", "desk", "150203")
    _, qs = volunteers.approved(city, "qs", jurisdiction_id=tree["150204-01-01"])
    _, pending = volunteers.apply("pending")
    task = tasks.create(kdl, dispatch_mode="assigned")
    response = client.post(
        f"/api/v1/desk/tasks/{task['id']}/invitations",
        json={"volunteer_ids": [qs["id"], pending["id"], 99999]},
        headers=kdl,
    )
    assert response.status_code == 422
    problems = response.get_json()["error"]["fields"]["volunteer_ids"]
    assert any("不在您的辖区" in p for p in problems)
    assert any("审核通过" in p for p in problems)
    assert any("不存在" in p for p in problems)
