"""The three ways volunteers come to a task.

**Open.** An approved volunteer sees a published open task when it fits them:

* *area* — the task's jurisdiction contains their home: it is their home (community or grid)
  or one of its ancestors (street, district, city); or the task's place is within
  ``TASK_NEARBY_RADIUS_M`` of their community's centre, of their last duty location (while on
  duty) or of the location the phone sends with the request (a task in a grid of their
  community is seen that way);
* *category* — the task needs no particular category, or theirs is one of them;
* *skills* — they have every skill the task needs.

``GET /api/v1/tasks`` takes its candidates from the Redis index of open tasks
(:mod:`yijing.services.task_index`, one round trip: the tasks within the radius of each origin
and those of the home's ancestors, of a fitting category and skills), plus the live open tasks
the volunteer has an assignment on (one query: their status, and a full task they hold a place
on). When the index is not built or Redis is down, one database query reads the live open tasks
through ``ix_tasks_open`` instead, keeping those of the home's ancestors or inside a bounding box
around each origin. Either way the exact area check runs in Python on that short list, sorted by
distance from the volunteer (the phone's location, else the duty location, else the community's
centre), then start time, then id (the cursor is that triple); then the page's 20 tasks are
loaded.

**Taking a place.** Every acceptance takes a slot with one conditional statement,
``UPDATE tasks SET filled = filled + 1 WHERE id = :id AND filled < slots … RETURNING filled``, in
the same transaction as the assignment row (unique per task and volunteer). The database
serialises concurrent acceptances on the task's row, so a 5-slot task accepted by 50 volunteers
at once has exactly 5 acceptances; the others get 409 ``task_full``.

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

from redis.exceptions import RedisError
from sqlalchemy import Select, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, joinedload

from yijing import policies
from yijing.actor import Actor
from yijing.errors import Conflict, Forbidden, InvalidInput, NotFound
from yijing.extensions import db
from yijing.geo import bounding_box, haversine_m
from yijing.models import (
    Assignment,
    AssignmentStatus,
    DispatchMode,
    DispatchRing,
    Jurisdiction,
    Task,
    TaskStatus,
    Volunteer,
    VolunteerStatus,
)
from yijing.models.base import utcnow
from yijing.models.task import HOLDS_SLOT
from yijing.models.volunteer import CATEGORY_LABELS, SKILL_LABELS
from yijing.pagination import Page, bad_cursor, decode_cursor, encode_cursor
from yijing.policies import Permission, Principal
from yijing.services import audit, duty_index, jurisdictions, outbox, task_index
from yijing.services import tasks as task_service
from yijing.services.tasks import LIVE, config, local_text, move_assignment

log = logging.getLogger(__name__)

A = AssignmentStatus
# An open-task list looks at no more than this many candidates (by start time).
MAX_CANDIDATES = 500
# Sort key for a task whose distance is unknown (no origin): after every known distance.
FAR = 1e9


@dataclass
class TaskView:
    """A task as one volunteer sees it; attributes fall through to the task."""

    task: Task
    distance_m: float | None = None
    my_assignment: Assignment | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


@dataclass(frozen=True)
class VolunteerFacts:
    """What dispatch needs to know about a volunteer (no personal information)."""

    id: int
    user_id: int
    status: str
    category: str
    skills: list[str]


@dataclass
class Seeker:
    """An approved volunteer looking at tasks, with the places that count as "near them"."""

    volunteer: VolunteerFacts
    ancestor_ids: list[int]
    origins: list[tuple[float, float]]

    @property
    def here(self) -> tuple[float, float] | None:
        return self.origins[0] if self.origins else None


@functools.cache
def _seeker_query() -> Select[Any]:
    """Built once: the aliases and the statement's cache key are not rebuilt on every request."""
    home = aliased(Jurisdiction)
    community = aliased(Jurisdiction)
    return (
        select(
            Volunteer.id,
            Volunteer.user_id,
            Volunteer.status,
            Volunteer.category,
            Volunteer.skills,
            Volunteer.on_duty,
            Volunteer.duty_lat,
            Volunteer.duty_lng,
            home.path.label("home_path"),
            community.lat.label("community_lat"),
            community.lng.label("community_lng"),
        )
        .join(home, home.id == Volunteer.jurisdiction_id)
        .join(community, community.id == Volunteer.community_id)
        .where(Volunteer.open_user_id == bindparam("user_id"))
    )


