"""Clues (线索): reporting, the reporter's own view, and desk triage through one state machine.

Rules that matter here:

* The clue is committed before anything else happens; the content check and duplicate matching
  are jobs enqueued after the commit (and found again by a sweeper if Redis was down), and the
  reporter's notifications are outbox rows written in the same transaction as each change.
* An anonymous reporter is never named to staff: no clear user id is stored with the clue (the
  link is encrypted, plus a keyed blind index for "my clues"), the reporter's thread messages
  carry no author, their photos lose their owner, and what the reporter's notifications, points
  and retried requests store is keyed so that it does not point back at the clue.
* Every status change goes through :func:`transition` and :data:`TRANSITIONS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from rq import Retry
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from yijing import jobs, pii, policies
from yijing.actor import Actor
from yijing.config import Config
from yijing.errors import Conflict, InvalidInput, NotFound, Unauthorized
from yijing.extensions import db, wechat
from yijing.geo import haversine_m
from yijing.jobs import JobSpec
from yijing.models import (
    CannedReply,
    Clue,
    ClueDuplicateCandidate,
    ClueEvent,
    ClueMessage,
    CluePhoto,
    ClueStatus,
    Jurisdiction,
    JurisdictionLevel,
    Media,
    MediaPurpose,
    User,
)
from yijing.models.base import utcnow
from yijing.models.clue import (
    CATEGORY_LABELS,
    OPEN_STATUSES,
    STATUS_LABELS,
    ClueCategory,
    ClueEventKind,
    ContentFlag,
    MessageSender,
    TransferTarget,
)
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, media, outbox, points, sealed
from yijing.services import jurisdictions as jurisdiction_service
from yijing.sql import insert_ignore, text_matches
from yijing.states import StateMachine
from yijing.wechat.errors import WeChatError, WeChatRateLimited, WeChatUnavailable

log = logging.getLogger(__name__)

MAX_PHOTOS = 9
# msgSecCheck scene: 1 profile, 2 comment, 3 forum, 4 social log. A clue is free text of up to
# 2,000 characters written for others to act on, the closest of the four being a forum post.
CONTENT_CHECK_SCENE = 3
CONTENT_CHECK_MAX_CHARS = 2500
# A phone's clock may run a little ahead.
CLOCK_SKEW = timedelta(minutes=10)

REPORTER_CONTEXT = "clue.reporter"
TRACKING_CONTEXT = "clue.tracking"
SUBMIT_CONTEXT = "clue.submit"
#: The mini-program page of a clue (the one its subscribe-message templates name).
CLUE_PAGE = "pages/clue/detail/index"
#: What an anonymous clue's messages show for its number (a character_string: letters and digits only).
ANONYMOUS_CLUE_NO = "ANONYMOUS"
TRACKING_SEED_CONTEXT = "clue.tracking-seed"
MESSAGE_CONTEXT = "clue.message"
NOTIFY_CONTEXT = "clue.notify"
POINTS_CONTEXT = "clue.points"

# The one state machine: from a status, the statuses a desk may move the clue to.
TRANSITIONS: dict[ClueStatus, frozenset[ClueStatus]] = {
    ClueStatus.SUBMITTED: frozenset(
        {ClueStatus.ACCEPTED, ClueStatus.REJECTED, ClueStatus.DUPLICATE, ClueStatus.TRANSFERRED}
    ),
    ClueStatus.ACCEPTED: frozenset(
        {
            ClueStatus.INVESTIGATING,
            ClueStatus.RESOLVED,
            ClueStatus.REJECTED,
            ClueStatus.DUPLICATE,
            ClueStatus.TRANSFERRED,
        }
    ),
    ClueStatus.INVESTIGATING: frozenset(
        {ClueStatus.RESOLVED, ClueStatus.REJECTED, ClueStatus.DUPLICATE, ClueStatus.TRANSFERRED}
    ),
}
STATES = StateMachine("线索", TRANSITIONS, STATUS_LABELS)

DEFAULT_PUBLIC_NOTES: dict[ClueStatus, str] = {
    ClueStatus.SUBMITTED: "线索已提交，等待值班民警受理。",
    ClueStatus.ACCEPTED: "您的线索已受理，我们会尽快核实，感谢您的支持！",
    ClueStatus.INVESTIGATING: "民警正在核查您反映的情况。",
    ClueStatus.RESOLVED: "您反映的线索已核查办结，感谢您的支持！",
    ClueStatus.REJECTED: "经核实，您的线索暂不予采纳，感谢您的关注。",
    ClueStatus.DUPLICATE: "您反映的情况已有其他群众报告，我们正在一并处理，感谢您的支持！",
    ClueStatus.TRANSFERRED: "您的线索已移交{target}处理。",
}
TRANSFER_LABELS = {TransferTarget.ALARM_110: "110 报警平台", TransferTarget.HOTLINE_12345: "12345 热线"}
TRACKING_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I
TRACKING_LENGTH = 16  # 80 bits


def _config() -> Config:
    return current_app.config["YIJING"]


# -- identity of the reporter --------------------------------------------------------------


def _reporter_index(user_id: int) -> str:
    return pii.blind_index(str(user_id), context=REPORTER_CONTEXT)


def reporter_user_id(clue: Clue) -> int | None:
    """The user behind the clue (decrypted for an anonymous one). Never shown to staff.

    None once the reporter cancelled their account: the clue is kept, cut from the person.
    """
    if clue.reporter_id is not None:
        return clue.reporter_id
    if clue.reporter_enc is None:
        return None
    return int(pii.decrypt(clue.reporter_enc, context=REPORTER_CONTEXT))


def reported_by(user_id: int) -> ColumnElement[bool]:
    """The clues ``user_id`` reported (named or anonymous)."""
    return _reported_by(user_id)


def _reported_by(user_id: int) -> ColumnElement[bool]:
    return or_(Clue.reporter_id == user_id, Clue.reporter_index == _reporter_index(user_id))


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _tracking_hash(code: str) -> str:
    return pii.blind_index(_normalise_code(code), context=TRACKING_CONTEXT)


def _new_tracking_code(seed: str | None = None) -> tuple[str, str]:
    """A tracking code (shown once) and its hash (stored).

    With a ``seed`` (the reporter and their Idempotency-Key) the code is derived from it under the
    server's key, so a retried submission answers with the very code of the first answer without the
    code being stored anywhere; nobody without the server's key and the phone's key can derive it.
    """
    if seed is None:
        raw = "".join(secrets.choice(TRACKING_ALPHABET) for _ in range(TRACKING_LENGTH))
    else:
        bits = int(pii.blind_index(seed, context=TRACKING_SEED_CONTEXT), 16)
        raw = "".join(TRACKING_ALPHABET[(bits >> (5 * i)) & 31] for i in range(TRACKING_LENGTH))
    shown = "-".join(raw[i : i + 4] for i in range(0, TRACKING_LENGTH, 4))
    return shown, _tracking_hash(raw)


def _keyed(context: str, value: str) -> str:
    """A keyed hash for what must not point back at an anonymous reporter's clue."""
    return pii.blind_index(value, context=context)[:48]


