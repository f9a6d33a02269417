"""The desk's side: the queue, a clue's view for staff, assignment, urgency, status changes, questions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import aliased

from yijing import pii, policies
from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput, NotFound, Unauthorized
from yijing.extensions import db
from yijing.models import (
    Clue,
    ClueDuplicateCandidate,
    ClueEvent,
    ClueMessage,
    ClueStatus,
    Jurisdiction,
    User,
)
from yijing.models.base import utcnow
from yijing.models.clue import (
    OPEN_STATUSES,
    STATUS_LABELS,
    ClueEventKind,
    MessageSender,
    TransferTarget,
)
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit
from yijing.services import jurisdictions as jurisdiction_service
from yijing.services.clues.canned import canned_reply
from yijing.services.clues.common import (
    DEFAULT_PUBLIC_NOTES,
    STATES,
    TRANSFER_LABELS,
    TRANSITIONS,
    ClueFacts,
    Photo,
    _award_valid,
    _facts,
    _notify_reporter,
    _photos,
    reporter_user_id,
)
from yijing.sql import text_matches


def _for_staff(principal: Principal, clue_id: int) -> tuple[Clue, Jurisdiction]:
    row = db.session.execute(
        select(Clue, Jurisdiction)
        .join(Jurisdiction, Jurisdiction.id == Clue.jurisdiction_id)
        .where(Clue.id == clue_id)
    ).first()
    if row is None:
        policies.require_somewhere(principal, Permission.CLUE_TRIAGE)
        raise NotFound("线索不存在", code="clue_not_found")
    clue, jurisdiction = row
    policies.require(principal, Permission.CLUE_TRIAGE, jurisdiction.path)
    return clue, jurisdiction


@dataclass(frozen=True, slots=True)
class StaffRef:
    """A staff member as other staff see them (display name, else username)."""

    id: int
    display_name: str | None


@dataclass(frozen=True, slots=True)
class ReporterContact:
    """A named reporter's masked name and phone."""

    display_name: str | None
    phone_masked: str | None


@dataclass(frozen=True, slots=True)
class DeskClueItem(ClueFacts):
    """A clue in the desk's queue."""

    jurisdiction: Jurisdiction
    assignee: StaffRef | None
    assigned_at: datetime | None
    content_flag: str | None
    duplicate_of_id: int | None


@dataclass(frozen=True, slots=True)
class DeskEvent:
    id: int
    kind: str
    from_status: str | None
    to_status: str | None
    public_note: str | None
    internal_note: str | None
    actor: StaffRef | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeskMessage:
    """A message on the thread; the author is named for desk messages only."""

    id: int
    sender: str
    author: StaffRef | None
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DuplicateCandidate:
    """A nearby earlier clue that may be the same case (first 100 characters of its description)."""

    id: int
    category: str
    status: str
    status_label: str
    description: str
    distance_m: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeskClue(DeskClueItem):
    """Everything staff may see of a clue; never who an anonymous reporter is."""

    photos: list[Photo]
    reporter: ReporterContact | None
    content_label: int | None
    events: list[DeskEvent]
    messages: list[DeskMessage]
    duplicate_candidates: list[DuplicateCandidate]
    allowed_transitions: list[str]


def _staff_ref(user: User | None) -> StaffRef | None:
    return None if user is None else StaffRef(id=user.id, display_name=user.display_name or user.username)


def _reporter_for_staff(clue: Clue) -> ReporterContact | None:
    """A named reporter's masked name and phone; None for an anonymous clue, always."""
    if clue.is_anonymous or clue.reporter_id is None:
        return None
    user = db.session.get(User, clue.reporter_id)
    if user is None:
        return None
    phone = pii.decrypt(user.phone_enc, context="user.phone") if user.phone_enc else None
    return ReporterContact(
        display_name=pii.mask_name(user.display_name) if user.display_name else None,
        phone_masked=pii.mask_phone(phone) if phone else None,
    )