def seeker_for(user_id: int, lat: float | None = None, lng: float | None = None) -> Seeker:
    """The user as an approved volunteer (403 otherwise), in one query without the PII columns."""
    row = db.session.execute(_seeker_query(), {"user_id": user_id}).first()
    if row is None:
        raise Forbidden("请先申请成为义警，审核通过后即可查看和接受任务", code="not_a_volunteer")
    if row.status != VolunteerStatus.APPROVED:
        raise Forbidden("只有审核通过且未被暂停的义警才能查看和接受任务", code="volunteer_not_approved")
    origins: list[tuple[float, float]] = []
    if lat is not None and lng is not None:
        origins.append((lat, lng))
    if row.on_duty and row.duty_lat is not None and row.duty_lng is not None:
        origins.append((row.duty_lat, row.duty_lng))
    if row.community_lat is not None and row.community_lng is not None:
        origins.append((row.community_lat, row.community_lng))
    return Seeker(
        volunteer=VolunteerFacts(row.id, row.user_id, row.status, row.category, list(row.skills or [])),
        ancestor_ids=jurisdictions.path_ids(row.home_path),
        origins=origins,
    )


def _distance(seeker: Seeker, task: Task) -> float | None:
    here = seeker.here
    return None if here is None else round(haversine_m(here[0], here[1], task.lat, task.lng), 1)


def _in_area(seeker: Seeker, task: Any) -> bool:
    """``task`` is a Task or a row with its ``jurisdiction_id``, ``lat`` and ``lng``."""
    if task.jurisdiction_id in seeker.ancestor_ids:
        return True
    radius = config().task_nearby_radius_m
    return any(haversine_m(lat, lng, task.lat, task.lng) <= radius for lat, lng in seeker.origins)


def _misfit(volunteer: Any, task: Any) -> str | None:
    """Why the volunteer's category or skills do not fit the task (None when they do); each is a
    model or a row with ``category``/``skills`` and ``categories``/``skills``."""
    if task.categories and volunteer.category not in task.categories:
        wanted = "、".join(CATEGORY_LABELS.get(c, c) for c in task.categories)
        return f"该任务仅限以下职业类别的义警：{wanted}"
    missing = [s for s in task.skills or [] if s not in (volunteer.skills or [])]
    if missing:
        return "该任务需要以下技能：" + "、".join(SKILL_LABELS.get(s, s) for s in missing)
    return None


def _closed_message(task: Task) -> str:
    if task.status == TaskStatus.CANCELLED:
        return "该任务已取消"
    if task.status == TaskStatus.DRAFT:
        return "该任务尚未发布"
    return "该任务已结束"


# -- open tasks: the volunteer's list and one task ----------------------------------------------------


_CANDIDATE_COLUMNS = (
    Task.id,
    Task.jurisdiction_id,
    Task.lat,
    Task.lng,
    Task.starts_at,
    (Task.filled >= Task.slots).label("full"),
    Task.categories,
    Task.skills,
)


def _database_candidates(seeker: Seeker, now: datetime) -> Sequence[Any]:
    """Live open tasks of the home's ancestors or in a bounding box around each origin, with
    the volunteer's status on them (the list's source when the task index is not available)."""
    radius = config().task_nearby_radius_m
    area = [Task.jurisdiction_id.in_(seeker.ancestor_ids)]
    for olat, olng in seeker.origins:
        min_lat, max_lat, min_lng, max_lng = bounding_box(olat, olng, radius)
        area.append(and_(Task.lat.between(min_lat, max_lat), Task.lng.between(min_lng, max_lng)))
    return db.session.execute(
        select(*_CANDIDATE_COLUMNS, Assignment.status.label("my_status"))
        .outerjoin(
            Assignment, and_(Assignment.task_id == Task.id, Assignment.volunteer_id == seeker.volunteer.id)
        )
        .where(
            Task.dispatch_mode == DispatchMode.OPEN,
            Task.status.in_(LIVE),
            Task.ends_at > now,
            or_(*area),
        )
        .order_by(Task.starts_at, Task.id)
        .limit(MAX_CANDIDATES)
    ).all()


