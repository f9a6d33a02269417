"""One ring of a nearby dispatch, sent by calling :func:`yijing.services.dispatch.advance`
directly: whom it invites, what it records, and that sending the same ring again does nothing."""

from __future__ import annotations

import dataclasses
import json

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
    """A ring of several invitations: each volunteer's message names their own invitation (on
    PostgreSQL the ids are drawn before the one statement that writes them all), nearest first,
    with the ring's id on every invitation."""
    from yijing.extensions import db
    from yijing.models import Assignment, DispatchRing, Notification
    from yijing.services import dispatch

    metres = {"d1": 200, "d2": 450, "d3": 700}
    ids = {name: _on_duty(volunteers, desk, tree, name, m) for name, m in metres.items()}
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=2)["id"]

    with app.app_context():
        assert dispatch.advance(task_id, 0) == 3
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
            assert message.title.startswith("任务邀请") and message.status == "pending"
        db.session.remove()


@pytest.mark.parametrize("hinted", [True, False], ids=["hint", "no-hint"])
def test_one_ring_is_one_statement_and_two_redis_round_trips(
    app, tasks, volunteers, desk, tree, monkeypatch, hinted
):
    """PostgreSQL, a ring as its job sends it (with the task as publishing saw it): the GEO
    search first, then one statement that checks the task, ranks the candidates and writes the
    ring, in autocommit (no BEGIN, no COMMIT); the jobs enqueued after it in one pipeline.
    Without a hint (a job enqueued before hints, the sweep) the task is read first: two
    statements. Elsewhere the ring is a transaction of its own."""
    import psycopg
    from redis.client import Pipeline
    from sqlalchemy import event

    from tests.fixtures.redis_commands import RedisCommands
    from yijing.extensions import db
    from yijing.models import Task
    from yijing.services import dispatch
    from yijing.services import tasks as task_service

    _on_duty(volunteers, desk, tree, "a", 200)
    _on_duty(volunteers, desk, tree, "b", 400)
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]
    statements: list[str] = []
    commands: list[bytes] = []
    pipelines: list[int] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    exec_command = psycopg.Connection._exec_command

    def command(self, command, *args, **kwargs):  # BEGIN, COMMIT, ROLLBACK
        commands.append(bytes(command))
        return exec_command(self, command, *args, **kwargs)

    execute = Pipeline.execute

    def pipeline(self, *args, **kwargs):
        pipelines.append(len(self.command_stack))
        return execute(self, *args, **kwargs)

    with app.app_context():
        hint = task_service.ring_hint(db.session.get(Task, task_id)) if hinted else None
        db.session.remove()
        postgresql = db.engine.dialect.name == "postgresql"
        monkeypatch.setattr(psycopg.Connection, "_exec_command", command)
        monkeypatch.setattr(Pipeline, "execute", pipeline)
        redis_commands = RedisCommands(monkeypatch)
        event.listen(db.engine, "before_cursor_execute", remember)
        try:
            assert dispatch.advance(task_id, 0, hint) == 2
        finally:
            event.remove(db.engine, "before_cursor_execute", remember)
        assert redis_commands.commands == ["EVALSHA"]  # the GEO search
        assert len(pipelines) == 1  # the messages' delivery and the next ring, after the write
        if postgresql:
            reads = 0 if hinted else 1
            assert len(statements) == reads + 1, statements
            for read in statements[:reads]:
                assert "FROM tasks" in read and "INSERT" not in read and "UPDATE" not in read
            write = statements[reads]
            assert "JOIN volunteers" in write and "nextval" in write
            for table in ("UPDATE tasks", "INSERT INTO assignments", "INSERT INTO dispatch_rings"):
                assert table in write
            assert "INSERT INTO notifications" in write
            assert "set_config" in write  # committed without waiting for the flush (see the sweep test below)
            assert commands == []
        db.session.remove()


