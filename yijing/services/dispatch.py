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

On PostgreSQL a ring is one round trip to the database and two to Redis (:func:`_advance_pg`):
search the GEO index where the ring's job says the task is (its :class:`~yijing.services.tasks.RingHint`:
the task as publishing, or the ring before, saw it: place, categories, skills, slots, how many
were on it, title, address and times); then one statement, its own transaction in autocommit
(no BEGIN, no COMMIT round trip), advances the ring number with the compare-and-set, only if the
task still is what the hint says, and, only if that won, ranks the hits in SQL as :func:`rank`
does, writes the invitations, the ring's row and the invitations' messages
(:func:`_send_ring_pg`); then one Redis pipeline enqueues the messages' delivery and the next ring.
The row decides, never the hint: a task no longer what the hint says (edited since), or a search
that stopped at a limit short of what the row asks for, sends nothing; the task is then read and
searched again where the row says (a round trip each). A job without a hint (enqueued before
hints, the sweep's) reads the task first: two statements. Two runs of the same ring meet at the
compare-and-set, and one writes nothing. (A connection that sat idle in the pool is pinged first,
one more round trip: :mod:`yijing.connection_check`.)
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
ranks as if about 2.3 times farther away. Ties go to the nearer, then to the lower volunteer id.
:func:`rank` ranks in Python (SQLite); on PostgreSQL the ring's statement ranks in SQL with the
same float operations, and ``tests/services/test_dispatch.py`` holds the two to the same answers.
"""

from __future__ import annotations

import dataclasses
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
    TextClause,
    and_,
    bindparam,
    case,
    func,
    insert,
    not_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

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
from yijing.models.base import UTCDateTime, utcnow
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


def _invitation(assignment: Any, task: Any) -> dict[str, Any]:
    """The outbox message of an invitation (``assignment``: an Assignment or an :class:`_Invited`)."""
    message = _invitation_to(task, assignment.invite_expires_at, assignment.source)
    message["user_id"] = assignment.user_id
    message["dedupe_key"] = _invitation_key(task.id, assignment.id, assignment.invite_seq)
    message["data"].update(assignment_id=assignment.id, distance_m=assignment.distance_m)
    return message


def _invitation_to(task: Any, deadline: datetime | None, source: str) -> dict[str, Any]:
    """What every invitation to ``task`` with this deadline and source says, before its own
    assignment's id and distance are added to its data (:func:`_invitation`; a ring's statement
    adds them the same way, :func:`_send_ring_pg`). ``task``: a Task or a row with its id,
    title, address, jurisdiction and start."""
    when = f"，请在 {local_text(deadline)} 前答复" if deadline and source == "assigned" else ""
    return {
        "kind": "task.invitation",
        "title": f"任务邀请：{task.title}"[:100],
        "body": f"{local_text(task.starts_at)} 开始，地点：{task.address or '见任务详情'}{when}。",
        "data": task_service.notification_data(task, expires_at=deadline.isoformat() if deadline else None),
        "page": task_service.task_page(task.id),
    }


def _invitation_key(task_id: int, assignment_id: int | str, invite_seq: int) -> str:
    """An invitation message's dedupe key (``assignment_id`` ``"%s"``: the format a ring's
    statement fills in)."""
    return f"task:{task_id}:assignment:{assignment_id}:invite:{invite_seq}"


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
    counted (on PostgreSQL :func:`_send_ring_pg` ranks the same way in SQL)."""
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
        .where(
            Volunteer.id.in_(bindparam("ids", expanding=True)), Volunteer.status == VolunteerStatus.APPROVED
        )
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


def _most_wanted(open_slots: int) -> int:
    """Whom a ring with ``open_slots`` looks for: ``open slots × DISPATCH_INVITES_PER_SLOT``, at
    most DISPATCH_MAX_INVITES_PER_RING (``_send_ring_pg`` computes the same)."""
    cfg = config()
    return min(open_slots * cfg.dispatch_invites_per_slot, cfg.dispatch_max_invites_per_ring)


# How many hits a ring's search asks for (:func:`_limit`; ``_send_ring_pg`` computes the same).
_LIMIT_PER_WANTED = 4
_LIMIT_SPARE = 16
_LIMIT_MOST = 5000


def _limit(want: int, on_task: int) -> int:
    """How many hits a ring's search asks for: enough to keep ``want`` after dropping those
    already on the task and the misfits."""
    return min(on_task + want * _LIMIT_PER_WANTED + _LIMIT_SPARE, _LIMIT_MOST)


