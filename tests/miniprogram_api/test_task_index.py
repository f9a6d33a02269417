"""The Redis index of open tasks stays in line with the database: a published task is listed,
a full, cancelled or closed one is not, an edit of its place moves it, a series' occurrences
appear; when Redis loses the index the list answers the same from the database, and the repair
job rebuilds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workers import tasks as task_jobs

PLACE = (40.6525, 109.8330)  # 沼潭社区北门
FAR_PLACE = (40.70, 109.92)  # about 8 km away, in 青山区


@pytest.fixture
def desk(staff):
    return staff("desk-kdl", "desk", "150203")


@pytest.fixture
def city_desk(staff):
    return staff("desk-city", "desk", "150200")


@pytest.fixture
def people(volunteers, staff, tree):
    """zt and zt2 in 沼潭社区; xf in 青山区's 先锋社区, about 6 km away."""
    reviewer = staff("reviewer", "desk", "150200")
    made = {}
    for name, key in [("zt", "150203-01-01"), ("zt2", "150203-01-01"), ("xf", "150204-01-01")]:
        headers, _ = volunteers.approved(reviewer, name, category="courier", jurisdiction_id=tree[key])
        made[name] = headers
    return made


def _list(client, headers, **params):
    response = client.get("/api/v1/tasks", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _ids(client, headers, **params) -> list[int]:
    return [item["id"] for item in _list(client, headers, **params)["items"]]


def _indexed(app) -> set[int]:
    from yijing.extensions import redis_client
    from yijing.services import task_index

    with app.app_context():
        return {int(m) for m in redis_client().hkeys(task_index.key_info())}


def _built(app) -> bool:
    from yijing.services import task_index

    with app.app_context():
        return task_index.is_built()


def test_publish_fill_withdraw_cancel_and_close_keep_the_index_in_line(app, client, tasks, desk, people):
    draft = tasks.create(desk, title="草稿", publish=False)
    assert _indexed(app) == set() and _ids(client, people["zt"]) == []

    published = client.post(f"/api/v1/desk/tasks/{draft['id']}/publish", headers=desk)
    assert published.status_code == 200
    one = tasks.create(desk, title="一个名额", slots=1)
    assert _indexed(app) == {draft["id"], one["id"]}
    assert set(_ids(client, people["zt"])) == {draft["id"], one["id"]}

    tasks.accept(people["zt"], one["id"])  # the last place: off the index …
    assert _indexed(app) == {draft["id"]}
    assert _ids(client, people["zt2"]) == [draft["id"]]
    assert set(_ids(client, people["zt"])) == {draft["id"], one["id"]}  # … still listed for its holder

    withdrawn = tasks.post(people["zt"], one["id"], "withdraw", {"reason": "临时有事"})
    assert withdrawn.status_code == 200
    assert _indexed(app) == {draft["id"], one["id"]}
    assert set(_ids(client, people["zt2"])) == {draft["id"], one["id"]}

    cancelled = client.post(
        f"/api/v1/desk/tasks/{one['id']}/cancel", json={"reason": "天气原因"}, headers=desk
    )
    assert cancelled.status_code == 200
    assert _indexed(app) == {draft["id"]}
    assert _ids(client, people["zt2"]) == [draft["id"]]

    now = datetime.now(UTC)
    tasks.set_rows("Task", draft["id"], starts_at=now - timedelta(hours=3), ends_at=now - timedelta(hours=1))
    with app.app_context():  # its window is over: the job closes it
        assert task_jobs.close_finished_tasks() == 1
    assert _indexed(app) == set()
    assert _ids(client, people["zt2"]) == []


def test_editing_the_place_moves_the_task_and_slots_bring_it_back(app, client, tasks, desk, people):
    task = tasks.create(desk, title="活动安保", slots=1)
    assert _ids(client, people["zt"]) == [task["id"]]
    assert _ids(client, people["xf"]) == []
    assert _ids(client, people["xf"], lat=PLACE[0], lng=PLACE[1]) == [task["id"]]  # the phone is there

    moved = client.patch(
        f"/api/v1/desk/tasks/{task['id']}", json={"lat": FAR_PLACE[0], "lng": FAR_PLACE[1]}, headers=desk
    )
    assert moved.status_code == 200, moved.get_json()
    # Still seen in its own community (its jurisdiction), no longer by a phone at the old place.
    assert _ids(client, people["xf"], lat=PLACE[0], lng=PLACE[1]) == []
    assert _ids(client, people["xf"], lat=FAR_PLACE[0], lng=FAR_PLACE[1]) == [task["id"]]
    assert _ids(client, people["zt"]) == [task["id"]]

    tasks.accept(people["zt"], task["id"])
    assert _ids(client, people["zt2"]) == []
    more = client.patch(f"/api/v1/desk/tasks/{task['id']}", json={"slots": 2}, headers=desk)
    assert more.status_code == 200, more.get_json()
    assert _ids(client, people["zt2"]) == [task["id"]]


def test_a_series_occurrences_are_listed(app, client, tasks, desk, people):
    body = tasks.body(title="早间护校", kind="campus_guard", slots=2)
    for key in ("starts_at", "ends_at", "dispatch_mode", "publish"):
        body.pop(key)
    today = datetime.now(UTC).date()
    body.update(
        weekdays=[1, 2, 3, 4, 5, 6, 7], start_time="23:00", end_time="23:30", starts_on=today.isoformat()
    )
    created = client.post("/api/v1/desk/task-series", json=body, headers=desk)
    assert created.status_code == 201, created.get_json()
    tasks.run_jobs("default")
    listed = _list(client, people["zt"], limit=100)["items"]
    assert listed and {i["series_id"] for i in listed} == {created.get_json()["id"]}
    assert _indexed(app) == {i["id"] for i in listed}


def test_redis_losing_the_index_answers_the_same_from_the_database_and_the_job_rebuilds_it(
    app, client, tasks, desk, city_desk, people, tree
):
    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    made = [
        tasks.create(desk, title="稍近", starts_at=now + 2 * hour, ends_at=now + 3 * hour),
        tasks.create(desk, title="较早", starts_at=now + hour, ends_at=now + 2 * hour),
        tasks.create(desk, title="中等距离", lat=40.655, lng=109.836),
        tasks.create(desk, title="街道巡逻", jurisdiction_id=tree["150203-01"], lat=40.70, lng=109.86),
        tasks.create(
            city_desk, title="邻区活动", jurisdiction_id=tree["150204-01-01"], lat=40.66, lng=109.84, slots=1
        ),
        tasks.create(desk, title="限出租车", categories=["taxi_driver"]),
    ]
    tasks.accept(people["zt"], made[4]["id"])  # full, but zt holds a place
    views = {
        name: [_list(client, headers, limit=3), _list(client, headers)] for name, headers in people.items()
    }
    views["xf@place"] = [_list(client, people["xf"], lat=PLACE[0], lng=PLACE[1])]
    assert [i["id"] for i in views["zt"][1]["items"]][:3] == [i["id"] for i in views["zt"][0]["items"]]

    def same_answers() -> None:
        for name, headers in people.items():
            assert [_list(client, headers, limit=3), _list(client, headers)] == views[name]
        assert [_list(client, people["xf"], lat=PLACE[0], lng=PLACE[1])] == views["xf@place"]

    with app.app_context():
        from yijing.extensions import redis_client

        redis_client().flushdb()  # our own test database: Redis lost everything
    assert not _built(app)
    same_answers()  # from the database

    with app.app_context():
        assert task_jobs.repair_task_index() == 5  # the five open, not full tasks
        assert task_jobs.repair_task_index() == 0  # in line: nothing to do
    assert _built(app) and _indexed(app) == {t["id"] for t in made} - {made[4]["id"]}
    same_answers()  # from the rebuilt index


def test_the_list_answers_when_redis_is_down(make_app, client, tasks, desk, people):
    task = tasks.create(desk)
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with down.test_client() as other:
        # The token cache is down too: the database answers for both.
        response = other.get("/api/v1/tasks", headers=people["zt"])
    assert response.status_code == 200, response.get_json()
    assert [i["id"] for i in response.get_json()["items"]] == [task["id"]]


def test_the_index_hands_back_one_page_and_paging_through_it_equals_the_database(
    app, client, tasks, desk, people
):
    """The script returns only what can be on the page (so the work per request does not grow with
    the tasks around); page after page, with ties in distance and in start, the list is the one the
    database gives, with and without the phone's location."""
    from yijing.extensions import redis_client
    from yijing.models.base import utcnow
    from yijing.services import task_index

    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    made = []
    for i in range(24):
        # pairs at the same place and start (ties broken by id), spread about 1.5 km apart
        place = (PLACE[0] + (i // 2) * 0.0012, PLACE[1] + (i // 2) * 0.0009)
        start = now + (1 + (i // 4)) * hour
        made.append(
            tasks.create(
                desk, title=f"巡逻{i}", lat=place[0], lng=place[1], starts_at=start, ends_at=start + hour
            )
        )

    def walk(**params) -> list[int]:
        seen, cursor = [], None
        for _ in range(20):
            page = _list(client, people["zt"], limit=5, **({"cursor": cursor} if cursor else {}), **params)
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen
        raise AssertionError("the list did not end")

    from_index = {"home": walk(), "phone": walk(lat=FAR_PLACE[0], lng=FAR_PLACE[1])}
    assert set(from_index["home"]) == {t["id"] for t in made}
    assert len(from_index["home"]) == len(made)  # each once

    with app.app_context():
        origins = [(FAR_PLACE[0], FAR_PLACE[1])]
        hits = task_index.search(origins, 10_000, [], "courier", [], utcnow(), keep=6)
        assert 6 <= len(hits) <= 8  # the 6 nearest and any tied with the sixth, not all 24
        redis_client().flushdb()  # our own test database: list from the database now
    assert not _built(app)
    assert {"home": walk(), "phone": walk(lat=FAR_PLACE[0], lng=FAR_PLACE[1])} == from_index


def test_the_list_reads_the_volunteers_assignments_from_the_volunteer_whatever_the_statistics(
    app, client, tasks, desk, people
):
    """The list's one query starts from the volunteer (their assignments through
    ``ix_assignments_volunteer``, each task by its primary key) and never from the live tasks,
    whatever the planner believes of them: with stale statistics (the live tasks taken for a
    handful) the join had started from ``ix_tasks_open`` and probed the assignments per live task.
    The test's tables are tiny, so sequential scans are turned off to see which index it takes
    (the stale case itself needs a big table: the plan was checked on two million tasks never
    analysed, where the former query read the 2,040 live tasks through ``ix_tasks_open``)."""
    from sqlalchemy import event, select, text

    from yijing.extensions import db
    from yijing.models import Volunteer
    from yijing.models.base import utcnow
    from yijing.services.tasks.signup import _seeker_and_mine_query

    task = tasks.create(desk, title="巡逻")
    tasks.accept(people["zt"], task["id"])
    assert _ids(client, people["zt"]) == [task["id"]]
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the plan is PostgreSQL's")
        user_id = db.session.scalar(select(Volunteer.open_user_id).where(Volunteer.open_user_id.is_not(None)))
        with db.engine.connect() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))

            @event.listens_for(conn, "before_cursor_execute", retval=True)
            def _explain(conn, cursor, statement, parameters, context, executemany):
                return "EXPLAIN " + statement, parameters

            plan = "\n".join(
                line
                for (line,) in conn.execute(
                    _seeker_and_mine_query(), {"user_id": user_id, "now": utcnow()}
                ).cursor.fetchall()
            )
            conn.rollback()
    assert "ix_assignments_volunteer" in plan, plan
    assert "pk_tasks" in plan, plan
    assert "ix_tasks_open" not in plan and "ix_tasks_status_ends" not in plan, plan


def test_the_list_comes_from_the_index_with_its_cards_in_one_script(
    app, client, tasks, desk, people, monkeypatch
):
    """With the index built, the list is the index's answer (the database's candidates are never
    read: a failing script would otherwise go unseen, the fallback answering the same), and the
    page's cards come back with the search; only a task the volunteer holds a place on that the
    search did not return (a full one, off the index) has its card read on its own."""
    from yijing.services import task_index
    from yijing.services.tasks import signup

    def no_database(*args, **kwargs):
        raise AssertionError("the list fell back to the database")

    read_apart: list[list[int]] = []
    cards = task_index.cards

    def counted(ids):
        read_apart.append(list(ids))
        return cards(ids)

    open_task = tasks.create(desk, title="巡逻")
    later = datetime.now(UTC) + timedelta(hours=5)
    full = tasks.create(desk, title="一个名额", slots=1, starts_at=later, ends_at=later + timedelta(hours=1))
    tasks.accept(people["zt"], full["id"])
    assert _built(app)
    monkeypatch.setattr(signup, "_database_candidates", no_database)
    monkeypatch.setattr(task_index, "cards", counted)

    assert _ids(client, people["zt2"]) == [open_task["id"]]
    assert read_apart == []
    page = _list(client, people["zt"])
    assert {i["id"]: i["my_status"] for i in page["items"]} == {open_task["id"]: None, full["id"]: "accepted"}
    assert read_apart == [[full["id"]]]


def test_the_search_looks_at_about_a_page_however_many_tasks_are_around(app):
    """Among 3,000 open tasks within the radius the script reads the entries of about a page (it
    walks out from here, widening until the page is certain), not of every task around: the
    entries of those farther than 1 km are made unreadable, and the answer is still the 25
    nearest (with any tied with the last), as reading them all would give."""
    from yijing.extensions import redis_client
    from yijing.geo import haversine_m
    from yijing.models.base import utcnow
    from yijing.services import task_index
    from yijing.services.task_index import Entry

    now = utcnow()
    start = now + timedelta(hours=1)
    entries = [
        Entry(
            i + 1,
            999,
            PLACE[0] + (i % 60 - 30) * 0.0008,
            PLACE[1] + (i // 60 - 25) * 0.001,
            start + timedelta(minutes=i),
            start + timedelta(hours=2),
            (),
            (),
            '{"ends_at":1,"points":1}',
        )
        for i in range(3000)
    ]

    def away(e: Entry) -> float:
        return haversine_m(PLACE[0], PLACE[1], e.lat, e.lng)

    with app.app_context():
        task_index.put_many(entries)
        task_index.mark_built()
        far = {str(e.task_id): "not json" for e in entries if away(e) > 1000}
        assert len(far) > 1000
        redis_client().hset(task_index.key_info(), mapping=far)
        hits = task_index.search([PLACE], 3000, [], "courier", [], now, keep=25)
    nearest = sorted(entries, key=away)
    limit = away(nearest[24]) + 0.2
    assert {h.id for h in hits} == {e.task_id for e in nearest if away(e) <= limit}
    assert all(h.card == '{"ends_at":1,"points":1}' for h in hits)