@dataclass(frozen=True, slots=True)
class _IndexedRow:
    """A candidate from the task index: open, not full, of a fitting category and skills."""

    id: int
    jurisdiction_id: int
    lat: float
    lng: float
    starts_at: datetime
    my_status: str | None
    full: bool = False
    categories: tuple[str, ...] = ()  # already checked by the index
    skills: tuple[str, ...] = ()


def _indexed_candidates(seeker: Seeker, now: datetime) -> list[Any] | None:
    """The candidates from the Redis index of open tasks, with the tasks the volunteer has an
    assignment on (a full task they hold a place on is listed too); None when the index is
    not built or Redis is unreachable."""
    volunteer = seeker.volunteer
    try:
        hits = task_index.search(
            seeker.origins,
            config().task_nearby_radius_m,
            seeker.ancestor_ids,
            volunteer.category,
            volunteer.skills,
            now,
        )
    except RedisError as exc:
        log.warning("task index unavailable, listing from the database", extra={"error": str(exc)})
        return None
    if hits is None:
        return None
    mine = {
        row.id: row
        for row in db.session.execute(
            select(*_CANDIDATE_COLUMNS, Assignment.status.label("my_status"))
            .join(Assignment, Assignment.task_id == Task.id)
            .where(
                Assignment.volunteer_id == volunteer.id,
                Task.dispatch_mode == DispatchMode.OPEN,
                Task.status.in_(LIVE),
                Task.ends_at > now,
            )
        )
    }
    rows: list[Any] = [
        mine.pop(h.id, None) or _IndexedRow(h.id, h.jurisdiction_id, h.lat, h.lng, h.starts_at, None)
        for h in hits
    ]
    rows.extend(mine.values())
    return rows


def open_tasks(
    user_id: int, *, lat: float | None, lng: float | None, cursor: str | None, limit: int
) -> Page[TaskView]:
    """Open tasks an approved volunteer may take, nearest first, then by start time.

    One column-only query finds the candidates (with the volunteer's own place, if any); the
    checks and the sort run on those rows; then the page's tasks are loaded whole.
    """
    seeker = seeker_for(user_id, lat, lng)
    volunteer = seeker.volunteer
    now = utcnow()
    rows = _indexed_candidates(seeker, now)
    if rows is None:
        rows = _database_candidates(seeker, now)
    here = seeker.here
    keyed = []
    for row in rows:
        if not _in_area(seeker, row) or _misfit(volunteer, row):
            continue
        if row.full and row.my_status not in HOLDS_SLOT:
            continue
        distance = None if here is None else round(haversine_m(here[0], here[1], row.lat, row.lng), 1)
        keyed.append(
            ((FAR if distance is None else distance, row.starts_at, row.id), distance, row.my_status)
        )
    keyed.sort(key=lambda item: item[0])
    if cursor:
        after = tuple(decode_cursor(cursor, 3, (float, datetime, int)))
        try:
            keyed = [item for item in keyed if item[0] > after]
        except TypeError:  # a forged time without its offset
            raise bad_cursor() from None
    page = keyed[:limit]
    next_cursor = encode_cursor(list(page[-1][0])) if len(keyed) > limit and page else None
    ids = [key[2] for key, _, _ in page]
    tasks_by_id = {
        t.id: t
        for t in db.session.scalars(
            select(Task).where(Task.id.in_(ids)).options(joinedload(Task.jurisdiction))
        ).unique()
    }
    with_mine = [key[2] for key, _, status in page if status is not None]
    mine = (
        {
            a.task_id: a
            for a in db.session.scalars(
                select(Assignment).where(
                    Assignment.volunteer_id == volunteer.id, Assignment.task_id.in_(with_mine)
                )
            )
        }
        if with_mine
        else {}
    )
    # A task deleted since its candidate was read (only ever by hand) is left out.
    items = [
        TaskView(tasks_by_id[tid], distance, mine.get(tid))
        for (_, _, tid), distance, _ in page
        if tid in tasks_by_id
    ]
    return Page(items=items, next_cursor=next_cursor)


