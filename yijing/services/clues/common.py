"""What every part of the clue service shares: its constants, the one state machine, the reporter's
identity, where a clue belongs, and the reporter's notifications, points and photos.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select

from yijing import pii
from yijing.config import settings
from yijing.errors import InvalidInput
from yijing.extensions import db
from yijing.geo import haversine_m
from yijing.models import (
    Clue,
    CluePhoto,
    ClueStatus,
    Jurisdiction,
    JurisdictionLevel,
    Media,
)
from yijing.models.base import utcnow
from yijing.models.clue import (
    CATEGORY_LABELS,
    STATUS_LABELS,
    ClueCategory,
    TransferTarget,
)
from yijing.services import media, outbox, points, sealed
from yijing.states import StateMachine

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
    limit = settings().clue_max_distance_m
    if found is None or haversine_m(lat, lng, found.lat or 0.0, found.lng or 0.0) > limit:
        raise InvalidInput(
            "该位置不在本市服务范围内，请确认定位后重试；紧急情况请直接拨打 110",
            code="place_out_of_area",
            fields={"place": ["不在服务范围内"]},
        )
    return found


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
    amount = settings().clue_valid_points
    if amount <= 0:
        return False
    if clue.is_anonymous:
        source_key = "clue-anon:" + _keyed(POINTS_CONTEXT, f"{clue.id}:valid")
        sealed.award(user_id, amount, reason="clue_valid", source_key=source_key)
        return True
    return points.award(user_id, amount, reason="clue_valid", source_key=f"clue:{clue.id}:valid")


@dataclass(frozen=True, slots=True)
class Place:
    lat: float
    lng: float
    address: str | None


@dataclass(frozen=True, slots=True)
class Photo:
    """A clue photo: its media key as ``id`` and the URL it is read from."""

    id: str
    url: str
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class ClueFacts:
    """What every view of a clue shows, the reporter's and the desk's."""

    id: int
    category: str
    category_label: str
    status: str
    status_label: str
    description: str
    place: Place
    occurred_at: datetime | None
    anonymous: bool
    urgent: bool
    photo_count: int
    valid: bool | None
    transfer_target: str | None
    transfer_reference: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


def _photos(clue_ids: Sequence[int]) -> dict[int, list[Photo]]:
    rows = db.session.execute(
        select(CluePhoto.clue_id, Media)
        .join(Media, Media.id == CluePhoto.media_id)
        .where(CluePhoto.clue_id.in_(clue_ids))
        .order_by(CluePhoto.clue_id, CluePhoto.position)
    ).all()
    found: dict[int, list[Photo]] = {}
    for clue_id, item in rows:
        found.setdefault(clue_id, []).append(
            Photo(id=item.key, url=media.content_url(item), width=item.width, height=item.height)
        )
    return found


def _facts(clue: Clue) -> dict[str, Any]:
    """The fields of :class:`ClueFacts` for ``clue``, to build it or a view that extends it."""
    return {
        "id": clue.id,
        "category": clue.category,
        "category_label": CATEGORY_LABELS[ClueCategory(clue.category)],
        "status": clue.status,
        "status_label": STATUS_LABELS[ClueStatus(clue.status)],
        "description": clue.description,
        "place": Place(lat=clue.lat, lng=clue.lng, address=clue.address),
        "occurred_at": clue.occurred_at,
        "anonymous": clue.is_anonymous,
        "urgent": clue.priority > 0,
        "photo_count": clue.photo_count,
        "valid": clue.valid,
        "transfer_target": clue.transfer_target,
        "transfer_reference": clue.transfer_reference,
        "created_at": clue.created_at,
        "updated_at": clue.updated_at,
        "closed_at": clue.closed_at,
    }
