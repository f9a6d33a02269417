"""Volunteers: applying, vetting, personal information, cards.

Lifecycle: ``pending → approved | rejected``, ``approved → suspended → approved``, any open
state → ``withdrawn``. Approval grants the volunteer role over the home community and joins the
community's team; suspension and withdrawal revoke the role and take the volunteer off duty.
Every decision is audited and writes an outbox row for the applicant in the same transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from redis.exceptions import RedisError
from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager, joinedload

from yijing import pii, policies, resident_id
from yijing.actor import Actor
from yijing.config import settings
from yijing.errors import Conflict, Forbidden, InvalidInput, NotFound
from yijing.extensions import db
from yijing.localtime import SHANGHAI, local_today
from yijing.models import (
    AuditEntry,
    Jurisdiction,
    PrivacyConsent,
    Role,
    Team,
    User,
    Volunteer,
    VolunteerNumberCounter,
    VolunteerStatus,
)
from yijing.models.base import utcnow
from yijing.models.jurisdiction import JurisdictionLevel
from yijing.models.volunteer import CATEGORY_LABELS, OPEN_STATUSES, SKILL_LABELS
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, auth, duty_index, jurisdictions, outbox, teams
from yijing.sql import insert_ignore
from yijing.states import StateMachine

log = logging.getLogger(__name__)

NAME_CONTEXT = "volunteer.real_name"
ID_NUMBER_CONTEXT = "volunteer.id_number"
PHONE_CONTEXT = "volunteer.phone"
PRIVACY_DOCUMENT = "volunteer_privacy"
CARD_SALT = "yijing.volunteer-card.v1"
PII_FIELDS = ("real_name", "id_number", "phone")
PRIVACY_SUMMARY = (
    "为审核您的义警资格，我们将收集您的姓名、身份证号码、手机号、职业类别、工作单位和所在社区，"
    "并在您上岗期间收集您的位置。姓名、身份证号码和手机号加密保存，对外展示时一律脱敏；"
    "只有您所在辖区有权限的民警在履职需要时可查看原文，每次查看都会记录查看人、时间、事由和来源。"
    "您可以随时撤回申请或退出义警队伍。"
)

_PHONE = re.compile(r"^1[3-9]\d{9}$")
# What a volunteer's view shows besides the row itself (many-to-one: joined into the same query).
_VIEW_LOADS = (
    joinedload(Volunteer.home),
    joinedload(Volunteer.community),
    joinedload(Volunteer.team),
    joinedload(Volunteer.consent),
)

STATUS_LABELS = {
    VolunteerStatus.PENDING: "待审核",
    VolunteerStatus.APPROVED: "已通过",
    VolunteerStatus.REJECTED: "未通过",
    VolunteerStatus.SUSPENDED: "已暂停",
    VolunteerStatus.WITHDRAWN: "已退出",
}
# pending → approved | rejected; approved ⇄ suspended; any open status → withdrawn.
STATES = StateMachine(
    "义警",
    {
        VolunteerStatus.PENDING: frozenset(
            {VolunteerStatus.APPROVED, VolunteerStatus.REJECTED, VolunteerStatus.WITHDRAWN}
        ),
        VolunteerStatus.APPROVED: frozenset({VolunteerStatus.SUSPENDED, VolunteerStatus.WITHDRAWN}),
        VolunteerStatus.SUSPENDED: frozenset({VolunteerStatus.APPROVED, VolunteerStatus.WITHDRAWN}),
    },
    STATUS_LABELS,
)


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class PrivacyTerms:
    version: str
    summary: str


@dataclass(frozen=True, slots=True)
class AgeLimits:
    min: int
    max: int


@dataclass(frozen=True, slots=True)
class FormOptions:
    """What the application form offers: categories, skills and the privacy terms to agree to."""

    categories: list[Option]
    skills: list[Option]
    privacy_terms: PrivacyTerms
    age_limits: AgeLimits


def form_options() -> FormOptions:
    """What the application form offers: categories, skills and the privacy terms to agree to."""
    config = settings()
    return FormOptions(
        categories=[Option(k, v) for k, v in CATEGORY_LABELS.items()],
        skills=[Option(k, v) for k, v in SKILL_LABELS.items()],
        privacy_terms=PrivacyTerms(config.volunteer_privacy_version, PRIVACY_SUMMARY),
        age_limits=AgeLimits(config.volunteer_min_age, config.volunteer_max_age),
    )


# -- validation ---------------------------------------------------------------------------------


def _check_id_number(number: str, user_id: int, errors: dict[str, list[str]]) -> tuple[str, str] | None:
    """The normalised number and its blind index, or None with a field error added."""
    config = settings()
    try:
        parsed = resident_id.parse(number, today=local_today())
    except resident_id.ResidentIdError as exc:
        errors.setdefault("id_number", []).append(exc.message)
        return None
    age = parsed.age_on(local_today())
    if age < config.volunteer_min_age or age > config.volunteer_max_age:
        errors.setdefault("id_number", []).append(
            f"义警年龄须在 {config.volunteer_min_age} 至 {config.volunteer_max_age} 周岁之间"
        )
        return None
    digest = pii.blind_index(parsed.number, context=ID_NUMBER_CONTEXT)
    holder = db.session.scalar(select(Volunteer.user_id).where(Volunteer.open_id_number_hash == digest))
    if holder is not None and holder != user_id:
        errors.setdefault("id_number", []).append("该身份证号码已被其他账号用于义警申请")
        return None
    return parsed.number, digest


def _check_phone(phone: str, errors: dict[str, list[str]]) -> str | None:
    phone = "".join(phone.split()).removeprefix("+86")
    if not _PHONE.match(phone):
        errors.setdefault("phone", []).append("请填写 11 位中国大陆手机号")
        return None
    return phone


def _bound_phone(user_id: int, errors: dict[str, list[str]]) -> str | None:
    user = db.session.get(User, user_id)
    if user is None or not user.phone_enc:
        errors.setdefault("phone", []).append("请填写手机号，或先授权绑定微信手机号")
        return None
    return pii.decrypt(user.phone_enc, context=auth.PHONE_CONTEXT)


def _check_home(
    jurisdiction_id: int, errors: dict[str, list[str]]
) -> tuple[Jurisdiction, Jurisdiction] | None:
    """(home, community): the home is a community or one of its grids."""
    home = db.session.get(Jurisdiction, jurisdiction_id)
    if home is None:
        errors.setdefault("jurisdiction_id", []).append("所选社区不存在")
        return None
    if home.level == JurisdictionLevel.COMMUNITY:
        return home, home
    if home.level == JurisdictionLevel.GRID and home.parent_id is not None:
        community = db.session.get(Jurisdiction, home.parent_id)
        if community is not None and community.level == JurisdictionLevel.COMMUNITY:
            return home, community
    errors.setdefault("jurisdiction_id", []).append("请选择所在的社区（村）或网格")
    return None


def _set_pii(
    volunteer: Volunteer, *, real_name: str | None, id_number: str | None, phone: str | None
) -> None:
    if real_name is not None:
        volunteer.real_name_enc = pii.encrypt(real_name, context=NAME_CONTEXT)
        volunteer.name_masked = pii.mask_name(real_name)
    if id_number is not None:
        volunteer.id_number_enc = pii.encrypt(id_number, context=ID_NUMBER_CONTEXT)
        volunteer.id_number_hash = pii.blind_index(id_number, context=ID_NUMBER_CONTEXT)
        volunteer.id_number_masked = pii.mask_id_number(id_number)
        if volunteer.is_open:
            volunteer.open_id_number_hash = volunteer.id_number_hash
    if phone is not None:
        volunteer.phone_enc = pii.encrypt(phone, context=PHONE_CONTEXT)
        volunteer.phone_hash = pii.blind_index(phone, context=PHONE_CONTEXT)
        volunteer.phone_masked = pii.mask_phone(phone)


def _set_status(volunteer: Volunteer, status: VolunteerStatus) -> None:
    """Change the status, keeping the open-application uniqueness columns in step."""
    volunteer.status = status
    if status in OPEN_STATUSES:
        volunteer.open_user_id = volunteer.user_id
        volunteer.open_id_number_hash = volunteer.id_number_hash
    else:
        volunteer.open_user_id = None
        volunteer.open_id_number_hash = None
    volunteer.updated_at = utcnow()


def _open_application(user_id: int, *, for_update: bool = False) -> Volunteer | None:
    stmt = select(Volunteer).where(Volunteer.open_user_id == user_id)
    if for_update:
        stmt = stmt.with_for_update()
    return db.session.scalar(stmt)


def _uniqueness_error(user_id: int) -> Exception:
    """What a unique-constraint failure meant: a concurrent request won the race."""
    db.session.rollback()
    if _open_application(user_id) is not None:
        return Conflict("您已有一份进行中的义警申请", code="application_exists")
    return InvalidInput(
        "该身份证号码已被其他账号用于义警申请",
        code="id_number_taken",
        fields={"id_number": ["该身份证号码已被其他账号用于义警申请"]},
    )


# -- applying -----------------------------------------------------------------------------------


def apply(user_id: int, data: dict[str, Any], actor: Actor) -> Volunteer:
    """Submit an application. Nothing is stored unless every field is valid."""
    if _open_application(user_id) is not None:
        raise Conflict("您已有一份进行中的义警申请，可在“我的申请”中修改或撤回", code="application_exists")
    config = settings()
    errors: dict[str, list[str]] = {}
    if not data.get("consent_accepted"):
        errors.setdefault("consent_accepted", []).append("请阅读并同意《义警个人信息保护条款》")
    if data.get("consent_version") != config.volunteer_privacy_version:
        errors.setdefault("consent_version", []).append("个人信息保护条款已更新，请阅读最新版本后再同意")
    identity = _check_id_number(data["id_number"], user_id, errors)
    phone = _check_phone(data["phone"], errors) if data.get("phone") else _bound_phone(user_id, errors)
    home = _check_home(data["jurisdiction_id"], errors)
    if errors or identity is None or phone is None or home is None:
        raise InvalidInput(fields=errors)

    consent = PrivacyConsent(
        user_id=user_id,
        document=PRIVACY_DOCUMENT,
        version=config.volunteer_privacy_version,
        ip=actor.ip,
        request_id=actor.request_id,
    )
    db.session.add(consent)
    db.session.flush()
    volunteer = Volunteer(
        user_id=user_id,
        category=data["category"],
        employer=data.get("employer", "").strip(),
        skills=sorted(set(data.get("skills") or [])),
        jurisdiction_id=home[0].id,
        community_id=home[1].id,
        consent_id=consent.id,
        decision_seq=0,
        on_duty=False,
    )
    _set_pii(volunteer, real_name=data["real_name"].strip(), id_number=identity[0], phone=phone)
    _set_status(volunteer, VolunteerStatus.PENDING)
    try:
        db.session.add(volunteer)
        db.session.flush()
        audit.record(
            actor,
            "volunteer.apply",
            "volunteer",
            volunteer.id,
            data={"consent_version": consent.version, "jurisdiction_id": home[0].id},
        )
        db.session.commit()
    except IntegrityError:
        raise _uniqueness_error(user_id) from None
    return volunteer


def my_application(user_id: int) -> Volunteer:
    """The open application, or else the latest closed one (one query with what it shows)."""
    volunteer = db.session.scalar(
        select(Volunteer)
        .where(Volunteer.user_id == user_id)
        .options(*_VIEW_LOADS)
        .order_by(Volunteer.open_user_id.is_(None), Volunteer.id.desc())
        .limit(1)
    )
    if volunteer is None:
        raise NotFound("您还没有提交义警申请", code="no_application")
    return volunteer


def update_application(user_id: int, changes: dict[str, Any], actor: Actor) -> Volunteer:
    """Edit a pending application (any subset of the application's fields)."""
    volunteer = _open_application(user_id, for_update=True)
    if volunteer is None:
        raise NotFound("您还没有进行中的义警申请", code="no_application")
    if volunteer.status != VolunteerStatus.PENDING:
        raise Conflict("申请已审核，不能再修改；如需变更请联系所在社区的联络民警", code="not_pending")
    errors: dict[str, list[str]] = {}
    identity = _check_id_number(changes["id_number"], user_id, errors) if "id_number" in changes else None
    phone = _check_phone(changes["phone"], errors) if changes.get("phone") else None
    home = _check_home(changes["jurisdiction_id"], errors) if "jurisdiction_id" in changes else None
    if errors:
        raise InvalidInput(fields=errors)
    if "category" in changes:
        volunteer.category = changes["category"]
    if "employer" in changes:
        volunteer.employer = changes["employer"].strip()
    if "skills" in changes:
        volunteer.skills = sorted(set(changes["skills"] or []))
    if home is not None:
        volunteer.jurisdiction_id, volunteer.community_id = home[0].id, home[1].id
    real_name = changes["real_name"].strip() if changes.get("real_name") else None
    _set_pii(volunteer, real_name=real_name, id_number=identity[0] if identity else None, phone=phone)
    volunteer.updated_at = utcnow()
    audit.record(actor, "volunteer.update", "volunteer", volunteer.id, data={"fields": sorted(changes)})
    try:
        db.session.commit()
    except IntegrityError:
        raise _uniqueness_error(user_id) from None
    return volunteer


def withdraw(user_id: int, reason: str | None, actor: Actor) -> Volunteer:
    """Withdraw the open application, or leave the corps; takes effect at once."""
    volunteer = _open_application(user_id, for_update=True)
    if volunteer is None:
        raise NotFound("您没有进行中的义警申请", code="no_application")
    was_approved = volunteer.status == VolunteerStatus.APPROVED
    _set_status(volunteer, VolunteerStatus.WITHDRAWN)
    went_off_duty = _end_duty(volunteer)
    teams.clear_captain_if(volunteer.team_id, volunteer.user_id)
    audit.record(actor, "volunteer.withdraw", "volunteer", volunteer.id, reason=reason)
    if was_approved:
        auth.revoke_role(volunteer.user_id, Role.VOLUNTEER, volunteer.community_id, actor)
    db.session.commit()
    auth.forget_principal(volunteer.user_id)
    _drop_from_index(volunteer.id, went_off_duty)
    return volunteer


# -- duty helpers used by decisions ---------------------------------------------------------------


def _end_duty(volunteer: Volunteer) -> bool:
    if not volunteer.on_duty:
        return False
    volunteer.on_duty = False
    return True


def _drop_from_index(volunteer_id: int, needed: bool) -> None:
    """After the commit: take the volunteer out of the on-duty index (a failure is logged; the
    index drops them anyway within the ping window, and pings are refused from now on)."""
    if not needed:
        return
    try:
        duty_index.remove(volunteer_id)
    except RedisError as exc:
        log.warning(
            "could not remove from the duty index", extra={"volunteer_id": volunteer_id, "error": str(exc)}
        )


# -- the desk -----------------------------------------------------------------------------------


def _load_for_staff(
    principal: Principal, volunteer_id: int, permission: Permission, *, for_update: bool = False
) -> Volunteer:
    stmt = select(Volunteer).where(Volunteer.id == volunteer_id)
    if for_update:
        stmt = stmt.with_for_update()
    volunteer = db.session.scalar(stmt)
    if volunteer is None:
        raise NotFound("义警不存在", code="volunteer_not_found")
    policies.require(principal, permission, volunteer.home.path)
    return volunteer


def _staff_list_query(principal: Principal, filters: dict[str, Any]) -> Select[Any]:
    paths = policies.require_somewhere(principal, Permission.VOLUNTEER_REVIEW)
    if filters.get("jurisdiction_id") is not None:
        root = jurisdictions.get(filters["jurisdiction_id"])
        policies.require(principal, Permission.VOLUNTEER_REVIEW, root.path)
        paths = [root.path]
    stmt = (
        select(Volunteer)
        .join(Jurisdiction, Jurisdiction.id == Volunteer.jurisdiction_id)
        .where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
        # One query: the home comes with the join that filters by it, the rest are many-to-one joins.
        .options(
            contains_eager(Volunteer.home),
            joinedload(Volunteer.community),
            joinedload(Volunteer.team),
            joinedload(Volunteer.consent),
        )
    )
    if filters.get("status"):
        stmt = stmt.where(Volunteer.status.in_(filters["status"]))
    if filters.get("category"):
        stmt = stmt.where(Volunteer.category.in_(filters["category"]))
    if filters.get("on_duty") is not None:
        stmt = stmt.where(Volunteer.on_duty.is_(filters["on_duty"]))
    text = (filters.get("q") or "").strip()
    if text:
        stmt = stmt.where(
            or_(
                Volunteer.employer.icontains(text, autoescape=True),
                Volunteer.name_masked.contains(text, autoescape=True),
                Volunteer.volunteer_number == text.upper(),
            )
        )
    return stmt


def list_for_staff(
    principal: Principal, filters: dict[str, Any], *, cursor: str | None, limit: int
) -> Page[Volunteer]:
    """Applications and volunteers in the staff member's jurisdiction, newest first, each with
    ``id_number_flags`` (see :func:`flag_reused_id_numbers`)."""
    page = paginate(
        _staff_list_query(principal, filters),
        [SortKey(Volunteer.created_at, descending=True), SortKey(Volunteer.id, descending=True)],
        lambda v: [v.created_at, v.id],
        cursor=cursor,
        limit=limit,
    )
    flag_reused_id_numbers(page.items)
    return page


REUSE_CLOSED = frozenset({VolunteerStatus.REJECTED, VolunteerStatus.WITHDRAWN})


def flag_reused_id_numbers(volunteers: Sequence[Volunteer]) -> None:
    """Set ``id_number_flags`` on each: the other applications with the same ID number (matched by
    blind index, whatever the jurisdiction) that were rejected or withdrawn, or made by another
    WeChat account, with the earlier decision and its reason, so that the reviewer decides knowingly.

    One query for the whole page. The flags name no other applicant (no id, no name).
    """
    hashes = {v.id_number_hash for v in volunteers if v.id_number_hash}
    others: dict[str, list[Volunteer]] = {}
    if hashes:
        for other in db.session.scalars(
            select(Volunteer).where(Volunteer.id_number_hash.in_(sorted(hashes))).order_by(Volunteer.id)
        ):
            others.setdefault(other.id_number_hash, []).append(other)
    for volunteer in volunteers:
        flags = []
        for other in others.get(volunteer.id_number_hash, []) if volunteer.id_number_hash else []:
            if other.id == volunteer.id:
                continue
            another_account = other.user_id != volunteer.user_id
            if other.status == VolunteerStatus.REJECTED:
                message = "此身份证号曾被驳回"
            elif other.status == VolunteerStatus.WITHDRAWN:
                message = "此身份证号的申请曾被撤回"
            elif another_account:
                message = "此身份证号曾由其他账号申请"
            else:
                continue
            if another_account and other.status in REUSE_CLOSED:
                message += "（曾由其他账号申请）"
            flags.append(
                {
                    "message": message,
                    "status": other.status,
                    "another_account": another_account,
                    "applied_at": other.created_at,
                    "decided_at": other.decided_at or other.updated_at,
                    "reason": other.decision_reason,
                }
            )
        volunteer.id_number_flags = flags  # type: ignore[attr-defined]


def lookup_for_staff(principal: Principal, *, id_number: str | None, phone: str | None) -> list[Volunteer]:
    """Find records by ID number or phone through their blind indexes (never the clear value)."""
    if not id_number and not phone:
        raise InvalidInput("请填写身份证号码或手机号", fields={"id_number": ["二选一必填"]})
    stmt = _staff_list_query(principal, {})
    if id_number:
        digest = pii.blind_index(resident_id.normalise(id_number), context=ID_NUMBER_CONTEXT)
        stmt = stmt.where(Volunteer.id_number_hash == digest)
    if phone:
        normalised = "".join(phone.split()).removeprefix("+86")
        stmt = stmt.where(Volunteer.phone_hash == pii.blind_index(normalised, context=PHONE_CONTEXT))
    return list(db.session.scalars(stmt.order_by(Volunteer.id.desc()).limit(50)))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One decision about a volunteer, or one read of their personal information."""

    action: str
    reason: str | None
    actor: str | None  # the staff member's display name
    at: datetime


@dataclass(frozen=True, slots=True)
class VolunteerDetail:
    volunteer: Volunteer
    history: list[HistoryEntry]


def detail_for_staff(principal: Principal, volunteer_id: int) -> VolunteerDetail:
    """A volunteer with the history of decisions and reads (masked personal information)."""
    volunteer = _load_for_staff(principal, volunteer_id, Permission.VOLUNTEER_REVIEW)
    flag_reused_id_numbers([volunteer])
    entries = db.session.scalars(
        select(AuditEntry)
        .where(AuditEntry.target_type == "volunteer", AuditEntry.target_id == str(volunteer.id))
        .order_by(AuditEntry.id)
    ).all()
    names = {
        u.id: u.display_name
        for u in db.session.scalars(
            select(User).where(User.id.in_({e.actor_id for e in entries if e.actor_id}))
        )
    }
    return VolunteerDetail(
        volunteer=volunteer,
        history=[
            HistoryEntry(
                action=e.action,
                reason=e.reason,
                actor=names.get(e.actor_id) if e.actor_id else None,
                at=e.created_at,
            )
            for e in entries
        ],
    )


#: The decision as its subscribe message shows it (a phrase: at most five Chinese characters).
DECISION_RESULTS = {"approve": "已通过", "reject": "未通过", "suspend": "已暂停", "reinstate": "已恢复"}


def _record_decision(
    volunteer: Volunteer, actor: Actor, action: str, reason: str, *, title: str, body: str
) -> None:
    volunteer.decision_seq += 1
    volunteer.decided_at = utcnow()
    volunteer.decided_by_id = actor.user_id
    volunteer.decision_reason = reason
    audit.record(actor, f"volunteer.{action}", "volunteer", volunteer.id, reason=reason)
    outbox.notify(
        volunteer.user_id,
        f"volunteer.{action}",
        title=title,
        body=body,
        dedupe_key=f"volunteer:{volunteer.id}:decision:{volunteer.decision_seq}",
        data={
            "volunteer_id": volunteer.id,
            "status": volunteer.status,
            "result": DECISION_RESULTS[action],
            "reason": reason,
            "decided_at": volunteer.decided_at.isoformat(),
        },
        page="pages/volunteer/status/index",
    )


def _next_number(now: datetime) -> str:
    """The next volunteer number of the year (Asia/Shanghai), e.g. BTYJ-2026-000123."""
    year = now.astimezone(SHANGHAI).year
    insert_ignore(db.session(), VolunteerNumberCounter, {"year": year, "last": 0})
    last = db.session.execute(
        update(VolunteerNumberCounter)
        .where(VolunteerNumberCounter.year == year)
        .values(last=VolunteerNumberCounter.last + 1)
        .returning(VolunteerNumberCounter.last)
    ).scalar_one()
    return f"{settings().volunteer_number_prefix}-{year}-{last:06d}"


def review(principal: Principal, volunteer_id: int, decision: str, reason: str, actor: Actor) -> Volunteer:
    """Approve or reject a pending application."""
    volunteer = _load_for_staff(principal, volunteer_id, Permission.VOLUNTEER_REVIEW, for_update=True)
    to = VolunteerStatus.REJECTED if decision == "reject" else VolunteerStatus.APPROVED
    STATES.require(volunteer.status, to, action="审核", only_from=[VolunteerStatus.PENDING])
    if decision == "reject":
        _set_status(volunteer, VolunteerStatus.REJECTED)
        _record_decision(
            volunteer, actor, "reject", reason, title="义警申请未通过", body=f"未通过原因：{reason}"
        )
        db.session.commit()
        return volunteer
    _set_status(volunteer, VolunteerStatus.APPROVED)
    if volunteer.volunteer_number is None:
        volunteer.volunteer_number = _next_number(utcnow())
    if volunteer.approved_at is None:
        volunteer.approved_at = utcnow()
    team = teams.ensure_team(volunteer.community)
    volunteer.team_id = team.id
    _record_decision(
        volunteer,
        actor,
        "approve",
        reason,
        title="义警申请已通过",
        body=f"欢迎加入{team.name}，您的义警编号为 {volunteer.volunteer_number}",
    )
    # grant_role commits the session: the status, audit entry, outbox row and grant go together.
    auth.grant_role(volunteer.user_id, Role.VOLUNTEER, volunteer.community_id, actor)
    db.session.commit()
    auth.forget_principal(volunteer.user_id)
    return volunteer


def suspend(principal: Principal, volunteer_id: int, reason: str, actor: Actor) -> Volunteer:
    """Suspend an approved volunteer: off duty, role revoked, card no longer valid."""
    volunteer = _load_for_staff(principal, volunteer_id, Permission.VOLUNTEER_REVIEW, for_update=True)
    STATES.require(volunteer.status, VolunteerStatus.SUSPENDED, action="暂停")
    _set_status(volunteer, VolunteerStatus.SUSPENDED)
    went_off_duty = _end_duty(volunteer)
    teams.clear_captain_if(volunteer.team_id, volunteer.user_id)
    _record_decision(volunteer, actor, "suspend", reason, title="义警资格已暂停", body=f"暂停原因：{reason}")
    # revoke_role commits the session together with the changes above.
    auth.revoke_role(volunteer.user_id, Role.VOLUNTEER, volunteer.community_id, actor)
    db.session.commit()
    _drop_from_index(volunteer.id, went_off_duty)
    return volunteer


def reinstate(principal: Principal, volunteer_id: int, reason: str, actor: Actor) -> Volunteer:
    """Give a suspended volunteer their place back."""
    volunteer = _load_for_staff(principal, volunteer_id, Permission.VOLUNTEER_REVIEW, for_update=True)
    STATES.require(
        volunteer.status, VolunteerStatus.APPROVED, action="恢复", only_from=[VolunteerStatus.SUSPENDED]
    )
    _set_status(volunteer, VolunteerStatus.APPROVED)
    _record_decision(
        volunteer, actor, "reinstate", reason, title="义警资格已恢复", body=f"恢复说明：{reason}"
    )
    auth.grant_role(volunteer.user_id, Role.VOLUNTEER, volunteer.community_id, actor)
    db.session.commit()
    auth.forget_principal(volunteer.user_id)
    return volunteer


def read_pii(
    principal: Principal, volunteer_id: int, reason: str, fields: list[str] | None, actor: Actor
) -> dict[str, Any]:
    """The clear personal information, for a stated reason; every read is audited."""
    volunteer = _load_for_staff(principal, volunteer_id, Permission.VOLUNTEER_PII)
    wanted = [f for f in PII_FIELDS if f in (fields or PII_FIELDS)]
    clear: dict[str, Any] = {"volunteer_id": volunteer.id}
    if "real_name" in wanted:
        clear["real_name"] = pii.decrypt(volunteer.real_name_enc, context=NAME_CONTEXT)
    if "id_number" in wanted:
        clear["id_number"] = pii.decrypt(volunteer.id_number_enc, context=ID_NUMBER_CONTEXT)
    if "phone" in wanted:
        clear["phone"] = pii.decrypt(volunteer.phone_enc, context=PHONE_CONTEXT)
    audit.record(
        actor, "volunteer.read_pii", "volunteer", volunteer.id, reason=reason, data={"fields": wanted}
    )
    db.session.commit()
    return clear


# -- the card -----------------------------------------------------------------------------------


def _card_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(settings().secret_key, salt=CARD_SALT)


@dataclass(frozen=True, slots=True)
class Card:
    """The volunteer card: number, masked name, category, team and a signed QR payload."""

    volunteer_number: str
    name_masked: str
    category: str
    category_label: str
    status: str
    team: Team | None
    community: Jurisdiction
    qr_payload: str


def card(user_id: int) -> Card:
    """The volunteer card: number, masked name, category, team and a signed QR payload."""
    volunteer = _open_application(user_id)
    if volunteer is None or volunteer.volunteer_number is None or volunteer.status == VolunteerStatus.PENDING:
        raise Conflict("审核通过后才有义警证", code="card_unavailable")
    return Card(
        volunteer_number=volunteer.volunteer_number,
        name_masked=volunteer.name_masked,
        category=volunteer.category,
        category_label=CATEGORY_LABELS.get(volunteer.category, volunteer.category),
        status=volunteer.status,
        team=volunteer.team,
        community=volunteer.community,
        qr_payload=_card_serializer().dumps({"v": volunteer.id, "n": volunteer.volunteer_number}),
    )


@dataclass(frozen=True, slots=True)
class ForgedCard:
    """A QR code this system did not sign, or for a card that does not exist: nothing more to say."""

    message: str
    genuine: bool = False
    valid: bool = False


@dataclass(frozen=True, slots=True)
class CardCheck:
    """A genuine card: whether its volunteer is currently approved, and who it is (masked)."""

    valid: bool
    message: str
    status: str
    volunteer_number: str
    name_masked: str
    category: str
    category_label: str
    team: Team | None
    community: Jurisdiction
    genuine: bool = True


def verify_card(principal: Principal, code: str) -> CardCheck | ForgedCard:
    """Whether a card's QR code is genuine and its volunteer is currently approved."""
    policies.require_somewhere(principal, Permission.VOLUNTEER_REVIEW)
    try:
        payload = _card_serializer().loads(code)
        volunteer_id, number = int(payload["v"]), str(payload["n"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return ForgedCard("义警证无效：二维码不是本系统签发的")
    volunteer = db.session.get(Volunteer, volunteer_id)
    if volunteer is None or volunteer.volunteer_number != number:
        return ForgedCard("义警证无效：查无此证")
    valid = volunteer.status == VolunteerStatus.APPROVED
    label = STATUS_LABELS[VolunteerStatus(volunteer.status)]
    return CardCheck(
        valid=valid,
        message="义警证有效" if valid else f"义警证已失效（{label}）",
        status=volunteer.status,
        volunteer_number=volunteer.volunteer_number,
        name_masked=volunteer.name_masked,
        category=volunteer.category,
        category_label=CATEGORY_LABELS.get(volunteer.category, volunteer.category),
        team=volunteer.team,
        community=volunteer.community,
    )


def ensure_approved(volunteer: Volunteer | None) -> Volunteer:
    """The volunteer, if approved and not suspended (for going on duty and similar)."""
    if volunteer is None:
        raise NotFound("您还没有提交义警申请", code="no_application")
    if volunteer.status != VolunteerStatus.APPROVED:
        raise Forbidden("只有审核通过且未被暂停的义警才能上岗", code="volunteer_not_approved")
    return volunteer
