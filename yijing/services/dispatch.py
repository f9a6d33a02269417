"""Dispatch: the desk invites named volunteers; nearby tasks invite on-duty volunteers in rings.

Signing up to an open task and accepting, declining or withdrawing live with tasks
(:mod:`yijing.services.tasks.signup`).

**Assigned.** The desk names volunteers; each gets an invitation with a deadline
(``TASK_INVITATION_TTL_MINUTES`` unless given), a reminder before it, and it expires unanswered.

**Nearby.** Publishing a nearby task starts rings: ring *k* searches the Redis GEO index of
on-duty volunteers (:func:`yijing.services.duty_index.nearest`) within the *k*-th radius of
``DISPATCH_RING_RADII_M`` (capped by ``DISPATCH_MAX_RADIUS_M``, which is always the last ring),
drops those already invited and those not approved or lacking the category/skills, ranks the
rest and invites the best ``open slots × DISPATCH_INVITES_PER_SLOT`` (at most
``DISPATCH_MAX_INVITES_PER_RING``). If the slots are still open ``DISPATCH_RING_TIMEOUT_SECONDS``
later, the next ring goes out: an RQ job scheduled for that time, with a periodic sweep of
``tasks.dispatch_next_at`` in case the job is lost. A ring that finds nobody new widens at once.
The ring number is advanced with a compare-and-set, so a job and the sweep never send the same
ring twice.

On PostgreSQL a ring is two round trips to the database and two to Redis (:func:`_advance_pg`):
search the GEO index where the ring's job says the task is (its :class:`~yijing.services.tasks.RingHint`:
place, categories, slots, how many were on it; publishing and each ring put it in the next
ring's job); then, on one connection in autocommit, read the task (whether the dispatch still
looks, with whom it already has) and the candidates' no-show facts in one statement, drawing the
ring's and the invitations' ids from their sequences; then one statement that is its own
transaction (no BEGIN, no COMMIT round trip) advances the ring number with the compare-and-set
and, only if that won, writes the invitations, the ring's row and the invitations' messages; then
one Redis pipeline enqueues the messages' delivery and the next ring. The row decides, never the
hint: a task no longer where the hint says (edited since), or a search that stopped at a limit
short of what the row asks for, is searched again where the row says and read again (a round
trip each); a job without a hint (enqueued before hints, the sweep's) reads the task first, as
that fallback does: three statements. A run that loses the compare-and-set between its read and
its write writes nothing. (A connection that sat idle in the pool is pinged first, one more round
trip: :mod:`yijing.connection_check`.)
Elsewhere (SQLite) the ring is one transaction in the Session (:func:`_advance_portable`).

That statement commits with ``synchronous_commit`` off (for its own transaction only): it does
not wait for the WAL flush (0.15 ms on a quiet machine, milliseconds under I/O load). A crash of
PostgreSQL within the moment before the WAL writer flushes it loses the ring, and the sweep sends
it again: WAL is replayed in order, so what survives is the task as an earlier durable commit
left it (publishing, or a resume, is an ordinary commit), with the ring number before the lost
ring and a ``dispatch_next_at`` that is already due. Any later ordinary commit (a volunteer
accepting the invitation) flushes the ring's WAL first, so a ring someone acted upon is never
lost. The cost of a lost ring: its messages may have gone out already, and the ring sent again
invites again. ``tests/services/test_dispatch.py`` sends a ring whose transaction never
committed and has the sweep send it again.

Ranking: ``score = distance_m × (1 + DISPATCH_NO_SHOW_WEIGHT × no_show_rate)``, lowest first, with
``no_show_rate = no_shows / (no_shows + completed + 2)`` over the volunteer's past assignments.
The ``+ 2`` is a prior of two good assignments, so a newcomer ranks by distance alone and one
missed patrol does not bury anyone; with the default weight 2, a volunteer who missed 8 of 10
ranks as if about 2.3 times farther away.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Integer,
    Row,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    column,
    func,
    insert,
    literal_column,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from yijing import jobs, policies
from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput
from yijing.extensions import db
from yijing.models import (
    Assignment,
    AssignmentStatus,
    DispatchMode,
    DispatchRing,
    Jurisdiction,
    Notification,
    Task,
    Volunteer,
    VolunteerStatus,
)
from yijing.models.base import utcnow
from yijing.policies import Permission, Principal
from yijing.services import audit, duty_index, outbox
from yijing.services import tasks as task_service
from yijing.services.tasks import LIVE, RingHint, config, local_text, move_assignment, ring_hint
from yijing.sql import is_postgresql

log = logging.getLogger(__name__)

A = AssignmentStatus
# A nearby task as a ring reads it (a row of ``_RING_TASK``: the attributes a ring and its messages use).
RingTask = Row[Any]


# -- assigned: the desk names volunteers -----------------------------------------------------------


def _invitation(assignment: Any, task: Task | RingTask) -> dict[str, Any]:
    """The outbox message of an invitation (``assignment``: an Assignment or an :class:`_Invited`)."""
    deadline = assignment.invite_expires_at
    when = f"，请在 {local_text(deadline)} 前答复" if deadline and assignment.source == "assigned" else ""
    return {
        "user_id": assignment.user_id,
        "kind": "task.invitation",
        "title": f"任务邀请：{task.title}"[:100],
        "body": f"{local_text(task.starts_at)} 开始，地点：{task.address or '见任务详情'}{when}。",
        "dedupe_key": f"task:{task.id}:assignment:{assignment.id}:invite:{assignment.invite_seq}",
        "data": task_service.notification_data(
            task,
            assignment,
            expires_at=deadline.isoformat() if deadline else None,
            distance_m=assignment.distance_m,
        ),
        "page": task_service.task_page(task.id),
    }


def _notify_invitation(assignment: Assignment, task: Task) -> None:
    message = _invitation(assignment, task)
    outbox.notify(message.pop("user_id"), message.pop("kind"), **message)


@dataclass(frozen=True, slots=True)
class _Invited:
    """A ring's invitation as inserted (what its message needs), without loading the row back."""

    id: int
    user_id: int
    distance_m: float
    invite_expires_at: datetime
    invite_seq: int = 1
    source: str = DispatchMode.NEARBY