def _nearest(
    lat: float, lng: float, categories: Sequence[str], radius_m: int, limit: int
) -> list[tuple[int, float]]:
    return duty_index.nearest(lat, lng, radius_m=radius_m, limit=limit, categories=list(categories) or None)


def _search(ring: _Ring, invited_before: set[int]) -> tuple[int, list[tuple[int, float]]]:
    """On-duty volunteers within the ring's radius not yet invited to the task (the Redis GEO
    index, :func:`_limit` hits for those already on it): how many were found, and their
    (volunteer id, distance) nearest first."""
    task = ring.task
    limit = _limit(ring.want, len(invited_before))
    hits = _nearest(task.lat, task.lng, task.categories or (), ring.radius_m, limit)
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


def _invitation_constants(task_id: int, ends_at: datetime, now: datetime) -> dict[str, Any]:
    """An invitation's values that are the same for every volunteer of a ring (valid until the
    task ends)."""
    return {
        "task_id": task_id,
        "status": A.INVITED,
        "source": DispatchMode.NEARBY,
        "invite_seq": 1,
        "invited_at": now,
        "invite_expires_at": ends_at,
        "checkout_auto": False,
        "points_awarded": 0,
        "created_at": now,
    }


def _messages(ring: _Ring, chosen: Sequence[Candidate], ids: Sequence[int]) -> list[dict[str, Any]]:
    """The invitations' outbox messages (``ids``: the invitations' ids, in the order of ``chosen``)."""
    task = ring.task
    return [
        _invitation(_Invited(aid, c.user_id, c.distance_m, task.ends_at), task)
        for aid, c in zip(ids, chosen, strict=True)
    ]


def _sent(task_id: int, ring_no: int, radius_m: int, invited: int) -> int:
    log.info(
        "dispatch ring sent",
        extra={"task_id": task_id, "ring": ring_no, "radius_m": radius_m, "invited": invited},
    )
    return invited


# -- one ring on PostgreSQL: the GEO search, then one statement ------------------------------------

_TASKS = Task.__table__
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
# An outbox row's columns that are the same for every message of a ring (``:c_<name>``): the same
# task, deadline and template. Each message's user, dedupe key and data are the statement's.
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
# An invitation's constants the statement has as other parameters already (the rest are ``:b_<name>``).
_INVITATION_SAME = {
    "task_id": ":b_id",
    "invited_at": ":b_now",
    "created_at": ":b_now",
    "invite_expires_at": ":e_ends_at",
}
# The task's columns a hint must still match for the statement to send the ring (``:e_<name>``):
# where it searched and what its messages say.
_SEEN_COLUMNS = ("lat", "lng", "title", "address", "jurisdiction_id", "starts_at", "ends_at")


def _json_list(value: str) -> str:
    """SQL for a JSON list column as ``jsonb``, JSON null or SQL NULL as ``[]`` (as Python reads
    ``task.categories or ()``)."""
    return f"(CASE WHEN json_typeof({value}) = 'array' THEN CAST({value} AS jsonb) ELSE '[]' END)"


def _column_types(prefix: str, table: Any, keys: Sequence[str]) -> dict[str, Any]:
    """``:<prefix><key>``'s type, the column's; times untyped (see :func:`_send_ring_pg`)."""
    return {
        f"{prefix}{key}": table.c[key].type for key in keys if not isinstance(table.c[key].type, UTCDateTime)
    }


@functools.cache
def _ring_task_pg() -> Select[Any]:
    """The task as a ring reads it when its job brought no hint, or one the row no longer
    matches: its columns, whether the dispatch is still looking (``live``) and how many are on
    it (``on_task``)."""
    on_task = select(func.count()).where(Assignment.task_id == Task.id).scalar_subquery()
    return select(
        *_RING_TASK, and_(*_live(bindparam("b_now"))).label("live"), on_task.label("on_task")
    ).where(Task.id == bindparam("b_id"))