# -- where a clue belongs ----------------------------------------------------------------


def locate(lat: float, lng: float) -> Jurisdiction:
    """The community whose centre is nearest the point (there are no boundary polygons).

    Falls back to the nearest node of any level when no community has a centre; refuses a point
    farther than ``CLUE_MAX_DISTANCE_M`` from every centre (outside the city).
    """
    scale = math.cos(math.radians(lat))
    d_lat = Jurisdiction.lat - lat
    d_lng = (Jurisdiction.lng - lng) * scale
    nearest = select(Jurisdiction).where(Jurisdiction.lat.is_not(None), Jurisdiction.lng.is_not(None))
    order = (d_lat * d_lat + d_lng * d_lng, Jurisdiction.id)
    found = db.session.scalar(
        nearest.where(Jurisdiction.level == JurisdictionLevel.COMMUNITY).order_by(*order).limit(1)
    )
    if found is None:
        found = db.session.scalar(nearest.order_by(Jurisdiction.depth.desc(), *order).limit(1))
    limit = _config().clue_max_distance_m
    if found is None or haversine_m(lat, lng, found.lat or 0.0, found.lng or 0.0) > limit:
        raise InvalidInput(
            "该位置不在本市服务范围内，请确认定位后重试；紧急情况请直接拨打 110",
            code="place_out_of_area",
            fields={"place": ["不在服务范围内"]},
        )
    return found


