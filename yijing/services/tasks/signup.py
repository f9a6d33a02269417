"""The volunteer's side of a task: which tasks they see, taking a place, declining, withdrawing.

**Open.** An approved volunteer sees a published open task when it fits them:

* *area* — the task's jurisdiction contains their home: it is their home (community or grid)
  or one of its ancestors (street, district, city); or the task's place is within
  ``TASK_NEARBY_RADIUS_M`` of their community's centre, of their last duty location (while on
  duty) or of the location the phone sends with the request (a task in a grid of their
  community is seen that way);
* *category* — the task needs no particular category, or theirs is one of them;
* *skills* — they have every skill the task needs.

``GET /api/v1/tasks`` reads the volunteer and the live open tasks they have an assignment on in
one query (their status, and a full task they hold a place on), and takes the other candidates
from the Redis index of open tasks (:mod:`yijing.services.task_index`, one round trip: the tasks
within the radius of each origin and those of the home's ancestors, of a fitting category and
skills). The list is sorted by distance from the volunteer (the phone's location, else the duty
location, else the community's centre), then start time, then id (the cursor is that triple).
The index's script already keeps only what can be on the page (the 20 nearest after the cursor,
a few spare and any tied with the last), so the work here does not grow with the tasks around;
the exact area check and the sort run in Python on that short list; the page's 20 cards come
rendered with them from the index, each with the volunteer's distance and status put in, and
make the response body. The volunteer's query runs outside a transaction when none is open
(:func:`yijing.sql.read_rows`: no BEGIN and ROLLBACK round trips). When the index is not built
or Redis is down, one database query reads the live open tasks through ``ix_tasks_open``
instead, keeping those of the home's ancestors or inside a bounding box around each origin, and
the page's tasks are loaded for the blueprint's schema.

**Taking a place.** Every acceptance takes a slot with one conditional statement,
``UPDATE tasks SET filled = filled + 1 WHERE id = :id AND filled < slots … RETURNING filled``, in
the same transaction as the assignment row (unique per task and volunteer; a new one is written by the
same statement on PostgreSQL, a data-modifying CTE). The database
serialises concurrent acceptances on the task's row, so a 5-slot task accepted by 50 volunteers
at once has exactly 5 acceptances; the others get 409 ``task_full``. What the rules read before it
(the volunteer, the task and their place on it, one query) is read outside a transaction
(:func:`yijing.sql.read_rows`), so the answer to most of a rush, a task already full, opens none.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from redis.exceptions import RedisError
from sqlalchemy import Select, and_, bindparam, case, column, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, joinedload

from yijing.errors import Conflict, Forbidden, NotFound
from yijing.extensions import db
from yijing.geo import bounding_box, haversine_m
from yijing.models import Assignment, DispatchMode, Jurisdiction, Task, TaskStatus, Volunteer, VolunteerStatus
from yijing.models.base import utcnow
from yijing.models.task import HOLDS_SLOT
from yijing.models.volunteer import CATEGORY_LABELS, SKILL_LABELS
from yijing.pagination import Page, bad_cursor, decode_cursor, encode_cursor
from yijing.services import jurisdictions, outbox, task_index
from yijing.services.tasks.common import (
    ASSIGNMENT_STATUS_LABELS,
    LIVE,
    A,
    config,
    enqueue_dispatch,
    get_task,
    local_text,
    move_assignment,
    moved_assignment,
    my_volunteer,
    notification_data,
    task_page,
)
from yijing.sql import is_postgresql, read_rows

log = logging.getLogger(__name__)

# An open-task list looks at no more than this many candidates (by start time).
MAX_CANDIDATES = 500
# Sort key for a task whose distance is unknown (no origin): after every known distance.
FAR = 1e9
# The task index hands back a page's worth of candidates and this many more, for the exact
# checks here to drop one it let through (a distance a rounding apart) without shortening the page.
SPARE_CANDIDATES = 4
# A task's place in the list: (distance or FAR, start, id).
_Key = tuple[float, datetime, int]


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


_SEEKER_COLUMNS = (
    Volunteer.id,
    Volunteer.user_id,
    Volunteer.status,
    Volunteer.category,
    Volunteer.skills,
    Volunteer.on_duty,
    Volunteer.duty_lat,
    Volunteer.duty_lng,
)


def _seeker_select(*entities: Any) -> Select[Any]:
    """The volunteer of ``:user_id`` (no PII columns) with their home's path and community's
    centre, after ``entities``."""
    home = aliased(Jurisdiction)
    community = aliased(Jurisdiction)
    return (
        select(
            *entities,
            *_SEEKER_COLUMNS,
            home.path.label("home_path"),
            community.lat.label("community_lat"),
            community.lng.label("community_lng"),
        )
        .select_from(Volunteer)
        .join(home, home.id == Volunteer.jurisdiction_id)
        .join(community, community.id == Volunteer.community_id)
        .where(Volunteer.open_user_id == bindparam("user_id"))
    )


@functools.cache
def _seeker_query() -> Select[Any]:
    """Built once: the aliases and the statement's cache key are not rebuilt on every request."""
    return _seeker_select()