@functools.cache
def _send_ring_pg() -> TextClause:
    """PostgreSQL: the whole ring in one statement, so in autocommit one transaction with no
    BEGIN or COMMIT round trip. It takes the GEO search's hits (``:h_ids``/``:h_distances``,
    nearest first: one array each, so the same SQL text for any number) and the task as the
    ring's hint saw it (``:e_*``), and:

    1. (``claim``) advances the ring number with the compare-and-set, as :func:`_claim_update`
       and :func:`_live`, only if the task still is what the hint says (place, categories, skills,
       title, address, times) and the search did not stop at its limit (``:asked``, ``:short``)
       short of what the row now asks for (:func:`_limit` of :func:`_most_wanted` of the row's
       open slots, and how many are on it);
    2. (``fresh``, ``chosen``) keeps the hits within that limit not yet on the task (``found``),
       the approved among them of the task's categories and skills (as
       :func:`~yijing.services.tasks.misfit_reason`), ranked as :func:`rank` ranks them (each
       volunteer's past assignments counted through the index on ``volunteer_id``), the best
       ``want``;
    3. writes their invitations (a volunteer on the task meanwhile keeps their place), the ring's
       row (its id drawn first, so that the invitations can name it) and the invitations'
       messages: the ring's shared outbox row (``:c_*``) with each one's user, dedupe key
       (``:c_dedupe_key`` with the assignment's id) and data (``:c_data`` with its id and
       distance, as :func:`_invitation` adds them).

    Answers whether the ring was sent, how many were invited, the messages' ids and how many
    were on the task before. Commits without waiting for the WAL flush (``set_config`` of
    ``synchronous_commit`` for this transaction; see the module docstring).

    Written as SQL, not built with SQLAlchemy's expressions: their text was 6.7 KB with 64
    parameters, over psycopg's limits for caching a statement's parsing (4 KB, 50 parameters), so
    every ring parsed it again (~0.12 ms) and bound the parameters one by one."""
    live = ", ".join(f"'{status}'" for status in LIVE)
    invitation = ", ".join(_INVITATION_CONSTANTS)
    invitation_values = ", ".join(_INVITATION_SAME.get(key, f":b_{key}") for key in _INVITATION_CONSTANTS)
    message = ", ".join(_MESSAGE_CONSTANTS)
    message_values = ", ".join(f":c_{key}" for key in _MESSAGE_CONSTANTS)
    seen = ", ".join(f"t.{key}" for key in _SEEN_COLUMNS)
    seen_values = ", ".join(f":e_{key}" for key in _SEEN_COLUMNS)
    each_data = "jsonb_build_object('assignment_id', i.id, 'distance_m', i.distance_m)"
    sql = f"""
WITH wanted AS (SELECT CAST(:e_categories AS jsonb) AS categories, CAST(:e_skills AS jsonb) AS skills),
now_on AS (SELECT count(*) AS on_task FROM assignments WHERE task_id = :b_id),
row AS (
  SELECT t.slots - t.filled AS open_slots, now_on.on_task,
         least((t.slots - t.filled) * :per_slot, :most) AS want
  FROM tasks t, now_on WHERE t.id = :b_id),
sized AS (
  SELECT *, least(on_task + want * {_LIMIT_PER_WANTED} + {_LIMIT_SPARE}, {_LIMIT_MOST}) AS lim FROM row),
claim AS (
  UPDATE tasks t
  SET dispatch_ring = :b_after + 1, dispatch_next_at = :b_next_at, dispatch_exhausted_at = :b_exhausted_at
  FROM sized, wanted w
  WHERE t.id = :b_id AND t.dispatch_ring = :b_after
    AND t.dispatch_mode = '{DispatchMode.NEARBY}' AND t.status IN ({live}) AND t.ends_at > :b_now
    AND t.filled < t.slots
    AND ({seen}) = ({seen_values})
    AND {_json_list("t.categories")} = w.categories AND {_json_list("t.skills")} = w.skills
    AND NOT (:short AND :asked < sized.lim)
  RETURNING sized.*),
fresh AS (
  SELECT h.id, h.distance_m
  FROM claim, unnest(:h_ids, :h_distances) WITH ORDINALITY AS h(id, distance_m, ord)
  WHERE h.ord <= claim.lim
    AND NOT EXISTS (SELECT FROM assignments a WHERE a.task_id = :b_id AND a.volunteer_id = h.id)),
chosen AS (
  SELECT v.id AS volunteer_id, v.user_id, f.distance_m
  FROM wanted w, fresh f JOIN volunteers v ON v.id = f.id,
  LATERAL (
    SELECT count(*) FILTER (WHERE a.status = '{A.NO_SHOW}') AS no_shows,
           count(*) FILTER (WHERE a.status = '{A.COMPLETED}') AS completed
    FROM assignments a WHERE a.volunteer_id = v.id) past
  WHERE v.status = '{VolunteerStatus.APPROVED}'
    AND (w.categories = '[]' OR w.categories ? v.category) AND {_json_list("v.skills")} @> w.skills
  ORDER BY f.distance_m * (1 + :weight * (CAST(past.no_shows AS float8)
           / CAST(past.no_shows + past.completed + 2 AS float8))), f.distance_m, v.id
  LIMIT (SELECT want FROM claim)),
ring_id AS (SELECT nextval('{_RINGS.name}_id_seq'::regclass) AS id FROM claim),
invited AS (
  INSERT INTO assignments (volunteer_id, user_id, distance_m, ring_id, {invitation})
  SELECT c.volunteer_id, c.user_id, c.distance_m, r.id, {invitation_values}
  FROM chosen c, ring_id r
  ON CONFLICT (task_id, volunteer_id) DO NOTHING
  RETURNING id, user_id, distance_m),
ring AS (
  INSERT INTO dispatch_rings (id, task_id, ring_no, radius_m, found, invited, slots_open, next_at, created_at)
  SELECT r.id, :b_id, :b_after + 1, :r_radius_m, (SELECT count(*) FROM fresh), (SELECT count(*) FROM invited),
         c.open_slots, :b_next_at, :b_now
  FROM claim c, ring_id r
  RETURNING id),
messages AS (
  INSERT INTO notifications (user_id, dedupe_key, data, {message})
  SELECT i.user_id, format(:c_dedupe_key, i.id),
         CAST(CAST(:c_data AS jsonb) || {each_data} AS json), {message_values}
  FROM invited i
  ON CONFLICT DO NOTHING
  RETURNING id)
SELECT (SELECT count(*) FROM ring) AS sent, (SELECT count(*) FROM invited) AS invited,
       (SELECT array_agg(id) FROM messages) AS message_ids, (SELECT on_task FROM claim) AS on_task,
       set_config('synchronous_commit', 'off', true)"""
    # Times go untyped (psycopg sends an aware datetime as timestamptz): a typed one is sent with a
    # 26-byte cast, and ten of them would take the text over psycopg's limit.
    types: dict[str, Any] = {
        "b_id": BigInteger(),
        "b_after": Integer(),
        **_column_types("e_", _TASKS, _SEEN_COLUMNS),
        "e_categories": JSON(),
        "e_skills": JSON(),
        "short": Boolean(),
        "asked": Integer(),
        "per_slot": Integer(),
        "most": Integer(),
        "weight": Float(),
        "h_ids": ARRAY(BigInteger),
        "h_distances": ARRAY(Float),
        "r_radius_m": Integer(),
        **_column_types("b_", _ASSIGNMENTS, [k for k in _INVITATION_CONSTANTS if k not in _INVITATION_SAME]),
        "c_dedupe_key": Text(),
        "c_data": JSON(),
        **_column_types("c_", _NOTIFICATIONS, _MESSAGE_CONSTANTS),
    }
    # On one line: the statement's indentation would be a tenth of what psycopg parses.
    return text(" ".join(sql.split())).bindparams(
        *(bindparam(name, type_=type_) for name, type_ in types.items())
    )