# -- submitting --------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    """The reporter's view of the new clue (with ``tracking_code`` when anonymous)."""

    clue_id: int
    view: dict[str, Any]
    replayed: bool


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def followup_jobs(clue_id: int) -> list[JobSpec]:
    """The jobs every new clue needs: the text check and duplicate matching (each idempotent)."""
    retry = Retry(max=3, interval=[10, 30, 60])
    return [
        JobSpec(
            queue=jobs.DEFAULT,
            func="workers.clues.check_content",
            args=(clue_id,),
            job_id=f"clue-content-{clue_id}",
            timeout=30,
            retry=retry,
            failure_ttl=3600,
        ),
        JobSpec(
            queue=jobs.DEFAULT,
            func="workers.clues.match_duplicates",
            args=(clue_id,),
            job_id=f"clue-duplicates-{clue_id}",
            timeout=30,
            retry=retry,
            failure_ttl=3600,
        ),
    ]


def submit(
    reporter_id: int,
    *,
    category: str,
    description: str,
    lat: float,
    lng: float,
    address: str | None = None,
    occurred_at: datetime | None = None,
    anonymous: bool = False,
    urgent: bool = False,
    photos: Sequence[str] = (),
    idempotency_key: str | None = None,
) -> Submitted:
    """Store a clue (and its photos) first; the checks run afterwards in workers.

    An anonymous clue gets a tracking code, returned here once and stored only as a keyed hash.
    A retried request with the same ``idempotency_key`` returns the first answer: the same clue and,
    for an anonymous one, the same tracking code (derived from the reporter and the key).
    """
    description = description.strip()
    address = (address or "").strip() or None
    fields = {
        "category": category,
        "description": description,
        "lat": lat,
        "lng": lng,
        "address": address,
        "occurred_at": occurred_at.isoformat() if occurred_at else None,
        "anonymous": anonymous,
        "urgent": urgent,
        "photos": list(photos),
    }
    digest = _digest(fields)
    submit_key = None
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > 128:
            raise InvalidInput(
                "Idempotency-Key 应为 1 到 128 个字符", fields={"Idempotency-Key": ["长度不符合要求"]}
            )
        submit_key = _keyed(SUBMIT_CONTEXT, f"{reporter_id}:{idempotency_key.strip()}")
        replay = _replay_submission(submit_key, digest, _tracking_seed(reporter_id, idempotency_key))
        if replay is not None:
            return replay
    if category not in set(ClueCategory):
        raise InvalidInput("线索类别无效", fields={"category": ["取值无效"]})
    if occurred_at is not None and occurred_at > utcnow() + CLOCK_SKEW:
        raise InvalidInput("发生时间不能晚于现在", fields={"occurred_at": ["不能晚于现在"]})
    jurisdiction = locate(lat, lng)
    photo_rows = media.take(reporter_id, photos, MediaPurpose.CLUE, limit=MAX_PHOTOS)

    clue = Clue(
        category=category,
        description=description,
        lat=lat,
        lng=lng,
        address=address,
        occurred_at=occurred_at,
        jurisdiction_id=jurisdiction.id,
        status=ClueStatus.SUBMITTED,
        priority=1 if urgent else 0,
        is_anonymous=anonymous,
        photo_count=len(photo_rows),
        submit_key=submit_key,
        submit_digest=digest if submit_key else None,
    )
    tracking_code = None
    if anonymous:
        clue.reporter_enc = pii.encrypt(str(reporter_id), context=REPORTER_CONTEXT)
        clue.reporter_index = _reporter_index(reporter_id)
        tracking_code, clue.tracking_hash = _new_tracking_code(
            _tracking_seed(reporter_id, idempotency_key) if submit_key else None
        )
    else:
        clue.reporter_id = reporter_id
    db.session.add(clue)
    db.session.flush()
    for position, photo in enumerate(photo_rows):
        if anonymous:
            photo.owner_id = None  # the photo must not lead back to its reporter
        db.session.add(CluePhoto(clue_id=clue.id, media_id=photo.id, position=position))
    event = ClueEvent(
        clue_id=clue.id,
        kind=ClueEventKind.SUBMITTED,
        to_status=ClueStatus.SUBMITTED,
        public_note=DEFAULT_PUBLIC_NOTES[ClueStatus.SUBMITTED],
        data={},
    )
    db.session.add(event)
    db.session.flush()
    _notify_reporter(clue, reporter_id, "clue_received", "线索已提交", event.public_note or "", event.id)
    for spec in followup_jobs(clue.id):
        jobs.enqueue_after_commit(db.session(), spec)
    try:
        db.session.commit()
    except IntegrityError:
        # The same retried request won the race for the submit key: answer as it did.
        db.session.rollback()
        seed = _tracking_seed(reporter_id, idempotency_key) if idempotency_key else None
        replay = _replay_submission(submit_key, digest, seed) if submit_key and seed else None
        if replay is None:
            raise
        return replay
    log.info("clue submitted", extra={"clue_id": clue.id, "anonymous": anonymous})
    return Submitted(clue.id, _submitted_view(clue, tracking_code), replayed=False)