@dataclass(frozen=True, slots=True)
class _AcceptedTask:
    """What taking a place reads of the task (a Core row's columns, not a loaded Task: the answer
    of a rush, 409 full, costs little more than the query)."""

    id: int
    title: str
    address: str
    jurisdiction_id: int
    lat: float
    lng: float
    starts_at: datetime
    ends_at: datetime
    slots: int
    filled: int
    categories: list[str]
    skills: list[str]
    status: str
    dispatch_mode: str


_ACCEPTED_TASK_FIELDS = _AcceptedTask.__slots__


@dataclass(frozen=True, slots=True)
class _SeenPlace:
    """What taking a place reads of the volunteer's place on the task, if they have one (the rules'
    columns; the place itself is loaded only when it is written or handed back)."""

    id: int
    status: str
    invite_expires_at: datetime | None
    cancelled_by: str | None


_SEEN_PLACE_FIELDS = _SeenPlace.__slots__


@functools.cache
def _accept_query() -> Select[Any]:
    """The seeker, the task ``:task_id`` (its columns as ``task_<name>``) and their place on it
    (``my_<name>``), in one query of columns (built once)."""
    return (
        _seeker_select(
            *(getattr(Task, name).label(f"task_{name}") for name in _ACCEPTED_TASK_FIELDS),
            *(getattr(Assignment, name).label(f"my_{name}") for name in _SEEN_PLACE_FIELDS),
        )
        .outerjoin(Task, Task.id == bindparam("task_id"))
        .outerjoin(Assignment, and_(Assignment.task_id == Task.id, Assignment.volunteer_id == Volunteer.id))
    )


def seeker_for(user_id: int, lat: float | None = None, lng: float | None = None) -> Seeker:
    """The user as an approved volunteer (403 otherwise), in one query without the PII columns."""
    return _seeker(db.session.execute(_seeker_query(), {"user_id": user_id}).first(), lat, lng)


def _seeker(row: Any, lat: float | None, lng: float | None) -> Seeker:
    """The seeker from a row of :func:`_seeker_select` (None: not a volunteer, 403)."""
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


def misfit_reason(volunteer: Any, task: Any) -> str | None:
    """Why the volunteer's category or skills do not fit the task (None when they do); each is a
    model or a row with ``category``/``skills`` and ``categories``/``skills``."""
    if task.categories and volunteer.category not in task.categories:
        wanted = "、".join(CATEGORY_LABELS.get(c, c) for c in task.categories)
        return f"该任务仅限以下职业类别的义警：{wanted}"
    missing = [s for s in task.skills or [] if s not in (volunteer.skills or [])]
    if missing:
        return "该任务需要以下技能：" + "、".join(SKILL_LABELS.get(s, s) for s in missing)
    return None


def _closed_message(task: Task | _AcceptedTask) -> str:
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


class _IndexedRow(NamedTuple):
    """A candidate from the task index (open, not full, of a fitting category and skills), or
    one the volunteer has an assignment on."""

    id: int
    jurisdiction_id: int
    lat: float
    lng: float
    starts_at: datetime
    my_status: str | None
    full: bool = False
    categories: tuple[str, ...] = ()  # already checked by the index
    skills: tuple[str, ...] = ()


