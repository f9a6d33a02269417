"""Cancelling an account (注销账号): asked for, a cooling-off period, then carried out by a job.

What carrying it out does (each step idempotent; a second run finds nothing left to do):

* tokens deleted (and their cache entries), the cached principal dropped, the WeChat openid,
  unionid, session key, phone and display name removed from the user row, which stays as a bare
  id (``cancelled_at`` set, ``is_active`` false) so that tasks, clues and figures still add up;
* the volunteer application withdrawn (accepted tasks given back, invitations declined, duty
  ended and the on-duty index entry removed) and its personal information erased;
* clues kept for the case but cut from the person (no reporter, no tracking code, photos without
  owner, the reporter's thread messages without author); comments, messages and clue replies
  de-identified (the person's name, phone and ID numbers removed from the text, comments replaced);
* the points ledger closed (its entries stay for the figures; nothing is added any more);
* notifications, subscription consents, stored idempotent answers, role grants, correction
  requests and track points deleted.

What is kept, and why, is listed in the README ("Personal information").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import delete, select, update

from yijing import pii
from yijing.actor import Actor
from yijing.errors import Conflict, Forbidden, NotFound
from yijing.extensions import db, redis_client, redis_key
from yijing.models import (
    Assignment,
    AssignmentStatus,
    AuthToken,
    Clue,
    ClueMessage,
    CluePhoto,
    Comment,
    IdempotencyRecord,
    Media,
    Message,
    MessageReply,
    Notification,
    PrivacyConsent,
    RoleGrant,
    SubscriptionConsent,
    Task,
    TrackPoint,
    User,
    UserKind,
    Volunteer,
    VolunteerCorrection,
    VolunteerStatus,
)
from yijing.models.base import utcnow
from yijing.models.clue import MessageSender
from yijing.models.volunteer import OPEN_STATUSES
from yijing.services import audit, auth, duty_index
from yijing.services import clues as clue_service
from yijing.services import tasks as task_service

log = logging.getLogger(__name__)

CANCELLED_NAME = "已注销用户"
REMOVED_TEXT = "［已删除］"
CANCELLED_COMMENT = "（该用户已注销，评论内容已删除）"
PHONE_PATTERN = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
ID_NUMBER_PATTERN = re.compile(r"(?<![0-9Xx])\d{17}[0-9Xx](?![0-9Xx])")

STATEMENT = (
    "注销账号后：\n"
    "1. 您将无法再登录本账号，登录凭证全部失效，微信账号与本服务解除绑定；\n"
    "2. 您的义警申请将被撤回，已接受但尚未签到的任务名额将被释放，正在执勤的状态将结束；"
    "已签到的任务在结束时自动签退；\n"
    "3. 您的姓名、身份证号、手机号等个人信息将被删除，仅保留法律要求保存的记录（见隐私政策）；\n"
    "4. 您提交的线索将继续由公安机关依法处理，但不再与您关联，您也无法再查看其进展；\n"
    "5. 您的评论、留言将被去除身份信息，积分清零且不再累计；服务时长等统计数字保留但不再指向您；\n"
    "6. 申请提交后有 {days} 天冷静期，冷静期内重新登录小程序即视为撤销注销；期满后注销不可恢复。"
)


def _config() -> Any:
    return current_app.config["YIJING"]


def _cooling_days() -> int:
    return int(_config().account_cancel_cooling_days)


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or user.cancelled_at is not None:
        raise NotFound("账号不存在", code="user_not_found")
    return user


def _open_volunteer(user_id: int) -> Volunteer | None:
    return db.session.scalar(select(Volunteer).where(Volunteer.open_user_id == user_id))


def duty_consequences(user_id: int) -> list[str]:
    """What cancelling does to the volunteer's duty and tasks, in words, before they confirm."""
    volunteer = _open_volunteer(user_id)
    if volunteer is None:
        return []
    said: list[str] = []
    if volunteer.on_duty:
        said.append("您正在执勤：注销生效时执勤状态将结束，您不会再收到附近的紧急任务。")
    rows = db.session.execute(
        select(Task.title, Task.starts_at, Assignment.status)
        .join(Task, Task.id == Assignment.task_id)
        .where(
            Assignment.user_id == user_id,
            Assignment.status.in_(
                [AssignmentStatus.INVITED, AssignmentStatus.ACCEPTED, AssignmentStatus.CHECKED_IN]
            ),
        )
        .order_by(Task.starts_at)
    ).all()
    for title, _starts_at, status in rows:
        if status == AssignmentStatus.ACCEPTED:
            said.append(f"您已接受任务「{title}」：注销生效时将退出该任务，名额释放给其他义警。")
        elif status == AssignmentStatus.INVITED:
            said.append(f"您收到任务「{title}」的邀请：注销生效时将视为谢绝。")
        else:
            said.append(f"您已签到任务「{title}」：任务结束时自动签退，服务时长计入统计但不再指向您。")
    return said


