"""A synthetic data set for the benchmark, demos and the rollup tests (``flask yijing generate``).

It fills the existing jurisdiction tree's communities with users and volunteers (encrypted,
masked personal data, as the real ones), teams, tasks over the last ``days`` days with their
assignments (check-ins, check-outs, no-shows, service minutes, nearby-dispatch rings), points for
completed service, and clues. Rows go in by bulk INSERT in batches; it is deterministic for a
seed. Nothing here is used by the running service.

It is meant to look like the real thing to a leader reading the dashboards: approved volunteers
have their volunteer numbers and approval time; team liaisons are desk staff (police officers with
a desk grant over the community), never volunteers; tasks whose window is over are closed as the
close job would (``completed`` when someone served, ``unserved`` when nobody checked in: about one
in five); closed clues carry their closing time, their closing step by a desk officer, and a
verdict on validity only when resolved.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import JSON, func, insert, select, text, update

from yijing import pii
from yijing.config import settings
from yijing.extensions import db
from yijing.localtime import local_day
from yijing.models import (
    Assignment,
    AssignmentStatus,
    Clue,
    ClueCategory,
    ClueEvent,
    ClueMessage,
    ClueStatus,
    DispatchMode,
    DispatchRing,
    Jurisdiction,
    JurisdictionLevel,
    PointsEntry,
    PrivacyConsent,
    Role,
    RoleGrant,
    Task,
    TaskKind,
    TaskStatus,
    Team,
    User,
    UserKind,
    Volunteer,
    VolunteerCategory,
    VolunteerNumberCounter,
    VolunteerStatus,
)
from yijing.models.clue import OPEN_STATUSES as CLUE_OPEN_STATUSES
from yijing.models.clue import ClueEventKind
from yijing.services.clues import REPORTER_CONTEXT
from yijing.services.volunteers import ID_NUMBER_CONTEXT, NAME_CONTEXT, PHONE_CONTEXT
from yijing.sql import analyze, insert_ignore

BATCH = 5000
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
Progress = Callable[[str, int], None]
# The share of tasks nobody signs up for; with no-shows and declines, about one past task in five
# ends unserved (nobody checked in), as on the real board.
EMPTY_TASK_SHARE = 0.12
# A task is closed this long after its window ends (the close job's grace).
CLOSE_AFTER = timedelta(minutes=15)


@dataclass
class GenerateResult:
    users: int = 0
    residents: int = 0
    volunteers: int = 0
    tasks: int = 0
    assignments: int = 0
    clues: int = 0
    teams: int = 0


def _defaults(table: Any, given: set[str]) -> dict[str, Any]:
    """Python-side column defaults for the columns the rows leave out (COPY does not apply them)."""
    values: dict[str, Any] = {}
    for column in table.columns:
        if column.name in given or column.default is None or column.primary_key:
            continue
        arg = column.default.arg
        values[column.name] = arg(None) if callable(arg) else arg
    return values


def _load(model: Any, rows: list[dict[str, Any]], *, ids: bool = False) -> list[int]:
    """Insert ``rows`` in the session's transaction; their new ids when ``ids``.

    On PostgreSQL the ids are taken from the table's sequence first and the rows go in by COPY
    (about eight times faster than multi-row INSERT … RETURNING at the city's scale); on SQLite by
    one executemany INSERT.
    """
    if not rows:
        return []
    session = db.session
    if session.get_bind().dialect.name != "postgresql":
        # SQLite: one writer at a time, so the ids after the largest are ours to give; an
        # executemany without RETURNING (RETURNING in order would insert row by row).
        new_ids = []
        if ids:
            start = (session.scalar(select(func.max(model.id))) or 0) + 1
            new_ids = list(range(start, start + len(rows)))
            rows = [{**row, "id": new_id} for row, new_id in zip(rows, new_ids, strict=True)]
        names = list(dict.fromkeys(key for row in rows for key in row))
        rows = [{name: row.get(name) for name in names} for row in rows]  # one shape for executemany
        session.execute(insert(model.__table__), rows)  # Core: no ORM bookkeeping per row
        return new_ids
    table = model.__table__
    names = list(dict.fromkeys(key for row in rows for key in row))
    defaults = _defaults(table, set(names))
    new_ids: list[int] = []
    if ids:
        new_ids = list(
            session.execute(
                text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
                {"table": table.name, "n": len(rows)},
            ).scalars()
        )
        names = ["id", *names]
    names += list(defaults)
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for index, row in enumerate(rows):
            record = {**row, **defaults}
            if ids:
                record["id"] = new_ids[index]
            copy.write_row([Json(record.get(n)) if n in json_columns else record.get(n) for n in names])
    return new_ids


@dataclass(frozen=True)
class _Community:
    id: int
    name: str
    lat: float
    lng: float


def _batches(total: int) -> list[range]:
    return [range(start, min(total, start + BATCH)) for start in range(0, total, BATCH)]


@dataclass
class _Run:
    """One run of the generator: its random source, clock and what the earlier stages made."""

    rng: random.Random
    now: datetime
    days: int
    run: str  # makes this run's openids, usernames and keys unique
    communities: list[_Community]
    tick: Progress
    result: GenerateResult
    approved: list[tuple[int, int, int]] = field(
        default_factory=list
    )  # (volunteer id, user id, community id)
    by_community: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    officers: list[int | None] = field(default_factory=lambda: [None])

    def some_time_ago(self) -> datetime:
        """A moment within the last ``days`` days."""
        return self.now - timedelta(seconds=self.rng.randrange(self.days * 86400))


def generate(
    volunteers: int,
    assignments: int,
    clues: int,
    *,
    days: int = 60,
    seed: int = 1,
    progress: Progress | None = None,
    now: datetime | None = None,
    root_path: str | None = None,
    residents: int = 0,
    statuses: Sequence[VolunteerStatus] | None = None,
) -> GenerateResult:
    """Generate into the communities under ``root_path`` (a jurisdiction path; default: all).

    ``residents`` adds users of the mini-program who are not volunteers (the feed's readers and
    clue reporters), so the users table has the city's size: 1.85 million members in all.
    ``statuses`` is the pool volunteers' statuses are drawn from (default: 80 % approved, the rest
    pending, suspended, rejected or withdrawn).

    The stages run in this order (each draws from the one random source, so a seed gives the
    same data): residents, volunteers, teams and their liaison officers, tasks with their
    assignments and points, clues with their messages and steps.
    """
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    communities = _communities(root_path)
    ctx = _Run(
        rng=rng,
        now=now,
        days=days,
        run=f"{seed}-{int(now.timestamp())}-{rng.randrange(10**6)}",
        communities=communities,
        tick=progress or (lambda _stage, _n: None),
        result=GenerateResult(),
    )
    _generate_residents(ctx, residents)
    _generate_volunteers(ctx, volunteers, statuses)
    _generate_teams(ctx)
    _generate_tasks(ctx, assignments)
    _generate_clues(ctx, clues)
    analyze(
        db.session(),
        *(User, RoleGrant, PrivacyConsent, Volunteer, Team, Task, Assignment, DispatchRing, PointsEntry),
        *(Clue, ClueEvent, ClueMessage),
    )
    return ctx.result


def _communities(root_path: str | None) -> list[_Community]:
    """The communities to fill, as plain values (ORM objects would be expired after every commit)."""
    in_scope = [Jurisdiction.level == JurisdictionLevel.COMMUNITY]
    if root_path:
        in_scope.append(Jurisdiction.path.startswith(root_path, autoescape=True))
    communities = [
        _Community(c.id, c.name, c.lat or 40.65, c.lng or 109.84)
        for c in db.session.scalars(select(Jurisdiction).where(*in_scope).order_by(Jurisdiction.id))
    ]
    if not communities:
        raise ValueError("no communities: import the jurisdiction tree first")
    return communities


def _generate_residents(ctx: _Run, residents: int) -> None:
    """Mini-program users who are not volunteers, at home in a random community."""
    for batch in _batches(residents):
        _load(
            User,
            [
                {
                    "kind": "wechat",
                    "openid": f"gen-{ctx.run}-r{i}",
                    "display_name": "",
                    "home_jurisdiction_id": ctx.rng.choice(ctx.communities).id,
                    "created_at": ctx.some_time_ago(),
                    "is_active": True,
                }
                for i in batch
            ],
        )
        db.session.commit()
        ctx.result.users += len(batch)
        ctx.result.residents += len(batch)
        ctx.tick("residents", len(batch))


def _generate_volunteers(ctx: _Run, volunteers: int, statuses: Sequence[VolunteerStatus] | None) -> None:
    """Volunteers (with their users and privacy consents); the approved ones are kept in ``ctx``."""
    categories = [c.value for c in VolunteerCategory]
    pool = list(statuses or ()) or (
        [VolunteerStatus.APPROVED] * 80
        + [VolunteerStatus.PENDING] * 8
        + [VolunteerStatus.SUSPENDED] * 5
        + [VolunteerStatus.REJECTED] * 5
        + [VolunteerStatus.WITHDRAWN] * 2
    )
    now = ctx.now
    for batch in _batches(volunteers):
        users = [
            {
                "kind": "wechat",
                "openid": f"gen-{ctx.run}-{i}",
                "display_name": "",
                "created_at": now,
                "is_active": True,
            }
            for i in batch
        ]
        user_ids = _load(User, users, ids=True)
        consent_ids = _load(
            PrivacyConsent,
            [
                {"user_id": uid, "document": "volunteer_privacy", "version": "gen", "created_at": now}
                for uid in user_ids
            ],
            ids=True,
        )
        rows = [
            _volunteer_row(ctx, i, uid, cid, pool, categories)
            for i, uid, cid in zip(batch, user_ids, consent_ids, strict=True)
        ]
        numbers = _volunteer_numbers(sum(1 for row in rows if row["approved_at"] is not None), now)
        for row in rows:
            if row["approved_at"] is not None:
                row["volunteer_number"] = next(numbers)
        ids = _load(Volunteer, rows, ids=True)
        ctx.approved.extend(
            (vid, row["user_id"], row["community_id"])
            for vid, row in zip(ids, rows, strict=True)
            if row["status"] == VolunteerStatus.APPROVED
        )
        db.session.commit()
        ctx.result.users += len(batch)
        ctx.result.volunteers += len(batch)
        ctx.tick("volunteers", len(batch))
    for item in ctx.approved:
        ctx.by_community.setdefault(item[2], []).append(item)


def _volunteer_row(
    ctx: _Run, i: int, uid: int, cid: int, statuses: list[VolunteerStatus], categories: list[str]
) -> dict[str, Any]:
    """One volunteer as the review leaves it: personal data encrypted and masked, decision times."""
    rng, now = ctx.rng, ctx.now
    community = rng.choice(ctx.communities)
    status = rng.choice(statuses)
    name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
    id_number = f"G{ctx.run}-{i:08d}"
    phone = f"199{i:08d}"
    id_hash = pii.blind_index(id_number, context=ID_NUMBER_CONTEXT)
    is_open = status in (VolunteerStatus.APPROVED, VolunteerStatus.PENDING, VolunteerStatus.SUSPENDED)
    decided = None if status == VolunteerStatus.PENDING else ctx.some_time_ago()
    # Approved once: approved now, suspended since, or (one in two) withdrawn after.
    was_approved = status in (VolunteerStatus.APPROVED, VolunteerStatus.SUSPENDED) or (
        status == VolunteerStatus.WITHDRAWN and rng.random() < 0.5
    )
    approved_at = None
    if was_approved and decided is not None:
        # Approved at the decision, or some days before a later suspension/withdrawal.
        approved_at = (
            decided
            if status == VolunteerStatus.APPROVED
            else decided - timedelta(seconds=rng.randrange(30 * 86400))
        )
    return {
        "user_id": uid,
        "status": status.value,
        "category": rng.choice(categories),
        "employer": "",
        "skills": [],
        "real_name_enc": pii.encrypt(name, context=NAME_CONTEXT),
        "name_masked": pii.mask_name(name),
        "id_number_enc": pii.encrypt(id_number, context=ID_NUMBER_CONTEXT),
        "id_number_hash": id_hash,
        "id_number_masked": pii.mask_id_number(id_number),
        "phone_enc": pii.encrypt(phone, context=PHONE_CONTEXT),
        "phone_hash": pii.blind_index(phone, context=PHONE_CONTEXT),
        "phone_masked": pii.mask_phone(phone),
        "jurisdiction_id": community.id,
        "community_id": community.id,
        "consent_id": cid,
        "open_user_id": uid if is_open else None,
        "open_id_number_hash": id_hash if is_open else None,
        "decision_seq": 0 if decided is None else (1 if status == VolunteerStatus.APPROVED else 2),
        "decided_at": decided,
        "approved_at": approved_at,
        "on_duty": False,
        "created_at": (approved_at or decided or now) - timedelta(days=1),
    }


def _generate_teams(ctx: _Run) -> None:
    """Teams for about two communities in three; a liaison and a captain for some of them.

    Liaisons are desk officers of the community (staff users with a desk grant over it, who sign
    in with a password an administrator sets), for about seven teams in ten.
    """
    rng, now = ctx.rng, ctx.now
    have_team = set(db.session.scalars(select(Team.jurisdiction_id)))
    team_rows = []
    for community in ctx.communities:
        if community.id in have_team or rng.random() < 0.33:
            continue
        members = ctx.by_community.get(community.id, [])
        team_rows.append(
            {
                "jurisdiction_id": community.id,
                "name": f"{community.name}义警队",
                "liaison_user_id": None,
                "captain_user_id": members[-1][1] if members and rng.random() < 0.7 else None,
                "version": 0,
                "created_at": now,
            }
        )
    with_liaison = [row for row in team_rows if rng.random() < 0.7]
    officer_ids = _load(
        User,
        [
            {
                "kind": UserKind.STAFF.value,
                "username": f"gen-{ctx.run}-liaison-{row['jurisdiction_id']}",
                "display_name": f"{row['name'][:-3]}联络民警",
                "created_at": now,
                "is_active": True,
            }
            for row in with_liaison
        ],
        ids=True,
    )
    _load(
        RoleGrant,
        [
            {
                "user_id": uid,
                "role": Role.DESK.value,
                "jurisdiction_id": row["jurisdiction_id"],
                "created_at": now,
            }
            for uid, row in zip(officer_ids, with_liaison, strict=True)
        ],
    )
    for uid, row in zip(officer_ids, with_liaison, strict=True):
        row["liaison_user_id"] = uid
    ctx.officers = list(officer_ids) or [None]
    if team_rows:
        _load(Team, team_rows)
        db.session.commit()
    ctx.result.teams = len(team_rows)


#: What a task plan carries to its assignments: (people, their outcomes, nearby?, published at).
_Plan = tuple[list[tuple[int, int, int]], list[AssignmentStatus], bool, datetime]


def _generate_tasks(ctx: _Run, assignments: int) -> None:
    """Tasks of about 4 places each, with their rings, assignments and points, until ``assignments``."""
    kinds = [k.value for k in TaskKind]
    made = 0
    while made < assignments and ctx.approved:
        task_rows: list[dict[str, Any]] = []
        plans: list[_Plan] = []
        while len(task_rows) < BATCH // 4 and made < assignments:
            task, plan = _task_row(ctx, kinds, assignments - made)
            made += len(plan[0])
            task_rows.append(task)
            plans.append(plan)
        task_ids = _load(Task, task_rows, ids=True)
        ring_ids = _load_rings(task_ids, plans)
        assignment_rows = [
            row
            for tid, task, plan in zip(task_ids, task_rows, plans, strict=True)
            for row in _assignment_rows(ctx, tid, task, plan, ring_ids.get(tid))
        ]
        _load_assignments(ctx, assignment_rows)
        db.session.commit()
        ctx.result.tasks += len(task_rows)
        ctx.result.assignments += len(assignment_rows)
        ctx.tick("assignments", len(assignment_rows))


def _task_row(ctx: _Run, kinds: list[str], left: int) -> tuple[dict[str, Any], _Plan]:
    """One task in a random community, with who signs up and how each of them ends.

    Closed as the close job leaves it: completed when someone served, unserved when nobody checked
    in; a window not over yet is still in progress (or not started).
    """
    rng, now = ctx.rng, ctx.now
    community = rng.choice(ctx.communities)
    starts = ctx.some_time_ago()
    slots = rng.randint(1, 6)
    pool = ctx.by_community.get(community.id) or ctx.approved
    wanted = 0 if rng.random() < EMPTY_TASK_SHARE else rng.randint(1, slots + 1)
    people = rng.sample(pool, min(len(pool), wanted, left))
    cancelled = rng.random() < 0.08
    nearby = rng.random() < 0.1
    outcome = [_outcome(rng, cancelled) for _ in people]
    served = len([o for o in outcome if o == AssignmentStatus.COMPLETED])
    filled = min(slots, served)
    published = starts - timedelta(hours=rng.randint(1, 48))
    ends = starts + timedelta(hours=2)
    closed_at = ends + CLOSE_AFTER if not cancelled and ends + CLOSE_AFTER <= now else None
    if cancelled:
        status = TaskStatus.CANCELLED
    elif closed_at is not None:
        status = TaskStatus.COMPLETED if served else TaskStatus.UNSERVED
    else:
        status = TaskStatus.IN_PROGRESS if starts <= now else TaskStatus.PUBLISHED
    task = {
        "jurisdiction_id": community.id,
        "kind": rng.choice(kinds),
        "title": f"{community.name}巡逻",
        "description": "",
        "lat": community.lat,
        "lng": community.lng,
        "address": "",
        "geofence_radius_m": 200,
        "starts_at": starts,
        "ends_at": ends,
        "slots": slots,
        "filled": filled,
        "categories": [],
        "skills": [],
        "points": 5,
        "dispatch_mode": DispatchMode.NEARBY.value if nearby else DispatchMode.OPEN.value,
        "status": status.value,
        "closed_at": closed_at,
        "published_at": published,
        "cancelled_at": published + timedelta(hours=1) if cancelled else None,
        "dispatch_ring": 1 if nearby else 0,
        "created_at": published,
    }
    return task, (people, outcome, nearby, published)


def _outcome(rng: random.Random, cancelled: bool) -> AssignmentStatus:
    """How one sign-up ends: mostly served, some no-shows and declines, all cancelled with the task."""
    roll = rng.random()
    if cancelled:
        return AssignmentStatus.CANCELLED
    if roll < 0.7:
        return AssignmentStatus.COMPLETED
    if roll < 0.8:
        return AssignmentStatus.NO_SHOW
    if roll < 0.9:
        return AssignmentStatus.DECLINED
    return AssignmentStatus.CANCELLED


def _load_rings(task_ids: list[int], plans: list[_Plan]) -> dict[int, int]:
    """The first dispatch ring of each nearby task: task id → ring id."""
    ring_rows = [
        {
            "task_id": tid,
            "ring_no": 1,
            "radius_m": 1000,
            "found": 5,
            "invited": 5,
            "slots_open": 1,
            "created_at": plan[3],
        }
        for tid, plan in zip(task_ids, plans, strict=True)
        if plan[2]
    ]
    if not ring_rows:
        return {}
    return dict(zip([r["task_id"] for r in ring_rows], _load(DispatchRing, ring_rows, ids=True), strict=True))


def _assignment_rows(
    ctx: _Run, tid: int, task: dict[str, Any], plan: _Plan, ring_id: int | None
) -> list[dict[str, Any]]:
    """The task's assignments; a completed one carries its check-in, check-out, minutes and points."""
    rng = ctx.rng
    people, outcome, nearby, published = plan
    rows = []
    for (vid, uid, _), status in zip(people, outcome, strict=True):
        accepted = published + timedelta(seconds=rng.randint(20, 1800))
        row: dict[str, Any] = {
            "task_id": tid,
            "volunteer_id": vid,
            "user_id": uid,
            "status": status.value,
            "source": "nearby" if nearby else "open",
            "ring_id": ring_id,
            "invite_seq": 0,
            "invited_at": published if nearby else None,
            "accepted_at": accepted if status != AssignmentStatus.DECLINED else None,
            "responded_at": accepted,
            "checkout_auto": False,
            "points_awarded": 0,
            "created_at": published,
        }
        if status == AssignmentStatus.COMPLETED:
            minutes = rng.randint(30, 150)
            row["checkin_at"] = task["starts_at"] + timedelta(minutes=rng.randint(0, 10))
            row["checkout_at"] = row["checkin_at"] + timedelta(minutes=minutes)
            row["service_minutes"] = minutes
            row["points_awarded"] = task["points"]
        rows.append(row)
    return rows


