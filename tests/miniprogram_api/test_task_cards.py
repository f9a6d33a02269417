"""The task list's cards kept rendered in the task index (``task_index.card_json``, served by
``GET /api/v1/tasks``) are the JSON ``TaskCardSchema`` dumps for the same tasks: the answer from the
index equals the database's answer (which the blueprint's schema dumps), byte for byte once parsed,
after places are taken, after an edit, and for tasks the volunteer holds a place on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workers import tasks as task_jobs


@pytest.fixture
def desk(staff):
    return staff("desk-kdl", "desk", "150203")


@pytest.fixture
def people(volunteers, staff, tree):
    reviewer = staff("reviewer", "desk", "150200")
    made = {}
    for name in ("zt", "zt2"):
        headers, _ = volunteers.approved(
            reviewer, name, category="courier", jurisdiction_id=tree["150203-01-01"]
        )
        made[name] = headers
    return made


def _list(client, headers, **params):
    response = client.get("/api/v1/tasks", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _views(client, people) -> list[dict]:
    return [
        _list(client, headers, **params)
        for headers in people.values()
        for params in ({}, {"limit": 2}, {"lat": 40.655, "lng": 109.836})
    ]


def _from_the_database(app, client, people) -> list[dict]:
    """The same requests answered from the database (the index unmarked: the schema dumps them),
    then the index rebuilt by the repair job."""
    from yijing.extensions import redis_client
    from yijing.services import task_index

    with app.app_context():
        redis_client().delete(task_index.key_built())
    views = _views(client, people)
    with app.app_context():
        task_jobs.repair_task_index()
        assert task_index.is_built()
    return views


def _assert_index_answers_like_the_schema(app, client, people) -> list[dict]:
    from yijing.extensions import redis_client
    from yijing.services import task_index

    with app.app_context():
        assert task_index.is_built() and redis_client().hlen(task_index.key_card()) > 0
    from_index = _views(client, people)
    assert from_index == _from_the_database(app, client, people)
    return from_index


def test_the_rendered_cards_equal_the_schema_dump(app, client, tasks, desk, people):
    now = datetime.now(UTC).replace(microsecond=0)  # a whole second: isoformat without a fraction

    def at(hours: int) -> datetime:  # zt takes two places: at times that do not overlap
        return now + timedelta(hours=hours, minutes=7)

    made = [
        tasks.create(desk, title="夜间巡逻"),
        tasks.create(
            desk, title="整点开始", starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=3)
        ),
        tasks.create(desk, title="限快递员", categories=["courier"], points=25, address='北门 "东" 侧'),
        tasks.create(desk, title="较远", lat=40.655, lng=109.836, slots=2, starts_at=at(4), ends_at=at(5)),
        tasks.create(desk, title="一个名额", slots=1, starts_at=at(6), ends_at=at(7)),
    ]
    before = _assert_index_answers_like_the_schema(app, client, people)
    assert {i["id"] for i in before[0]["items"]} == {t["id"] for t in made}

    # Places taken: filled and remaining change on the card; zt holds places (my_status), one of
    # them on a task now full (off the index: its card comes from the database).
    tasks.accept(people["zt2"], made[0]["id"])
    tasks.accept(people["zt"], made[3]["id"])
    tasks.accept(people["zt"], made[4]["id"])
    after = _assert_index_answers_like_the_schema(app, client, people)
    cards = {i["id"]: i for i in after[0]["items"]}
    assert (cards[made[0]["id"]]["filled"], cards[made[0]["id"]]["remaining"]) == (1, 2)
    assert cards[made[3]["id"]]["my_status"] == "accepted"
    assert cards[made[4]["id"]]["my_status"] == "accepted" and cards[made[4]["id"]]["remaining"] == 0
    assert made[4]["id"] not in {i["id"] for i in after[3]["items"]}  # full: not for zt2

    edited = client.patch(
        f"/api/v1/desk/tasks/{made[2]['id']}",
        json={"title": "限快递员（改）", "address": "南门", "slots": 4},
        headers=desk,
    )
    assert edited.status_code == 200, edited.get_json()
    withdrawn = tasks.post(people["zt"], made[3]["id"], "withdraw", {"reason": "临时有事"})
    assert withdrawn.status_code == 200
    last = _assert_index_answers_like_the_schema(app, client, people)
    cards = {i["id"]: i for i in last[0]["items"]}
    assert (cards[made[2]["id"]]["title"], cards[made[2]["id"]]["remaining"]) == ("限快递员（改）", 4)
    assert cards[made[3]["id"]]["my_status"] == "cancelled" and cards[made[3]["id"]]["filled"] == 0
