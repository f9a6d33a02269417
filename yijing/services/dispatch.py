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
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Row,
    Select,
    and_,
    any_,
    bindparam,
    case,
    func,
    insert,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from yijing import policies
from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput
from yijing.extensions import db
from yijing.models import (
    Assignment,
    AssignmentStatus,
    DispatchMode,
    DispatchRing,
    Jurisdiction,
    Task,
    Volunteer,
    VolunteerStatus,
)
from yijing.models.base import utcnow
from yijing.policies import Permission, Principal
from yijing.services import audit, duty_index, outbox
from yijing.services import tasks as task_service
from yijing.services.tasks import LIVE, config, local_text, move_assignment
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
def _rank_query(postgresql: bool) -> Select[Any]:
    """Built once: approved volunteers among ``:ids`` with their past assignments counted. On
    PostgreSQL ``:ids`` is one array (``= ANY(:ids)``: the same SQL text for any number of ids, so
    psycopg prepares it once); elsewhere an IN list."""
    among = (
        Volunteer.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
        if postgresql
        else Volunteer.id.in_(bindparam("ids", expanding=True))
    )
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
    ids = [vid for vid, _ in hits]
    if not ids:
        return []
    rows = db.session.execute(_rank_query(is_postgresql(db.session())), {"ids": ids}).all()
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


# What a ring reads of its task: the claim returns these columns as a Core row, not a loaded Task.
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


@functools.cache
def _claim_statement() -> Any:
    """Built once (building it and its cache key cost more than running it)."""
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
        .returning(*_RING_TASK)
        .execution_options(synchronize_session=False)
    )