def state(user_id: int) -> dict[str, Any]:
    """Where the user's cancellation stands, what it does and what it would do to their tasks."""
    user = _user(user_id)
    return {
        "status": "pending" if user.cancel_requested_at else "none",
        "requested_at": user.cancel_requested_at,
        "due_at": user.cancel_due_at,
        "cooling_off_days": _cooling_days(),
        "statement": STATEMENT.format(days=_cooling_days()),
        "consequences": duty_consequences(user_id),
    }


def request(user_id: int, actor: Actor, *, acknowledged: bool) -> dict[str, Any]:
    """Ask for cancellation; it is carried out once the cooling-off period has passed.

    A volunteer on duty or holding tasks is told what it does to them first (409 with the list),
    and asks again with ``acknowledged``.
    """
    user = _user(user_id)
    if user.kind != UserKind.WECHAT:
        raise Forbidden("工作人员账号不能自行注销，请联系管理员停用", code="staff_account")
    consequences = duty_consequences(user_id)
    if consequences and not acknowledged:
        raise Conflict(
            "注销账号会影响您的执勤和任务：" + "；".join(consequences) + " 确认后请勾选“我已知晓”再提交。",
            code="cancellation_affects_duties",
            fields={"acknowledged": consequences},
        )
    if user.cancel_requested_at is None:
        now = utcnow()
        user.cancel_requested_at = now
        user.cancel_due_at = now + timedelta(days=_cooling_days())
        audit.record(
            actor, "account.cancel_request", "user", user.id, data={"due_at": user.cancel_due_at.isoformat()}
        )
        db.session.commit()
    return state(user_id)


def withdraw(user_id: int, actor: Actor, *, how: str = "request") -> bool:
    """Withdraw a pending cancellation (``how``: ``request`` or ``login``); False when none was pending.

    Runs in the caller's transaction when ``how`` is ``login`` (the login commits).
    """
    user = db.session.get(User, user_id)
    if user is None or user.cancel_requested_at is None or user.cancelled_at is not None:
        return False
    user.cancel_requested_at = None
    user.cancel_due_at = None
    audit.record(actor, "account.cancel_withdraw", "user", user.id, data={"how": how})
    if how != "login":
        db.session.commit()
    return True


def due(now: datetime | None = None, limit: int = 500) -> list[int]:
    """Users whose cooling-off period has passed."""
    now = now or utcnow()
    ids = db.session.scalars(
        select(User.id)
        .where(User.cancel_due_at.is_not(None), User.cancel_due_at <= now, User.cancelled_at.is_(None))
        .order_by(User.id)
        .limit(limit)
    ).all()
    db.session.rollback()
    return list(ids)


# -- carrying it out -------------------------------------------------------------------------------


def _scrub(text: str | None, names: Sequence[str]) -> str | None:
    if not text:
        return text
    text = PHONE_PATTERN.sub(REMOVED_TEXT, text)
    text = ID_NUMBER_PATTERN.sub(REMOVED_TEXT, text)
    for name in names:
        if name and len(name) >= 2:
            text = text.replace(name, REMOVED_TEXT)
    return text