def _item_fields(clue: Clue, jurisdiction: Jurisdiction, assignee: User | None) -> dict[str, Any]:
    return {
        **_facts(clue),
        "jurisdiction": jurisdiction,
        "assignee": _staff_ref(assignee),
        "assigned_at": clue.assigned_at,
        "content_flag": clue.content_flag,
        "duplicate_of_id": clue.duplicate_of_id,
    }


def desk_view(principal: Principal, clue: Clue, jurisdiction: Jurisdiction) -> DeskClue:
    """Everything staff may see of a clue; never who an anonymous reporter is."""
    assignee = db.session.get(User, clue.assignee_id) if clue.assignee_id else None
    actor = aliased(User)
    events = db.session.execute(
        select(ClueEvent, actor)
        .outerjoin(actor, actor.id == ClueEvent.actor_id)
        .where(ClueEvent.clue_id == clue.id)
        .order_by(ClueEvent.id)
    ).all()
    author = aliased(User)
    messages = db.session.execute(
        select(ClueMessage, author)
        .outerjoin(author, author.id == ClueMessage.author_id)
        .where(ClueMessage.clue_id == clue.id)
        .order_by(ClueMessage.id)
    ).all()
    paths = policies.scope_paths(principal, Permission.CLUE_TRIAGE)
    candidates = db.session.execute(
        select(Clue, ClueDuplicateCandidate.distance_m)
        .join(ClueDuplicateCandidate, ClueDuplicateCandidate.candidate_id == Clue.id)
        .join(Jurisdiction, Jurisdiction.id == Clue.jurisdiction_id)
        .where(
            ClueDuplicateCandidate.clue_id == clue.id,
            jurisdiction_service.in_subtrees(Jurisdiction.path, paths),
        )
        .order_by(ClueDuplicateCandidate.distance_m, Clue.id)
    ).all()
    return DeskClue(
        **_item_fields(clue, jurisdiction, assignee),
        photos=_photos([clue.id]).get(clue.id, []),
        reporter=_reporter_for_staff(clue),
        content_label=clue.content_label,
        events=[
            DeskEvent(
                id=e.id,
                kind=e.kind,
                from_status=e.from_status,
                to_status=e.to_status,
                public_note=e.public_note,
                internal_note=e.internal_note,
                actor=_staff_ref(who),
                created_at=e.created_at,
            )
            for e, who in events
        ],
        messages=[
            DeskMessage(
                id=m.id,
                sender=m.sender,
                author=_staff_ref(who) if m.sender == MessageSender.DESK else None,
                body=m.body,
                created_at=m.created_at,
            )
            for m, who in messages
        ],
        duplicate_candidates=[
            DuplicateCandidate(
                id=c.id,
                category=c.category,
                status=c.status,
                status_label=STATUS_LABELS[ClueStatus(c.status)],
                description=c.description[:100],
                distance_m=distance,
                created_at=c.created_at,
            )
            for c, distance in candidates
        ],
        allowed_transitions=sorted(TRANSITIONS.get(ClueStatus(clue.status), frozenset())),
    )


def desk_clue(principal: Principal, clue_id: int) -> DeskClue:
    clue, jurisdiction = _for_staff(principal, clue_id)
    return desk_view(principal, clue, jurisdiction)


@dataclass(frozen=True)
class QueueFilters:
    statuses: Sequence[str] = ()
    category: str | None = None
    jurisdiction_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    has_photos: bool | None = None
    assignee: str | None = None  # "me" or "none"
    q: str | None = None  # words in the description or the address