def test_publishing_and_each_ring_hand_the_next_ring_where_to_search(
    app, tasks, volunteers, desk, tree, monkeypatch
):
    """The first ring's job (publishing) carries the task's place, categories and slots; each ring
    hands the next its hint with how many are now on the task; the worker reads it back."""
    from yijing import jobs
    from yijing.extensions import db
    from yijing.models import Task
    from yijing.services import dispatch
    from yijing.services.tasks import RingHint

    _on_duty(volunteers, desk, tree, "a", 200)
    enqueued: list[jobs.JobSpec] = []
    monkeypatch.setattr(jobs, "enqueue_many", lambda specs: enqueued.extend(specs))
    task_id = tasks.create(
        desk, dispatch_mode="nearby", kind="missing_person", slots=2, categories=["courier"]
    )["id"]
    [first] = [s for s in enqueued if s.func == "workers.tasks.advance_dispatch"]
    with app.app_context():
        task = db.session.get(Task, task_id)
        hint = RingHint(
            lat=PLACE[0],
            lng=PLACE[1],
            categories=("courier",),
            slots=2,
            on_task=0,
            skills=(),
            title=task.title,
            address=task.address,
            jurisdiction_id=task.jurisdiction_id,
            starts_at=task.starts_at,
            ends_at=task.ends_at,
        )
        db.session.remove()
    assert first.args == (task_id, 0) and RingHint.of_job(first.kwargs["hint"]) == hint
    assert json.loads(json.dumps(first.kwargs)) == first.kwargs  # plain values
    enqueued.clear()
    with app.app_context():
        assert dispatch.advance(task_id, 0, RingHint.of_job(first.kwargs["hint"])) == 1
        [second] = [s for s in enqueued if s.func == "workers.tasks.advance_dispatch"]
        assert second.args == (task_id, 1)
        assert RingHint.of_job(second.kwargs["hint"]) == dataclasses.replace(hint, on_task=1)
        db.session.remove()


def test_a_job_enqueued_before_hints_said_it_all_reads_its_task(app, tasks, volunteers, desk, tree):
    """A ring job made before this version carries the place, categories, slots and count as a
    list: the worker takes it as no hint, and the ring reads its task and is sent."""
    from workers import tasks as task_jobs
    from yijing.extensions import db
    from yijing.models import Assignment
    from yijing.services.tasks import RingHint

    near = _on_duty(volunteers, desk, tree, "near", 300)
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]
    old = [PLACE[0], PLACE[1], [], 1, 0]
    assert RingHint.of_job(old) is None
    with app.app_context():
        assert task_jobs.advance_dispatch(task_id, 0, old) == 1
        assert db.session.scalars(
            select(Assignment.volunteer_id).where(Assignment.task_id == task_id)
        ).all() == [near]
        db.session.remove()


def test_the_ids_a_ring_draws_come_from_the_serial_sequences(app):
    """PostgreSQL: the ring draws ids by the sequences' names (``<table>_id_seq``), which must be
    those of the tables' ``id`` columns."""
    from sqlalchemy import text

    from yijing.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("sequences are PostgreSQL's")
        for table in ("assignments", "dispatch_rings"):
            found = db.session.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table})
            assert found in (f"{table}_id_seq", f"public.{table}_id_seq")
        db.session.remove()


