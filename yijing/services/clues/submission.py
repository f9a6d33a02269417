"""Submitting a clue: one transaction, replayed by its Idempotency-Key; follow-up jobs after the commit."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from yijing import jobs, pii
from yijing.errors import InvalidInput
from yijing.extensions import db
from yijing.models import (
    Clue,
    ClueEvent,
    CluePhoto,
    ClueStatus,
    Media,
    MediaPurpose,
)
from yijing.models.base import utcnow
from yijing.models.clue import (
    ClueCategory,
    ClueEventKind,
)
from yijing.services import media
from yijing.services.clues.common import (
    CLOCK_SKEW,
    DEFAULT_PUBLIC_NOTES,
    MAX_PHOTOS,
    REPORTER_CONTEXT,
    SUBMIT_CONTEXT,
    _keyed,
    _new_tracking_code,
    _notify_reporter,
    _reporter_index,
    locate,
)
from yijing.services.clues.followups import followup_jobs
from yijing.services.clues.reporter import SubmittedClue, _submitted_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    """The reporter's view of the new clue (with ``tracking_code`` when anonymous)."""

    clue_id: int
    view: SubmittedClue
    replayed: bool


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


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
    submit_key = _submit_key(reporter_id, idempotency_key)
    if submit_key is not None and idempotency_key is not None:
        replay = _replay_submission(submit_key, digest, _tracking_seed(reporter_id, idempotency_key))
        if replay is not None:
            return replay
    _check(category, occurred_at)
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
    seed = _tracking_seed(reporter_id, idempotency_key) if submit_key and idempotency_key else None
    tracking_code = _set_reporter(clue, reporter_id, anonymous, seed)
    db.session.add(clue)
    db.session.flush()
    _attach_photos(clue, photo_rows, anonymous)
    _record_submission(clue, reporter_id)
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


def _submit_key(reporter_id: int, idempotency_key: str | None) -> str | None:
    """The keyed hash a retried submission is found by (none without an Idempotency-Key)."""
    if idempotency_key is None:
        return None
    if not idempotency_key.strip() or len(idempotency_key) > 128:
        raise InvalidInput(
            "Idempotency-Key 应为 1 到 128 个字符", fields={"Idempotency-Key": ["长度不符合要求"]}
        )
    return _keyed(SUBMIT_CONTEXT, f"{reporter_id}:{idempotency_key.strip()}")


def _check(category: str, occurred_at: datetime | None) -> None:
    if category not in set(ClueCategory):
        raise InvalidInput("线索类别无效", fields={"category": ["取值无效"]})
    if occurred_at is not None and occurred_at > utcnow() + CLOCK_SKEW:
        raise InvalidInput("发生时间不能晚于现在", fields={"occurred_at": ["不能晚于现在"]})


def _set_reporter(clue: Clue, reporter_id: int, anonymous: bool, seed: str | None) -> str | None:
    """Tie the clue to its reporter: in clear, or (anonymous) encrypted with a blind index.

    Returns the anonymous clue's tracking code (derived from ``seed`` when the request has an
    Idempotency-Key, so a retry gets the same code), None for a named clue.
    """
    if not anonymous:
        clue.reporter_id = reporter_id
        return None
    clue.reporter_enc = pii.encrypt(str(reporter_id), context=REPORTER_CONTEXT)
    clue.reporter_index = _reporter_index(reporter_id)
    tracking_code, clue.tracking_hash = _new_tracking_code(seed)
    return tracking_code


def _attach_photos(clue: Clue, photo_rows: Sequence[Media], anonymous: bool) -> None:
    for position, photo in enumerate(photo_rows):
        if anonymous:
            photo.owner_id = None  # the photo must not lead back to its reporter
        db.session.add(CluePhoto(clue_id=clue.id, media_id=photo.id, position=position))


def _record_submission(clue: Clue, reporter_id: int) -> None:
    """The first event, the reporter's notification and the follow-up jobs (after the commit)."""
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