@functools.cache
def _seeker_and_mine_query() -> Select[Any]:
    """The seeker's row once per live open task they have an assignment on, with that task's
    candidate columns and their status (once, with NULLs there, when they have none): the
    list's one database query.

    Its plan does not hang on the planner's statistics: the assignments are read from the
    volunteer (``ix_assignments_volunteer``, the volunteer's id from their unique
    ``open_user_id``) and each one's task by its primary key; whether the task is live and open
    is computed on that row and kept outside the subquery, whose ``OFFSET 0`` keeps PostgreSQL
    from pushing it down. With the conditions inside the join, stale statistics (the live tasks
    taken for a handful) made it start from the live tasks and probe the assignments once per
    task, a cost that grew with the open tasks instead of with the volunteer's assignments.
    """
    me = aliased(Volunteer)
    my_id = select(me.id).where(me.open_user_id == bindparam("user_id")).scalar_subquery()
    # The statuses as equalities, not IN: an IN list is an "expanding" parameter, its SQL
    # rewritten on every execution; this is a value computed per row, no index is at stake.
    live = and_(
        Task.dispatch_mode == DispatchMode.OPEN,
        or_(*(Task.status == status for status in LIVE)),
        Task.ends_at > bindparam("now"),
    )
    mine = (
        select(
            Assignment.volunteer_id,
            Assignment.status.label("my_status"),
            *(column.label(f"mine_{column.key}") for column in _CANDIDATE_COLUMNS),
            live.label("live"),
        )
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.volunteer_id == my_id)
        .offset(0)  # a fence: the live condition stays outside (see above)
        .subquery()
    )
    return (
        _seeker_query()
        .add_columns(*(c for c in mine.c if c.key not in ("volunteer_id", "live")))
        .outerjoin(mine, and_(mine.c.volunteer_id == Volunteer.id, mine.c.live))
    )


def _mine(rows: Sequence[Any]) -> dict[int, _IndexedRow]:
    """The live open tasks the volunteer has an assignment on, from :func:`_seeker_and_mine_query`."""
    return {
        row.mine_id: _IndexedRow(
            row.mine_id,
            row.mine_jurisdiction_id,
            row.mine_lat,
            row.mine_lng,
            row.mine_starts_at,
            row.my_status,
            row.mine_full,
            tuple(row.mine_categories or ()),
            tuple(row.mine_skills or ()),
        )
        for row in rows
        if row.mine_id is not None
    }


def _indexed_candidates(
    seeker: Seeker, mine: dict[int, _IndexedRow], now: datetime, after: _Key | None, limit: int
) -> tuple[list[_IndexedRow], dict[int, str | None]] | None:
    """The candidates for one page from the Redis index of open tasks (those after the cursor
    ``after`` that can be among the next ``limit``), with the tasks the volunteer has an
    assignment on (``mine``: a full task they hold a place on is listed too), and the cards the
    index handed back with them; None when the index is not built or Redis is unreachable."""
    volunteer = seeker.volunteer
    if after is None:
        from_key = None
    elif seeker.here is not None:
        from_key = after[0]
    else:
        try:
            from_key = float(task_index.micros(after[1]))
        except TypeError:  # a forged time without its offset
            raise bad_cursor() from None
    try:
        hits = task_index.search(
            seeker.origins,
            config().task_nearby_radius_m,
            seeker.ancestor_ids,
            volunteer.category,
            volunteer.skills,
            now,
            keep=limit + 1 + SPARE_CANDIDATES,
            after=from_key,
        )
    except RedisError as exc:
        log.warning("task index unavailable, listing from the database", extra={"error": str(exc)})
        return None
    if hits is None:
        return None
    mine = dict(mine)
    rows = [
        mine.pop(h.id, None) or _IndexedRow(h.id, h.jurisdiction_id, h.lat, h.lng, h.starts_at, None)
        for h in hits
    ]
    rows.extend(mine.values())
    return rows, {h.id: h.card for h in hits}


# (sort key, distance, my status) of one task in the list.
_Keyed = tuple[_Key, float | None, str | None]


def _after(cursor: str | None) -> _Key | None:
    return None if not cursor else tuple(decode_cursor(cursor, 3, (float, datetime, int)))  # type: ignore[return-value]


