"""Delivering outbox rows: claim, check consent, send the subscribe message, record the outcome.

The life of a row (``notifications``)::

    pending ──claim──▶ (claimed_until = now + lease)
        no template / no consent / user without openid ─▶ inbox_only
        WeChat ok ─────────────────────────────────────▶ sent            (commits right after the call)
        43101 (refused, no consent left) ──────────────▶ inbox_only      (the consent is zeroed)
        5xx, time-out, -1, 45009/45011, token errors ──▶ pending again, next_attempt_at = now + backoff
                                                         (failed after NOTIFY_MAX_ATTEMPTS)
        40003, 40037, 47003 and other answers ─────────▶ failed          (with WeChat's reason)

Claiming is one UPDATE … WHERE status = 'pending' AND the claim is free … RETURNING id: on PostgreSQL
the row lock makes a second worker re-check the condition after the first commits; SQLite runs one
writer at a time. So two workers racing on a row never both send it. A row is only sent while its
claim (lease) holds; a worker killed mid-batch leaves its rows claimed until the lease runs out, then
the sweeper enqueues them again. The only row that can reach WeChat twice is the one whose request
was in flight when the worker died.

Every row reaches the in-app inbox whatever happens here: the inbox reads the table.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from yijing.config import Config, settings
from yijing.extensions import db, redis_client, wechat
from yijing.models import (
    Broadcast,
    BroadcastStatus,
    ConsentAnswer,
    Notification,
    NotificationStatus,
    SubscriptionConsent,
    User,
)
from yijing.models.base import utcnow
from yijing.services.outbox import urgent_lease
from yijing.wechat.errors import WeChatError, WeChatRateLimited, WeChatUnavailable
from yijing.wechat.gateway import TOKEN_ERRCODES
from yijing.wechat.send_rate import SendRateLimiter
from yijing.wechat.templates import Template, TemplateRegistry

log = logging.getLogger(__name__)

#: WeChat's answer when the user refused the template or has no consent left.
NO_CONSENT_ERRCODE = 43101
#: After a rate answer from WeChat, every worker stops sending for this long.
RATE_PAUSE_SECONDS = 60
#: After this many transient failures in a row, the rest of the batch waits for the first backoff.
MAX_CONSECUTIVE_TRANSIENT = 3
#: Send slots taken from the shared rate limiter per round trip (``SendRateLimiter.acquire_up_to``).
SEND_BLOCK = 10

# Why a row went to the inbox only (kept in ``last_error`` for admins).
REASON_NO_TEMPLATE = "no_template: 该类通知未配置订阅消息模板，仅站内信"
REASON_NO_OPENID = "no_openid: 用户没有可用的微信身份，仅站内信"
REASON_NO_CONSENT = "no_consent: 用户没有剩余的订阅授权，仅站内信"
REASON_CANCELLED = "broadcast_cancelled: 群发已取消，仅站内信"


def send_limiter() -> SendRateLimiter:
    config = settings()
    return SendRateLimiter(redis_client(), config.redis_prefix, config.wechat_send_rate_per_minute)


def claim_lease_seconds() -> int:
    return settings().notify_claim_lease


def _send_safety(config: Config, lease: int) -> float:
    """The longest one send may take (token refresh + a retry); no send starts this close to the lease end."""
    return min(3 * config.wechat_timeout + 5, lease / 2)


@dataclass
class BatchReport:
    """What one delivery job did (its ids are notification ids)."""

    claimed: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    inbox_only: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retry: dict[int, list[int]] = field(default_factory=dict)  # delay in seconds → ids
    released: list[int] = field(default_factory=list)  # handed back unsent (lease nearly over)


@dataclass(frozen=True)
class _Send:
    id: int
    user_id: int
    openid: str
    template: Template
    one_time: bool
    data: dict[str, str]
    page: str | None
    attempts: int


# -- claiming --


def claim(
    ids: Sequence[int], worker: str, *, now: datetime | None = None, lease: int | None = None
) -> list[int]:
    """Atomically claim the still-pending, unclaimed, due rows among ``ids`` for ``lease`` seconds
    (``NOTIFY_CLAIM_LEASE`` by default); commits."""
    if not ids:
        return []
    now = now or utcnow()
    lease_end = now + timedelta(seconds=lease or claim_lease_seconds())
    stmt = (
        update(Notification)
        .where(
            Notification.id.in_(list(ids)),
            Notification.status == NotificationStatus.PENDING,
            or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
            or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
        )
        .values(claimed_until=lease_end, claimed_by=worker[:64], sweep_after=lease_end)
        .returning(Notification.id)
        .execution_options(synchronize_session=False)
    )
    claimed = sorted(db.session.execute(stmt).scalars())
    db.session.commit()
    return claimed


# The send loop writes through one held connection in autocommit mode: each outcome is one UPDATE
# that is durable when it returns (one round trip), where a session would also give its connection
# back to the pool at every commit and take it again, with a ping, for the next row.
Executor = Session | Connection


def _finish(ids: Iterable[int], executor: Executor | None = None, **values: Any) -> None:
    """Set ``values`` on claimed rows and drop their claim (in the current transaction)."""
    ids = list(ids)
    if not ids:
        return
    (executor or db.session).execute(
        update(Notification)
        .where(Notification.id.in_(ids), Notification.status == NotificationStatus.PENDING)
        .values(claimed_until=None, claimed_by=None, **values)
        .execution_options(synchronize_session=False)
    )


def _release(ids: Sequence[int], conn: Connection, *, not_before: datetime | None, now: datetime) -> None:
    """Hand rows back unsent (their consent reservation stays); commits."""
    grace = timedelta(seconds=settings().notify_sweep_grace)
    _finish(ids, conn, next_attempt_at=not_before, sweep_after=(not_before or now) + grace)
    conn.commit()


# -- preparing: template, openid, consent --


def _cancelled_broadcasts(rows: Sequence[Any]) -> set[int]:
    ids = {
        int(r.data["broadcast_id"])
        for r in rows
        if isinstance(r.data, dict) and isinstance(r.data.get("broadcast_id"), int)
    }
    if not ids:
        return set()
    return set(
        db.session.scalars(
            select(Broadcast.id).where(Broadcast.id.in_(ids), Broadcast.status == BroadcastStatus.CANCELLED)
        )
    )


def _reserve_one_time(user_id: int, template_id: str) -> bool:
    """Take one one-time consent (atomically); False when none is left."""
    taken = db.session.execute(
        update(SubscriptionConsent)
        .where(
            SubscriptionConsent.user_id == user_id,
            SubscriptionConsent.template_id == template_id,
            SubscriptionConsent.remaining > 0,
        )
        .values(remaining=SubscriptionConsent.remaining - 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(taken)


def _refund_one_time(user_id: int, template_id: str, executor: Executor | None = None) -> None:
    (executor or db.session).execute(
        update(SubscriptionConsent)
        .where(SubscriptionConsent.user_id == user_id, SubscriptionConsent.template_id == template_id)
        .values(remaining=SubscriptionConsent.remaining + 1)
        .execution_options(synchronize_session=False)
    )


def _prepare(claimed: Sequence[int]) -> tuple[list[_Send], dict[str, list[int]]]:
    """Decide each claimed row: what to send, or why it stays in the inbox. Commits.

    A row is sent when its kind has a template, its user can receive (an openid, active) and the
    user's consent allows it (a long-term template's standing consent, or one one-time consent
    reserved now and kept on the row); otherwise it ends ``inbox_only`` with the reason.
    """
    registry = settings().wechat_templates
    rows = _claimed_rows(claimed)
    cancelled = _cancelled_broadcasts(rows)
    long_term_ids = {t.template_id for t in registry.templates.values() if t.long_term}
    accepted_long_term = _long_term_consents(rows, registry)

    to_send: list[_Send] = []
    inbox: dict[str, list[int]] = defaultdict(list)
    reserved: dict[str, list[int]] = defaultdict(list)
    stale: list[int] = []
    for row in rows:
        template = registry.for_kind(row.kind)
        if row.template_id and (template is None or row.template_id != template.template_id):
            # A reservation made under another configuration: give it back before deciding anew.
            if row.template_id not in long_term_ids:
                _refund_one_time(row.user_id, row.template_id)
            stale.append(row.id)
            row_reserved = False
        else:
            row_reserved = bool(row.template_id)
        reason = _inbox_reason(row, template, row_reserved, cancelled, accepted_long_term)
        if reason:
            if row_reserved and template is not None and not template.long_term:
                _refund_one_time(row.user_id, template.template_id)
            inbox[reason].append(row.id)
            continue
        assert template is not None and row.openid
        if not row_reserved:
            reserved[template.template_id].append(row.id)
        to_send.append(_send_of(row, template))
    _store_decisions(stale, reserved, inbox)
    return to_send, dict(inbox)


def _claimed_rows(claimed: Sequence[int]) -> Sequence[Any]:
    """The claimed notifications with what deciding needs of their users, in id order."""
    return db.session.execute(
        select(
            Notification.id,
            Notification.user_id,
            Notification.kind,
            Notification.title,
            Notification.body,
            Notification.data,
            Notification.page,
            Notification.created_at,
            Notification.template_id,
            Notification.attempts,
            User.openid,
            User.is_active,
        )
        .join(User, User.id == Notification.user_id)
        .where(Notification.id.in_(list(claimed)))
        .order_by(Notification.id)
    ).all()


def _long_term_consents(rows: Sequence[Any], registry: TemplateRegistry) -> set[tuple[int, str]]:
    """(user, template) pairs among the rows' long-term templates that the user last accepted."""
    wanted = {(r.user_id, t.template_id) for r in rows if (t := registry.for_kind(r.kind)) and t.long_term}
    if not wanted:
        return set()
    return {
        (c.user_id, c.template_id)
        for c in db.session.execute(
            select(SubscriptionConsent.user_id, SubscriptionConsent.template_id).where(
                SubscriptionConsent.user_id.in_({u for u, _ in wanted}),
                SubscriptionConsent.template_id.in_({t for _, t in wanted}),
                SubscriptionConsent.last_answer == ConsentAnswer.ACCEPT,
            )
        )
    }


