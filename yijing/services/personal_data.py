"""A copy of everything the service holds about a user (PIPL art. 45), for that user alone.

Personal information is decrypted for the caller; every copy made is audited. Staff notes about
the person (internal clue notes, who reviewed them) are not part of it: they are the police's
records, not the person's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from yijing import pii
from yijing.actor import Actor
from yijing.errors import NotFound
from yijing.extensions import db
from yijing.models import (
    Assignment,
    Clue,
    ClueEvent,
    ClueMessage,
    Comment,
    Jurisdiction,
    Message,
    MessageReply,
    Notification,
    PointsEntry,
    PostLike,
    PrivacyConsent,
    SubscriptionConsent,
    Task,
    TrackPoint,
    User,
    Volunteer,
    VolunteerCorrection,
)
from yijing.models.base import utcnow
from yijing.models.clue import MessageSender
from yijing.services import audit
from yijing.services import clues as clue_service
from yijing.services.auth import PHONE_CONTEXT


def _t(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _clear(stored: str | None, context: str) -> str | None:
    return pii.decrypt(stored, context=context) if stored else None


def _volunteers(user_id: int) -> list[dict[str, Any]]:
    from yijing.services.volunteers import ID_NUMBER_CONTEXT, NAME_CONTEXT
    from yijing.services.volunteers import PHONE_CONTEXT as VOLUNTEER_PHONE

    found = []
    for v in db.session.scalars(select(Volunteer).where(Volunteer.user_id == user_id).order_by(Volunteer.id)):
        home = db.session.get(Jurisdiction, v.jurisdiction_id)
        corrections = db.session.scalars(
            select(VolunteerCorrection)
            .where(VolunteerCorrection.volunteer_id == v.id)
            .order_by(VolunteerCorrection.id)
        ).all()
        found.append(
            {
                "id": v.id,
                "status": v.status,
                "category": v.category,
                "employer": v.employer,
                "skills": list(v.skills or []),
                "real_name": _clear(v.real_name_enc, NAME_CONTEXT),
                "id_number": _clear(v.id_number_enc, ID_NUMBER_CONTEXT),
                "phone": _clear(v.phone_enc, VOLUNTEER_PHONE),
                "home": home.name if home else None,
                "volunteer_number": v.volunteer_number,
                "applied_at": _t(v.created_at),
                "decided_at": _t(v.decided_at),
                "decision_reason": v.decision_reason,
                "on_duty": v.on_duty,
                "corrections": [
                    {
                        "id": c.id,
                        "status": c.status,
                        "real_name": _clear(c.real_name_enc, NAME_CONTEXT),
                        "id_number": _clear(c.id_number_enc, ID_NUMBER_CONTEXT),
                        "phone": _clear(c.phone_enc, VOLUNTEER_PHONE),
                        "asked_at": _t(c.created_at),
                        "decided_at": _t(c.decided_at),
                        "decision_reason": c.decision_reason,
                    }
                    for c in corrections
                ],
            }
        )
    return found


def _tasks(user_id: int) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(Assignment, Task)
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.user_id == user_id)
        .order_by(Assignment.id)
    ).all()
    tracks: dict[int, list[dict[str, Any]]] = {}
    if rows:
        for point in db.session.scalars(
            select(TrackPoint)
            .where(TrackPoint.assignment_id.in_([a.id for a, _ in rows]))
            .order_by(TrackPoint.assignment_id, TrackPoint.recorded_at)
        ):
            tracks.setdefault(point.assignment_id, []).append(
                {
                    "at": _t(point.recorded_at),
                    "lat": point.lat,
                    "lng": point.lng,
                    "accuracy_m": point.accuracy_m,
                }
            )
    return [
        {
            "task": {
                "id": t.id,
                "title": t.title,
                "kind": t.kind,
                "starts_at": _t(t.starts_at),
                "ends_at": _t(t.ends_at),
            },
            "status": a.status,
            "accepted_at": _t(a.accepted_at),
            "checkin": {"at": _t(a.checkin_at), "lat": a.checkin_lat, "lng": a.checkin_lng},
            "checkout": {"at": _t(a.checkout_at), "lat": a.checkout_lat, "lng": a.checkout_lng},
            "service_minutes": a.service_minutes,
            "points_awarded": a.points_awarded,
            "track": tracks.get(a.id, []),
        }
        for a, t in rows
    ]


def _clues(user_id: int) -> list[dict[str, Any]]:
    found = []
    for clue in db.session.scalars(select(Clue).where(clue_service.reported_by(user_id)).order_by(Clue.id)):
        events = db.session.scalars(
            select(ClueEvent)
            .where(ClueEvent.clue_id == clue.id, ClueEvent.public_note.is_not(None))
            .order_by(ClueEvent.id)
        ).all()
        mine = db.session.scalars(
            select(ClueMessage)
            .where(ClueMessage.clue_id == clue.id, ClueMessage.sender == MessageSender.REPORTER)
            .order_by(ClueMessage.id)
        ).all()
        found.append(
            {
                "id": clue.id,
                "anonymous": clue.is_anonymous,
                "category": clue.category,
                "description": clue.description,
                "address": clue.address,
                "lat": clue.lat,
                "lng": clue.lng,
                "occurred_at": _t(clue.occurred_at),
                "reported_at": _t(clue.created_at),
                "status": clue.status,
                "photo_count": clue.photo_count,
                "timeline": [
                    {"status": e.to_status, "note": e.public_note, "at": _t(e.created_at)} for e in events
                ],
                "my_messages": [{"body": m.body, "at": _t(m.created_at)} for m in mine],
            }
        )
    return found


@dataclass(frozen=True, slots=True)
class PersonalDataCopy:
    """A copy of everything held about one user, personal information in clear.

    Each part is a document (plain JSON values, times as ISO strings) rather than rows: it is what
    the person reads, and its shape follows what is stored about them.
    """

    generated_at: str | None
    account: dict[str, Any]
    volunteer_applications: list[dict[str, Any]]
    privacy_consents: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    clues: list[dict[str, Any]]
    points: dict[str, Any]
    comments: list[dict[str, Any]]
    likes: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    subscription_consents: list[dict[str, Any]]


def copy_for(user_id: int, actor: Actor) -> PersonalDataCopy:
    """Everything about ``user_id``, personal information in clear; the request is audited."""
    user = db.session.get(User, user_id)
    if user is None or user.cancelled_at is not None:
        raise NotFound("账号不存在", code="user_not_found")
    home = db.session.get(Jurisdiction, user.home_jurisdiction_id) if user.home_jurisdiction_id else None
    ledger = db.session.scalars(
        select(PointsEntry).where(PointsEntry.user_id == user_id).order_by(PointsEntry.id)
    ).all()
    messages = db.session.scalars(
        select(Message).where(Message.user_id == user_id).order_by(Message.id)
    ).all()
    replies: dict[int, list[MessageReply]] = {}
    if messages:
        for reply in db.session.scalars(
            select(MessageReply)
            .where(MessageReply.message_id.in_([m.id for m in messages]))
            .order_by(MessageReply.id)
        ):
            replies.setdefault(reply.message_id, []).append(reply)
    copy = PersonalDataCopy(
        generated_at=_t(utcnow()),
        account={
            "id": user.id,
            "kind": user.kind,
            "openid": user.openid,
            "display_name": user.display_name,
            "phone": _clear(user.phone_enc, PHONE_CONTEXT),
            "home_district": home.name if home else None,
            "created_at": _t(user.created_at),
            "last_login_at": _t(user.last_login_at),
            "cancellation_due_at": _t(user.cancel_due_at),
        },
        volunteer_applications=_volunteers(user_id),
        privacy_consents=[
            {"document": c.document, "version": c.version, "at": _t(c.created_at), "ip": c.ip}
            for c in db.session.scalars(
                select(PrivacyConsent).where(PrivacyConsent.user_id == user_id).order_by(PrivacyConsent.id)
            )
        ],
        tasks=_tasks(user_id),
        clues=_clues(user_id),
        points={
            "balance": sum(e.amount for e in ledger),
            "entries": [{"amount": e.amount, "reason": e.reason, "at": _t(e.created_at)} for e in ledger],
        },
        comments=[
            {"post_id": c.post_id, "body": c.body, "status": c.status, "at": _t(c.created_at)}
            for c in db.session.scalars(
                select(Comment).where(Comment.user_id == user_id).order_by(Comment.id)
            )
        ],
        likes=[
            {"post_id": like.post_id, "at": _t(like.created_at)}
            for like in db.session.scalars(
                select(PostLike).where(PostLike.user_id == user_id).order_by(PostLike.id)
            )
        ],
        messages=[
            {
                "id": m.id,
                "body": m.body,
                "status": m.status,
                "at": _t(m.created_at),
                "replies": [{"body": r.body, "at": _t(r.created_at)} for r in replies.get(m.id, [])],
            }
            for m in messages
        ],
        notifications=[
            {"kind": n.kind, "title": n.title, "body": n.body, "status": n.status, "at": _t(n.created_at)}
            for n in db.session.scalars(
                select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)
            )
        ],
        subscription_consents=[
            {"template_id": s.template_id, "remaining": s.remaining, "last_answer": s.last_answer}
            for s in db.session.scalars(
                select(SubscriptionConsent)
                .where(SubscriptionConsent.user_id == user_id)
                .order_by(SubscriptionConsent.id)
            )
        ],
    )
    audit.record(actor, "personal_data.copy", "user", user_id)
    db.session.commit()
    return copy