def _page(
    seeker: Seeker, rows: Sequence[Any], after: _Key | None, limit: int
) -> tuple[list[_Keyed], str | None]:
    """The exact checks (:func:`_in_area`, the distance from here computed once for the area
    and the key), the sort and the page over the candidates; and the next cursor."""
    volunteer = seeker.volunteer
    here = seeker.here
    others = seeker.origins[1:]
    ancestors = seeker.ancestor_ids
    radius = config().task_nearby_radius_m
    keyed: list[_Keyed] = []
    for row in rows:
        lat, lng = row.lat, row.lng
        exact = None if here is None else haversine_m(here[0], here[1], lat, lng)
        if not (
            row.jurisdiction_id in ancestors
            or (exact is not None and exact <= radius)
            or any(haversine_m(olat, olng, lat, lng) <= radius for olat, olng in others)
        ):
            continue
        if misfit_reason(volunteer, row) or (row.full and row.my_status not in HOLDS_SLOT):
            continue
        distance = None if exact is None else round(exact, 1)
        keyed.append(
            ((FAR if distance is None else distance, row.starts_at, row.id), distance, row.my_status)
        )
    keyed.sort(key=lambda item: item[0])
    if after is not None:
        try:
            keyed = [item for item in keyed if item[0] > after]
        except TypeError:  # a forged time without its offset
            raise bad_cursor() from None
    page = keyed[:limit]
    return page, encode_cursor(list(page[-1][0])) if len(keyed) > limit and page else None


def _tasks_by_id(ids: Sequence[int]) -> dict[int, Task]:
    return {
        t.id: t
        for t in db.session.scalars(
            select(Task).where(Task.id.in_(ids)).options(joinedload(Task.jurisdiction))
        ).unique()
    }


def _rendered(page: list[_Keyed], next_cursor: str | None, found: dict[int, str | None]) -> bytes:
    """The page as the response body, from the cards kept in the task index: those the search
    handed back (``found``), else read from it (a task the volunteer has an assignment on that
    the search did not return); a card the index lacks (a full task the volunteer holds a place
    on, a write not yet landed) is rendered from the database the same way."""
    ids = [key[2] for key, _, _ in page]
    cards: list[str | None] = [found.get(tid) for tid in ids]
    unknown = [tid for tid, card in zip(ids, cards, strict=True) if card is None]
    if unknown:
        try:
            read = dict(zip(unknown, task_index.cards(unknown), strict=True))
        except RedisError as exc:
            log.warning("task cards unavailable, rendering from the database", extra={"error": str(exc)})
            read = {}
        cards = [read.get(tid) if card is None else card for tid, card in zip(ids, cards, strict=True)]
    missing = [tid for tid, card in zip(ids, cards, strict=True) if card is None]
    if missing:
        tasks = _tasks_by_id(missing)
        cards = [
            card
            if card is not None
            else (
                task_index.card_json(t, t.jurisdiction.id, t.jurisdiction.name, t.jurisdiction.level)
                if (t := tasks.get(tid)) is not None
                else None
            )
            for tid, card in zip(ids, cards, strict=True)
        ]
    # A task deleted since its candidate was read (only ever by hand) is left out.
    items = ",".join(
        task_index.with_reader(card, distance, status)
        for card, (_, distance, status) in zip(cards, page, strict=True)
        if card is not None
    )
    return f'{{"items":[{items}],"next_cursor":{json.dumps(next_cursor)}}}\n'.encode()


def open_tasks(
    user_id: int, *, lat: float | None, lng: float | None, cursor: str | None, limit: int
) -> bytes | Page[TaskView]:
    """Open tasks an approved volunteer may take, nearest first, then by start time.

    One query reads the volunteer and the live open tasks they have an assignment on; the
    candidates come from the task index, the checks and the sort run on them, and the page's
    cards come rendered from the index: the answer is then the response body
    (:mod:`yijing.web.rendered`, the same JSON as ``TaskCardSchema``'s). When the index is not
    available, the candidates are read from the database and the page's tasks are loaded whole:
    the answer is a :class:`Page` for the blueprint's schema.
    """
    now = utcnow()
    rows = read_rows(db.session(), _seeker_and_mine_query(), {"user_id": user_id, "now": now})
    seeker = _seeker(rows[0] if rows else None, lat, lng)
    after = _after(cursor)
    indexed = _indexed_candidates(seeker, _mine(rows), now, after, limit)
    if indexed is not None:
        candidates, cards = indexed
        return _rendered(*_page(seeker, candidates, after, limit), cards)
    page, next_cursor = _page(seeker, _database_candidates(seeker, now), after, limit)
    tasks_by_id = _tasks_by_id([key[2] for key, _, _ in page])
    with_mine = [key[2] for key, _, status in page if status is not None]
    mine = (
        {
            a.task_id: a
            for a in db.session.scalars(
                select(Assignment).where(
                    Assignment.volunteer_id == seeker.volunteer.id, Assignment.task_id.in_(with_mine)
                )
            )
        }
        if with_mine
        else {}
    )
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
        volunteer = my_volunteer(user_id)
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
        or misfit_reason(seeker.volunteer, task)
    ):
        raise not_found
    return TaskView(task, _distance(seeker, task), None)