def _inbox_reason(
    row: Any,
    template: Template | None,
    row_reserved: bool,
    cancelled: set[int],
    accepted_long_term: set[tuple[int, str]],
) -> str:
    """Why the row stays in the inbox ("" to send it); reserves a one-time consent when it may send."""
    if isinstance(row.data, dict) and row.data.get("broadcast_id") in cancelled:
        return REASON_CANCELLED
    if template is None:
        return REASON_NO_TEMPLATE
    if not row.openid or not row.is_active:
        return REASON_NO_OPENID
    if template.long_term:
        return "" if (row.user_id, template.template_id) in accepted_long_term else REASON_NO_CONSENT
    if row_reserved:
        return ""
    return "" if _reserve_one_time(row.user_id, template.template_id) else REASON_NO_CONSENT


def _send_of(row: Any, template: Template) -> _Send:
    """What to send for a row: the template's fields rendered from the notification."""
    data = row.data if isinstance(row.data, dict) else {}
    return _Send(
        id=row.id,
        user_id=row.user_id,
        openid=row.openid,
        template=template,
        one_time=not template.long_term,
        data=template.render(
            title=row.title, body=row.body, data=data, created_at=row.created_at, kind=row.kind
        ),
        page=row.page or template.page,
        attempts=row.attempts,
    )