def _assignment_of(task_id: int, *, user_id: int) -> Assignment | None:
    return db.session.scalar(
        select(Assignment)
        .where(Assignment.task_id == task_id, Assignment.user_id == user_id)
        .order_by(Assignment.id.desc())
        .limit(1)
    )


def task_for_volunteer(user_id: int, task_id: int, *, lat: float | None, lng: float | None) -> TaskView:
    """One task: visible to whoever is invited to or on it, and to volunteers it is open to."""
    task = db.session.get(Task, task_id)
    not_found = NotFound("任务不存在或不对您开放", code="task_not_found")
    if task is None or task.status == TaskStatus.DRAFT:
        raise not_found
    assignment = _assignment_of(task.id, user_id=user_id)
    if assignment is not None:
        volunteer = task_service.my_volunteer(user_id)
        seeker = (
            seeker_for(user_id, lat, lng)
            if volunteer is not None and volunteer.status == VolunteerStatus.APPROVED
            else None
        )
        return TaskView(task, _distance(seeker, task) if seeker else None, assignment)
    seeker = seeker_for(user_id, lat, lng)
    if (
        task.dispatch_mode != DispatchMode.OPEN
        or not _in_area(seeker, task)
        or _misfit(seeker.volunteer, task)
    ):
        raise not_found
    return TaskView(task, _distance(seeker, task), None)


# -- accepting, declining, withdrawing ---------------------------------------------------------------


def _check_overlap(volunteer: VolunteerFacts, task: Task) -> None:
    other = db.session.scalar(
        select(Task)
        .join(Assignment, Assignment.task_id == Task.id)
        .where(
            Assignment.volunteer_id == volunteer.id,
            Assignment.status.in_([A.ACCEPTED, A.CHECKED_IN]),
            Task.id != task.id,
            Task.starts_at < task.ends_at,
            Task.ends_at > task.starts_at,
        )
        .limit(1)
    )
    if other is not None:
        raise Conflict(
            f"您在该时段已接受任务「{other.title}」（{local_text(other.starts_at)} 开始），请先退出该任务",
            code="schedule_conflict",
        )


def _take_slot(task: Task, now: datetime) -> tuple[int, int] | None:
    """Take one slot atomically; (filled, slots) after it, or None when the task is full/closed."""
    row = db.session.execute(
        update(Task)
        .where(Task.id == task.id, Task.filled < Task.slots, Task.status.in_(LIVE), Task.ends_at > now)
        .values(filled=Task.filled + 1, updated_at=now)
        .returning(Task.filled, Task.slots)
        .execution_options(synchronize_session=False)
    ).first()
    return None if row is None else (row[0], row[1])


def _on_filled(task: Task) -> None:
    """The last slot was taken: stop the rings and tell open invitees they need not come."""
    if task.dispatch_mode == DispatchMode.OPEN:
        task_index.refresh(task.id)  # full: off the list
    db.session.execute(
        update(Task)
        .where(Task.id == task.id)
        .values(dispatch_next_at=None)
        .execution_options(synchronize_session=False)
    )
    waiting = db.session.scalars(
        select(Assignment).where(Assignment.task_id == task.id, Assignment.status == A.INVITED)
    ).all()
    for assignment in waiting:
        outbox.notify(
            assignment.user_id,
            "task.filled",
            title=f"任务已满员：{task.title}"[:100],
            body="感谢您的响应，该任务的名额已满，无需前往。",
            dedupe_key=f"task:{task.id}:filled:assignment:{assignment.id}:{assignment.invite_seq}",
            data=task_service.notification_data(task, assignment),
            page=task_service.task_page(task.id),
        )


_FULL_MESSAGE = "该任务已满员，感谢您的响应，请关注其他任务"


def _full(task_id: int) -> Conflict:
    task = db.session.get(Task, task_id)
    if task is not None and (task.status not in LIVE or task.ends_at <= utcnow()):
        return Conflict(_closed_message(task), code="task_not_open")
    return Conflict(_FULL_MESSAGE, code="task_full")