# -- accepting, declining, withdrawing ---------------------------------------------------------------


def _overlapping(volunteer_id: Any, starts_at: Any, ends_at: Any, task_id: Any) -> Select[Any]:
    """Other tasks the volunteer holds a place on (accepted or checked in) at the same time."""
    other = aliased(Task)
    return (
        select(other)
        .join(Assignment, Assignment.task_id == other.id)
        .where(
            Assignment.volunteer_id == volunteer_id,
            Assignment.status.in_([A.ACCEPTED, A.CHECKED_IN]),
            other.id != task_id,
            other.starts_at < ends_at,
            other.ends_at > starts_at,
        )
    )


def _check_overlap(volunteer: VolunteerFacts, task: _AcceptedTask) -> None:
    other = db.session.scalar(_overlapping(volunteer.id, task.starts_at, task.ends_at, task.id).limit(1))
    if other is not None:
        raise Conflict(
            f"您在该时段已接受任务「{other.title}」（{local_text(other.starts_at)} 开始），请先退出该任务",
            code="schedule_conflict",
        )


@functools.cache
def _take_slot_statement() -> Any:
    """Built once (the overlap's alias and the statement's cache key are not rebuilt per request)."""
    overlap = _overlapping(
        bindparam("b_volunteer_id"), bindparam("b_starts_at"), bindparam("b_ends_at"), bindparam("b_task_id")
    ).exists()
    return (
        update(Task)
        .where(
            Task.id == bindparam("b_task_id"),
            Task.filled < Task.slots,
            Task.status.in_(LIVE),
            Task.ends_at > bindparam("b_now"),
            ~overlap,
        )
        .values(
            filled=Task.filled + 1,
            updated_at=bindparam("b_now"),
            dispatch_next_at=case((Task.filled + 1 >= Task.slots, None), else_=Task.dispatch_next_at),
        )
        .returning(Task.filled, Task.slots)
        .execution_options(synchronize_session=False)
    )


def _take_slot(task: _AcceptedTask, volunteer: VolunteerFacts, now: datetime) -> tuple[int, int] | None:
    """Take one slot atomically unless the volunteer holds an overlapping place; (filled, slots)
    after it, or None when the task is full or closed or the place overlaps. Taking the last slot
    also stops the rings (``dispatch_next_at``), in the same statement."""
    row = db.session.execute(
        _take_slot_statement(),
        {
            "b_task_id": task.id,
            "b_now": now,
            "b_volunteer_id": volunteer.id,
            "b_starts_at": task.starts_at,
            "b_ends_at": task.ends_at,
        },
    ).first()
    return None if row is None else (row[0], row[1])


# A new place's columns, bound as ``:b_<name>`` (``b_task_id``, ``b_volunteer_id`` and ``b_now``
# are the slot's too).
_NEW_PLACE = {
    "task_id": "b_task_id",
    "volunteer_id": "b_volunteer_id",
    "user_id": "b_user_id",
    "status": "b_status",
    "source": "b_source",
    "accepted_at": "b_now",
    "invite_seq": "b_invite_seq",
    "checkout_auto": "b_checkout_auto",
    "points_awarded": "b_points_awarded",
    "created_at": "b_now",
}


@functools.cache
def _take_slot_and_place_pg() -> Any:
    """PostgreSQL: :func:`_take_slot_statement` as a data-modifying CTE and the new place's INSERT
    from it, in one statement (one round trip, not two); it answers the place with the slot's
    (filled, slots), or nothing when the slot was not taken (then nothing was written)."""
    slot = _take_slot_statement().cte("slot")
    table = Assignment.__table__
    place = select(
        *(bindparam(name, type_=table.c[key].type) for key, name in _NEW_PLACE.items())
    ).select_from(slot)
    written = (
        insert(table)
        .from_select(list(_NEW_PLACE), place)
        .returning(
            *table.c,
            select(slot.c.filled).scalar_subquery().label("filled"),
            select(slot.c.slots).scalar_subquery().label("slots"),
        )
    )
    return select(Assignment, column("filled"), column("slots")).from_statement(written)


