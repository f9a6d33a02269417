"""The outbox as admins see it: counts by status, failed rows with WeChat's reasons, retrying them.

Outbox rows belong to users, not to jurisdictions, so these views need ``outbox.admin`` over a root of
the tree (a city-level admin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from yijing import policies
from yijing.actor import Actor
from yijing.errors import Forbidden
from yijing.models import Notification
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, delivery


def _require_city_admin(principal: Principal) -> None:
    paths = policies.require_somewhere(principal, Permission.OUTBOX_ADMIN)
    if not any(path.count("/") == 2 for path in paths):  # "/1/" is a root
        raise Forbidden("需要市级管理员权限才能查看消息发送记录", code="city_admin_required")


def counts(principal: Principal) -> dict[str, int]:
    _require_city_admin(principal)
    return delivery.counts_by_status()


def rows(
    principal: Principal, *, status: str | None, kind: str | None, cursor: str | None, limit: int
) -> Page[Notification]:
    """Outbox rows, newest first, filtered by status and kind (failed ones carry WeChat's reason)."""
    _require_city_admin(principal)
    stmt = select(Notification)
    if status:
        stmt = stmt.where(Notification.status == status)
    if kind:
        stmt = stmt.where(Notification.kind == kind)
    return paginate(
        stmt, [SortKey(Notification.id, descending=True)], lambda n: [n.id], cursor=cursor, limit=limit
    )


@dataclass(frozen=True, slots=True)
class Requeued:
    requeued: int


def retry(principal: Principal, actor: Actor, *, ids: Sequence[int] | None, kind: str | None) -> Requeued:
    """Send failed rows again (all of them, or those ids / that kind): how many were re-queued."""
    _require_city_admin(principal)
    audit.record(
        actor, "outbox.retry", "notification", ",".join(map(str, ids or []))[:64] or "*", data={"kind": kind}
    )
    return Requeued(requeued=delivery.retry_failed(ids=ids, kind=kind))