class _SeenTask(NamedTuple):
    """A task as a ring's hint saw it: what its invitations' messages read."""

    id: int
    title: str
    address: str
    jurisdiction_id: int
    starts_at: datetime


def _send_hinted(
    conn: Any,
    task_id: int,
    after_ring: int,
    radii: Sequence[int],
    now: datetime,
    hint: RingHint,
    urgent: bool,
) -> Row[Any] | None:
    """Search where ``hint`` says the task is and send the ring in one statement
    (:func:`_send_ring_pg`): its answer, or None when the statement sent nothing (the ring was
    sent meanwhile, the dispatch is over, or the task is no longer what the hint says)."""
    cfg = config()
    ring_no = after_ring + 1
    asked = _limit(_most_wanted(hint.slots), hint.on_task)
    hits = _nearest(hint.lat, hint.lng, hint.categories, radii[after_ring], asked)
    claim = _claim_values(task_id, after_ring, len(radii), now)
    seen = _SeenTask(task_id, hint.title, hint.address, hint.jurisdiction_id, hint.starts_at)
    message = _invitation_to(seen, hint.ends_at, DispatchMode.NEARBY)
    [shared] = outbox.rows_of(
        [{**message, "user_id": 0, "dedupe_key": _invitation_key(task_id, "%s", 1)}], urgent=urgent
    )
    answer = conn.execute(
        _send_ring_pg(),
        {
            **claim,
            **{f"e_{key}": getattr(hint, key) for key in _SEEN_COLUMNS},
            "e_categories": list(hint.categories),
            "e_skills": list(hint.skills),
            "short": len(hits) >= asked,
            "asked": asked,
            "per_slot": cfg.dispatch_invites_per_slot,
            "most": cfg.dispatch_max_invites_per_ring,
            "weight": cfg.dispatch_no_show_weight,
            "h_ids": [vid for vid, _ in hits],
            "h_distances": [distance for _, distance in hits],
            "r_task_id": task_id,
            "r_ring_no": ring_no,
            "r_radius_m": radii[after_ring],
            "r_next_at": claim["b_next_at"],
            "r_created_at": now,
            **{
                f"b_{key}": value
                for key, value in _invitation_constants(task_id, hint.ends_at, now).items()
                if key not in _INVITATION_SAME
            },
            "c_dedupe_key": shared["dedupe_key"],
            "c_data": shared["data"],
            **{f"c_{key}": shared[key] for key in _MESSAGE_CONSTANTS},
        },
    ).one()
    return answer if answer.sent else None