def _store_decisions(stale: list[int], reserved: dict[str, list[int]], inbox: dict[str, list[int]]) -> None:
    """Keep each new reservation on its row (forget stale ones), finish the inbox rows; commit."""
    for template_id, ids in [(None, stale), *reserved.items()]:
        if ids:
            db.session.execute(
                update(Notification)
                .where(Notification.id.in_(ids))
                .values(template_id=template_id)
                .execution_options(synchronize_session=False)
            )
    for reason, ids in inbox.items():
        _finish(ids, status=NotificationStatus.INBOX_ONLY, last_error=reason, template_id=None)
    db.session.commit()


def _backoff(config: Config, attempts: int) -> int:
    steps = config.notify_retry_backoff
    return steps[min(max(attempts - 1, 0), len(steps) - 1)]


def _is_transient(exc: WeChatError) -> bool:
    return isinstance(exc, WeChatUnavailable | WeChatRateLimited) or exc.errcode in TOKEN_ERRCODES


def _reason(exc: WeChatError) -> str:
    if isinstance(exc, WeChatUnavailable):
        return str(exc)
    return f"{exc.errcode}: {exc.errmsg}"


# Built once: the statement of every success, executed once per message sent.
_SENT = (
    update(Notification)
    .where(Notification.id == bindparam("row_id"), Notification.status == NotificationStatus.PENDING)
    .values(
        status=NotificationStatus.SENT,
        sent_at=bindparam("at"),
        attempts=Notification.attempts + 1,
        last_attempt_at=bindparam("at"),
        wechat_msgid=bindparam("msgid"),
        claimed_until=None,
        claimed_by=None,
        last_error=None,
        error_code=None,
        next_attempt_at=None,
    )
    .execution_options(synchronize_session=False)
)


