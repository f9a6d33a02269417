"""The reporter's side: their clues (by login or tracking code), their replies, who may see a photo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from yijing import policies
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import (
    Clue,
    ClueEvent,
    ClueMessage,
    CluePhoto,
    ClueStatus,
    Jurisdiction,
    MediaPurpose,
)
from yijing.models.clue import (
    OPEN_STATUSES,
    STATUS_LABELS,
    MessageSender,
)
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import media, outbox
from yijing.services.clues.common import (
    MESSAGE_CONTEXT,
    TRACKING_LENGTH,
    ClueFacts,
    Photo,
    _facts,
    _keyed,
    _normalise_code,
    _photos,
    _reported_by,
    _reporter_index,
    _tracking_hash,
)


@dataclass(frozen=True, slots=True)
class ReporterClueItem(ClueFacts):
    """A clue in the reporter's list."""

    photos: list[Photo]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """A status change with the note the reporter may read."""

    status: str | None
    status_label: str | None
    note: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReporterClue(ReporterClueItem):
    """What the reporter sees of a clue: public notes only, no staff names, no internal notes."""

    timeline: list[TimelineEntry]
    messages: list[ClueMessage]
    can_reply: bool


@dataclass(frozen=True, slots=True)
class SubmittedClue(ReporterClue):
    """The new clue, with its tracking code when anonymous (shown this once)."""

    tracking_code: str | None


def _reporter_fields(clue: Clue) -> dict[str, Any]:
    events = db.session.scalars(
        select(ClueEvent)
        .where(ClueEvent.clue_id == clue.id, ClueEvent.public_note.is_not(None))
        .order_by(ClueEvent.id)
    ).all()
    messages = db.session.scalars(
        select(ClueMessage).where(ClueMessage.clue_id == clue.id).order_by(ClueMessage.id)
    ).all()
    return {
        **_facts(clue),
        "photos": _photos([clue.id]).get(clue.id, []),
        "timeline": [
            TimelineEntry(
                status=e.to_status,
                status_label=STATUS_LABELS[ClueStatus(e.to_status)] if e.to_status else None,
                note=e.public_note,
                created_at=e.created_at,
            )
            for e in events
        ],
        "messages": list(messages),
        "can_reply": clue.status in OPEN_STATUSES,
    }


def reporter_view(clue: Clue) -> ReporterClue:
    """What the reporter sees: public notes only, no staff names, no internal notes."""
    return ReporterClue(**_reporter_fields(clue))


def _submitted_view(clue: Clue, tracking_code: str | None) -> SubmittedClue:
    return SubmittedClue(**_reporter_fields(clue), tracking_code=tracking_code)


def _own(user_id: int, clue_id: int) -> Clue:
    clue = db.session.scalar(select(Clue).where(Clue.id == clue_id, _reported_by(user_id)))
    if clue is None:
        raise NotFound("线索不存在", code="clue_not_found")
    return clue


def _by_code(code: str) -> Clue:
    normalised = _normalise_code(code)
    clue = None
    if len(normalised) == TRACKING_LENGTH:
        clue = db.session.scalar(select(Clue).where(Clue.tracking_hash == _tracking_hash(normalised)))
    if clue is None:
        raise NotFound("查询码无效，请核对后重试", code="tracking_code_invalid")
    return clue


def own_clue(user_id: int, clue_id: int) -> ReporterClue:
    """One of the user's own clues (named or anonymous)."""
    return reporter_view(_own(user_id, clue_id))


def tracked_clue(code: str) -> ReporterClue:
    """The clue behind a tracking code (no login needed)."""
    return reporter_view(_by_code(code))


def own_clues(user_id: int, *, cursor: str | None, limit: int) -> Page[ReporterClueItem]:
    """The user's clues, newest first."""
    page = paginate(
        select(Clue).where(_reported_by(user_id)),
        [SortKey(Clue.created_at, descending=True), SortKey(Clue.id, descending=True)],
        lambda c: [c.created_at, c.id],
        cursor=cursor,
        limit=limit,
    )
    photos = _photos([c.id for c in page.items])
    items = [ReporterClueItem(**_facts(c), photos=photos.get(c.id, [])) for c in page.items]
    return Page(items=items, next_cursor=page.next_cursor)


def _reporter_message(clue: Clue, body: str, idempotency_key: str | None) -> ReporterClue:
    body = body.strip()
    if not body:
        raise InvalidInput("回复内容不能为空", fields={"body": ["必填"]})
    submit_key = None
    if idempotency_key is not None:
        submit_key = _keyed(MESSAGE_CONTEXT, f"{clue.id}:{idempotency_key.strip()}")
        if db.session.scalar(select(ClueMessage.id).where(ClueMessage.submit_key == submit_key)):
            return reporter_view(clue)
    if clue.status not in OPEN_STATUSES:
        raise Conflict("线索已办结，不能再回复", code="clue_closed")
    message = ClueMessage(
        clue_id=clue.id, sender=MessageSender.REPORTER, author_id=None, body=body, submit_key=submit_key
    )
    db.session.add(message)
    db.session.flush()
    if clue.assignee_id is not None:
        outbox.notify(
            clue.assignee_id,
            "clue_reply",
            title=f"线索 #{clue.id} 有举报人回复",
            body=body[:200],
            dedupe_key=f"clue:reply:{message.id}",
            data={"clue_id": clue.id},
        )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        stored = select(ClueMessage.id).where(ClueMessage.submit_key == submit_key)
        if submit_key and db.session.scalar(stored):
            return reporter_view(clue)
        raise
    return reporter_view(clue)


def reply_as_reporter(
    user_id: int, clue_id: int, body: str, idempotency_key: str | None = None
) -> ReporterClue:
    """The logged-in reporter answers on the thread (shown to staff as "举报人")."""
    return _reporter_message(_own(user_id, clue_id), body, idempotency_key)


def reply_with_code(code: str, body: str, idempotency_key: str | None = None) -> ReporterClue:
    """The anonymous reporter answers with the tracking code."""
    return _reporter_message(_by_code(code), body, idempotency_key)


def _is_reporter(clue: Clue, user_id: int) -> bool:
    if clue.reporter_id is not None:
        return clue.reporter_id == user_id
    return clue.reporter_index == _reporter_index(user_id)


def may_see_photo(media_id: int, principal: Principal | None, tracking_code: str | None) -> bool:
    """A clue photo: its reporter, the holder of the tracking code, staff who may triage the clue."""
    row = db.session.execute(
        select(Clue, Jurisdiction.path)
        .join(CluePhoto, CluePhoto.clue_id == Clue.id)
        .join(Jurisdiction, Jurisdiction.id == Clue.jurisdiction_id)
        .where(CluePhoto.media_id == media_id)
    ).first()
    if row is None:
        return False
    clue, path = row
    if tracking_code and clue.tracking_hash and clue.tracking_hash == _tracking_hash(tracking_code):
        return True
    if principal is None:
        return False
    return _is_reporter(clue, principal.user_id) or policies.may(principal, Permission.CLUE_TRIAGE, path)


media.register_viewer(MediaPurpose.CLUE, may_see_photo)