def test_the_ring_statement_stays_within_what_psycopg_caches(app):
    """psycopg parses a statement's text once and keeps it only when the text is at most
    ``MAX_CACHED_STATEMENT_LENGTH`` bytes with at most ``MAX_CACHED_STATEMENT_PARAMS``
    parameters; past either, every ring parses its statement again."""
    from psycopg import _queries

    from yijing.extensions import db
    from yijing.services import dispatch

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the ring's statement is PostgreSQL's")
        compiled = dispatch._send_ring_pg().compile(dialect=db.engine.dialect)
        assert len(str(compiled).encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH
        assert len(compiled.params) <= _queries.MAX_CACHED_STATEMENT_PARAMS


def test_a_hint_the_task_no_longer_matches_searches_where_the_row_says(
    app, tasks, volunteers, desk, tree, monkeypatch
):
    """The job's hint says where the task was when the job was made; the task was edited since
    (here: moved 2 km away from everyone): the ring searches again where the row says, and its
    first ring (1 km) finds nobody. A hint whose search stopped at its limit short of what the ring
    needs (more slots since) is searched again too."""
    from yijing.extensions import db
    from yijing.models import DispatchRing, Task
    from yijing.services import dispatch, duty_index
    from yijing.services import tasks as task_service

    near = _on_duty(volunteers, desk, tree, "near", 300)
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]
    searched: list[tuple[float, float, int]] = []
    nearest = duty_index.nearest

    def remember(lat, lng, radius_m, limit, categories=None):
        searched.append((lat, lng, limit))
        return nearest(lat, lng, radius_m=radius_m, limit=limit, categories=categories)

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("only PostgreSQL searches before it reads the task (elsewhere the hint goes unused)")
        task = db.session.get(Task, task_id)
        hint = task_service.ring_hint(task)
        moved = PLACE[0] - 2000 / METRES_PER_DEGREE
        task.lat = moved
        db.session.commit()
        monkeypatch.setattr(duty_index, "nearest", remember)
        dispatch.advance(task_id, 0, hint)
        assert [(lat, lng) for lat, lng, _ in searched[:2]] == [(hint.lat, hint.lng), (moved, PLACE[1])]
        first = select(DispatchRing.found).where(DispatchRing.task_id == task_id, DispatchRing.ring_no == 1)
        assert db.session.scalar(first) == 0
        db.session.remove()

        # In place again, with more slots than the hint knew of and a search that fills its limit.
        searched.clear()
        other = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]
        task = db.session.get(Task, other)
        hint = task_service.ring_hint(task)
        task.slots = 20
        db.session.commit()
        monkeypatch.setattr(
            duty_index,
            "nearest",
            lambda lat, lng, radius_m, limit, categories=None: (
                searched.append((lat, lng, limit)) or [(near, 300.0)] * limit
            ),
        )
        dispatch.advance(other, 0, hint)
        assert [limit for *_, limit in searched[:2]] == [
            dispatch._limit(dispatch._most_wanted(1), 0),
            dispatch._limit(dispatch._most_wanted(20), 0),
        ]
        db.session.remove()


def test_a_task_renamed_after_its_hint_sends_messages_with_its_new_title(app, tasks, volunteers, desk, tree):
    """The hint carries what the messages say; the desk renamed the task and moved its start
    since the job was made: the ring is sent once, and its message has the row's title and time."""
    from datetime import timedelta

    from yijing.extensions import db
    from yijing.models import Notification, Task
    from yijing.services import dispatch
    from yijing.services import tasks as task_service

    _on_duty(volunteers, desk, tree, "near", 300)
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]
    with app.app_context():
        task = db.session.get(Task, task_id)
        hint = task_service.ring_hint(task)
        task.title = "寻找走失老人（已更新）"
        task.starts_at = task.starts_at + timedelta(minutes=30)
        starts_at = task.starts_at
        db.session.commit()
        assert dispatch.advance(task_id, 0, hint) == 1
        [message] = db.session.scalars(select(Notification).where(Notification.kind == "task.invitation"))
        assert message.title == "任务邀请：寻找走失老人（已更新）"
        assert message.body.startswith(task_service.local_text(starts_at))
        assert message.data["task_title"] == "寻找走失老人（已更新）"
        assert message.data["starts_at"] == starts_at.isoformat()
        assert db.session.get(Task, task_id).dispatch_ring == 1
        db.session.remove()


def test_a_ring_sent_meanwhile_by_another_run_writes_nothing(app, tasks, volunteers, desk, tree, monkeypatch):
    """PostgreSQL: between reading the task and writing the ring another run sends it: the
    compare-and-set in the writing statement loses, and neither a ring, an invitation, a message
    nor a job is made. (Elsewhere the compare-and-set comes first and holds the row.)"""
    from sqlalchemy import update

    from yijing import jobs
    from yijing.extensions import db
    from yijing.models import Assignment, DispatchRing, Notification, Task
    from yijing.services import dispatch, duty_index

    _on_duty(volunteers, desk, tree, "a", 200)
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]
    nearest = duty_index.nearest
    enqueued: list[object] = []

    def search_while_another_run_wins(*args, **kwargs):
        with db.engine.begin() as conn:  # the other run's commit
            conn.execute(update(Task).where(Task.id == task_id).values(dispatch_ring=1))
        return nearest(*args, **kwargs)

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the ring's writes follow its reads only on PostgreSQL")
        monkeypatch.setattr(duty_index, "nearest", search_while_another_run_wins)
        monkeypatch.setattr(jobs, "enqueue_many", lambda specs: enqueued.extend(specs))
        assert dispatch.advance(task_id, 0) == 0
        assert db.session.scalar(select(DispatchRing.id).where(DispatchRing.task_id == task_id)) is None
        assert db.session.scalar(select(Assignment.id).where(Assignment.task_id == task_id)) is None
        invitations = select(Notification.id).where(Notification.kind == "task.invitation")
        assert db.session.scalar(invitations) is None
        assert enqueued == []
        db.session.remove()