def _record_success(item: _Send, result: dict[str, Any], now: datetime, conn: Connection) -> None:
    msgid = result.get("msgid")
    conn.execute(
        _SENT, {"row_id": item.id, "at": now, "msgid": str(msgid)[:32] if msgid is not None else None}
    )


def _record_failure(
    item: _Send, exc: WeChatError, now: datetime, report: BatchReport, conn: Connection
) -> None:
    """Record what WeChat's refusal of one send means for the row and the user's consent.

    Three outcomes, decided in this order:

    * **no consent** (errcode 43101): WeChat has no subscription left for the user, whatever our
      count said. The row ends ``inbox_only`` (the user still reads it in the app), the count is
      set to zero and a long-term consent is marked rejected, so no later row is tried in vain.
      Nothing is refunded: WeChat consumed nothing and our count was wrong, not spent.
    * **transient** (rate limit, a 5xx, a timeout, an expired token) with attempts left
      (``NOTIFY_MAX_ATTEMPTS``): the row stays ``pending`` with ``next_attempt_at`` after an
      exponential backoff (at least :data:`RATE_PAUSE_SECONDS` when rate-limited), and
      ``sweep_after`` a grace later so the sweeper finds it if the delayed job is lost. The
      reservation is kept on the row for the retry.
    * **final** (a permanent error, or transient ones that used up the attempts): ``failed`` with
      the reason, and a reserved one-time consent is given back, since no message reached the user.

    The row is written before the consent: were the worker to die in between, a consent would be
    under-counted (one message fewer), never over-counted (more messages than the user agreed to).
    """
    config = settings()
    attempts = item.attempts + 1
    common = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_error": _reason(exc)[:2000],
        "error_code": exc.errcode,
    }
    # The row first, then the consent: were the worker to die in between, a consent would be
    # under-counted (one message fewer), never over-counted.
    if exc.errcode == NO_CONSENT_ERRCODE:
        _finish([item.id], conn, status=NotificationStatus.INBOX_ONLY, template_id=None, **common)
        # WeChat says the user has no consent left: count says zero; a long-term one is withdrawn.
        withdrawn: dict[str, Any] = {"remaining": 0}
        if not item.one_time:
            withdrawn["last_answer"] = ConsentAnswer.REJECT
        conn.execute(
            update(SubscriptionConsent)
            .where(
                SubscriptionConsent.user_id == item.user_id,
                SubscriptionConsent.template_id == item.template.template_id,
            )
            .values(**withdrawn)
            .execution_options(synchronize_session=False)
        )
        report.inbox_only.append(item.id)
        return
    if _is_transient(exc) and attempts < config.notify_max_attempts:
        delay = _backoff(config, attempts)
        if isinstance(exc, WeChatRateLimited):
            delay = max(delay, RATE_PAUSE_SECONDS)
        due = now + timedelta(seconds=delay)
        _finish(
            [item.id],
            conn,
            next_attempt_at=due,
            sweep_after=due + timedelta(seconds=config.notify_sweep_grace),
            **common,
        )
        report.retry.setdefault(delay, []).append(item.id)
        return
    if _is_transient(exc):
        common["last_error"] = f"重试 {attempts} 次后仍失败：{common['last_error']}"[:2000]
    _finish([item.id], conn, status=NotificationStatus.FAILED, **common)
    if item.one_time:
        _refund_one_time(item.user_id, item.template.template_id, conn)
    report.failed.append(item.id)