@functools.cache
def _insert_place() -> Any:
    """Built once: the new place's INSERT … RETURNING (:data:`_NEW_PLACE`'s parameters)."""
    return (
        insert(Assignment)
        .values({key: bindparam(name) for key, name in _NEW_PLACE.items()})
        .returning(Assignment)
    )


def _take_slot_and_place(
    task: _AcceptedTask, volunteer: VolunteerFacts, user_id: int, now: datetime
) -> tuple[Assignment | None, tuple[int, int] | None]:
    """Take a slot (:func:`_take_slot`) and write the volunteer's new place (accepted, signed up to
    an open task): the place and the slot's (filled, slots), or (None, None) when the slot was not
    taken. On PostgreSQL one statement (:func:`_take_slot_and_place_pg`); elsewhere the slot's
    UPDATE, then the INSERT. Raises IntegrityError when the volunteer already has a place."""
    params = {
        "b_task_id": task.id,
        "b_now": now,
        "b_volunteer_id": volunteer.id,
        "b_starts_at": task.starts_at,
        "b_ends_at": task.ends_at,
        "b_user_id": user_id,
        "b_status": A.ACCEPTED,
        "b_source": DispatchMode.OPEN,
        "b_invite_seq": 0,
        "b_checkout_auto": False,
        "b_points_awarded": 0,
    }
    if is_postgresql(db.session()):
        row = db.session.execute(_take_slot_and_place_pg(), params).first()
        return (None, None) if row is None else (row.Assignment, (row.filled, row.slots))
    slot = _take_slot(task, volunteer, now)
    if slot is None:
        return None, None
    return db.session.scalars(_insert_place(), params).one(), slot


def _on_filled(task: _AcceptedTask) -> None:
    """The last slot was taken (the rings already stopped by :func:`_take_slot`): off the open-task
    list, and the open invitees told they need not come."""
    if task.dispatch_mode == DispatchMode.OPEN:
        task_index.unlist(task.id, task.jurisdiction_id)
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
            data=notification_data(task, assignment),
            page=task_page(task.id),
        )


_FULL_MESSAGE = "该任务已满员，感谢您的响应，请关注其他任务"


def _not_taken(volunteer: VolunteerFacts, task: _AcceptedTask) -> Conflict:
    """Why the slot's UPDATE took nothing (the transaction rolled back): a schedule overlap (raised
    here), else the task is full or closed (returned)."""
    _check_overlap(volunteer, task)  # the overlap kept the slot: say so
    db.session.rollback()
    return _full(task.id)


def _full(task_id: int) -> Conflict:
    task = db.session.get(Task, task_id)
    if task is not None and (task.status not in LIVE or task.ends_at <= utcnow()):
        return Conflict(_closed_message(task), code="task_not_open")
    return Conflict(_FULL_MESSAGE, code="task_full")


def _held_place(task_id: int, volunteer_id: int) -> Assignment:
    """The volunteer's place on the task, read in the session, when it holds a slot (accepting
    again, or twice at once: the same place); 409 ``bad_status`` when it changed meanwhile."""
    existing = db.session.scalar(
        select(Assignment).where(Assignment.task_id == task_id, Assignment.volunteer_id == volunteer_id)
    )
    if existing is not None and existing.status in HOLDS_SLOT:
        return existing
    raise Conflict("任务状态已变化，请刷新后重试", code="bad_status")


def _accept_place(place: _SeenPlace, now: datetime) -> Assignment | None:
    """Move the place the rules saw (an invitation, or an open task's place given up) to accepted if
    its status is still the one they saw: the place as written, loaded by the same UPDATE …
    RETURNING; None when another change got there first."""
    values: dict[str, Any] = {"accepted_at": now, "cancelled_at": None, "cancelled_by": None}
    if place.status == A.INVITED:
        values["responded_at"] = now
    return moved_assignment(place.id, A.ACCEPTED, expect=[place.status], **values)