def queue(
    principal: Principal, filters: QueueFilters, *, cursor: str | None, limit: int
) -> Page[DeskClueItem]:
    """The triage queue in the staff member's jurisdiction: urgent first, then oldest first.

    Without a status filter it shows the open clues.
    """
    paths = policies.require_somewhere(principal, Permission.CLUE_TRIAGE)
    if filters.jurisdiction_id is not None:
        root = jurisdiction_service.get(filters.jurisdiction_id)
        policies.require(principal, Permission.CLUE_TRIAGE, root.path)
        paths = [root.path]
    assignee = aliased(User)
    stmt = (
        select(Clue, Jurisdiction, assignee)
        .join(Jurisdiction, Jurisdiction.id == Clue.jurisdiction_id)
        .outerjoin(assignee, assignee.id == Clue.assignee_id)
        .where(jurisdiction_service.in_subtrees(Jurisdiction.path, paths))
        .where(Clue.status.in_(list(filters.statuses) or sorted(OPEN_STATUSES)))
    )
    if filters.category:
        stmt = stmt.where(Clue.category == filters.category)
    if filters.created_from:
        stmt = stmt.where(Clue.created_at >= filters.created_from)
    if filters.created_to:
        stmt = stmt.where(Clue.created_at < filters.created_to)
    if filters.has_photos is not None:
        stmt = stmt.where(Clue.photo_count > 0 if filters.has_photos else Clue.photo_count == 0)
    if (words := text_matches(filters.q, Clue.description, Clue.address)) is not None:
        stmt = stmt.where(words)
    if filters.assignee == "me":
        stmt = stmt.where(Clue.assignee_id == principal.user_id)
    elif filters.assignee == "none":
        stmt = stmt.where(Clue.assignee_id.is_(None))
    page = paginate(
        stmt,
        [SortKey(Clue.priority, descending=True), SortKey(Clue.created_at), SortKey(Clue.id)],
        lambda row: [row[0].priority, row[0].created_at, row[0].id],
        cursor=cursor,
        limit=limit,
        scalars=False,
    )
    items = [DeskClueItem(**_item_fields(c, j, a)) for c, j, a in page.items]
    return Page(items=items, next_cursor=page.next_cursor)


def _require_open(clue: Clue, message: str) -> None:
    if clue.status not in OPEN_STATUSES:
        raise Conflict(message, code="clue_closed")


