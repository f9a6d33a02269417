"""Writing notifications to the outbox in the caller's transaction.

Delivery (the relay, WeChat subscribe messages, the inbox) belongs to ``workers.notifications``
and ``yijing.services.notifications``; this module only makes sure that an event produces its
row exactly once, in the same commit as the change that caused it.
"""

from __future__ import annotations

from typing import Any

from yijing.extensions import db
from yijing.models import Notification, NotificationStatus
from yijing.models.base import utcnow
from yijing.sql import insert_ignore


def notify(
    user_id: int,
    kind: str,
    *,
    title: str,
    dedupe_key: str,
    body: str = "",
    data: dict[str, Any] | None = None,
    page: str | None = None,
) -> bool:
    """Write one outbox row; False when ``dedupe_key`` already made one (the event is known)."""
    inserted = insert_ignore(
        db.session(),
        Notification,
        {
            "user_id": user_id,
            "kind": kind,
            "title": title[:100],
            "body": body,
            "data": data or {},
            "page": page,
            "dedupe_key": dedupe_key,
            "status": NotificationStatus.PENDING,
            "attempts": 0,
            "created_at": utcnow(),
        },
    )
    return bool(inserted)
