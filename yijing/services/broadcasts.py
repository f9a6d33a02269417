"""Mass alerts: the desk sends one notification to everyone in a scope, fanned out by a worker.

The fan-out walks the recipients by user id in chunks (``BROADCAST_BATCH_SIZE``): each chunk's outbox rows
are written with one bulk INSERT (a dedupe key per broadcast and user, so a replayed chunk writes
nothing twice) in the same transaction that moves the broadcast's cursor and progress — guarded by the
cursor it read, so two runs of the same step cannot both count it. The next chunk is scheduled so that
rows are written no faster than the broadcast's rate (``BROADCAST_RATE_PER_MINUTE``, never above
``WECHAT_SEND_RATE_PER_MINUTE``, the limit every sender shares). Cancelling stops the fan-out at the
next chunk and turns rows not yet sent into inbox-only.

Audiences are pluggable (:func:`register_audience`): ``volunteers`` of a subtree (users holding the
volunteer role there), ``residents`` (home jurisdiction in the subtree), ``on_duty`` (volunteers on
duty within a radius, from the Redis GEO index of :mod:`yijing.services.duty_index`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, func, select, update

from yijing import jobs, policies
from yijing.actor import Actor
from yijing.config import settings
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import (
    Broadcast,
    BroadcastAudience,
    BroadcastStatus,
    Jurisdiction,
    Role,
    RoleGrant,
    User,
    UserKind,
)
from yijing.models.base import utcnow
from yijing.models.broadcast import OPEN_STATUSES
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, duty_index, jurisdictions, outbox

log = logging.getLogger(__name__)

FAN_OUT = "workers.broadcasts.fan_out"


# -- audiences --


@dataclass(frozen=True)
class Audience:
    """Who a broadcast reaches. Either ``query`` (a SELECT of distinct user ids labelled ``user_id``,
    walked by id while fanning out) or ``snapshot`` (user ids fixed when the broadcast is created)."""

    name: str
    query: Callable[[Broadcast, Jurisdiction], Select[Any]] | None = None
    snapshot: Callable[[Jurisdiction, float, float, int], list[int]] | None = None


def _volunteers(_broadcast: Broadcast, jurisdiction: Jurisdiction) -> Select[Any]:
    # Until the volunteers model lands, approved volunteers are the holders of the volunteer role.
    return (
        select(RoleGrant.user_id.label("user_id"))
        .join(Jurisdiction, Jurisdiction.id == RoleGrant.jurisdiction_id)
        .join(User, User.id == RoleGrant.user_id)
        .where(
            RoleGrant.role == Role.VOLUNTEER,
            Jurisdiction.path.startswith(jurisdiction.path, autoescape=True),
            User.is_active.is_(True),
        )
        .distinct()
    )


def _residents(_broadcast: Broadcast, jurisdiction: Jurisdiction) -> Select[Any]:
    subtree = select(Jurisdiction.id).where(Jurisdiction.path.startswith(jurisdiction.path, autoescape=True))
    return select(User.id.label("user_id")).where(
        User.kind == UserKind.WECHAT,
        User.is_active.is_(True),
        User.home_jurisdiction_id.in_(subtree),
    )


# An urgent on-duty broadcast reaches at most this many of the nearest volunteers.
ON_DUTY_MAX = 5000


def _on_duty(jurisdiction: Jurisdiction, lat: float, lng: float, radius_m: int) -> list[int]:
    """Users of the fresh on-duty volunteers within the radius whose home lies in the scope."""
    hits = duty_index.search(lat, lng, radius_m, ON_DUTY_MAX, within_paths=[jurisdiction.path])
    return [hit.user_id for hit in hits]


AUDIENCES: dict[str, Audience] = {
    BroadcastAudience.VOLUNTEERS: Audience(BroadcastAudience.VOLUNTEERS, query=_volunteers),
    BroadcastAudience.RESIDENTS: Audience(BroadcastAudience.RESIDENTS, query=_residents),
    BroadcastAudience.ON_DUTY: Audience(BroadcastAudience.ON_DUTY, snapshot=_on_duty),
}


def register_audience(audience: Audience) -> None:
    """Add or replace an audience (e.g. the volunteers model's own query once it exists)."""
    AUDIENCES[audience.name] = audience


# -- the desk's side --


def _enqueue_spec(broadcast_id: int, delay: int = 0) -> Any:

    # On the dispatch queue: a mass alert is urgent, and a chunk is quick (its deliveries go to notify).
    return jobs.JobSpec(
        queue=jobs.DISPATCH,
        func=FAN_OUT,
        args=(broadcast_id,),
        timeout=300,
        retry=jobs.Retry(max=3, interval=[10, 30, 60]),
        failure_ttl=7 * 24 * 3600,
        result_ttl=300,
        delay=delay,
    )


def enqueue_fan_out(broadcast_id: int, delay: int = 0) -> None:

    jobs.enqueue(_enqueue_spec(broadcast_id, delay))


def create(
    principal: Principal,
    actor: Actor,
    *,
    jurisdiction_id: int,
    audience: str,
    title: str,
    body: str = "",
    page: str | None = None,
    lat: float | None = None,
    lng: float | None = None,
    radius_m: int | None = None,
    rate_per_minute: int | None = None,
) -> Broadcast:
    """Queue a mass alert to ``audience`` in the jurisdiction's subtree; the fan-out starts on commit."""

    jurisdiction = jurisdictions.get(jurisdiction_id)
    policies.require(principal, Permission.NOTIFY_BROADCAST, jurisdiction.path)
    spec = AUDIENCES.get(audience)
    if spec is None:
        raise InvalidInput("不支持的群发对象", fields={"audience": ["取值无效"]})
    config = settings()
    rate = min(rate_per_minute or config.broadcast_rate_per_minute, config.wechat_send_rate_per_minute)
    broadcast = Broadcast(
        created_by_id=actor.user_id,
        jurisdiction_id=jurisdiction.id,
        audience=audience,
        kind="alert",
        title=title.strip(),
        body=body.strip(),
        page=page or None,
        rate_per_minute=rate,
        status=BroadcastStatus.QUEUED,
        written=0,
        cursor=0,
        heartbeat_at=utcnow(),
    )
    if spec.snapshot is not None:
        if lat is None or lng is None or radius_m is None:
            missing = {
                k: ["必填"] for k, v in (("lat", lat), ("lng", lng), ("radius_m", radius_m)) if v is None
            }
            raise InvalidInput("按半径群发需要中心点和半径", fields=missing)
        broadcast.center_lat, broadcast.center_lng, broadcast.radius_m = lat, lng, radius_m
        targets = sorted(set(spec.snapshot(jurisdiction, lat, lng, radius_m)))
        broadcast.target_user_ids = targets
        broadcast.total = len(targets)
    db.session.add(broadcast)
    db.session.flush()
    audit.record(
        actor,
        "broadcast.create",
        "broadcast",
        broadcast.id,
        data={"jurisdiction_id": jurisdiction.id, "audience": audience, "title": broadcast.title},
    )
    jobs.enqueue_after_commit(db.session(), _enqueue_spec(broadcast.id))
    db.session.commit()
    return broadcast


def _get_in_scope(principal: Principal, broadcast_id: int) -> tuple[Broadcast, Jurisdiction]:
    broadcast = db.session.get(Broadcast, broadcast_id)
    if broadcast is None:
        raise NotFound("群发不存在", code="broadcast_not_found")
    jurisdiction = jurisdictions.get(broadcast.jurisdiction_id)
    if not policies.may(principal, Permission.NOTIFY_BROADCAST, jurisdiction.path):
        raise NotFound("群发不存在", code="broadcast_not_found")
    return broadcast, jurisdiction


def detail(principal: Principal, broadcast_id: int) -> Broadcast:
    """One broadcast with its progress, if it lies in the principal's scope."""
    return _get_in_scope(principal, broadcast_id)[0]


def list_for(principal: Principal, *, cursor: str | None, limit: int) -> Page[Broadcast]:
    """Broadcasts in the principal's scope, newest first."""
    paths = policies.require_somewhere(principal, Permission.NOTIFY_BROADCAST)
    stmt = (
        select(Broadcast)
        .join(Jurisdiction, Jurisdiction.id == Broadcast.jurisdiction_id)
        .where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
    )
    return paginate(
        stmt,
        [SortKey(Broadcast.id, descending=True)],
        lambda b: [b.id],
        cursor=cursor,
        limit=limit,
    )


def cancel(principal: Principal, actor: Actor, broadcast_id: int) -> Broadcast:
    """Stop the fan-out at its next chunk; rows written but not yet sent stay in the inbox only.

    A broadcast whose rows are all written may still be cancelled: what WeChat has not received yet
    is then not sent.
    """
    cancellable = [*OPEN_STATUSES, BroadcastStatus.COMPLETED]
    broadcast, _ = _get_in_scope(principal, broadcast_id)
    if broadcast.status not in cancellable:
        raise Conflict("该群发已取消或已失败", code="broadcast_finished")
    now = utcnow()
    changed = db.session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast.id, Broadcast.status.in_(cancellable))
        .values(
            status=BroadcastStatus.CANCELLED,
            cancelled_at=now,
            cancelled_by_id=actor.user_id,
            finished_at=func.coalesce(Broadcast.finished_at, now),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        db.session.rollback()
        raise Conflict("该群发已取消或已失败", code="broadcast_finished")
    audit.record(actor, "broadcast.cancel", "broadcast", broadcast.id)
    db.session.commit()
    db.session.refresh(broadcast)
    return broadcast


def progress(broadcast: Broadcast) -> float | None:
    if broadcast.total is None:
        return None
    if broadcast.total == 0:
        return 1.0
    return round(min(broadcast.written / broadcast.total, 1.0), 4)


# -- the worker's side --


def _count(spec: Audience, broadcast: Broadcast, jurisdiction: Jurisdiction) -> int:
    assert spec.query is not None
    inner = spec.query(broadcast, jurisdiction).subquery()
    return int(db.session.scalar(select(func.count()).select_from(inner)) or 0)


def _next_ids(spec: Audience, broadcast: Broadcast, jurisdiction: Jurisdiction, limit: int) -> list[int]:
    if broadcast.target_user_ids is not None:
        targets = [int(u) for u in broadcast.target_user_ids]
        return [u for u in targets if u > broadcast.cursor][:limit]
    assert spec.query is not None
    inner = spec.query(broadcast, jurisdiction).subquery()
    return list(
        db.session.scalars(
            select(inner.c.user_id)
            .where(inner.c.user_id > broadcast.cursor)
            .order_by(inner.c.user_id)
            .limit(limit)
        )
    )


def fan_out_step(broadcast_id: int) -> int | None:
    """Write the next chunk of a broadcast's outbox rows; returns the delay (seconds) before the next
    chunk, or None when there is nothing more to do. Commits."""
    config = settings()
    broadcast = db.session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.status not in OPEN_STATUSES:
        return None
    started = utcnow()
    jurisdiction = jurisdictions.get(broadcast.jurisdiction_id)
    spec = AUDIENCES.get(broadcast.audience)
    if spec is None:
        db.session.execute(
            update(Broadcast)
            .where(Broadcast.id == broadcast.id)
            .values(
                status=BroadcastStatus.FAILED,
                error=f"unknown audience {broadcast.audience}",
                finished_at=started,
            )
        )
        db.session.commit()
        return None
    total = broadcast.total if broadcast.total is not None else _count(spec, broadcast, jurisdiction)
    batch = config.broadcast_batch_size
    user_ids = _next_ids(spec, broadcast, jurisdiction, batch)
    data = {"broadcast_id": broadcast.id, "jurisdiction_name": jurisdiction.name}
    outbox.notify_many(
        [
            {
                "user_id": uid,
                "kind": broadcast.kind,
                "title": broadcast.title,
                "body": broadcast.body,
                "page": broadcast.page,
                "data": data,
                "dedupe_key": f"broadcast:{broadcast.id}:{uid}",
            }
            for uid in user_ids
        ]
    )
    done = len(user_ids) < batch
    values: dict[str, Any] = {
        "status": BroadcastStatus.COMPLETED if done else BroadcastStatus.RUNNING,
        "started_at": broadcast.started_at or started,
        "total": max(total, broadcast.written + len(user_ids)),
        "written": Broadcast.written + len(user_ids),
        "cursor": user_ids[-1] if user_ids else broadcast.cursor,
        "heartbeat_at": started,
    }
    if done:
        values["finished_at"] = utcnow()
    # Only if nobody moved the cursor or cancelled meanwhile; otherwise this chunk is undone.
    moved = db.session.execute(
        update(Broadcast)
        .where(
            Broadcast.id == broadcast.id,
            Broadcast.cursor == broadcast.cursor,
            Broadcast.status.in_(list(OPEN_STATUSES)),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        db.session.rollback()
        return None
    db.session.commit()
    if done:
        log.info("broadcast fanned out", extra={"broadcast_id": broadcast_id, "rows": broadcast.written})
        return None
    pace = len(user_ids) * 60 / broadcast.rate_per_minute
    wait = pace - (utcnow() - started).total_seconds()
    if wait < 1:
        # Less than RQ's scheduling grain (a second): wait here rather than write too fast.
        time.sleep(max(wait, 0))
        return 0
    return math.ceil(wait)


def revive_stalled() -> list[int]:
    """Open broadcasts whose fan-out stopped (worker killed, job lost with Redis): a heartbeat older
    than the fan-out's own pace plus ``BROADCAST_STALL_SECONDS``. Returns their ids after touching
    their heartbeat. Commits."""
    config = settings()
    now = utcnow()
    found = []
    for broadcast in db.session.scalars(select(Broadcast).where(Broadcast.status.in_(list(OPEN_STATUSES)))):
        pace = config.broadcast_batch_size * 60 / max(broadcast.rate_per_minute, 1)
        last = broadcast.heartbeat_at or broadcast.created_at
        if now - last > timedelta(seconds=pace + config.broadcast_stall_seconds):
            found.append(broadcast.id)
    if found:
        db.session.execute(
            update(Broadcast)
            .where(Broadcast.id.in_(found))
            .values(heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return found
