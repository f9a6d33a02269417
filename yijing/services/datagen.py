"""A synthetic data set for the benchmark, demos and the rollup tests (``flask yijing generate``).

It fills the existing jurisdiction tree's communities with users and volunteers (encrypted,
masked personal data, as the real ones), teams, tasks over the last ``days`` days with their
assignments (check-ins, check-outs, no-shows, service minutes, nearby-dispatch rings), points for
completed service, and clues. Rows go in by bulk INSERT in batches; it is deterministic for a
seed. Nothing here is used by the running service.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import JSON, func, insert, select, text

from yijing import pii
from yijing.extensions import db
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
    Task,
    TaskKind,
    TaskStatus,
    Team,
    User,
    Volunteer,
    VolunteerCategory,
    VolunteerStatus,
)
from yijing.models.clue import ClueEventKind
from yijing.services.volunteers import ID_NUMBER_CONTEXT, NAME_CONTEXT, PHONE_CONTEXT
from yijing.sql import analyze

BATCH = 5000
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
Progress = Callable[[str, int], None]


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
    """
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    tick = progress or (lambda _stage, _n: None)
    result = GenerateResult()
    in_scope = [Jurisdiction.level == JurisdictionLevel.COMMUNITY]
    if root_path:
        in_scope.append(Jurisdiction.path.startswith(root_path, autoescape=True))
    # Plain values: the ORM objects would be expired (and reloaded one by one) after every commit.
    communities = [
        _Community(c.id, c.name, c.lat or 40.65, c.lng or 109.84)
        for c in db.session.scalars(select(Jurisdiction).where(*in_scope).order_by(Jurisdiction.id))
    ]
    if not communities:
        raise ValueError("no communities: import the jurisdiction tree first")
    run = f"{seed}-{int(now.timestamp())}-{rng.randrange(10**6)}"
    categories = [c.value for c in VolunteerCategory]
    statuses = list(statuses or ()) or (
        [VolunteerStatus.APPROVED] * 80
        + [VolunteerStatus.PENDING] * 8
        + [VolunteerStatus.SUSPENDED] * 5
        + [VolunteerStatus.REJECTED] * 5
        + [VolunteerStatus.WITHDRAWN] * 2
    )
    approved: list[tuple[int, int, int]] = []  # (volunteer id, user id, community id)
    for batch in _batches(residents):
        _load(
            User,
            [
                {
                    "kind": "wechat",
                    "openid": f"gen-{run}-r{i}",
                    "display_name": "",
                    "home_jurisdiction_id": rng.choice(communities).id,
                    "created_at": now - timedelta(seconds=rng.randrange(days * 86400)),
                    "is_active": True,
                }
                for i in batch
            ],
        )
        db.session.commit()
        result.users += len(batch)
        result.residents += len(batch)
        tick("residents", len(batch))
    for batch in _batches(volunteers):
        users = [
            {
                "kind": "wechat",
                "openid": f"gen-{run}-{i}",
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
        rows = []
        for i, uid, cid in zip(batch, user_ids, consent_ids, strict=True):
            community = rng.choice(communities)
            status = rng.choice(statuses)
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            id_number = f"G{run}-{i:08d}"
            phone = f"199{i:08d}"
            id_hash = pii.blind_index(id_number, context=ID_NUMBER_CONTEXT)
            is_open = status in (VolunteerStatus.APPROVED, VolunteerStatus.PENDING, VolunteerStatus.SUSPENDED)
            decided = (
                None
                if status == VolunteerStatus.PENDING
                else now - timedelta(seconds=rng.randrange(days * 86400))
            )
            rows.append(
                {
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
                    "decision_seq": 0 if decided is None else 1,
                    "decided_at": decided,
                    "on_duty": False,
                    "created_at": (decided or now) - timedelta(days=1),
                }
            )
        ids = _load(Volunteer, rows, ids=True)
        approved.extend(
            (vid, row["user_id"], row["community_id"])
            for vid, row in zip(ids, rows, strict=True)
            if row["status"] == VolunteerStatus.APPROVED
        )
        db.session.commit()
        result.users += len(batch)
        result.volunteers += len(batch)
        tick("volunteers", len(batch))

    # Teams for about two communities in three; a liaison and a captain for some of them.
    have_team = set(db.session.scalars(select(Team.jurisdiction_id)))
    by_community: dict[int, list[tuple[int, int, int]]] = {}
    for item in approved:
        by_community.setdefault(item[2], []).append(item)
    team_rows = []
    for community in communities:
        if community.id in have_team or rng.random() < 0.33:
            continue
        members = by_community.get(community.id, [])
        team_rows.append(
            {
                "jurisdiction_id": community.id,
                "name": f"{community.name}义警队",
                "liaison_user_id": members[0][1] if members and rng.random() < 0.7 else None,
                "captain_user_id": members[-1][1] if members and rng.random() < 0.7 else None,
                "version": 0,
                "created_at": now,
            }
        )
    if team_rows:
        _load(Team, team_rows)
        db.session.commit()
    result.teams = len(team_rows)

    # Tasks of about 4 places each, and their assignments.
    kinds = [k.value for k in TaskKind]
    made = 0
    while made < assignments and approved:
        task_rows, plans = [], []
        while len(task_rows) < BATCH // 4 and made < assignments:
            community = rng.choice(communities)
            starts = now - timedelta(seconds=rng.randrange(days * 86400))
            slots = rng.randint(1, 6)
            pool = by_community.get(community.id) or approved
            people = rng.sample(pool, min(len(pool), rng.randint(0, slots + 1), assignments - made))
            made += len(people)
            cancelled = rng.random() < 0.08
            nearby = rng.random() < 0.1
            outcome = []
            for _ in people:
                roll = rng.random()
                if cancelled:
                    outcome.append(AssignmentStatus.CANCELLED)
                elif roll < 0.7:
                    outcome.append(AssignmentStatus.COMPLETED)
                elif roll < 0.8:
                    outcome.append(AssignmentStatus.NO_SHOW)
                elif roll < 0.9:
                    outcome.append(AssignmentStatus.DECLINED)
                else:
                    outcome.append(AssignmentStatus.CANCELLED)
            holders = [o for o in outcome if o in (AssignmentStatus.COMPLETED, AssignmentStatus.NO_SHOW)]
            filled = min(slots, len([o for o in outcome if o == AssignmentStatus.COMPLETED]))
            published = starts - timedelta(hours=rng.randint(1, 48))
            task_rows.append(
                {
                    "jurisdiction_id": community.id,
                    "kind": rng.choice(kinds),
                    "title": f"{community.name}巡逻",
                    "description": "",
                    "lat": community.lat,
                    "lng": community.lng,
                    "address": "",
                    "geofence_radius_m": 200,
                    "starts_at": starts,
                    "ends_at": starts + timedelta(hours=2),
                    "slots": slots,
                    "filled": filled,
                    "categories": [],
                    "skills": [],
                    "points": 5,
                    "dispatch_mode": DispatchMode.NEARBY.value if nearby else DispatchMode.OPEN.value,
                    "status": (
                        TaskStatus.CANCELLED.value
                        if cancelled
                        else (TaskStatus.COMPLETED.value if holders else TaskStatus.PUBLISHED.value)
                    ),
                    "published_at": published,
                    "cancelled_at": published + timedelta(hours=1) if cancelled else None,
                    "dispatch_ring": 1 if nearby else 0,
                    "created_at": published,
                }
            )
            plans.append((people, outcome, nearby, published))
        task_ids = _load(Task, task_rows, ids=True)
        ring_ids: dict[int, int] = {}
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
        if ring_rows:
            ring_ids = dict(
                zip(
                    [r["task_id"] for r in ring_rows],
                    _load(DispatchRing, ring_rows, ids=True),
                    strict=True,
                )
            )
        assignment_rows, points_rows = [], []
        for tid, task, (people, outcome, nearby, published) in zip(task_ids, task_rows, plans, strict=True):
            for (vid, uid, _), status in zip(people, outcome, strict=True):
                accepted = published + timedelta(seconds=rng.randint(20, 1800))
                row: dict[str, Any] = {
                    "task_id": tid,
                    "volunteer_id": vid,
                    "user_id": uid,
                    "status": status.value,
                    "source": "nearby" if nearby else "open",
                    "ring_id": ring_ids.get(tid),
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
                assignment_rows.append(row)
        if assignment_rows:
            assignment_ids = _load(Assignment, assignment_rows, ids=True)
            points_rows = [
                {
                    "user_id": row["user_id"],
                    "amount": row["points_awarded"],
                    "reason": "task_completed",
                    "source_key": f"gen:{run}:assignment:{aid}",
                    "created_at": row["checkout_at"],
                }
                for aid, row in zip(assignment_ids, assignment_rows, strict=True)
                if row["points_awarded"]
            ]
            if points_rows:
                _load(PointsEntry, points_rows)
        db.session.commit()
        result.tasks += len(task_rows)
        result.assignments += len(assignment_rows)
        tick("assignments", len(assignment_rows))

    clue_categories = [c.value for c in ClueCategory]
    clue_statuses = [s.value for s in ClueStatus]
    for batch in _batches(clues):
        rows = []
        for _ in batch:
            community = rng.choice(communities)
            created = now - timedelta(seconds=rng.randrange(days * 86400))
            status = rng.choice(clue_statuses)
            valid = {"resolved": True, "transferred": True, "rejected": False, "duplicate": False}.get(status)
            rows.append(
                {
                    "category": rng.choice(clue_categories),
                    "description": "生成的线索",
                    "lat": community.lat,
                    "lng": community.lng,
                    "jurisdiction_id": community.id,
                    "status": status,
                    "priority": 0,
                    "is_anonymous": True,
                    "photo_count": 0,
                    "valid": valid,
                    "created_at": created,
                    "updated_at": created,
                }
            )
        clue_ids = _load(Clue, rows, ids=True)
        messages, events = [], []
        for clue_id, row in zip(clue_ids, rows, strict=True):
            if rng.random() < 0.6:
                at = row["created_at"] + timedelta(seconds=rng.randint(30, 3 * 86400))
                messages.append(
                    {"clue_id": clue_id, "sender": "desk", "body": "您好，请补充位置", "created_at": at}
                )
            if approved and rng.random() < 0.4:
                at = row["created_at"] + timedelta(seconds=rng.randint(30, 3 * 86400))
                events.append(
                    {
                        "clue_id": clue_id,
                        "kind": ClueEventKind.STATUS.value,
                        "from_status": "submitted",
                        "to_status": "accepted",
                        "public_note": "已受理",
                        "actor_id": rng.choice(approved)[1],
                        "data": {},
                        "created_at": at,
                    }
                )
        if messages:
            _load(ClueMessage, messages)
        if events:
            _load(ClueEvent, events)
        db.session.commit()
        result.clues += len(batch)
        tick("clues", len(batch))
    analyze(
        db.session(),
        *(User, PrivacyConsent, Volunteer, Team, Task, Assignment, DispatchRing, PointsEntry),
        *(Clue, ClueEvent, ClueMessage),
    )
    return result