def invite(
    principal: Principal,
    task_id: int,
    volunteer_ids: Sequence[int],
    expires_at: datetime | None,
    actor: Actor,
) -> list[Assignment]:
    """Invite named volunteers (approved, of the staff member's jurisdiction) to a published
    task. Someone already invited or on the task keeps their place; a declined or expired
    invitation is sent again."""
    task = task_service.load_for_staff(principal, task_id, for_update=True)
    now = utcnow()
    if task.status not in LIVE or task.ends_at <= now:
        raise Conflict("只能为已发布且未结束的任务发出邀请", code="task_not_open")
    if task.dispatch_mode == DispatchMode.NEARBY:
        raise Conflict("就近调度任务由系统按距离逐圈邀请，不能手动指派", code="nearby_task")
    deadline = expires_at or now + timedelta(minutes=config().task_invitation_ttl_minutes)
    deadline = min(deadline, task.ends_at)
    if deadline <= now:
        raise InvalidInput("邀请截止时间应晚于当前时间", fields={"expires_at": ["应晚于当前时间"]})
    ids = list(dict.fromkeys(volunteer_ids))
    found = {
        v.id: (v, path)
        for v, path in db.session.execute(
            select(Volunteer, Jurisdiction.path)
            .join(Jurisdiction, Jurisdiction.id == Volunteer.jurisdiction_id)
            .where(Volunteer.id.in_(ids))
        )
    }
    problems: list[str] = []
    for vid in ids:
        if vid not in found:
            problems.append(f"义警 {vid} 不存在")
            continue
        volunteer, path = found[vid]
        if not policies.may(principal, Permission.TASK_MANAGE, path):
            problems.append(f"义警 {vid} 不在您的辖区内")
        elif volunteer.status != VolunteerStatus.APPROVED:
            problems.append(f"义警 {volunteer.name_masked}（{vid}）不是审核通过的在册义警")
    if problems:
        raise InvalidInput("部分义警不能邀请", code="invalid_invitees", fields={"volunteer_ids": problems})
    existing = {
        a.volunteer_id: a
        for a in db.session.scalars(
            select(Assignment).where(Assignment.task_id == task.id, Assignment.volunteer_id.in_(ids))
        )
    }
    result = []
    for vid in ids:
        volunteer = found[vid][0]
        assignment = existing.get(vid)
        values = {
            "invited_at": now,
            "invite_expires_at": deadline,
            "invited_by_id": principal.user_id,
            "invite_reminded_at": None,
            "responded_at": None,
            "source": DispatchMode.ASSIGNED,
        }
        if assignment is None:
            assignment = Assignment(
                task_id=task.id,
                volunteer_id=vid,
                user_id=volunteer.user_id,
                status=A.INVITED,
                invite_seq=1,
                checkout_auto=False,
                points_awarded=0,
                **values,
            )
            db.session.add(assignment)
            db.session.flush()
            _notify_invitation(assignment, task)
        elif assignment.status in (A.DECLINED, A.EXPIRED, A.CANCELLED) and move_assignment(
            assignment, A.INVITED, expect=[assignment.status], invite_seq=assignment.invite_seq + 1, **values
        ):
            _notify_invitation(assignment, task)
        result.append(assignment)
    audit.record(actor, "task.invite", "task", task.id, data={"volunteer_ids": ids})
    db.session.commit()
    return result