def accept(user_id: int, task_id: int, *, lat: float | None, lng: float | None) -> Assignment:
    """Take a place on a task: sign up to an open task, or accept an invitation. Accepting
    again returns the same place; a full task answers 409 ``task_full``."""
    seeker = seeker_for(user_id, lat, lng)
    volunteer = seeker.volunteer
    task = task_service.get_task(task_id)
    now = utcnow()
    assignment = db.session.scalar(
        select(Assignment).where(Assignment.task_id == task.id, Assignment.volunteer_id == volunteer.id)
    )
    if assignment is not None and assignment.status in HOLDS_SLOT:
        return assignment
    if task.status not in LIVE or task.ends_at <= now:
        raise Conflict(_closed_message(task), code="task_not_open")
    if assignment is not None and assignment.status == A.INVITED:
        if assignment.invite_expires_at is not None and assignment.invite_expires_at <= now:
            raise Conflict("该邀请已过期，请联系值班台", code="invitation_expired")
    elif (
        assignment is not None and assignment.status == A.EXPIRED and task.dispatch_mode != DispatchMode.OPEN
    ):
        # The expiry job got there first: the same answer as before it ran.
        raise Conflict("该邀请已过期，请联系值班台", code="invitation_expired")
    elif task.dispatch_mode == DispatchMode.OPEN:
        if not _in_area(seeker, task):
            raise Forbidden("该任务不在您的辖区或附近，不能报名", code="not_eligible")
        misfit = _misfit(volunteer, task)
        if misfit:
            raise Forbidden(misfit, code="not_eligible")
        if assignment is not None and not (
            assignment.status in (A.DECLINED, A.EXPIRED)
            or (assignment.status == A.CANCELLED and assignment.cancelled_by == "volunteer")
        ):
            raise Conflict("您已不能再报名该任务", code="cannot_accept")
    else:
        raise Forbidden("该任务仅限受邀的义警接受", code="not_invited")
    if task.filled >= task.slots:
        # Full already: answer without the overlap check and the slot's UPDATE (most of a rush).
        db.session.rollback()
        raise Conflict(_FULL_MESSAGE, code="task_full")
    _check_overlap(volunteer, task)

    slot = _take_slot(task, now)
    if slot is None:
        db.session.rollback()
        raise _full(task.id)
    if assignment is not None:
        values: dict[str, Any] = {"accepted_at": now, "cancelled_at": None, "cancelled_by": None}
        if assignment.status == A.INVITED:
            values["responded_at"] = now
        if not move_assignment(assignment, A.ACCEPTED, expect=[assignment.status], **values):
            db.session.rollback()
            db.session.refresh(assignment)
            if assignment.status in HOLDS_SLOT:
                return assignment
            raise Conflict("任务状态已变化，请刷新后重试", code="bad_status")
    else:
        assignment = Assignment(
            task_id=task.id,
            volunteer_id=volunteer.id,
            user_id=user_id,
            status=A.ACCEPTED,
            source=DispatchMode.OPEN,
            accepted_at=now,
            invite_seq=0,
            checkout_auto=False,
            points_awarded=0,
        )
        db.session.add(assignment)
        try:
            db.session.flush()
        except IntegrityError:  # the same volunteer, twice at once: the other request won
            db.session.rollback()
            existing = db.session.scalar(
                select(Assignment).where(
                    Assignment.task_id == task_id, Assignment.volunteer_id == volunteer.id
                )
            )
            if existing is not None and existing.status in HOLDS_SLOT:
                return existing
            raise Conflict("任务状态已变化，请刷新后重试", code="bad_status") from None
    if slot[0] >= slot[1]:
        _on_filled(task)
    db.session.commit()
    return assignment


def _mine_or_404(user_id: int, task_id: int) -> Assignment:
    assignment = _assignment_of(task_id, user_id=user_id)
    if assignment is None:
        raise NotFound("您没有参与该任务", code="assignment_not_found")
    return assignment


def decline(user_id: int, task_id: int, reason: str | None) -> Assignment:
    """Decline an invitation (declining again changes nothing)."""
    assignment = _mine_or_404(user_id, task_id)
    if assignment.status == A.DECLINED:
        return assignment
    if assignment.status != A.INVITED:
        label = task_service.ASSIGNMENT_STATUS_LABELS.get(assignment.status, assignment.status)
        raise Conflict(f"只能拒绝待回复的邀请（当前：{label}）", code="bad_status")
    if not move_assignment(
        assignment, A.DECLINED, expect=[A.INVITED], responded_at=utcnow(), decline_reason=reason
    ):
        raise Conflict("邀请状态已变化，请刷新后重试", code="bad_status")
    db.session.commit()
    return assignment