def _known_names(user: User, volunteers: Sequence[Volunteer]) -> list[str]:
    from yijing.services.volunteers import NAME_CONTEXT

    names = [user.display_name] if user.display_name else []
    for volunteer in volunteers:
        if volunteer.real_name_enc:
            names.append(pii.decrypt(volunteer.real_name_enc, context=NAME_CONTEXT))
    return sorted(set(names), key=len, reverse=True)


def _give_back_tasks(user_id: int) -> int:
    """Accepted tasks given back and invitations declined (each commits, as the volunteer would)."""
    rows = db.session.execute(
        select(Assignment.task_id, Assignment.status).where(
            Assignment.user_id == user_id,
            Assignment.status.in_([AssignmentStatus.INVITED, AssignmentStatus.ACCEPTED]),
        )
    ).all()
    for task_id, status in rows:
        if status == AssignmentStatus.ACCEPTED:
            task_service.withdraw(user_id, task_id, "账号注销")
        else:
            task_service.decline(user_id, task_id, "账号注销")
    return len(rows)


def erase_application(volunteer: Volunteer, now: datetime) -> None:
    """Erase an application's personal information (kept: category, home, status, dates, numbers
    of the service it did). Used by cancellation and by the retention of closed applications."""
    volunteer.real_name_enc = ""
    volunteer.name_masked = "已删除"
    volunteer.id_number_enc = ""
    volunteer.id_number_hash = ""
    volunteer.id_number_masked = "已删除"
    volunteer.phone_enc = ""
    volunteer.phone_hash = ""
    volunteer.phone_masked = "已删除"
    volunteer.employer = ""
    volunteer.skills = []
    volunteer.duty_lat = None
    volunteer.duty_lng = None
    volunteer.pii_erased_at = now
    db.session.execute(delete(VolunteerCorrection).where(VolunteerCorrection.volunteer_id == volunteer.id))