def _tracking_seed(reporter_id: int, idempotency_key: str) -> str:
    return f"{reporter_id}:{idempotency_key.strip()}"


def _replay_submission(submit_key: str, digest: str, seed: str) -> Submitted | None:
    """The first answer again, with the first tracking code (derived again, never stored)."""
    clue = db.session.scalar(select(Clue).where(Clue.submit_key == submit_key))
    if clue is None:
        return None
    if clue.submit_digest != digest:
        raise InvalidInput(
            "这个 Idempotency-Key 已用于另一个请求，请为新的请求换一个", code="idempotency_key_reused"
        )
    tracking_code = None
    if clue.is_anonymous:
        tracking_code, tracking_hash = _new_tracking_code(seed)
        if tracking_hash != clue.tracking_hash:  # a clue stored before codes were derived: a new one
            clue.tracking_hash = tracking_hash
            db.session.commit()
    return Submitted(clue.id, _submitted_view(clue, tracking_code), replayed=True)


# -- notifications and points for the reporter ---------------------------------------------


def _notify_reporter(clue: Clue, user_id: int, kind: str, title: str, body: str, source_id: int) -> None:
    """One outbox row per event (``source_id`` is the event's or message's id).

    For an anonymous clue the row names the user (it must reach them) but nothing in it names the
    clue: no clue id in its data or page, and a keyed dedupe key.
    """
    # What the subscribe message shows (its template reads these keys): the clue's number, its status,
    # the public note and when it changed.
    shown = {
        "status_label": STATUS_LABELS[ClueStatus(clue.status)],
        "note": body,
        "changed_at": utcnow().isoformat(),
    }
    if clue.is_anonymous:
        # Sealed and released later in a batch: the row naming the user is not written next to the
        # clue's event in time (see yijing.services.sealed).
        sealed.notify(
            user_id,
            kind,
            title=title,
            body=body,
            dedupe_key="clue-anon:" + _keyed(NOTIFY_CONTEXT, f"{kind}:{source_id}"),
            # No number: it would name the clue. The page asks for the tracking code.
            data={"clue_no": ANONYMOUS_CLUE_NO, **shown},
            page=CLUE_PAGE,
        )
        return
    outbox.notify(
        user_id,
        kind,
        title=title,
        body=body,
        dedupe_key=f"clue:{kind}:{source_id}",
        data={"clue_id": clue.id, "status": clue.status, "clue_no": str(clue.id), **shown},
        page=f"{CLUE_PAGE}?id={clue.id}",
    )


def _award_valid(clue: Clue, user_id: int) -> bool:
    amount = _config().clue_valid_points
    if amount <= 0:
        return False
    if clue.is_anonymous:
        source_key = "clue-anon:" + _keyed(POINTS_CONTEXT, f"{clue.id}:valid")
        sealed.award(user_id, amount, reason="clue_valid", source_key=source_key)
        return True
    return points.award(user_id, amount, reason="clue_valid", source_key=f"clue:{clue.id}:valid")


# -- the reporter's view -------------------------------------------------------------------