def _load_assignments(ctx: _Run, assignment_rows: list[dict[str, Any]]) -> None:
    """Insert the assignments and one points entry per completed one (keyed by the assignment)."""
    if not assignment_rows:
        return
    assignment_ids = _load(Assignment, assignment_rows, ids=True)
    points_rows = [
        {
            "user_id": row["user_id"],
            "amount": row["points_awarded"],
            "reason": "task_completed",
            "source_key": f"gen:{ctx.run}:assignment:{aid}",
            "created_at": row["checkout_at"],
        }
        for aid, row in zip(assignment_ids, assignment_rows, strict=True)
        if row["points_awarded"]
    ]
    if points_rows:
        _load(PointsEntry, points_rows)


def _generate_clues(ctx: _Run, clues: int) -> None:
    """Clues in random communities, with a desk message on most and the desk's steps on some."""
    clue_categories = [c.value for c in ClueCategory]
    clue_statuses = [s.value for s in ClueStatus]
    for batch in _batches(clues):
        rows = [_clue_row(ctx, clue_categories, clue_statuses) for _ in batch]
        clue_ids = _load(Clue, rows, ids=True)
        messages: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for clue_id, row in zip(clue_ids, rows, strict=True):
            _clue_steps(ctx, clue_id, row, messages, events)
        if messages:
            _load(ClueMessage, messages)
        if events:
            _load(ClueEvent, events)
        db.session.commit()
        ctx.result.clues += len(batch)
        ctx.tick("clues", len(batch))