def carry_out(user_id: int, actor: Actor | None = None) -> dict[str, int] | None:
    """Cancel the account now (its cooling-off period has passed); None when there is nothing to do."""
    actor = actor or Actor.system("account.cancel")
    user = db.session.get(User, user_id)
    now = utcnow()
    if (
        user is None
        or user.cancelled_at is not None
        or user.cancel_due_at is None
        or user.cancel_due_at > now
    ):
        db.session.rollback()
        return None
    given_back = _give_back_tasks(user_id)
    user = db.session.get(User, user_id)
    assert user is not None
    volunteers = db.session.scalars(select(Volunteer).where(Volunteer.user_id == user_id)).all()
    names = _known_names(user, volunteers)
    off_duty: list[int] = []
    for volunteer in volunteers:
        if volunteer.status in OPEN_STATUSES:
            volunteer.status = VolunteerStatus.WITHDRAWN
            volunteer.open_user_id = None
            volunteer.open_id_number_hash = None
            volunteer.updated_at = now
        if volunteer.on_duty:
            volunteer.on_duty = False
        off_duty.append(volunteer.id)
        volunteer.volunteer_number = None
        volunteer.decision_reason = _scrub(volunteer.decision_reason, names)
        erase_application(volunteer, now)
    from yijing.models import Team

    db.session.execute(update(Team).where(Team.captain_user_id == user_id).values(captain_user_id=None))

    # Whereabouts: the track and the exact check-in and check-out places (minutes and distance stay).
    assignment_ids = select(Assignment.id).where(Assignment.user_id == user_id).scalar_subquery()
    tracks = db.session.execute(
        delete(TrackPoint).where(TrackPoint.assignment_id.in_(assignment_ids))
    ).rowcount
    db.session.execute(
        update(Assignment)
        .where(Assignment.user_id == user_id)
        .values(
            checkin_lat=None,
            checkin_lng=None,
            checkout_lat=None,
            checkout_lng=None,
            decline_reason=None,
        )
        .execution_options(synchronize_session=False)
    )

    # Clues: kept for the case, cut from the person.
    mine = clue_service.reported_by(user_id)
    clue_ids = list(db.session.scalars(select(Clue.id).where(mine)).all())
    if clue_ids:
        db.session.execute(
            update(Clue)
            .where(Clue.id.in_(clue_ids))
            .values(
                reporter_id=None, reporter_enc=None, reporter_index=None, tracking_hash=None, submit_key=None
            )
            .execution_options(synchronize_session=False)
        )
        for message in db.session.scalars(
            select(ClueMessage).where(
                ClueMessage.clue_id.in_(clue_ids), ClueMessage.sender == MessageSender.REPORTER
            )
        ):
            message.author_id = None
            message.body = _scrub(message.body, names) or ""
        photo_ids = select(CluePhoto.media_id).where(CluePhoto.clue_id.in_(clue_ids)).scalar_subquery()
        db.session.execute(
            update(Media)
            .where(Media.id.in_(photo_ids))
            .values(owner_id=None)
            .execution_options(synchronize_session=False)
        )

    # Comments and messages: de-identified.
    comments = db.session.execute(
        update(Comment).where(Comment.user_id == user_id).values(body=CANCELLED_COMMENT)
    ).rowcount
    for message in db.session.scalars(select(Message).where(Message.user_id == user_id)):
        message.body = _scrub(message.body, names) or ""
    for reply in db.session.scalars(
        select(MessageReply)
        .join(Message, Message.id == MessageReply.message_id)
        .where(Message.user_id == user_id)
    ):
        reply.body = _scrub(reply.body, names) or ""

    # What is only useful to a live account.
    token_hashes = list(
        db.session.scalars(select(AuthToken.token_hash).where(AuthToken.user_id == user_id)).all()
    )
    db.session.execute(delete(AuthToken).where(AuthToken.user_id == user_id))
    db.session.execute(delete(Notification).where(Notification.user_id == user_id))
    db.session.execute(delete(SubscriptionConsent).where(SubscriptionConsent.user_id == user_id))
    db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.scope == f"user:{user_id}"))
    db.session.execute(delete(RoleGrant).where(RoleGrant.user_id == user_id))
    # Consent records stay as proof of what was agreed to (document, version, time), without the address.
    db.session.execute(
        update(PrivacyConsent).where(PrivacyConsent.user_id == user_id).values(ip=None, request_id=None)
    )
    db.session.execute(
        update(Media)
        .where(Media.owner_id == user_id)
        .values(owner_id=None)
        .execution_options(synchronize_session=False)
    )

    user.openid = None
    user.unionid = None
    user.username = None
    user.password_hash = None
    user.display_name = CANCELLED_NAME
    user.phone_enc = None
    user.phone_hash = None
    user.session_key_enc = None
    user.home_jurisdiction_id = None
    user.is_active = False
    user.last_login_at = None
    user.cancel_requested_at = None
    user.cancelled_at = now
    summary = {
        "tasks_given_back": given_back,
        "clues_cut": len(clue_ids),
        "comments": comments or 0,
        "track_points": tracks or 0,
    }
    audit.record(actor, "account.cancel", "user", user_id, data=summary)
    db.session.commit()
    _forget_in_redis(user_id, token_hashes, off_duty)
    log.info("account cancelled", extra={"cancelled_user": user_id, **summary})
    return summary


def _forget_in_redis(user_id: int, token_hashes: Sequence[str], volunteer_ids: Sequence[int]) -> None:
    try:
        client = redis_client()
        keys = [redis_key("tok", h) for h in token_hashes] + [redis_key("principal", user_id)]
        client.delete(*keys)
        for volunteer_id in volunteer_ids:
            duty_index.remove(volunteer_id)
    except RedisError as exc:
        # Token entries expire within minutes and the tokens are gone from the database; the duty
        # index drops entries that stop pinging.
        log.warning("cancellation: Redis cleanup failed", extra={"error": str(exc)})
    auth.forget_principal(user_id)


def carry_out_due(now: datetime | None = None) -> int:
    """Carry out every cancellation whose cooling-off period has passed (the daily job)."""
    done = 0
    for user_id in due(now):
        if carry_out(user_id) is not None:
            done += 1
    return done