def _photos(clue_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    rows = db.session.execute(
        select(CluePhoto.clue_id, Media)
        .join(Media, Media.id == CluePhoto.media_id)
        .where(CluePhoto.clue_id.in_(clue_ids))
        .order_by(CluePhoto.clue_id, CluePhoto.position)
    ).all()
    found: dict[int, list[dict[str, Any]]] = {}
    for clue_id, item in rows:
        found.setdefault(clue_id, []).append(
            {"id": item.key, "url": media.content_url(item), "width": item.width, "height": item.height}
        )
    return found


def _base_view(clue: Clue, photos: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": clue.id,
        "category": clue.category,
        "category_label": CATEGORY_LABELS[ClueCategory(clue.category)],
        "status": clue.status,
        "status_label": STATUS_LABELS[ClueStatus(clue.status)],
        "description": clue.description,
        "place": {"lat": clue.lat, "lng": clue.lng, "address": clue.address},
        "occurred_at": clue.occurred_at,
        "anonymous": clue.is_anonymous,
        "urgent": clue.priority > 0,
        "photo_count": clue.photo_count,
        "photos": photos,
        "valid": clue.valid,
        "transfer_target": clue.transfer_target,
        "transfer_reference": clue.transfer_reference,
        "created_at": clue.created_at,
        "updated_at": clue.updated_at,
        "closed_at": clue.closed_at,
    }


def reporter_view(clue: Clue) -> dict[str, Any]:
    """What the reporter sees: public notes only, no staff names, no internal notes."""
    view = _base_view(clue, _photos([clue.id]).get(clue.id, []))
    events = db.session.scalars(
        select(ClueEvent)
        .where(ClueEvent.clue_id == clue.id, ClueEvent.public_note.is_not(None))
        .order_by(ClueEvent.id)
    ).all()
    view["timeline"] = [
        {
            "status": e.to_status,
            "status_label": STATUS_LABELS[ClueStatus(e.to_status)] if e.to_status else None,
            "note": e.public_note,
            "created_at": e.created_at,
        }
        for e in events
    ]
    messages = db.session.scalars(
        select(ClueMessage).where(ClueMessage.clue_id == clue.id).order_by(ClueMessage.id)
    ).all()
    view["messages"] = [
        {"id": m.id, "sender": m.sender, "body": m.body, "created_at": m.created_at} for m in messages
    ]
    view["can_reply"] = clue.status in OPEN_STATUSES
    return view


def _submitted_view(clue: Clue, tracking_code: str | None) -> dict[str, Any]:
    view = reporter_view(clue)
    view["tracking_code"] = tracking_code
    return view


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


def own_clue(user_id: int, clue_id: int) -> dict[str, Any]:
    """One of the user's own clues (named or anonymous)."""
    return reporter_view(_own(user_id, clue_id))


def tracked_clue(code: str) -> dict[str, Any]:
    """The clue behind a tracking code (no login needed)."""
    return reporter_view(_by_code(code))


def own_clues(user_id: int, *, cursor: str | None, limit: int) -> Page[dict[str, Any]]:
    """The user's clues, newest first."""
    page = paginate(
        select(Clue).where(_reported_by(user_id)),
        [SortKey(Clue.created_at, descending=True), SortKey(Clue.id, descending=True)],
        lambda c: [c.created_at, c.id],
        cursor=cursor,
        limit=limit,
    )
    photos = _photos([c.id for c in page.items])
    return Page(items=[_base_view(c, photos.get(c.id, [])) for c in page.items], next_cursor=page.next_cursor)


def _reporter_message(clue: Clue, body: str, idempotency_key: str | None) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """The logged-in reporter answers on the thread (shown to staff as "举报人")."""
    return _reporter_message(_own(user_id, clue_id), body, idempotency_key)


def reply_with_code(code: str, body: str, idempotency_key: str | None = None) -> dict[str, Any]:
    """The anonymous reporter answers with the tracking code."""
    return _reporter_message(_by_code(code), body, idempotency_key)


# -- who may see what ----------------------------------------------------------------------


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


# -- the desk ------------------------------------------------------------------------------


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


def _staff_summary(user: User | None) -> dict[str, Any] | None:
    return None if user is None else {"id": user.id, "display_name": user.display_name or user.username}


def _reporter_for_staff(clue: Clue) -> dict[str, Any] | None:
    """A named reporter's masked name and phone; None for an anonymous clue, always."""
    if clue.is_anonymous or clue.reporter_id is None:
        return None
    user = db.session.get(User, clue.reporter_id)
    if user is None:
        return None
    phone = pii.decrypt(user.phone_enc, context="user.phone") if user.phone_enc else None
    return {
        "display_name": pii.mask_name(user.display_name) if user.display_name else None,
        "phone_masked": pii.mask_phone(phone) if phone else None,
    }


def _desk_item(clue: Clue, jurisdiction: Jurisdiction, assignee: User | None) -> dict[str, Any]:
    view = _base_view(clue, [])
    del view["photos"]
    view.update(
        {
            "jurisdiction": {"id": jurisdiction.id, "name": jurisdiction.name, "level": jurisdiction.level},
            "assignee": _staff_summary(assignee),
            "assigned_at": clue.assigned_at,
            "content_flag": clue.content_flag,
            "duplicate_of_id": clue.duplicate_of_id,
        }
    )
    return view


def desk_view(principal: Principal, clue: Clue, jurisdiction: Jurisdiction) -> dict[str, Any]:
    """Everything staff may see of a clue; never who an anonymous reporter is."""
    assignee = db.session.get(User, clue.assignee_id) if clue.assignee_id else None
    view = _desk_item(clue, jurisdiction, assignee)
    view["photos"] = _photos([clue.id]).get(clue.id, [])
    view["reporter"] = _reporter_for_staff(clue)
    view["content_label"] = clue.content_label
    actor = aliased(User)
    events = db.session.execute(
        select(ClueEvent, actor)
        .outerjoin(actor, actor.id == ClueEvent.actor_id)
        .where(ClueEvent.clue_id == clue.id)
        .order_by(ClueEvent.id)
    ).all()
    view["events"] = [
        {
            "id": e.id,
            "kind": e.kind,
            "from_status": e.from_status,
            "to_status": e.to_status,
            "public_note": e.public_note,
            "internal_note": e.internal_note,
            "actor": _staff_summary(who),
            "created_at": e.created_at,
        }
        for e, who in events
    ]
    author = aliased(User)
    messages = db.session.execute(
        select(ClueMessage, author)
        .outerjoin(author, author.id == ClueMessage.author_id)
        .where(ClueMessage.clue_id == clue.id)
        .order_by(ClueMessage.id)
    ).all()
    view["messages"] = [
        {
            "id": m.id,
            "sender": m.sender,
            "author": _staff_summary(who) if m.sender == MessageSender.DESK else None,
            "body": m.body,
            "created_at": m.created_at,
        }
        for m, who in messages
    ]
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
    view["duplicate_candidates"] = [
        {
            "id": c.id,
            "category": c.category,
            "status": c.status,
            "status_label": STATUS_LABELS[ClueStatus(c.status)],
            "description": c.description[:100],
            "distance_m": distance,
            "created_at": c.created_at,
        }
        for c, distance in candidates
    ]
    view["allowed_transitions"] = sorted(TRANSITIONS.get(ClueStatus(clue.status), frozenset()))
    return view


def desk_clue(principal: Principal, clue_id: int) -> dict[str, Any]:
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
) -> Page[dict[str, Any]]:
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
    return Page(items=[_desk_item(c, j, a) for c, j, a in page.items], next_cursor=page.next_cursor)


