"""The retention schedule: one limit per kind of data (``RETAIN_*`` settings, explained in the
README), enforced by a daily job that reports what it removed.

What depends on removed data does not change: service minutes and points stay on the assignment
and in the ledger, a clue keeps its ``photo_count``, reports read their own rollups.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, delete, func, or_, select, update

from yijing.actor import Actor
from yijing.extensions import db
from yijing.models import (
    Assignment,
    AssignmentStatus,
    AuditEntry,
    Clue,
    CluePhoto,
    IdempotencyRecord,
    Media,
    Notification,
    NotificationStatus,
    Task,
    TrackPoint,
    Volunteer,
    VolunteerStatus,
)
from yijing.models.base import utcnow
from yijing.services import audit, idempotency
from yijing.storage import StorageError, get_storage

log = logging.getLogger(__name__)

BATCH = 1000


def _config() -> Any:
    return current_app.config["YIJING"]


def purge_tracks(now: datetime) -> int:
    """Track points, and the exact check-in/out places, of tasks ended ``RETAIN_TRACK_DAYS`` ago."""
    cutoff = now - timedelta(days=_config().retain_track_days)
    old = (
        select(Assignment.id)
        .join(Task, Task.id == Assignment.task_id)
        .where(Task.ends_at < cutoff, Assignment.status != AssignmentStatus.CHECKED_IN)
    )
    removed = db.session.execute(
        delete(TrackPoint).where(TrackPoint.assignment_id.in_(old.scalar_subquery()))
    ).rowcount
    db.session.execute(
        update(Assignment)
        .where(
            Assignment.id.in_(old.scalar_subquery()),
            or_(Assignment.checkin_lat.is_not(None), Assignment.checkout_lat.is_not(None)),
        )
        .values(checkin_lat=None, checkin_lng=None, checkout_lat=None, checkout_lng=None)
        .execution_options(synchronize_session=False)
    )
    # The last place seen on duty, once off duty that long.
    db.session.execute(
        update(Volunteer)
        .where(Volunteer.on_duty.is_(False), Volunteer.duty_lat.is_not(None), Volunteer.duty_seen_at < cutoff)
        .values(duty_lat=None, duty_lng=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return removed or 0


def purge_clue_photos(now: datetime) -> int:
    """Photos of clues closed ``RETAIN_CLUE_PHOTO_DAYS`` ago: the file, then the rows."""
    cutoff = now - timedelta(days=_config().retain_clue_photo_days)
    rows = db.session.execute(
        select(CluePhoto, Media)
        .join(Media, Media.id == CluePhoto.media_id)
        .join(Clue, Clue.id == CluePhoto.clue_id)
        .where(Clue.closed_at.is_not(None), Clue.closed_at < cutoff)
        .limit(BATCH)
    ).all()
    removed = 0
    for photo, media in rows:
        try:
            get_storage().delete(media.storage_key)
        except StorageError:
            log.warning("could not delete a clue photo; will retry", extra={"media_id": media.id})
            continue
        db.session.delete(photo)
        db.session.flush()
        db.session.delete(media)
        removed += 1
    db.session.commit()
    return removed


def erase_closed_applications(now: datetime) -> int:
    """The personal information of applications rejected or withdrawn ``RETAIN_CLOSED_APPLICATION_DAYS``
    ago. The keyed hash of the ID number stays so that a reviewer is still told the number was used."""
    from yijing.services.account import erase_application

    cutoff = now - timedelta(days=_config().retain_closed_application_days)
    closed_on = func.coalesce(Volunteer.updated_at, Volunteer.decided_at, Volunteer.created_at)
    rows = db.session.scalars(
        select(Volunteer)
        .where(
            Volunteer.status.in_([VolunteerStatus.REJECTED, VolunteerStatus.WITHDRAWN]),
            Volunteer.pii_erased_at.is_(None),
            closed_on < cutoff,
        )
        .limit(BATCH)
    ).all()
    for volunteer in rows:
        kept_hash = volunteer.id_number_hash
        erase_application(volunteer, now)
        volunteer.id_number_hash = kept_hash
    db.session.commit()
    return len(rows)


def purge_audit_log(now: datetime) -> int:
    """Audit entries older than ``RETAIN_AUDIT_DAYS`` (at least six months)."""
    cutoff = now - timedelta(days=_config().retain_audit_days)
    removed = db.session.execute(delete(AuditEntry).where(AuditEntry.created_at < cutoff)).rowcount
    db.session.commit()
    return removed or 0


def purge_notifications(now: datetime) -> int:
    """Delivered or failed notifications past their use: an anonymous reporter's (sealed) ones
    ``RETAIN_SEALED_NOTIFICATION_DAYS`` after delivery, others ``RETAIN_NOTIFICATION_DAYS``."""
    config = _config()
    done = Notification.status != NotificationStatus.PENDING
    since = func.coalesce(Notification.sent_at, Notification.last_attempt_at, Notification.created_at)
    removed = db.session.execute(
        delete(Notification).where(
            done,
            or_(
                and_(
                    Notification.sealed.is_(True),
                    since < now - timedelta(days=config.retain_sealed_notification_days),
                ),
                Notification.created_at < now - timedelta(days=config.retain_notification_days),
            ),
        )
    ).rowcount
    db.session.commit()
    return removed or 0


def purge_idempotency(now: datetime) -> int:
    """Stored answers to retried POSTs older than ``RETAIN_IDEMPOTENCY_HOURS`` (an hourly job does the
    same: yijing.services.idempotency.purge_expired)."""
    cutoff = now - idempotency.retention()
    removed = db.session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
    ).rowcount
    db.session.commit()
    return removed or 0


def enforce(now: datetime | None = None) -> dict[str, int]:
    """Apply every limit of the schedule; returns (and audits) how much of each kind was removed."""
    now = now or utcnow()
    removed = {
        "track_points": purge_tracks(now),
        "clue_photos": purge_clue_photos(now),
        "closed_applications": erase_closed_applications(now),
        "notifications": purge_notifications(now),
        "idempotency_records": purge_idempotency(now),
        "audit_entries": purge_audit_log(now),
    }
    audit.record(
        Actor.system("retention"), "retention.enforce", "retention", now.date().isoformat(), data=removed
    )
    db.session.commit()
    log.info("retention enforced", extra=removed)
    return removed