def expire_invitations(now: datetime | None = None) -> int:
    """Invitations past their deadline become ``expired`` (the desk sees them as such)."""
    now = now or utcnow()
    result = db.session.execute(
        update(Assignment)
        .where(Assignment.status == A.INVITED, Assignment.invite_expires_at <= now)
        .values(status=A.EXPIRED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount or 0


# -- nearby: rings of on-duty volunteers -----------------------------------------------------------


def ring_radii() -> list[int]:
    """The radius of each ring, up to and including DISPATCH_MAX_RADIUS_M."""
    cfg = config()
    radii = [r for r in cfg.dispatch_ring_radii_m if r < cfg.dispatch_max_radius_m]
    return [*radii, cfg.dispatch_max_radius_m]


@dataclass(frozen=True)
class Candidate:
    volunteer_id: int
    user_id: int
    distance_m: float
    no_show_rate: float
    score: float


def no_show_rate(no_shows: int, completed: int) -> float:
    """``no_shows / (no_shows + completed + 2)`` (see the module docstring)."""
    return no_shows / (no_shows + completed + 2)


@functools.cache
def _rank_query() -> Select[Any]:
    """Built once: approved volunteers among ``:ids`` (an IN list) with their past assignments
    counted (on PostgreSQL :func:`_ring_facts_pg` reads the same)."""
    return _volunteer_facts(Volunteer.id.in_(bindparam("ids", expanding=True)))


def _volunteer_facts(among: Any) -> Select[Any]:
    return (
        select(
            Volunteer.id,
            Volunteer.user_id,
            Volunteer.category,
            Volunteer.skills,
            func.sum(case((Assignment.status == A.NO_SHOW, 1), else_=0)).label("no_shows"),
            func.sum(case((Assignment.status == A.COMPLETED, 1), else_=0)).label("completed"),
        )
        .outerjoin(Assignment, Assignment.volunteer_id == Volunteer.id)
        .where(among, Volunteer.status == VolunteerStatus.APPROVED)
        .group_by(Volunteer.id)
    )


def rank(task: Task | RingTask, hits: Sequence[tuple[int, float]]) -> list[Candidate]:
    """Eligible volunteers among ``hits`` ([(volunteer_id, distance_m)]), best first: approved,
    of the right category and skills, ranked by distance weighed by their no-show record. One
    query: the volunteers with their past assignments counted."""
    if not hits:
        return []
    return _ranked(task, hits, db.session.execute(_rank_query(), {"ids": [vid for vid, _ in hits]}).all())


def _ranked(task: Task | RingTask, hits: Sequence[tuple[int, float]], rows: Sequence[Any]) -> list[Candidate]:
    """:func:`rank` of ``hits`` given their volunteers' ``rows`` (approved ones, with the counts)."""
    found = {row.id: row for row in rows if not task_service.misfit_reason(row, task)}
    weight = config().dispatch_no_show_weight
    out = []
    for vid, distance in hits:
        row = found.get(vid)
        if row is None:
            continue
        rate = no_show_rate(int(row.no_shows or 0), int(row.completed or 0))
        out.append(Candidate(vid, row.user_id, distance, rate, distance * (1 + weight * rate)))
    out.sort(key=lambda c: (c.score, c.distance_m, c.volunteer_id))
    return out


def _live(now: Any) -> tuple[Any, ...]:
    """A nearby dispatch still looking: live, not over, slots open."""
    return (
        Task.dispatch_mode == DispatchMode.NEARBY,
        Task.status.in_(LIVE),
        Task.ends_at > now,
        Task.filled < Task.slots,
    )


# What a ring reads of its task: a Core row of these columns, not a loaded Task.
_RING_TASK = (
    Task.id,
    Task.title,
    Task.address,
    Task.jurisdiction_id,
    Task.lat,
    Task.lng,
    Task.starts_at,
    Task.ends_at,
    Task.slots,
    Task.filled,
    Task.categories,
    Task.skills,
    Task.dispatch_ring,
    Task.dispatch_next_at,
)


@dataclass(frozen=True, slots=True)
class _Ring:
    """The ring after ``after_ring`` of a task: its number, radius and timing, and whom to look for."""

    task: RingTask
    ring_no: int
    radius_m: int
    open_slots: int
    want: int
    next_at: datetime | None  # when the ring after it is due (None: this is the last)
    exhausted_at: datetime | None  # set when this is the last ring
    now: datetime


def _timing(ring_no: int, rings: int, now: datetime) -> tuple[datetime | None, datetime | None]:
    """When the ring after ring ``ring_no`` is due (None after the last) and, for the last ring,
    when the dispatch ran out of rings."""
    if ring_no == rings:
        return None, now
    return now + timedelta(seconds=config().dispatch_ring_timeout_seconds), None


def _plan(task: RingTask, after_ring: int, radii: Sequence[int], now: datetime) -> _Ring:
    ring_no = after_ring + 1
    open_slots = task.slots - task.filled
    next_at, exhausted_at = _timing(ring_no, len(radii), now)
    return _Ring(
        task=task,
        ring_no=ring_no,
        radius_m=radii[ring_no - 1],
        open_slots=open_slots,
        want=_most_wanted(open_slots),
        next_at=next_at,
        exhausted_at=exhausted_at,
        now=now,
    )


def _claim_values(task_id: int, after_ring: int, rings: int, now: datetime) -> dict[str, Any]:
    next_at, exhausted_at = _timing(after_ring + 1, rings, now)
    return {
        "b_id": task_id,
        "b_after": after_ring,
        "b_now": now,
        "b_next_at": next_at,
        "b_exhausted_at": exhausted_at,
    }


def _claim_update() -> Any:
    """The ring's compare-and-set: advance the ring number from ``:b_after`` if the dispatch still
    needs volunteers."""
    return (
        update(Task)
        .where(
            Task.id == bindparam("b_id"),
            Task.dispatch_ring == bindparam("b_after"),
            *_live(bindparam("b_now")),
        )
        .values(
            dispatch_ring=bindparam("b_after") + 1,
            dispatch_next_at=bindparam("b_next_at"),
            dispatch_exhausted_at=bindparam("b_exhausted_at"),
        )
    )


def _stop_waiting(execute: Any, task_id: int, after_ring: int, rings: int, now: datetime) -> None:
    """A dispatch that is over (or has sent its last ring) no longer waits for a next ring: clear
    ``dispatch_next_at`` if the ring number is still ``after_ring`` (``execute``: a Session's or a
    Connection's)."""
    over = () if after_ring >= rings else (not_(and_(*_live(now))),)
    execute(
        update(Task)
        .where(
            Task.id == task_id, Task.dispatch_ring == after_ring, Task.dispatch_next_at.is_not(None), *over
        )
        .values(dispatch_next_at=None)
        .execution_options(synchronize_session=False)
    )


def _limit(want: int, on_task: int) -> int:
    """How many hits a ring's search asks for: enough to keep ``want`` after dropping those
    already on the task and the misfits."""
    return min(on_task + want * 4 + 16, 5000)


def _nearest(
    lat: float, lng: float, categories: Sequence[str], radius_m: int, limit: int
) -> list[tuple[int, float]]:
    return duty_index.nearest(lat, lng, radius_m=radius_m, limit=limit, categories=list(categories) or None)


def _ring_hits(ring: _Ring, on_task: int) -> list[tuple[int, float]]:
    """The ring's search at its task's place (:func:`_limit` for ``on_task`` already on it)."""
    task = ring.task
    return _nearest(task.lat, task.lng, task.categories or (), ring.radius_m, _limit(ring.want, on_task))


def _search(ring: _Ring, invited_before: set[int]) -> tuple[int, list[tuple[int, float]]]:
    """On-duty volunteers within the ring's radius not yet invited to the task (the Redis GEO
    index): how many were found, and their (volunteer id, distance) nearest first."""
    return _fresh(_ring_hits(ring, len(invited_before)), invited_before)


def _fresh(
    hits: Sequence[tuple[int, float]], invited_before: set[int]
) -> tuple[int, list[tuple[int, float]]]:
    fresh = [(vid, dist) for vid, dist in hits if vid not in invited_before]
    return len(fresh), fresh


def _ring_row(ring: _Ring, found: int, invited: int) -> dict[str, Any]:
    return {
        "task_id": ring.task.id,
        "ring_no": ring.ring_no,
        "radius_m": ring.radius_m,
        "found": found,
        "invited": invited,
        "slots_open": ring.open_slots,
        "next_at": ring.next_at,
        "created_at": ring.now,
    }


def _invitation_constants(ring: _Ring) -> dict[str, Any]:
    """An invitation's values that are the same for every volunteer of a ring (valid until the
    task ends)."""
    return {
        "task_id": ring.task.id,
        "status": A.INVITED,
        "source": DispatchMode.NEARBY,
        "invite_seq": 1,
        "invited_at": ring.now,
        "invite_expires_at": ring.task.ends_at,
        "checkout_auto": False,
        "points_awarded": 0,
        "created_at": ring.now,
    }


def _messages(ring: _Ring, chosen: Sequence[Candidate], ids: Sequence[int]) -> list[dict[str, Any]]:
    """The invitations' outbox messages (``ids``: the invitations' ids, in the order of ``chosen``)."""
    task = ring.task
    return [
        _invitation(_Invited(aid, c.user_id, c.distance_m, task.ends_at), task)
        for aid, c in zip(ids, chosen, strict=True)
    ]


def _sent(ring: _Ring, invited: int) -> int:
    log.info(
        "dispatch ring sent",
        extra={"task_id": ring.task.id, "ring": ring.ring_no, "radius_m": ring.radius_m, "invited": invited},
    )
    return invited


# -- one ring on PostgreSQL: a read, the GEO search, a read, one writing statement -------------------

_ASSIGNMENTS = Assignment.__table__
_RINGS = DispatchRing.__table__
_NOTIFICATIONS = Notification.__table__

# An invitation's columns that are the same for every volunteer of a ring (``:b_<name>``).
_INVITATION_CONSTANTS = (
    "task_id",
    "status",
    "source",
    "invite_seq",
    "invited_at",
    "invite_expires_at",
    "checkout_auto",
    "points_awarded",
    "created_at",
)
# A ring's row (``:r_<name>``; ``invited`` is counted by the statement).
_RING_COLUMNS = ("task_id", "ring_no", "radius_m", "found", "slots_open", "next_at", "created_at")
# What differs between the messages of one ring (in ``:chosen``); the rest of an outbox row is the
# same for all of them (``:c_<name>``): the same task, deadline and template.
_MESSAGE_VARYING = ("user_id", "dedupe_key", "data")
_MESSAGE_CONSTANTS = (
    "sealed",
    "kind",
    "title",
    "body",
    "page",
    "status",
    "attempts",
    "created_at",
    "sweep_after",
)


def _next_id(table: Any) -> Any:
    """The next value of the table's ``id`` sequence, named as PostgreSQL names a serial's
    (``<table>_id_seq``; ``tests/services/test_dispatch.py`` holds it to ``pg_get_serial_sequence``):
    the name cast once at planning, where ``pg_get_serial_sequence`` searched the catalog per id
    drawn (~0.1 ms for a ring's ten)."""
    return func.nextval(literal_column(f"'{table.name}_id_seq'::regclass"))


@functools.cache
def _ring_facts_pg() -> Select[Any]:
    """Everything a ring reads, in one statement and one row (none: no such task): the task as a
    ring reads it, whether the dispatch is still looking (``live``), for a ring after the first
    the volunteers already on the task (``invited_before``; NULL for the first ring, which comes
    before any invitation: the desk cannot invite to a nearby task), and the approved volunteers
    among ``:ids`` (one array: the same SQL text for any number of ids, so psycopg prepares it
    once) with their past assignments counted (as :func:`_rank_query`), as arrays (``f_*``).
    With ``:draw``, and only if this ring is still to be sent (the ring number is ``:b_after``
    and the dispatch live), it also draws the ring's id and one invitation id per volunteer
    wanted from their sequences (``open slots × :per_slot``, at most ``:most``, as
    :func:`_plan`), so that the messages, whose dedupe keys and data name the invitation, are
    written with the invitations in the one writing statement."""
    live = and_(*_live(bindparam("b_now")))
    on_task = (
        select(func.array_agg(Assignment.volunteer_id)).where(Assignment.task_id == Task.id).scalar_subquery()
    )
    sending = and_(bindparam("draw", type_=Boolean), Task.dispatch_ring == bindparam("b_after"), live)
    want = func.least(
        (Task.slots - Task.filled) * bindparam("per_slot", type_=Integer), bindparam("most", type_=Integer)
    )
    task = (
        select(
            *_RING_TASK,
            live.label("live"),
            case((bindparam("b_after", type_=Integer) > 0, on_task)).label("invited_before"),
            case((sending, _next_id(_RINGS))).label("ring_id"),
            case(
                (
                    sending,
                    select(func.array_agg(_next_id(_ASSIGNMENTS)))
                    .select_from(func.generate_series(1, want))
                    .scalar_subquery(),
                )
            ).label("assignment_ids"),
        )
        .where(Task.id == bindparam("b_id"))
        .cte("task")  # it draws from sequences: PostgreSQL evaluates it once and never inlines it
    )
    # Each volunteer's past assignments counted through the index on ``volunteer_id`` (LATERAL), a
    # plan that does not hang on the table's statistics: after a bulk delete (the benchmark's) the
    # join below ``_volunteer_facts`` was planned as a scan of the whole table, 1 ms more.
    past = (
        select(
            func.count().filter(Assignment.status == A.NO_SHOW).label("no_shows"),
            func.count().filter(Assignment.status == A.COMPLETED).label("completed"),
        )
        .where(Assignment.volunteer_id == Volunteer.id)
        .lateral("past")
    )
    candidates = (
        select(Volunteer.id, Volunteer.user_id, Volunteer.category, Volunteer.skills, *past.c)
        .join(past, true())
        .where(
            Volunteer.id == any_(bindparam("ids", type_=ARRAY(BigInteger))),
            Volunteer.status == VolunteerStatus.APPROVED,
        )
        .subquery()
    )
    # One row, the candidates as arrays (column by column): the task's columns are not repeated
    # per candidate, and psycopg parses arrays faster than rows.
    facts = select(
        func.array_agg(candidates.c.id).label("f_ids"),
        func.array_agg(candidates.c.user_id).label("f_user_ids"),
        func.array_agg(candidates.c.category).label("f_categories"),
        func.json_agg(candidates.c.skills).label("f_skills"),
        func.array_agg(candidates.c.no_shows).label("f_no_shows"),
        func.array_agg(candidates.c.completed).label("f_completed"),
    ).subquery()
    return select(task, facts).select_from(task.join(facts, true()))


@functools.cache
def _send_ring_pg() -> Any:
    """PostgreSQL: the whole ring in one statement, so in autocommit one transaction with no
    BEGIN or COMMIT round trip: the compare-and-set of the ring number (:func:`_claim_update`),
    then, only if it won, the invitations (with the ids drawn by :func:`_ring_facts_pg`;
    a volunteer already on the task keeps their place), the ring's row (counting the invitations
    made) and the messages of the invitations made. What differs per invitation is one JSON
    parameter (``:chosen``, read by ``json_to_recordset``): the same SQL text for any number of
    invitations, so psycopg prepares it once, and one string to send rather than an array per
    column (escaping the messages' JSON inside a text array cost more than the statement).
    Answers whether the ring was sent, how many were invited, and the messages' ids. Commits
    without waiting for the WAL flush (``set_config`` of ``synchronous_commit`` for this
    transaction; see the module docstring)."""
    claim = _claim_update().returning(Task.id).cte("claim")
    each = (
        func.json_to_recordset(bindparam("chosen", type_=JSON))
        .table_valued(
            column("id", BigInteger),
            column("volunteer_id", BigInteger),
            column("user_id", BigInteger),
            column("distance_m", Float),
            column("dedupe_key", Text),
            column("data", JSON),
        )
        .render_derived(with_types=True)
    )
    ring_id = bindparam("r_id", type_=BigInteger)
    invited = (
        pg_insert(_ASSIGNMENTS)
        .from_select(
            ["id", "volunteer_id", "user_id", "distance_m", "ring_id", *_INVITATION_CONSTANTS],
            select(
                each.c.id,
                each.c.volunteer_id,
                each.c.user_id,
                each.c.distance_m,
                ring_id,
                *(bindparam(f"b_{key}", type_=_ASSIGNMENTS.c[key].type) for key in _INVITATION_CONSTANTS),
            ).join(claim, true()),
        )
        .on_conflict_do_nothing(index_elements=["task_id", "volunteer_id"])
        .returning(_ASSIGNMENTS.c.id)
        .cte("invited")
    )
    how_many = select(func.count()).select_from(invited).scalar_subquery()
    ring = (
        insert(_RINGS)
        .from_select(
            ["id", "invited", *_RING_COLUMNS],
            select(
                ring_id,
                how_many,
                *(bindparam(f"r_{key}", type_=_RINGS.c[key].type) for key in _RING_COLUMNS),
            ).select_from(claim),
        )
        .returning(_RINGS.c.id)
        .cte("ring")
    )
    messages = (
        pg_insert(_NOTIFICATIONS)
        .from_select(
            [*_MESSAGE_VARYING, *_MESSAGE_CONSTANTS],
            select(
                *(each.c[key] for key in _MESSAGE_VARYING),
                *(bindparam(f"c_{key}", type_=_NOTIFICATIONS.c[key].type) for key in _MESSAGE_CONSTANTS),
            ).join(invited, invited.c.id == each.c.id),
        )
        .on_conflict_do_nothing()
        .returning(_NOTIFICATIONS.c.id)
        .cte("messages")
    )
    return select(
        select(func.count()).select_from(ring).scalar_subquery().label("sent"),
        how_many.label("invited"),
        select(func.array_agg(messages.c.id)).scalar_subquery().label("message_ids"),
        func.set_config("synchronous_commit", "off", true()).label("synchronous_commit"),
    )


class _VolunteerFacts(NamedTuple):
    """A candidate's row as :func:`_ranked` reads it."""

    id: int
    user_id: int
    category: str
    skills: Any
    no_shows: int
    completed: int


def _hinted_hits(
    hint: RingHint, task: RingTask, ring: _Ring, invited_before: set[int], hits: list[tuple[int, float]]
) -> list[tuple[int, float]] | None:
    """The hits of the search sent with ``hint`` as the ring's own search would have found them
    (its first :func:`_limit`), or None when they may not be: the task is no longer where the
    hint put it, or that search stopped at its limit short of the ring's."""
    if (hint.lat, hint.lng, tuple(sorted(hint.categories))) != (
        float(task.lat),
        float(task.lng),
        tuple(sorted(task.categories or ())),
    ):
        return None
    limit = _limit(ring.want, len(invited_before))
    asked = _limit(_most_wanted(hint.slots), hint.on_task)
    if len(hits) >= asked and asked < limit:
        return None
    return hits[:limit]


def _most_wanted(open_slots: int) -> int:
    """Whom a ring with ``open_slots`` looks for: ``open slots × DISPATCH_INVITES_PER_SLOT``, at
    most DISPATCH_MAX_INVITES_PER_RING (``_ring_facts_pg`` draws as many ids)."""
    cfg = config()
    return min(open_slots * cfg.dispatch_invites_per_slot, cfg.dispatch_max_invites_per_ring)


def _advance_pg(
    task_id: int, after_ring: int, radii: Sequence[int], now: datetime, hint: RingHint | None
) -> int | None:
    """Send the ring after ``after_ring`` on PostgreSQL (see :func:`advance`): how many were
    invited, None when no ring was sent. On one connection in autocommit, outside the Session:
    search the GEO index where ``hint`` says the task is, read the task and the candidates' facts
    (drawing the ids) in one statement, write the ring in one statement (:func:`_send_ring_pg`),
    then enqueue the messages' delivery and the next ring in one Redis round trip. Without a hint,
    or when the row disagrees with it, the task is read first and searched where the row says.
    Nothing is written unless the compare-and-set wins."""
    cfg = config()
    hits = None
    if hint is not None and after_ring < len(radii):
        hits = _nearest(
            hint.lat,
            hint.lng,
            hint.categories,
            radii[after_ring],
            _limit(_most_wanted(hint.slots), hint.on_task),
        )
    with db.session.get_bind().connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        while True:
            task = conn.execute(
                _ring_facts_pg(),
                {
                    "b_id": task_id,
                    "b_after": after_ring,
                    "b_now": now,
                    "ids": [vid for vid, _ in hits or ()],
                    "draw": hits is not None,
                    "per_slot": cfg.dispatch_invites_per_slot,
                    "most": cfg.dispatch_max_invites_per_ring,
                },
            ).first()
            if task is None or task.dispatch_ring != after_ring:
                return None  # another run sent this ring
            if not task.live or after_ring >= len(radii):
                _stop_waiting(conn.execute, task_id, after_ring, len(radii), now)
                return None
            ring = _plan(task, after_ring, radii, now)
            invited_before = set(task.invited_before or ())
            if hits is not None:
                kept = hits if hint is None else _hinted_hits(hint, task, ring, invited_before, hits)
                if kept is not None:
                    break
            # No hint, or not one to trust: search where the row says, then read again (the
            # candidates' facts, and the ids drawn only now that the ring is known to be sent).
            hint = None
            hits = _ring_hits(ring, len(invited_before))
        found, fresh = _fresh(kept, invited_before)
        facts = [
            _VolunteerFacts(*each)
            for each in zip(
                task.f_ids or (),
                task.f_user_ids or (),
                task.f_categories or (),
                task.f_skills or (),
                task.f_no_shows or (),
                task.f_completed or (),
                strict=True,
            )
        ]
        chosen = _ranked(task, fresh, facts)[: ring.want]
        ids = (task.assignment_ids or [])[: len(chosen)]
        urgent = outbox.is_urgent("task.invitation")
        messages = outbox.rows_of(_messages(ring, chosen, ids), urgent=urgent)
        sent = conn.execute(
            _send_ring_pg(),
            {
                **_claim_values(task_id, after_ring, len(radii), now),
                "r_id": task.ring_id,
                **{f"r_{key}": value for key, value in _ring_row(ring, found, 0).items() if key != "invited"},
                **{f"b_{key}": value for key, value in _invitation_constants(ring).items()},
                "chosen": [
                    {
                        "id": aid,
                        "volunteer_id": c.volunteer_id,
                        "user_id": c.user_id,
                        "distance_m": c.distance_m,
                        "dedupe_key": m["dedupe_key"],
                        "data": m["data"],
                    }
                    for aid, c, m in zip(ids, chosen, messages, strict=True)
                ],
                **{f"c_{key}": messages[0][key] if messages else None for key in _MESSAGE_CONSTANTS},
            },
        ).one()
    if not sent.sent:
        return None  # another run sent this ring between the read and the write
    specs = outbox.delivery_specs(sent.message_ids or [], urgent=urgent)
    if ring.next_at is not None and sent.invited:
        on_task = len(invited_before) + sent.invited
        hint = ring_hint(task, on_task)
        specs.append(task_service.dispatch_job(task_id, ring.ring_no, at=ring.next_at, hint=hint))
    jobs.enqueue_committed(specs)
    return _sent(ring, sent.invited)


# -- one ring elsewhere (SQLite): in the Session's transaction -------------------------------------


@functools.cache
def _claim_statement() -> Any:
    """Built once (building it and its cache key cost more than running it)."""
    return _claim_update().returning(*_RING_TASK).execution_options(synchronize_session=False)


@functools.cache
def _insert_invitations() -> Any:
    return insert(_ASSIGNMENTS).returning(_ASSIGNMENTS.c.id, sort_by_parameter_order=True)


@functools.cache
def _insert_ring() -> Any:
    return insert(_RINGS).returning(_RINGS.c.id)


def _advance_portable(
    task_id: int, after_ring: int, radii: Sequence[int], now: datetime, hint: RingHint | None
) -> int | None:
    """Send the ring after ``after_ring`` in the Session's transaction (see :func:`advance`): how
    many were invited, None when no ring was sent. The compare-and-set first (the task's row
    locked until the commit), then the search, the ranking, the ring's row, the invitations and
    their messages; the jobs are enqueued after the commit. ``hint`` goes unused: the task is read
    (by the compare-and-set) before the search."""
    rings = len(radii)
    task = None
    if after_ring < rings:
        task = db.session.execute(_claim_statement(), _claim_values(task_id, after_ring, rings, now)).first()
    if task is None:
        _stop_waiting(db.session.execute, task_id, after_ring, rings, now)
        db.session.commit()
        return None
    ring = _plan(task, after_ring, radii, now)
    # The ring being sent is the first when no invitation can exist yet (see _ring_facts_pg).
    invited_before = (
        set(db.session.scalars(select(Assignment.volunteer_id).where(Assignment.task_id == task_id)))
        if ring.ring_no > 1
        else set()
    )
    found, fresh = _search(ring, invited_before)
    chosen = rank(task, fresh)[: ring.want]
    ring_id = db.session.execute(_insert_ring(), _ring_row(ring, found, len(chosen))).scalar_one()
    if chosen:
        constants = _invitation_constants(ring)
        rows = [
            {
                **constants,
                "volunteer_id": c.volunteer_id,
                "user_id": c.user_id,
                "ring_id": ring_id,
                "distance_m": c.distance_m,
            }
            for c in chosen
        ]
        ids = list(db.session.execute(_insert_invitations(), rows).scalars())
        outbox.notify_many(_messages(ring, chosen, ids), urgent=outbox.is_urgent("task.invitation"))
        if ring.next_at is not None:
            hint = ring_hint(task, len(invited_before) + len(chosen))
            task_service.enqueue_dispatch(task_id, ring.ring_no, at=ring.next_at, hint=hint)
    db.session.commit()
    return _sent(ring, len(chosen))


def advance(task_id: int, after_ring: int, hint: RingHint | None = None) -> int:
    """Send the ring after ``after_ring`` if the task still needs volunteers; returns how many
    were invited. Harmless to run twice.

    One ring, atomically: advance the task's ring number with a compare-and-set that also checks
    the dispatch still needs volunteers (another run that sent this ring wins and this one
    stops); search the on-duty index within the ring's radius, drop those already invited to the
    task, rank the rest and keep the best ``open slots × DISPATCH_INVITES_PER_SLOT`` (at most
    DISPATCH_MAX_INVITES_PER_RING); record the ring; invite the chosen; schedule the next ring
    DISPATCH_RING_TIMEOUT_SECONDS later unless this was the last. A ring that finds nobody new
    widens at once to the next. On PostgreSQL the writes are one statement after the reads
    (:func:`_advance_pg`); elsewhere one transaction (:func:`_advance_portable`).
    """
    radii = ring_radii()
    send = _advance_pg if is_postgresql(db.session()) else _advance_portable
    invited_total = 0
    while True:
        invited = send(task_id, after_ring, radii, utcnow(), hint)
        if invited is None:
            return invited_total
        invited_total += invited
        if invited or after_ring + 1 == len(radii):
            return invited_total
        after_ring += 1  # nobody new within this radius: widen now


def sweep(now: datetime | None = None) -> int:
    """Send every ring that is due (a lost or late scheduled job must not stall a dispatch)."""
    now = now or utcnow()
    due = db.session.execute(
        select(Task.id, Task.dispatch_ring)
        .where(Task.dispatch_next_at <= now, Task.status.in_(LIVE))
        .order_by(Task.dispatch_next_at)
        .limit(500)
    ).all()
    db.session.rollback()
    invited = 0
    for task_id, ring in due:
        invited += advance(task_id, ring)
    return invited


@dataclass(frozen=True, slots=True)
class RingInvitation:
    """One volunteer a ring invited, and how they answered."""

    assignment_id: int
    volunteer_id: int
    name_masked: str
    category: str
    distance_m: float | None
    status: str
    invited_at: datetime | None
    responded_at: datetime | None
    response_seconds: float | None


@dataclass(frozen=True, slots=True)
class RingView:
    """One ring as sent: its radius, what it found, whom it invited."""

    ring_no: int
    radius_m: int
    sent_at: datetime
    found: int
    invited: int
    slots_open: int
    next_at: datetime | None
    invitations: list[RingInvitation]


@dataclass(frozen=True, slots=True)
class DispatchView:
    """A nearby dispatch as the desk follows it: the task's slots and each ring sent."""

    task_id: int
    status: str
    slots: int
    filled: int
    ring: int
    next_ring_at: datetime | None
    exhausted_at: datetime | None
    radii_m: list[int]
    rings: list[RingView]


def dispatch_view(principal: Principal, task_id: int) -> DispatchView:
    """Each ring of a nearby dispatch: its radius, who was invited, who answered and how fast."""
    task = task_service.load_for_staff(principal, task_id)
    rings = db.session.scalars(
        select(DispatchRing).where(DispatchRing.task_id == task.id).order_by(DispatchRing.ring_no)
    ).all()
    invitations = db.session.execute(
        select(Assignment, Volunteer)
        .join(Volunteer, Volunteer.id == Assignment.volunteer_id)
        .where(Assignment.task_id == task.id, Assignment.ring_id.is_not(None))
        .order_by(Assignment.distance_m, Assignment.id)
    ).all()
    by_ring: dict[int, list[RingInvitation]] = {r.id: [] for r in rings}
    for assignment, volunteer in invitations:
        by_ring.setdefault(assignment.ring_id, []).append(
            RingInvitation(
                assignment_id=assignment.id,
                volunteer_id=volunteer.id,
                name_masked=volunteer.name_masked,
                category=volunteer.category,
                distance_m=assignment.distance_m,
                status=assignment.status,
                invited_at=assignment.invited_at,
                responded_at=assignment.responded_at,
                response_seconds=assignment.response_seconds,
            )
        )
    return DispatchView(
        task_id=task.id,
        status=task.status,
        slots=task.slots,
        filled=task.filled,
        ring=task.dispatch_ring,
        next_ring_at=task.dispatch_next_at,
        exhausted_at=task.dispatch_exhausted_at,
        radii_m=ring_radii(),
        rings=[
            RingView(
                ring_no=r.ring_no,
                radius_m=r.radius_m,
                sent_at=r.created_at,
                found=r.found,
                invited=r.invited,
                slots_open=r.slots_open,
                next_at=r.next_at,
                invitations=by_ring.get(r.id, []),
            )
            for r in rings
        ],
    )