def _require_open(clue: Clue, message: str) -> None:
    if clue.status not in OPEN_STATUSES:
        raise Conflict(message, code="clue_closed")


def assign(
    principal: Principal, actor: Actor, clue_id: int, assignee_id: int | None, *, force: bool = False
) -> dict[str, Any]:
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


def set_urgency(principal: Principal, actor: Actor, clue_id: int, urgent: bool) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """Move a clue along :data:`TRANSITIONS`; 409 for a move the machine does not allow.

    Every move records an event (the public note for the reporter, a default one when none is
    given or picked from the canned replies, and the internal note for staff), is audited and
    notifies the reporter. ``resolved`` needs ``valid``; a valid clue earns the reporter points
    once. ``duplicate`` needs the clue it repeats; ``transferred`` needs the target and its
    reference number.
    """
    clue, jurisdiction = _for_staff(principal, clue_id)
    try:
        to = ClueStatus(to_status)
    except ValueError:
        raise InvalidInput("目标状态无效", fields={"to": ["取值无效"]}) from None
    current = ClueStatus(clue.status)
    STATES.require(current, to)
    now = utcnow()
    values: dict[str, Any] = {"status": to, "updated_at": now}
    original: Clue | None = None
    if to == ClueStatus.RESOLVED:
        if valid is None:
            raise InvalidInput("办结时请说明线索是否有效", fields={"valid": ["办结时必填"]})
        values["valid"] = valid
    if to == ClueStatus.TRANSFERRED:
        problems = {}
        if transfer_target not in set(TransferTarget):
            problems["transfer_target"] = ["应为 110 或 12345"]
        if not (transfer_reference or "").strip():
            problems["transfer_reference"] = ["请填写接收方的受理编号"]
        if problems:
            raise InvalidInput("移交时请填写移交去向和受理编号", fields=problems)
        values["transfer_target"] = transfer_target
        values["transfer_reference"] = (transfer_reference or "").strip()
    if to == ClueStatus.DUPLICATE:
        if duplicate_of_id is None:
            raise InvalidInput("请选择与之重复的线索", fields={"duplicate_of_id": ["必填"]})
        original, _ = _for_staff(principal, duplicate_of_id)
        if original.status == ClueStatus.DUPLICATE and original.duplicate_of_id:
            original, _ = _for_staff(principal, original.duplicate_of_id)
        if original.id == clue.id:
            raise InvalidInput("线索不能与自身重复", fields={"duplicate_of_id": ["不能是本线索"]})
        values["duplicate_of_id"] = original.id
    if to not in OPEN_STATUSES:
        values["closed_at"] = now
    note = _public_note(principal, to, public_note, canned_reply_id, transfer_target)
    internal = (internal_note or "").strip() or None

    changed = db.session.execute(
        update(Clue)
        .where(Clue.id == clue.id, Clue.status == current)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        raise Conflict("线索状态刚被他人更新，请刷新后重试", code="stale_clue")
    db.session.refresh(clue)
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
    reporter = reporter_user_id(clue)
    if reporter is not None:
        _notify_reporter(clue, reporter, "clue_status", f"线索进展：{STATUS_LABELS[to]}", note, event.id)
        if to == ClueStatus.RESOLVED and valid:
            _award_valid(clue, reporter)
    db.session.commit()
    return desk_view(principal, clue, jurisdiction)


def ask(principal: Principal, actor: Actor, clue_id: int, body: str) -> dict[str, Any]:
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


# -- canned replies ------------------------------------------------------------------------


def _ancestor_paths(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


def canned_replies(principal: Principal) -> Sequence[CannedReply]:
    """Replies set up in the staff member's subtrees or above them (a city-wide reply too)."""
    paths = policies.require_somewhere(principal, Permission.CLUE_TRIAGE)
    above = sorted({p for path in paths for p in _ancestor_paths(path)})
    return db.session.scalars(
        select(CannedReply)
        .join(Jurisdiction, Jurisdiction.id == CannedReply.jurisdiction_id)
        .where(or_(jurisdiction_service.in_subtrees(Jurisdiction.path, paths), Jurisdiction.path.in_(above)))
        .order_by(Jurisdiction.depth, CannedReply.title, CannedReply.id)
    ).all()


def canned_reply(principal: Principal, reply_id: int) -> CannedReply:
    found = db.session.get(CannedReply, reply_id)
    if found is None or found.id not in {r.id for r in canned_replies(principal)}:
        raise NotFound("常用回复不存在", code="canned_reply_not_found")
    return found


def create_canned_reply(
    principal: Principal, actor: Actor, *, jurisdiction_id: int, title: str, body: str
) -> CannedReply:
    target = jurisdiction_service.get(jurisdiction_id)
    policies.require(principal, Permission.CLUE_TRIAGE, target.path)
    reply = CannedReply(
        jurisdiction_id=target.id, title=title.strip(), body=body.strip(), created_by_id=principal.user_id
    )
    db.session.add(reply)
    db.session.flush()
    audit.record(actor, "clue.canned_reply.create", "canned_reply", reply.id)
    db.session.commit()
    return reply


def _editable_reply(principal: Principal, reply_id: int) -> CannedReply:
    reply = canned_reply(principal, reply_id)
    policies.require(principal, Permission.CLUE_TRIAGE, jurisdiction_service.get(reply.jurisdiction_id).path)
    return reply


def update_canned_reply(
    principal: Principal, actor: Actor, reply_id: int, *, title: str | None = None, body: str | None = None
) -> CannedReply:
    reply = _editable_reply(principal, reply_id)
    if title is not None:
        reply.title = title.strip()
    if body is not None:
        reply.body = body.strip()
    audit.record(actor, "clue.canned_reply.update", "canned_reply", reply.id)
    db.session.commit()
    return reply


def delete_canned_reply(principal: Principal, actor: Actor, reply_id: int) -> None:
    reply = _editable_reply(principal, reply_id)
    db.session.delete(reply)
    audit.record(actor, "clue.canned_reply.delete", "canned_reply", reply_id)
    db.session.commit()


# -- work done by the jobs -----------------------------------------------------------------


def check_content(clue_id: int) -> str | None:
    """Run WeChat's text check on a clue and record the verdict; never hides or drops the clue.

    Clues about drugs, gambling or fraud are exactly what the check calls risky, so a verdict only
    flags the clue for the desk. WeChat being unreachable raises (the job retries); a refusal
    (e.g. the reporter's openid is not recent enough) is recorded as ``skipped``.
    """
    clue = db.session.get(Clue, clue_id)
    if clue is None or clue.content_checked_at is not None:
        return None
    reporter = reporter_user_id(clue)
    user = db.session.get(User, reporter) if reporter is not None else None
    flag, label = ContentFlag.SKIPPED, None
    if user is not None and user.openid:
        text = "\n".join(filter(None, [clue.description, clue.address]))[:CONTENT_CHECK_MAX_CHARS]
        try:
            result = wechat().msg_sec_check(user.openid, text, CONTENT_CHECK_SCENE)
        except (WeChatUnavailable, WeChatRateLimited):
            raise
        except WeChatError as exc:
            log.warning("clue content check refused", extra={"clue_id": clue.id, "errcode": exc.errcode})
        else:
            verdict = result.get("result") or {}
            suggest = verdict.get("suggest")
            # An answer this code does not know is left to a person rather than passed.
            flag = ContentFlag(suggest) if suggest in {"pass", "review", "risky"} else ContentFlag.REVIEW
            label = verdict.get("label")
    clue.content_flag = flag
    clue.content_label = int(label) if label is not None else None
    clue.content_checked_at = utcnow()
    if flag in (ContentFlag.REVIEW, ContentFlag.RISKY):
        db.session.add(
            ClueEvent(
                clue_id=clue.id,
                kind=ClueEventKind.CONTENT_FLAGGED,
                internal_note=f"内容安全检测结果为 {flag}（标签 {label}），请人工研判；线索照常处理。",
                data={"flag": str(flag), "label": label},
            )
        )
    db.session.commit()
    return flag


def match_duplicates(clue_id: int) -> int:
    """Store open clues of the same category nearby and close in time as possible duplicates."""
    clue = db.session.get(Clue, clue_id)
    if clue is None or clue.duplicates_checked_at is not None:
        return 0
    config = _config()
    radius = config.clue_duplicate_radius_m
    window = timedelta(hours=config.clue_duplicate_window_hours)
    d_lat = radius / 111_320
    d_lng = radius / (111_320 * max(math.cos(math.radians(clue.lat)), 0.01))
    nearby = db.session.scalars(
        select(Clue).where(
            Clue.category == clue.category,
            Clue.id != clue.id,
            Clue.status.in_(sorted(OPEN_STATUSES)),
            Clue.created_at >= clue.created_at - window,
            Clue.created_at <= clue.created_at + window,
            Clue.lat.between(clue.lat - d_lat, clue.lat + d_lat),
            Clue.lng.between(clue.lng - d_lng, clue.lng + d_lng),
        )
    ).all()
    rows = []
    for other in nearby:
        distance = haversine_m(clue.lat, clue.lng, other.lat, other.lng)
        if distance <= radius:
            for a, b in ((clue.id, other.id), (other.id, clue.id)):
                rows.append(
                    {"clue_id": a, "candidate_id": b, "distance_m": round(distance), "created_at": utcnow()}
                )
    if rows:
        insert_ignore(db.session(), ClueDuplicateCandidate, rows)
    clue.duplicates_checked_at = utcnow()
    db.session.commit()
    return len(rows) // 2


def unfinished_followups(min_age: timedelta, max_age: timedelta, limit: int = 500) -> list[JobSpec]:
    """Jobs for clues whose check or matching never ran (Redis was down, a worker died)."""
    now = utcnow()
    window = (Clue.created_at <= now - min_age, Clue.created_at >= now - max_age)
    specs: list[JobSpec] = []
    unchecked = db.session.scalars(
        select(Clue.id).where(Clue.content_checked_at.is_(None), *window).order_by(Clue.id).limit(limit)
    ).all()
    unmatched = db.session.scalars(
        select(Clue.id).where(Clue.duplicates_checked_at.is_(None), *window).order_by(Clue.id).limit(limit)
    ).all()
    for clue_id in unchecked:
        specs.append(followup_jobs(clue_id)[0])
    for clue_id in unmatched:
        specs.append(followup_jobs(clue_id)[1])
    db.session.rollback()
    return specs