def withdraw(user_id: int, task_id: int, reason: str | None) -> Assignment:
    """Give a place back before checking in; a nearby dispatch goes on looking for someone."""
    assignment = _mine_or_404(user_id, task_id)
    if assignment.status == A.CANCELLED and assignment.cancelled_by == "volunteer":
        return assignment
    if assignment.status != A.ACCEPTED:
        raise Conflict("只能退出已接受且尚未签到的任务", code="bad_status")
    # Lock order everywhere: the task row first, then its assignments.
    task = task_service.get_task(task_id, for_update=True)
    now = utcnow()
    if not move_assignment(
        assignment,
        A.CANCELLED,
        expect=[A.ACCEPTED],
        cancelled_at=now,
        cancelled_by="volunteer",
        cancel_reason=reason,
    ):
        db.session.rollback()
        raise Conflict("任务状态已变化，请刷新后重试", code="bad_status")
    db.session.execute(
        update(Task)
        .where(Task.id == task.id, Task.filled > 0)
        .values(filled=Task.filled - 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if task.dispatch_mode == DispatchMode.OPEN:
        task_index.refresh(task.id)  # a place again: back on the list
    if (
        task.dispatch_mode == DispatchMode.NEARBY
        and task.status in LIVE
        and task.ends_at > now
        and task.dispatch_exhausted_at is None
    ):
        task.dispatch_next_at = now
        task_service.enqueue_dispatch(task.id, task.dispatch_ring, at=None, resume=True)
    db.session.commit()
    return assignment


# -- assigned: the desk names volunteers -----------------------------------------------------------


def _invitation(assignment: Any, task: Task) -> dict[str, Any]:
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


def rank(task: Task, hits: Sequence[tuple[int, float]]) -> list[Candidate]:
    """Eligible volunteers among ``hits`` ([(volunteer_id, distance_m)]), best first: approved,
    of the right category and skills, ranked by distance weighed by their no-show record. One
    query: the volunteers with their past assignments counted."""
    ids = [vid for vid, _ in hits]
    if not ids:
        return []
    record = (
        select(
            Assignment.volunteer_id.label("volunteer_id"),
            func.sum(case((Assignment.status == A.NO_SHOW, 1), else_=0)).label("no_shows"),
            func.sum(case((Assignment.status == A.COMPLETED, 1), else_=0)).label("completed"),
        )
        .where(Assignment.volunteer_id.in_(ids))
        .group_by(Assignment.volunteer_id)
        .subquery()
    )
    rows = db.session.execute(
        select(
            Volunteer.id,
            Volunteer.user_id,
            Volunteer.category,
            Volunteer.skills,
            record.c.no_shows,
            record.c.completed,
        )
        .outerjoin(record, record.c.volunteer_id == Volunteer.id)
        .where(Volunteer.id.in_(ids), Volunteer.status == VolunteerStatus.APPROVED)
    ).all()
    found = {row.id: row for row in rows if not _misfit(row, task)}
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


def _dispatch_live(task: Task, now: datetime) -> bool:
    return (
        task.dispatch_mode == DispatchMode.NEARBY
        and task.status in LIVE
        and task.ends_at > now
        and task.filled < task.slots
    )


def advance(task_id: int, after_ring: int) -> int:
    """Send the ring after ``after_ring`` if the task still needs volunteers; returns how many
    were invited. A ring that finds nobody new widens at once. Harmless to run twice."""
    cfg = config()
    radii = ring_radii()
    invited_total = 0
    while True:
        now = utcnow()
        task = db.session.get(Task, task_id)
        if task is None or task.dispatch_ring != after_ring:
            db.session.rollback()
            return invited_total
        if not _dispatch_live(task, now) or after_ring >= len(radii):
            if task.dispatch_next_at is not None:
                task.dispatch_next_at = None
                db.session.commit()
            db.session.rollback()
            return invited_total
        ring_no = after_ring + 1
        radius = radii[ring_no - 1]
        is_last = ring_no == len(radii)
        open_slots = task.slots - task.filled
        want = min(open_slots * cfg.dispatch_invites_per_slot, cfg.dispatch_max_invites_per_ring)
        # Ring 1 comes first: nobody can be invited to a nearby task before it (the desk cannot).
        invited_before = (
            set(db.session.scalars(select(Assignment.volunteer_id).where(Assignment.task_id == task.id)))
            if after_ring
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
        chosen = rank(task, fresh)[:want]
        next_at = None if is_last else now + timedelta(seconds=cfg.dispatch_ring_timeout_seconds)
        moved = db.session.execute(
            update(Task)
            .where(Task.id == task.id, Task.dispatch_ring == after_ring, Task.status.in_(LIVE))
            .values(
                dispatch_ring=ring_no,
                dispatch_next_at=next_at,
                dispatch_exhausted_at=now if is_last else None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not moved:
            db.session.rollback()
            return invited_total
        ring_id = db.session.scalar(
            insert(DispatchRing)
            .values(
                task_id=task.id,
                ring_no=ring_no,
                radius_m=radius,
                found=len(fresh),
                invited=len(chosen),
                slots_open=open_slots,
                next_at=next_at,
                created_at=now,
            )
            .returning(DispatchRing.id)
        )
        if chosen:
            ids = db.session.scalars(
                insert(Assignment).returning(Assignment.id, sort_by_parameter_order=True),
                [
                    {
                        "task_id": task.id,
                        "volunteer_id": c.volunteer_id,
                        "user_id": c.user_id,
                        "status": A.INVITED,
                        "source": DispatchMode.NEARBY,
                        "ring_id": ring_id,
                        "distance_m": c.distance_m,
                        "invite_seq": 1,
                        "invited_at": now,
                        "invite_expires_at": task.ends_at,
                        "checkout_auto": False,
                        "points_awarded": 0,
                        "created_at": now,
                    }
                    for c in chosen
                ],
            ).all()
            # One INSERT for the ring's messages (urgent: they go out ahead of the rest).
            outbox.notify_many(
                [
                    _invitation(_Invited(aid, c.user_id, c.distance_m, task.ends_at), task)
                    for aid, c in zip(ids, chosen, strict=True)
                ],
                urgent=outbox.is_urgent("task.invitation"),
            )
        if next_at is not None and chosen:
            task_service.enqueue_dispatch(task.id, ring_no, at=next_at)
        db.session.commit()
        invited_total += len(chosen)
        log.info(
            "dispatch ring sent",
            extra={"task_id": task_id, "ring": ring_no, "radius_m": radius, "invited": len(chosen)},
        )
        if chosen or is_last:
            return invited_total
        after_ring = ring_no  # nobody new within this radius: widen now


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


def dispatch_view(principal: Principal, task_id: int) -> dict[str, Any]:
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
    by_ring: dict[int, list[dict[str, Any]]] = {r.id: [] for r in rings}
    for assignment, volunteer in invitations:
        by_ring.setdefault(assignment.ring_id, []).append(
            {
                "assignment_id": assignment.id,
                "volunteer_id": volunteer.id,
                "name_masked": volunteer.name_masked,
                "category": volunteer.category,
                "distance_m": assignment.distance_m,
                "status": assignment.status,
                "invited_at": assignment.invited_at,
                "responded_at": assignment.responded_at,
                "response_seconds": assignment.response_seconds,
            }
        )
    return {
        "task_id": task.id,
        "status": task.status,
        "slots": task.slots,
        "filled": task.filled,
        "ring": task.dispatch_ring,
        "next_ring_at": task.dispatch_next_at,
        "exhausted_at": task.dispatch_exhausted_at,
        "radii_m": ring_radii(),
        "rings": [
            {
                "ring_no": r.ring_no,
                "radius_m": r.radius_m,
                "sent_at": r.created_at,
                "found": r.found,
                "invited": r.invited,
                "slots_open": r.slots_open,
                "next_at": r.next_at,
                "invitations": by_ring.get(r.id, []),
            }
            for r in rings
        ],
    }