def deliver_batch(ids: Sequence[int], *, worker: str = "worker", urgent: bool = False) -> BatchReport:
    """Deliver the given outbox rows (those still pending and unclaimed); the delivery job's body.

    Urgent rows (dispatch invitations) are claimed for a short lease (``outbox.urgent_lease``), so a
    worker killed mid-batch hands them to ``sweep(urgent=True)`` within the dispatch ring timeout.
    """
    config = settings()
    report = BatchReport()
    lease = urgent_lease(config) if urgent else config.notify_claim_lease
    # The claim holds until lease_end (counted from before the claim, so never later than the
    # database's); no send may start after `last_start`.
    lease_end = time.time() + lease
    report.claimed = claim(ids, worker, lease=lease)
    if not report.claimed:
        return report
    last_start = lease_end - _send_safety(config, lease)
    to_send, inbox = _prepare(report.claimed)
    for group in inbox.values():
        report.inbox_only.extend(group)
    limiter = send_limiter()
    gateway = wechat()
    consecutive_transient = 0
    position = slots = 0
    with db.engine.connect() as conn, gateway.token_held():
        conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            for position, item in enumerate(to_send):
                if not slots and time.time() < last_start:
                    wanted = min(SEND_BLOCK, len(to_send) - position)
                    slots = limiter.acquire_up_to(wanted, deadline=last_start)
                if time.time() >= last_start or not slots:
                    rest = [s.id for s in to_send[position:]]
                    _release(rest, conn, not_before=None, now=utcnow())
                    report.released.extend(rest)
                    break
                slots -= 1
                try:
                    result = gateway.send_subscribe_message(
                        item.openid, item.template.template_id, item.data, item.page
                    )
                except WeChatError as exc:
                    now = utcnow()
                    _record_failure(item, exc, now, report, conn)
                    conn.commit()
                    if isinstance(exc, WeChatRateLimited):
                        limiter.pause(RATE_PAUSE_SECONDS)
                        rest = [s.id for s in to_send[position + 1 :]]
                        _release(rest, conn, not_before=now + timedelta(seconds=RATE_PAUSE_SECONDS), now=now)
                        report.retry.setdefault(RATE_PAUSE_SECONDS, []).extend(rest)
                        break
                    consecutive_transient = consecutive_transient + 1 if _is_transient(exc) else 0
                    if consecutive_transient >= MAX_CONSECUTIVE_TRANSIENT:
                        delay = config.notify_retry_backoff[0]
                        rest = [s.id for s in to_send[position + 1 :]]
                        _release(rest, conn, not_before=now + timedelta(seconds=delay), now=now)
                        report.retry.setdefault(delay, []).extend(rest)
                        break
                    continue
                consecutive_transient = 0
                _record_success(item, result, utcnow(), conn)
                conn.commit()
                report.sent.append(item.id)
        except Exception:
            # Hand back the rows not yet tried; the one in flight keeps its claim until the lease ends.
            conn.rollback()
            rest = [s.id for s in to_send[position + 1 :]]
            try:
                _release(rest, conn, not_before=None, now=utcnow())
            except Exception:  # the database may be what failed: the lease then frees them
                conn.rollback()
                log.warning("could not release claimed notifications", extra={"rows": len(rest)})
            raise
    return report