def _clue_row(ctx: _Run, categories: list[str], statuses: list[str]) -> dict[str, Any]:
    """One clue; a closed one carries its closing time, a resolved one a verdict on validity."""
    rng, now = ctx.rng, ctx.now
    community = rng.choice(ctx.communities)
    created = ctx.some_time_ago()
    status = rng.choice(statuses)
    # A verdict on validity comes with resolving only (as the desk records it).
    valid = rng.random() < 0.7 if status == ClueStatus.RESOLVED else None
    closed = None
    if status not in CLUE_OPEN_STATUSES:
        closed = min(now, created + timedelta(seconds=rng.randint(600, 5 * 86400)))
    return {
        "category": rng.choice(categories),
        "description": "生成的线索",
        "lat": community.lat,
        "lng": community.lng,
        "jurisdiction_id": community.id,
        "status": status,
        "priority": 0,
        **_reporter(rng, ctx.approved),
        "photo_count": 0,
        "valid": valid,
        "created_at": created,
        "updated_at": closed or created,
        "closed_at": closed,
    }


def _clue_steps(
    ctx: _Run, clue_id: int, row: dict[str, Any], messages: list[dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    """Add the clue's desk message (six in ten) and its steps by a desk officer: accepted, closed."""
    rng, now = ctx.rng, ctx.now
    if rng.random() < 0.6:
        at = min(now, row["created_at"] + timedelta(seconds=rng.randint(30, 3 * 86400)))
        messages.append({"clue_id": clue_id, "sender": "desk", "body": "您好，请补充位置", "created_at": at})
    officer = rng.choice(ctx.officers)
    if officer is None:
        return  # no desk officer generated: no staff steps
    if row["status"] != ClueStatus.SUBMITTED and rng.random() < 0.4:
        at = row["created_at"] + timedelta(seconds=rng.randint(30, 3 * 86400))
        if row["closed_at"] is not None:
            at = min(at, row["closed_at"])
        events.append(
            {
                "clue_id": clue_id,
                "kind": ClueEventKind.STATUS.value,
                "from_status": "submitted",
                "to_status": "accepted",
                "public_note": "已受理",
                "actor_id": officer,
                "data": {},
                "created_at": min(at, now),
            }
        )
    if row["closed_at"] is not None:
        events.append(
            {
                "clue_id": clue_id,
                "kind": ClueEventKind.STATUS.value,
                "from_status": "accepted",
                "to_status": row["status"],
                "public_note": "已处理",
                "actor_id": officer,
                "data": {},
                "created_at": row["closed_at"],
            }
        )


def _volunteer_numbers(count: int, now: datetime) -> Any:
    """``count`` volunteer numbers of the year, reserved in one step from the same counter the
    review uses (BTYJ-2026-000123), so generated and real numbers never collide."""
    if not count:
        return iter(())
    year = local_day(now).year
    insert_ignore(db.session(), VolunteerNumberCounter, {"year": year, "last": 0})
    last = db.session.execute(
        update(VolunteerNumberCounter)
        .where(VolunteerNumberCounter.year == year)
        .values(last=VolunteerNumberCounter.last + count)
        .returning(VolunteerNumberCounter.last)
    ).scalar_one()
    prefix = settings().volunteer_number_prefix
    return iter(f"{prefix}-{year}-{n:06d}" for n in range(last - count + 1, last + 1))


def _reporter(rng: random.Random, approved: list[tuple[int, int, int]]) -> dict[str, Any]:
    """Who reported a clue, stored as the service stores it: a volunteer's user, anonymously
    (encrypted, with its blind index) about half the time."""
    if not approved:
        return {"is_anonymous": True}
    user_id = rng.choice(approved)[1]
    if rng.random() < 0.5:
        return {"is_anonymous": False, "reporter_id": user_id}
    return {
        "is_anonymous": True,
        "reporter_enc": pii.encrypt(str(user_id), context=REPORTER_CONTEXT),
        "reporter_index": pii.blind_index(str(user_id), context=REPORTER_CONTEXT),
    }