def assign(
    principal: Principal, actor: Actor, clue_id: int, assignee_id: int | None, *, force: bool = False
) -> DeskClue:
    """Say who handles the clue (``None`` releases it). Taking over someone's clue needs ``force``."""
    from yijing.services import auth

    clue, jurisdiction = _for_staff(principal, clue_id)
    _require_open(clue, "线索已办结，无需再指派")
    if assignee_id is not None:
        try:
            target = auth.load_principal(assignee_id)
        except Unauthorized:  # unknown or disabled user
            target = None
        if target is None or not policies.may(target, Permission.CLUE_TRIAGE, jurisdiction.path):
            raise InvalidInput(
                "该人员无权处理此辖区的线索", code="invalid_assignee", fields={"assignee_id": ["无权处理"]}
            )
    previous = clue.assignee_id
    if previous == assignee_id:
        return desk_view(principal, clue, jurisdiction)
    if previous is not None and previous != principal.user_id and not force:
        holder = db.session.get(User, previous)
        name = (holder.display_name or holder.username) if holder else "其他人"
        raise Conflict(f"该线索已由 {name} 处理；如需接手请确认后重试", code="already_assigned")
    unchanged = Clue.assignee_id.is_(None) if previous is None else Clue.assignee_id == previous
    changed = db.session.execute(
        update(Clue)
        .where(Clue.id == clue.id, unchanged)
        .values(assignee_id=assignee_id, assigned_at=utcnow() if assignee_id else None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        raise Conflict("线索的处理人刚被他人修改，请刷新后重试", code="stale_clue")
    who = db.session.get(User, assignee_id) if assignee_id else None
    db.session.add(
        ClueEvent(
            clue_id=clue.id,
            kind=ClueEventKind.ASSIGNED,
            actor_id=principal.user_id,
            internal_note=f"指派给 {who.display_name or who.username}" if who else "取消指派",
            data={"from": previous, "to": assignee_id},
        )
    )
    audit.record(actor, "clue.assign", "clue", clue.id, data={"from": previous, "to": assignee_id})
    db.session.commit()
    db.session.refresh(clue)
    return desk_view(principal, clue, jurisdiction)


def set_urgency(principal: Principal, actor: Actor, clue_id: int, urgent: bool) -> DeskClue:
    """Mark a clue urgent (first in the queue) or not."""
    clue, jurisdiction = _for_staff(principal, clue_id)
    priority = 1 if urgent else 0
    if clue.priority != priority:
        clue.priority = priority
        db.session.add(
            ClueEvent(
                clue_id=clue.id,
                kind=ClueEventKind.URGENCY,
                actor_id=principal.user_id,
                internal_note="标记为紧急" if urgent else "取消紧急",
                data={"urgent": urgent},
            )
        )
        audit.record(actor, "clue.urgency", "clue", clue.id, data={"urgent": urgent})
        db.session.commit()
    return desk_view(principal, clue, jurisdiction)


def _public_note(
    principal: Principal, to: ClueStatus, note: str | None, canned_reply_id: int | None, target: str | None
) -> str:
    if note and note.strip():
        return note.strip()
    if canned_reply_id is not None:
        return canned_reply(principal, canned_reply_id).body
    label = TRANSFER_LABELS.get(TransferTarget(target), target) if target else ""
    return DEFAULT_PUBLIC_NOTES[to].format(target=label)


def transition(
    principal: Principal,
    actor: Actor,
    clue_id: int,
    to_status: str,
    *,
    public_note: str | None = None,
    internal_note: str | None = None,
    canned_reply_id: int | None = None,
    valid: bool | None = None,
    duplicate_of_id: int | None = None,
    transfer_target: str | None = None,
    transfer_reference: str | None = None,
) -> DeskClue:
    """Move a clue along :data:`TRANSITIONS`; 409 for a move the machine does not allow.

    Every move records an event (the public note for the reporter, a default one when none is
    given or picked from the canned replies, and the internal note for staff), is audited and
    notifies the reporter. ``resolved`` needs ``valid``; a valid clue earns the reporter points
    once. ``duplicate`` needs the clue it repeats; ``transferred`` needs the target and its
    reference number.
    """
    clue, jurisdiction = _for_staff(principal, clue_id)
    to = _target_status(to_status)
    current = ClueStatus(clue.status)
    STATES.require(current, to)
    now = utcnow()
    values: dict[str, Any] = {"status": to, "updated_at": now}
    original: Clue | None = None
    if to == ClueStatus.RESOLVED:
        values["valid"] = _verdict(valid)
    if to == ClueStatus.TRANSFERRED:
        values.update(_transfer(transfer_target, transfer_reference))
    if to == ClueStatus.DUPLICATE:
        original = _original_of(principal, clue, duplicate_of_id)
        values["duplicate_of_id"] = original.id
    if to not in OPEN_STATUSES:
        values["closed_at"] = now
    note = _public_note(principal, to, public_note, canned_reply_id, transfer_target)
    internal = (internal_note or "").strip() or None

    _move(clue, current, values)
    event = _record_transition(principal, actor, clue, current, to, values, note, internal, original)
    reporter = reporter_user_id(clue)
    if reporter is not None:
        _notify_reporter(clue, reporter, "clue_status", f"线索进展：{STATUS_LABELS[to]}", note, event.id)
        if to == ClueStatus.RESOLVED and valid:
            _award_valid(clue, reporter)
    db.session.commit()
    return desk_view(principal, clue, jurisdiction)


def _target_status(to_status: str) -> ClueStatus:
    try:
        return ClueStatus(to_status)
    except ValueError:
        raise InvalidInput("目标状态无效", fields={"to": ["取值无效"]}) from None


def _verdict(valid: bool | None) -> bool:
    """Resolving says whether the clue was valid (a valid one earns the reporter points)."""
    if valid is None:
        raise InvalidInput("办结时请说明线索是否有效", fields={"valid": ["办结时必填"]})
    return valid


def _transfer(target: str | None, reference: str | None) -> dict[str, Any]:
    """A transfer names where the clue went (110 or 12345) and the receiver's reference number."""
    problems = {}
    if target not in set(TransferTarget):
        problems["transfer_target"] = ["应为 110 或 12345"]
    if not (reference or "").strip():
        problems["transfer_reference"] = ["请填写接收方的受理编号"]
    if problems:
        raise InvalidInput("移交时请填写移交去向和受理编号", fields=problems)
    return {"transfer_target": target, "transfer_reference": (reference or "").strip()}


def _original_of(principal: Principal, clue: Clue, duplicate_of_id: int | None) -> Clue:
    """The clue this one repeats (the first of a chain of duplicates), which the desk may see."""
    if duplicate_of_id is None:
        raise InvalidInput("请选择与之重复的线索", fields={"duplicate_of_id": ["必填"]})
    original, _ = _for_staff(principal, duplicate_of_id)
    if original.status == ClueStatus.DUPLICATE and original.duplicate_of_id:
        original, _ = _for_staff(principal, original.duplicate_of_id)
    if original.id == clue.id:
        raise InvalidInput("线索不能与自身重复", fields={"duplicate_of_id": ["不能是本线索"]})
    return original


def _move(clue: Clue, current: ClueStatus, values: dict[str, Any]) -> None:
    """Write the move only if nobody moved the clue meanwhile (409 ``stale_clue`` otherwise)."""
    changed = db.session.execute(
        update(Clue)
        .where(Clue.id == clue.id, Clue.status == current)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        raise Conflict("线索状态刚被他人更新，请刷新后重试", code="stale_clue")
    db.session.refresh(clue)


def _record_transition(
    principal: Principal,
    actor: Actor,
    clue: Clue,
    current: ClueStatus,
    to: ClueStatus,
    values: dict[str, Any],
    note: str,
    internal: str | None,
    original: Clue | None,
) -> ClueEvent:
    """The move's event (and a link on the original of a duplicate) and its audit entry."""
    event = ClueEvent(
        clue_id=clue.id,
        kind=ClueEventKind.STATUS,
        from_status=current,
        to_status=to,
        public_note=note,
        internal_note=internal,
        actor_id=principal.user_id,
        data={k: v for k, v in values.items() if k not in {"status", "updated_at", "closed_at"}},
    )
    db.session.add(event)
    if original is not None:
        db.session.add(
            ClueEvent(
                clue_id=original.id,
                kind=ClueEventKind.DUPLICATE_LINKED,
                actor_id=principal.user_id,
                internal_note=f"线索 #{clue.id} 被标记为本线索的重复",
                data={"duplicate_id": clue.id},
            )
        )
    db.session.flush()
    audit.record(
        actor,
        "clue.transition",
        "clue",
        clue.id,
        data={"from": current, "to": to, **{k: v for k, v in event.data.items()}},
    )
    return event


def ask(principal: Principal, actor: Actor, clue_id: int, body: str) -> DeskClue:
    """The desk asks the reporter a question on the thread; the reporter is notified."""
    clue, jurisdiction = _for_staff(principal, clue_id)
    _require_open(clue, "线索已办结，不能再提问")
    body = body.strip()
    if not body:
        raise InvalidInput("提问内容不能为空", fields={"body": ["必填"]})
    message = ClueMessage(clue_id=clue.id, sender=MessageSender.DESK, author_id=principal.user_id, body=body)
    db.session.add(message)
    db.session.flush()
    audit.record(actor, "clue.ask", "clue", clue.id, data={"message_id": message.id})
    title = "值班民警向您询问线索情况"
    reporter = reporter_user_id(clue)
    if reporter is not None:
        _notify_reporter(clue, reporter, "clue_question", title, body, message.id)
    db.session.commit()
    return desk_view(principal, clue, jurisdiction)