# -- the sweeper, retries and the outbox at a glance --


def sweep(*, now: datetime | None = None, limit: int = 20_000, urgent: bool = False) -> list[int]:
    """Pending rows whose relay, retry job or worker was lost: push back their sweep time and return
    them for enqueueing. Commits.

    ``urgent`` sweeps only the rows of urgent kinds (run often on the dispatch queue: a dead worker's
    dispatch invitations are taken over within the ring timeout, not after the ordinary lease).
    """
    config = settings()
    now = now or utcnow()
    grace = timedelta(seconds=config.notify_sweep_grace)
    only: list[Any] = []
    if urgent:
        kinds = [k for k, t in config.wechat_templates.templates.items() if t.urgent]
        if not kinds:
            return []
        only = [Notification.kind.in_(kinds)]
        grace = min(grace, timedelta(seconds=urgent_lease(config)))
    ids = list(
        db.session.scalars(
            select(Notification.id)
            .where(
                *only,
                Notification.status == NotificationStatus.PENDING,
                or_(
                    Notification.sweep_after <= now,
                    and_(Notification.sweep_after.is_(None), Notification.created_at <= now - grace),
                ),
                or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
            )
            .order_by(Notification.id)
            .limit(limit)
        )
    )
    # Not again before a while: the job may sit in a busy queue.
    resweep = now + 5 * grace
    for start in range(0, len(ids), 1000):
        db.session.execute(
            update(Notification)
            .where(Notification.id.in_(ids[start : start + 1000]))
            .values(sweep_after=resweep)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return ids


def urgent_split(ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """(ordinary, urgent) by the template configuration of each row's kind."""
    registry = settings().wechat_templates
    urgent_kinds = {k for k, t in registry.templates.items() if t.urgent}
    if not ids or not urgent_kinds:
        return list(ids), []
    urgent = set(
        db.session.scalars(
            select(Notification.id).where(Notification.id.in_(list(ids)), Notification.kind.in_(urgent_kinds))
        )
    )
    return [i for i in ids if i not in urgent], [i for i in ids if i in urgent]


def counts_by_status() -> dict[str, int]:
    rows = db.session.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
    counts = {status.value: 0 for status in NotificationStatus}
    counts.update({status: count for status, count in rows})
    return counts


def retry_failed(*, ids: Sequence[int] | None = None, kind: str | None = None) -> int:
    """Put failed rows back to pending (attempts from zero) and enqueue them after the commit."""
    from yijing.services import outbox

    config = settings()
    now = utcnow()
    stmt = select(Notification.id).where(Notification.status == NotificationStatus.FAILED)
    if ids is not None:
        stmt = stmt.where(Notification.id.in_(list(ids)))
    if kind:
        stmt = stmt.where(Notification.kind == kind)
    found = list(db.session.scalars(stmt.order_by(Notification.id)))
    for start in range(0, len(found), 1000):
        db.session.execute(
            update(Notification)
            .where(
                Notification.id.in_(found[start : start + 1000]),
                Notification.status == NotificationStatus.FAILED,
            )
            .values(
                status=NotificationStatus.PENDING,
                attempts=0,
                next_attempt_at=None,
                claimed_until=None,
                claimed_by=None,
                sweep_after=now + timedelta(seconds=config.notify_sweep_grace),
            )
            .execution_options(synchronize_session=False)
        )
    ordinary, urgent = urgent_split(found)
    session = db.session()
    outbox.register_for_delivery(session, ordinary)
    outbox.register_for_delivery(session, urgent, urgent=True)
    db.session.commit()
    return len(found)
