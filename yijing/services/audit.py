"""Writing to the audit log, always in the caller's transaction."""

from __future__ import annotations

from typing import Any

from yijing.actor import Actor
from yijing.extensions import db
from yijing.models import AuditEntry


def record(
    actor: Actor,
    action: str,
    target_type: str,
    target_id: object,
    *,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry; it commits (or rolls back) with the change it describes."""
    entry = AuditEntry(
        actor_id=actor.user_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        reason=reason,
        ip=actor.ip,
        request_id=actor.request_id,
        data=data or {},
    )
    db.session.add(entry)
    return entry