def accept(user_id: int, task_id: int, *, lat: float | None, lng: float | None) -> Assignment:
    """Take a place on a task: sign up to an open task, or accept an invitation. Accepting
    again returns the same place; a full task answers 409 ``task_full``.

    A rush of acceptances costs little: one query of columns reads the volunteer, the task and
    their place on it, outside a transaction (:func:`yijing.sql.read_rows`: no BEGIN and ROLLBACK
    round trips, nothing loaded into the session); a task known full answers there. Otherwise a
    transaction opens: one UPDATE takes the slot (checking the schedule overlap in its WHERE) and
    one INSERT … RETURNING writes a new place, on PostgreSQL both in one statement (a
    data-modifying CTE), or an UPDATE … RETURNING moves the place the rules saw, if it is still as
    they saw it; the place is returned detached, so that the commit does not expire it and its
    answer reads nothing back. The slot's ``WHERE filled < slots`` is the guard: the read is only
    a snapshot, as it was inside a READ COMMITTED transaction.
    """
    rows = read_rows(db.session(), _accept_query(), {"user_id": user_id, "task_id": task_id})
    row = rows[0] if rows else None
    seeker = _seeker(row, lat, lng)
    volunteer = seeker.volunteer
    if row.task_id is None:
        raise NotFound("任务不存在", code="task_not_found")
    fields = row._mapping
    task = _AcceptedTask(*(fields[f"task_{name}"] for name in _ACCEPTED_TASK_FIELDS))
    place = None if row.my_id is None else _SeenPlace(*(fields[f"my_{name}"] for name in _SEEN_PLACE_FIELDS))
    now = utcnow()
    if place is not None and place.status in HOLDS_SLOT:
        return _held_place(task.id, volunteer.id)
    if task.status not in LIVE or task.ends_at <= now:
        raise Conflict(_closed_message(task), code="task_not_open")
    if place is not None and place.status == A.INVITED:
        if place.invite_expires_at is not None and place.invite_expires_at <= now:
            raise Conflict("该邀请已过期，请联系值班台", code="invitation_expired")
    elif place is not None and place.status == A.EXPIRED and task.dispatch_mode != DispatchMode.OPEN:
        # The expiry job got there first: the same answer as before it ran.
        raise Conflict("该邀请已过期，请联系值班台", code="invitation_expired")
    elif task.dispatch_mode == DispatchMode.OPEN:
        if not _in_area(seeker, task):
            raise Forbidden("该任务不在您的辖区或附近，不能报名", code="not_eligible")
        misfit = misfit_reason(volunteer, task)
        if misfit:
            raise Forbidden(misfit, code="not_eligible")
        if place is not None and not (
            place.status in (A.DECLINED, A.EXPIRED)
            or (place.status == A.CANCELLED and place.cancelled_by == "volunteer")
        ):
            raise Conflict("您已不能再报名该任务", code="cannot_accept")
    else:
        raise Forbidden("该任务仅限受邀的义警接受", code="not_invited")
    if task.filled >= task.slots:
        # Full already (most of a rush): answered from the read, with no transaction opened.
        raise Conflict(_FULL_MESSAGE, code="task_full")

    if place is None:
        try:
            assignment, slot = _take_slot_and_place(task, volunteer, user_id, now)
        except IntegrityError:  # the same volunteer, twice at once: the other request won
            db.session.rollback()
            return _held_place(task_id, volunteer.id)
        if slot is None or assignment is None:
            raise _not_taken(volunteer, task)
    else:
        slot = _take_slot(task, volunteer, now)
        if slot is None:
            raise _not_taken(volunteer, task)
        assignment = _accept_place(place, now)
        if assignment is None:
            db.session.rollback()
            return _held_place(task_id, volunteer.id)
    if task.dispatch_mode == DispatchMode.OPEN and slot[0] < slot[1]:
        task_index.refresh(task.id)  # its card's places (the last one taken: unlisted below)
    if slot[0] >= slot[1]:
        _on_filled(task)
    db.session.expunge(assignment)
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
        label = ASSIGNMENT_STATUS_LABELS.get(assignment.status, assignment.status)
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
    task = get_task(task_id, for_update=True)
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
        task_index.refresh(task.id)  # its card's places, or back on the list
    if (
        task.dispatch_mode == DispatchMode.NEARBY
        and task.status in LIVE
        and task.ends_at > now
        and task.dispatch_exhausted_at is None
    ):
        task.dispatch_next_at = now
        enqueue_dispatch(task.id, task.dispatch_ring, at=None, resume=True)
    db.session.commit()
    return assignment