def test_a_volunteer_on_the_task_meanwhile_keeps_their_place(app, tasks, volunteers, desk, tree, monkeypatch):
    """PostgreSQL: a volunteer the ring chose is getting onto the task in another transaction
    while the ring's statement runs (here: the desk's row, inserted before the statement and
    committed once the statement waits for it): their row stays as it was, they get no
    invitation message, and the ring counts only the invitations it made."""
    import threading
    import time

    from sqlalchemy import insert, text

    from yijing.extensions import db
    from yijing.models import Assignment, DispatchRing, Notification, Volunteer
    from yijing.services import dispatch, duty_index

    near = _on_duty(volunteers, desk, tree, "near", 200)
    far = _on_duty(volunteers, desk, tree, "far", 600)
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]
    nearest = duty_index.nearest
    engine = None  # the app's, set inside its context below
    committed = threading.Event()
    waited: list[bool] = []

    def commit_once_the_ring_waits(other) -> None:
        blocker = other.scalar(text("SELECT pg_backend_pid()"))
        with engine.connect() as watch:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not waited:
                blocked = watch.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                    {"pid": blocker},
                )
                watch.rollback()
                if blocked:
                    waited.append(True)
                else:
                    time.sleep(0.01)
        other.commit()
        other.close()
        committed.set()

    def search_while_near_joins(*args, **kwargs):
        other = engine.connect()
        user_id = other.scalar(select(Volunteer.user_id).where(Volunteer.id == near))
        other.execute(
            insert(Assignment).values(
                task_id=task_id, volunteer_id=near, user_id=user_id, status="accepted", source="open"
            )
        )  # not committed yet: the ring's statement does not see it, and waits on its key
        threading.Thread(target=commit_once_the_ring_waits, args=(other,), daemon=True).start()
        return nearest(*args, **kwargs)

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the ring's statement and another transaction meet only on PostgreSQL")
        engine = db.engine
        monkeypatch.setattr(duty_index, "nearest", search_while_near_joins)
        assert dispatch.advance(task_id, 0) == 1
        assert committed.wait(10) and waited  # the ring's statement waited on the other's key
        rows = db.session.execute(
            select(Assignment.volunteer_id, Assignment.status, Assignment.source)
            .where(Assignment.task_id == task_id)
            .order_by(Assignment.volunteer_id)
        ).all()
        assert sorted(tuple(r) for r in rows) == sorted(
            [(near, "accepted", "open"), (far, "invited", "nearby")]
        )
        ring = db.session.scalars(select(DispatchRing).where(DispatchRing.task_id == task_id)).one()
        assert (ring.found, ring.invited) == (2, 1)
        messages = db.session.scalars(
            select(Notification.dedupe_key).where(Notification.kind == "task.invitation")
        )
        assert [key.split(":")[1] for key in messages] == [str(task_id)]
        db.session.remove()


def test_a_ring_whose_transaction_never_committed_is_sent_again_by_the_sweep(
    app, tasks, volunteers, desk, tree, monkeypatch
):
    """PostgreSQL commits a ring's statement without waiting for the WAL flush, so a crash can
    lose a ring its run believed sent (here: its statement runs in a transaction rolled back, and
    the run is told it was sent). What is left is the task as it was, with its ring due: the
    sweep sends the ring again, to the same volunteers, and the jobs of the lost ring are
    harmless (its next-ring job is a no-op until then, its messages do not exist)."""
    from datetime import timedelta

    from sqlalchemy.engine import Connection

    from yijing.extensions import db
    from yijing.models import Assignment, DispatchRing, Task
    from yijing.models.base import utcnow
    from yijing.services import dispatch

    near = _on_duty(volunteers, desk, tree, "near", 300)
    task_id = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", slots=1)["id"]
    execute = Connection.execute

    def lost(conn, statement, *args, **kwargs):
        if statement is not dispatch._send_ring_pg():
            return execute(conn, statement, *args, **kwargs)
        conn.exec_driver_sql("BEGIN")
        answer = execute(conn, statement, *args, **kwargs).all()
        conn.exec_driver_sql("ROLLBACK")  # the crash: the commit never reached the disk
        return _Answer(answer)

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("only PostgreSQL commits a ring without waiting for the flush")
        with monkeypatch.context() as crash:
            crash.setattr(Connection, "execute", lost)
            assert dispatch.advance(task_id, 0) == 1  # the run believes it sent the ring
        task = db.session.get(Task, task_id)
        assert (task.dispatch_ring, task.dispatch_next_at <= utcnow()) == (0, True)
        assert db.session.scalar(select(DispatchRing.id).where(DispatchRing.task_id == task_id)) is None
        db.session.remove()

        assert dispatch.sweep(utcnow() + timedelta(seconds=1)) == 1
        invited = db.session.scalars(select(Assignment.volunteer_id).where(Assignment.task_id == task_id))
        assert list(invited) == [near]
        assert db.session.get(Task, task_id).dispatch_ring == 1
        assert dispatch.sweep(utcnow() + timedelta(seconds=1)) == 0  # due again only when ring 2 is
        db.session.remove()


