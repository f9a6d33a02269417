"""The in-app inbox and subscribe-message consents, as the mini-program user sees them.

Every notification is in the inbox whatever WeChat did with it: the inbox reads the outbox table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update

from yijing.config import settings
from yijing.errors import InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import ConsentAnswer, Notification, SubscriptionConsent
from yijing.models.base import utcnow
from yijing.pagination import Page, SortKey, paginate
from yijing.sql import insert_ignore

#: One user cannot bank more one-time consents per template than this (WeChat itself does not cap).
MAX_ONE_TIME_CONSENTS = 1000
ANSWERS = frozenset(a.value for a in ConsentAnswer)

# 0 for unread, 1 for read: "unread first" is ascending.
_READ_RANK = case((Notification.read_at.is_(None), 0), else_=1)


# -- inbox --


def inbox(user_id: int, *, cursor: str | None, limit: int) -> Page[Notification]:
    """The user's notifications, unread first, newest first within each."""
    stmt = select(Notification).where(Notification.user_id == user_id)
    return paginate(
        stmt,
        [SortKey(_READ_RANK), SortKey(Notification.id, descending=True)],
        lambda n: [0 if n.read_at is None else 1, n.id],
        cursor=cursor,
        limit=limit,
    )


@dataclass(frozen=True, slots=True)
class Unread:
    unread: int


def unread_count(user_id: int) -> Unread:
    """One indexed count (``ix_notifications_user_read``)."""
    return Unread(
        unread=int(
            db.session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.user_id == user_id, Notification.read_at.is_(None))
            )
            or 0
        )
    )


def mark_read(user_id: int, notification_id: int) -> Notification:
    """Mark one of the user's notifications read (again is harmless); 404 for anyone else's."""
    item = db.session.get(Notification, notification_id)
    if item is None or item.user_id != user_id:
        raise NotFound("通知不存在", code="notification_not_found")
    if item.read_at is None:
        item.read_at = utcnow()
        db.session.commit()
    return item


@dataclass(frozen=True, slots=True)
class ReadAll:
    updated: int  # how many notifications were unread


def mark_all_read(user_id: int) -> ReadAll:
    """Mark every unread notification of the user read."""
    changed = db.session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return ReadAll(updated=changed or 0)


# -- consents --


def _templates() -> Any:
    return settings().wechat_templates


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscribe-message template, the kinds it serves, and what the user has left for it."""

    template_id: str
    kinds: list[str]
    long_term: bool
    remaining: int | None  # one-time consents left (None for a long-term template: not counted)
    last_answer: str | None
    answered_at: datetime | None
    can_send: bool


def subscriptions(user_id: int) -> list[Subscription]:
    """Every configured template with the kinds it serves and what the user has left for it."""
    registry = _templates()
    consents = {
        c.template_id: c
        for c in db.session.scalars(select(SubscriptionConsent).where(SubscriptionConsent.user_id == user_id))
    }
    out = []
    for template_id, templates in sorted(registry.by_template_id().items()):
        consent = consents.get(template_id)
        long_term = templates[0].long_term
        out.append(
            Subscription(
                template_id=template_id,
                kinds=sorted(t.kind for t in templates),
                long_term=long_term,
                remaining=(consent.remaining if consent else 0) if not long_term else None,
                last_answer=consent.last_answer if consent else None,
                answered_at=consent.answered_at if consent else None,
                can_send=bool(
                    consent
                    and (consent.last_answer == ConsentAnswer.ACCEPT if long_term else consent.remaining > 0)
                ),
            )
        )
    return out


def _one_more(dialect: str) -> Any:
    """``remaining + 1`` capped at :data:`MAX_ONE_TIME_CONSENTS` (SQLite ``min``, PostgreSQL ``least``)."""
    cap = func.min if dialect == "sqlite" else func.least
    return cap(SubscriptionConsent.remaining + 1, MAX_ONE_TIME_CONSENTS)


def record_consents(user_id: int, results: Mapping[str, Any]) -> list[Subscription]:
    """Record the result of ``wx.requestSubscribeMessage``: ``{template_id: accept|reject|ban|filter}``.

    A one-time ``accept`` adds one message; ``reject`` and ``ban`` withdraw what was left; ``filter``
    (WeChat did not show the template) changes nothing. For a long-term template only the answer counts.
    Template ids that are not configured are ignored (the ``errMsg`` key of the result among them).
    """
    registry = _templates()
    known = registry.by_template_id()
    bad = {
        k: ["应为 accept、reject、ban 或 filter"]
        for k, v in results.items()
        if k in known and v not in ANSWERS
    }
    if bad:
        raise InvalidInput("订阅结果格式有误", code="invalid_subscription_result", fields=bad)
    answers = {k: str(v) for k, v in results.items() if k in known}
    if not answers:
        raise InvalidInput(
            "没有可识别的订阅消息模板，请更新小程序后重试",
            code="no_known_template",
            fields={"results": ["没有已配置的模板"]},
        )
    now = utcnow()
    session = db.session()
    for template_id, answer in sorted(answers.items()):
        if answer == ConsentAnswer.FILTER:
            continue
        insert_ignore(
            session,
            SubscriptionConsent,
            {"user_id": user_id, "template_id": template_id, "remaining": 0, "created_at": now},
        )
        if answer != ConsentAnswer.ACCEPT:
            remaining: Any = 0
        elif registry.is_long_term(template_id):
            remaining = SubscriptionConsent.remaining  # not counted
        else:
            remaining = _one_more(session.get_bind().dialect.name)
        session.execute(
            update(SubscriptionConsent)
            .where(SubscriptionConsent.user_id == user_id, SubscriptionConsent.template_id == template_id)
            .values(remaining=remaining, last_answer=answer, answered_at=now)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return subscriptions(user_id)