def _advance_pg(
    task_id: int, after_ring: int, radii: Sequence[int], now: datetime, hint: RingHint | None
) -> int | None:
    """Send the ring after ``after_ring`` on PostgreSQL (see :func:`advance`): how many were
    invited, None when no ring was sent. On one connection in autocommit, outside the Session:
    search the GEO index where ``hint`` says the task is and send the ring in one statement
    (:func:`_send_hinted`), then enqueue the messages' delivery and the next ring in one Redis
    round trip. Without a hint, or when the statement finds the task is not what the hint says,
    the task is read (:func:`_ring_task_pg`) and its row is the hint. Nothing is written unless
    the compare-and-set wins."""
    rings = len(radii)
    urgent = outbox.is_urgent("task.invitation")
    with db.session.get_bind().connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        if after_ring >= rings:
            _stop_waiting(conn.execute, task_id, after_ring, rings, now)
            return None
        # A row read just now is a hint the statement matches unless the task changes in between:
        # a few tries are enough for a task edited meanwhile.
        for _ in range(3):
            if hint is None:
                task = conn.execute(_ring_task_pg(), {"b_id": task_id, "b_now": now}).first()
                if task is None or task.dispatch_ring != after_ring:
                    return None  # another run sent this ring
                if not task.live:
                    _stop_waiting(conn.execute, task_id, after_ring, rings, now)
                    return None
                hint = ring_hint(task, task.on_task)
            answer = _send_hinted(conn, task_id, after_ring, radii, now, hint, urgent)
            if answer is not None:
                break
            hint = None  # sent meanwhile, over, or edited: the row says which
        else:
            raise RuntimeError(f"task {task_id} changed under each of three tries to send its ring")
    specs = outbox.delivery_specs(answer.message_ids or [], urgent=urgent)
    next_at, _ = _timing(after_ring + 1, rings, now)
    if next_at is not None and answer.invited:
        following = dataclasses.replace(hint, on_task=answer.on_task + answer.invited)
        specs.append(task_service.dispatch_job(task_id, after_ring + 1, at=next_at, hint=following))
    jobs.enqueue_committed(specs)
    return _sent(task_id, after_ring + 1, radii[after_ring], answer.invited)


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
    # The ring being sent is the first when no invitation can exist yet: the desk cannot invite to a
    # nearby task.
    invited_before = (
        set(db.session.scalars(select(Assignment.volunteer_id).where(Assignment.task_id == task_id)))
        if ring.ring_no > 1
        else set()
    )
    found, fresh = _search(ring, invited_before)
    chosen = rank(task, fresh)[: ring.want]
    ring_id = db.session.execute(_insert_ring(), _ring_row(ring, found, len(chosen))).scalar_one()
    if chosen:
        constants = _invitation_constants(task_id, ring.task.ends_at, ring.now)
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
    return _sent(task_id, ring.ring_no, ring.radius_m, len(chosen))


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