class _Answer:
    """A statement's rows as a Result hands them (``one``), kept after the rollback."""

    def __init__(self, rows):
        self.rows = rows

    def one(self):
        [row] = self.rows
        return row


def _principal(username: str):
    from yijing.extensions import db
    from yijing.models import User
    from yijing.services import auth

    return auth.load_principal(db.session.scalar(select(User.id).where(User.username == username)))


def test_the_statement_ranks_as_rank_does(app, tasks, volunteers, desk, tree, monkeypatch):
    """PostgreSQL ranks a ring's candidates inside its one statement; elsewhere :func:`rank`
    does. Volunteers of mixed categories, skills and past no-shows, one suspended, two at the
    same spot with the same record (the volunteer id decides): for tasks of 1 to 6 slots (one
    invitation per slot) and several categories and skills, each ring invites exactly the best
    ``slots`` of ``rank`` over the same search."""
    import random

    from yijing.extensions import db
    from yijing.models import Assignment, Task
    from yijing.services import dispatch, duty_index
    from yijing.services import tasks as task_service

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("only PostgreSQL ranks in SQL; elsewhere the ring calls rank() itself")
    rng = random.Random(15)
    ids = [
        _on_duty(volunteers, desk, tree, f"twin{i}", 50, category="courier", skills=["first_aid", "driving"])
        for i in range(2)
    ]
    for i in range(12):
        skills = [s for s in ("first_aid", "driving") if rng.random() < 0.5]
        category = rng.choice(["courier", "security_guard"])
        ids.append(
            _on_duty(volunteers, desk, tree, f"v{i}", rng.uniform(100, 950), category=category, skills=skills)
        )
    tasks.set_rows("Volunteer", ids[5], status="suspended")
    for vid in ids[2:]:
        tasks.past_record(vid, ["no_show"] * rng.randint(0, 3) + ["completed"] * rng.randint(0, 3))
    config = app.config["YIJING"]
    monkeypatch.setitem(app.config, "YIJING", dataclasses.replace(config, dispatch_invites_per_slot=1))
    cases = [
        (slots, categories, skills)
        for slots in range(1, 7)
        for categories, skills in [
            ([], []),
            (["courier"], []),
            ([], ["first_aid"]),
            (["security_guard"], ["driving"]),
        ]
    ]
    for slots, categories, skills in cases:
        task_id = tasks.create(
            desk,
            dispatch_mode="nearby",
            kind="missing_person",
            slots=slots,
            categories=categories,
            skills=skills,
        )["id"]
        with app.app_context():
            task = db.session.get(Task, task_id)
            hint = task_service.ring_hint(task)
            hits = duty_index.nearest(
                task.lat,
                task.lng,
                radius_m=1000,
                limit=dispatch._limit(slots, 0),
                categories=categories or None,
            )
            best = [c.volunteer_id for c in dispatch.rank(task, hits)[:slots]]
            db.session.remove()
            assert best, (slots, categories, skills)
            dispatch.advance(task_id, 0, hint)
            invited = db.session.scalars(
                select(Assignment.volunteer_id).where(Assignment.task_id == task_id)
            ).all()
            assert sorted(invited) == sorted(best), (slots, categories, skills)
            assert ids[5] not in invited  # suspended
            if slots == 1 and categories != ["security_guard"]:
                assert invited == [ids[0]]  # the twins tie: the lower id first
            db.session.remove()