def _claim(task_id: int, after_ring: int, rings: int, now: datetime) -> RingTask | None:
    """Claim the ring after ``after_ring``: one compare-and-set of the task's ring number that also
    checks the dispatch still needs volunteers and a ring is left, returning the task (its row
    locked until the commit). Only one of a job and the sweep racing on the same ring wins. None
    for the other, and when the dispatch is over (which then no longer waits for a next ring). The
    task comes back as a Core row of :data:`_RING_TASK` (loading a whole Task cost a third of a
    millisecond more per ring)."""
    if after_ring < rings:
        is_last = after_ring + 1 == rings
        next_at = None if is_last else now + timedelta(seconds=config().dispatch_ring_timeout_seconds)
        task = db.session.execute(
            _claim_statement(),
            {
                "b_id": task_id,
                "b_after": after_ring,
                "b_now": now,
                "b_next_at": next_at,
                "b_exhausted_at": now if is_last else None,
            },
        ).first()
        if task is not None:
            return task
    over = () if after_ring >= rings else (not_(and_(*_live(now))),)
    db.session.execute(
        update(Task)
        .where(
            Task.id == task_id, Task.dispatch_ring == after_ring, Task.dispatch_next_at.is_not(None), *over
        )
        .values(dispatch_next_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return None


def _find_candidates(task: RingTask, radius: int, want: int) -> tuple[int, list[Candidate]]:
    """On-duty volunteers within ``radius`` not yet invited to the task: how many were found, and
    the best ``want`` of them by :func:`rank`."""
    # Ring 1 comes first (``task.dispatch_ring`` is the ring being sent): nobody can be invited to a
    # nearby task before it (the desk cannot).
    invited_before = (
        set(db.session.scalars(select(Assignment.volunteer_id).where(Assignment.task_id == task.id)))
        if task.dispatch_ring > 1
        else set()
    )
    hits = duty_index.nearest(
        task.lat,
        task.lng,
        radius_m=radius,
        limit=min(len(invited_before) + want * 4 + 16, 5000),
        categories=list(task.categories or []) or None,
    )
    fresh = [(vid, dist) for vid, dist in hits if vid not in invited_before]
    return len(fresh), rank(task, fresh)[:want]


_ASSIGNMENTS = Assignment.__table__
_RINGS = DispatchRing.__table__


@functools.cache
def _insert_invitations() -> Any:
    return insert(_ASSIGNMENTS).returning(_ASSIGNMENTS.c.id, sort_by_parameter_order=True)


@functools.cache
def _insert_ring() -> Any:
    return insert(_RINGS).returning(_RINGS.c.id)


# A ring's row (``:r_<name>``).
_RING_COLUMNS = ("task_id", "ring_no", "radius_m", "found", "invited", "slots_open", "next_at", "created_at")
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


@functools.cache
def _insert_ring_and_invitations_pg() -> Any:
    """PostgreSQL: the ring's row and its invitations in one statement (the ring inserted by a
    data-modifying CTE, the invitations from one array per varying column through ``unnest``),
    the same SQL text for any number of invitations, so psycopg prepares it once. Answers
    (volunteer id, assignment id) per invitation."""
    ring = (
        insert(_RINGS)
        .values({key: bindparam(f"r_{key}", type_=_RINGS.c[key].type) for key in _RING_COLUMNS})
        .returning(_RINGS.c.id)
        .cte("ring")
    )
    each = (
        func.unnest(
            bindparam("u_volunteer_id", type_=ARRAY(BigInteger)),
            bindparam("u_user_id", type_=ARRAY(BigInteger)),
            bindparam("u_distance_m", type_=ARRAY(Float)),
        )
        .table_valued("volunteer_id", "user_id", "distance_m")
        .render_derived()
    )
    constants = [bindparam(f"b_{key}", type_=_ASSIGNMENTS.c[key].type) for key in _INVITATION_CONSTANTS]
    rows = select(each.c.volunteer_id, each.c.user_id, each.c.distance_m, ring.c.id, *constants).join(
        ring, true()
    )
    return (
        insert(_ASSIGNMENTS)
        .from_select(["volunteer_id", "user_id", "distance_m", "ring_id", *_INVITATION_CONSTANTS], rows)
        .returning(_ASSIGNMENTS.c.volunteer_id, _ASSIGNMENTS.c.id)
    )


def _record_ring(
    task: RingTask, ring: dict[str, Any], chosen: Sequence[Candidate], now: datetime
) -> list[int]:
    """Insert the ring's row (``ring``: its values) and one invitation per chosen volunteer (valid
    until the task ends); the invitations' ids, in the order of ``chosen``. Nothing is loaded back
    (Core statements: no unit of work). On PostgreSQL one statement
    (:func:`_insert_ring_and_invitations_pg`); elsewhere the ring, then the invitations in one
    INSERT."""
    constants = {
        "task_id": task.id,
        "status": A.INVITED,
        "source": DispatchMode.NEARBY,
        "invite_seq": 1,
        "invited_at": now,
        "invite_expires_at": task.ends_at,
        "checkout_auto": False,
        "points_awarded": 0,
        "created_at": now,
    }
    if chosen and is_postgresql(db.session()):
        by_volunteer = dict(
            db.session.execute(
                _insert_ring_and_invitations_pg(),
                {
                    **{f"r_{key}": value for key, value in ring.items()},
                    **{f"b_{key}": value for key, value in constants.items()},
                    "u_volunteer_id": [c.volunteer_id for c in chosen],
                    "u_user_id": [c.user_id for c in chosen],
                    "u_distance_m": [c.distance_m for c in chosen],
                },
            ).all()
        )
        return [by_volunteer[c.volunteer_id] for c in chosen]
    ring_id = db.session.execute(_insert_ring(), ring).scalar_one()
    if not chosen:
        return []
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
    return list(db.session.execute(_insert_invitations(), rows).scalars())


def _notify_chosen(task: RingTask, chosen: Sequence[Candidate], ids: Sequence[int]) -> None:
    """The invitations' messages, written to the outbox in one INSERT (urgent: they go out ahead
    of the rest)."""
    outbox.notify_many(
        [
            _invitation(_Invited(aid, c.user_id, c.distance_m, task.ends_at), task)
            for aid, c in zip(ids, chosen, strict=True)
        ],
        urgent=outbox.is_urgent("task.invitation"),
    )


def _send_ring(task: RingTask, radii: Sequence[int], now: datetime) -> list[Candidate]:
    """Send the ring just claimed (``task.dispatch_ring``) and commit (see :func:`advance`); the
    volunteers it invited."""
    cfg = config()
    ring_no = task.dispatch_ring
    radius = radii[ring_no - 1]
    open_slots = task.slots - task.filled
    want = min(open_slots * cfg.dispatch_invites_per_slot, cfg.dispatch_max_invites_per_ring)
    found, chosen = _find_candidates(task, radius, want)
    next_at = task.dispatch_next_at
    ring = {
        "task_id": task.id,
        "ring_no": ring_no,
        "radius_m": radius,
        "found": found,
        "invited": len(chosen),
        "slots_open": open_slots,
        "next_at": next_at,
        "created_at": now,
    }
    ids = _record_ring(task, ring, chosen, now)
    if chosen:
        _notify_chosen(task, chosen, ids)
    if next_at is not None and chosen:
        task_service.enqueue_dispatch(task.id, ring_no, at=next_at)
    task_id = task.id  # the commit expires the task: no reload just for the log line
    db.session.commit()
    log.info(
        "dispatch ring sent",
        extra={"task_id": task_id, "ring": ring_no, "radius_m": radius, "invited": len(chosen)},
    )
    return chosen


def advance(task_id: int, after_ring: int) -> int:
    """Send the ring after ``after_ring`` if the task still needs volunteers; returns how many
    were invited. Harmless to run twice.

    One ring, in one transaction: advance the task's ring number with a compare-and-set that also
    reads the task and checks the dispatch still needs volunteers (another run that sent this ring
    wins and this one stops); search the on-duty index within the ring's radius, drop those
    already invited to the task, rank the rest and keep the best ``open slots ×
    DISPATCH_INVITES_PER_SLOT`` (at most DISPATCH_MAX_INVITES_PER_RING); record the ring; invite
    the chosen; schedule the next ring DISPATCH_RING_TIMEOUT_SECONDS later unless this was the
    last. A ring that finds nobody new widens at once to the next.
    """
    radii = ring_radii()
    invited_total = 0
    while True:
        now = utcnow()
        task = _claim(task_id, after_ring, len(radii), now)
        if task is None:
            return invited_total
        chosen = _send_ring(task, radii, now)
        invited_total += len(chosen)
        if chosen or after_ring + 1 == len(radii):
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
