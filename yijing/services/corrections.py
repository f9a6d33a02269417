"""Correcting a volunteer's real name, phone or ID number (PIPL art. 46), reviewed like an application.

The volunteer asks (one request open at a time); the new values are stored encrypted on the request
and shown masked; the desk of the volunteer's jurisdiction approves (the values replace the old ones)
or rejects it with a reason. Every step is audited on the volunteer, and the volunteer is told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from yijing import pii, policies
from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import CorrectionStatus, Jurisdiction, Volunteer, VolunteerCorrection
from yijing.models.base import utcnow
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, jurisdictions, outbox
from yijing.services import volunteers as volunteer_service
from yijing.services.volunteers import ID_NUMBER_CONTEXT, NAME_CONTEXT, PHONE_CONTEXT

FIELDS = ("real_name", "phone", "id_number")
LABELS = {"real_name": "姓名", "phone": "手机号", "id_number": "身份证号"}
_MASK = {"real_name": "name_masked", "phone": "phone_masked", "id_number": "id_number_masked"}


def _open_volunteer(user_id: int) -> Volunteer:
    volunteer = db.session.scalar(select(Volunteer).where(Volunteer.open_user_id == user_id))
    if volunteer is None:
        raise NotFound("您没有进行中的义警申请或义警身份，无需更正", code="no_application")
    return volunteer


def request(user_id: int, data: dict[str, Any], actor: Actor) -> VolunteerCorrection:
    """Ask to correct one or more of name, phone and ID number (validated as when applying)."""
    volunteer = _open_volunteer(user_id)
    pending = db.session.scalar(
        select(VolunteerCorrection.id).where(
            VolunteerCorrection.volunteer_id == volunteer.id,
            VolunteerCorrection.status == CorrectionStatus.PENDING,
        )
    )
    if pending is not None:
        raise Conflict("您已有一份待审核的更正申请，请等待值班台处理", code="correction_pending")
    asked = {f: (data.get(f) or "").strip() for f in FIELDS if (data.get(f) or "").strip()}
    if not asked:
        raise InvalidInput("请至少填写一项需要更正的信息", fields={f: ["至少填写一项"] for f in FIELDS})
    errors: dict[str, list[str]] = {}
    correction = VolunteerCorrection(
        volunteer_id=volunteer.id, user_id=user_id, status=CorrectionStatus.PENDING, note=data.get("note")
    )
    if "real_name" in asked:
        correction.real_name_enc = pii.encrypt(asked["real_name"], context=NAME_CONTEXT)
        correction.name_masked = pii.mask_name(asked["real_name"])
    if "phone" in asked:
        phone = volunteer_service._check_phone(asked["phone"], errors)
        if phone is not None:
            correction.phone_enc = pii.encrypt(phone, context=PHONE_CONTEXT)
            correction.phone_hash = pii.blind_index(phone, context=PHONE_CONTEXT)
            correction.phone_masked = pii.mask_phone(phone)
    if "id_number" in asked:
        identity = volunteer_service._check_id_number(asked["id_number"], user_id, errors)
        if identity is not None:
            number, digest = identity
            if digest == volunteer.id_number_hash:
                errors.setdefault("id_number", []).append("与现有身份证号相同")
            correction.id_number_enc = pii.encrypt(number, context=ID_NUMBER_CONTEXT)
            correction.id_number_hash = digest
            correction.id_number_masked = pii.mask_id_number(number)
    if errors:
        raise InvalidInput(fields=errors)
    db.session.add(correction)
    db.session.flush()
    audit.record(
        actor,
        "volunteer.correction_request",
        "volunteer",
        volunteer.id,
        data={"correction_id": correction.id, "fields": sorted(asked)},
    )
    db.session.commit()
    return correction


def mine(user_id: int) -> Sequence[VolunteerCorrection]:
    """The volunteer's correction requests, newest first."""
    return db.session.scalars(
        select(VolunteerCorrection)
        .where(VolunteerCorrection.user_id == user_id)
        .order_by(VolunteerCorrection.id.desc())
        .limit(50)
    ).all()


def _fields(correction: VolunteerCorrection) -> list[str]:
    """The fields the request asks to change (their masks stay after the decision)."""
    return [f for f in FIELDS if getattr(correction, _MASK[f])]


@dataclass(frozen=True, slots=True)
class MaskedValues:
    name_masked: str | None
    phone_masked: str | None
    id_number_masked: str | None


@dataclass(frozen=True, slots=True)
class CorrectionView:
    """A correction request for the desk: masked old and new values side by side, and what is known
    of the new ID number elsewhere (``volunteers.flag_reused_id_numbers``)."""

    id: int
    volunteer_id: int
    status: str
    fields: list[str]
    current: MaskedValues
    proposed: MaskedValues
    id_number_flags: list[dict[str, Any]]
    note: str | None
    created_at: datetime
    decided_at: datetime | None
    decision_reason: str | None


def view_for_staff(correction: VolunteerCorrection, volunteer: Volunteer) -> CorrectionView:
    """Masked old and new values side by side, and what is known of the new ID number elsewhere."""
    flags: list[dict[str, Any]] = []
    if correction.id_number_hash:
        probe = Volunteer(
            id=volunteer.id, user_id=volunteer.user_id, id_number_hash=correction.id_number_hash
        )
        volunteer_service.flag_reused_id_numbers([probe])
        flags = probe.id_number_flags  # type: ignore[attr-defined]
    return CorrectionView(
        id=correction.id,
        volunteer_id=volunteer.id,
        status=correction.status,
        fields=_fields(correction),
        current=MaskedValues(volunteer.name_masked, volunteer.phone_masked, volunteer.id_number_masked),
        proposed=MaskedValues(correction.name_masked, correction.phone_masked, correction.id_number_masked),
        id_number_flags=flags,
        note=correction.note,
        created_at=correction.created_at,
        decided_at=correction.decided_at,
        decision_reason=correction.decision_reason,
    )


def list_for_staff(
    principal: Principal, *, status: str | None, cursor: str | None, limit: int
) -> Page[CorrectionView]:
    """Correction requests of volunteers in the staff member's jurisdiction, oldest pending first."""
    paths = policies.require_somewhere(principal, Permission.VOLUNTEER_REVIEW)
    stmt = (
        select(VolunteerCorrection)
        .join(Volunteer, Volunteer.id == VolunteerCorrection.volunteer_id)
        .join(Jurisdiction, Jurisdiction.id == Volunteer.jurisdiction_id)
        .where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
    )
    if status:
        stmt = stmt.where(VolunteerCorrection.status == status)
    page = paginate(stmt, [SortKey(VolunteerCorrection.id)], lambda c: [c.id], cursor=cursor, limit=limit)
    owners = {
        v.id: v
        for v in db.session.scalars(
            select(Volunteer).where(Volunteer.id.in_({c.volunteer_id for c in page.items}))
        )
    }
    return Page(
        items=[view_for_staff(c, owners[c.volunteer_id]) for c in page.items], next_cursor=page.next_cursor
    )


def review(
    principal: Principal, correction_id: int, decision: str, reason: str, actor: Actor
) -> CorrectionView:
    """Approve (the new values replace the old ones) or reject a pending correction, with a reason."""
    correction = db.session.scalar(
        select(VolunteerCorrection).where(VolunteerCorrection.id == correction_id).with_for_update()
    )
    if correction is None:
        raise NotFound("更正申请不存在", code="correction_not_found")
    volunteer = db.session.get(Volunteer, correction.volunteer_id)
    assert volunteer is not None
    policies.require(principal, Permission.VOLUNTEER_REVIEW, volunteer.home.path)
    if correction.status != CorrectionStatus.PENDING:
        raise Conflict("该更正申请已处理", code="correction_decided")
    if decision not in {"approve", "reject"}:
        raise InvalidInput("审核结果应为 approve 或 reject", fields={"decision": ["取值无效"]})
    approved = decision == "approve"
    if approved:
        if correction.real_name_enc:
            volunteer.real_name_enc = correction.real_name_enc
            volunteer.name_masked = correction.name_masked or volunteer.name_masked
        if correction.phone_enc and correction.phone_hash:
            volunteer.phone_enc = correction.phone_enc
            volunteer.phone_hash = correction.phone_hash
            volunteer.phone_masked = correction.phone_masked or volunteer.phone_masked
        if correction.id_number_enc and correction.id_number_hash:
            volunteer.id_number_enc = correction.id_number_enc
            volunteer.id_number_hash = correction.id_number_hash
            volunteer.id_number_masked = correction.id_number_masked or volunteer.id_number_masked
            if volunteer.is_open:
                volunteer.open_id_number_hash = correction.id_number_hash
        volunteer.updated_at = utcnow()
    correction.status = CorrectionStatus.APPROVED if approved else CorrectionStatus.REJECTED
    correction.decided_at = utcnow()
    correction.decided_by_id = principal.user_id
    correction.decision_reason = reason
    # The proposed values are no longer needed once decided: applied, or refused.
    correction.real_name_enc = correction.phone_enc = correction.id_number_enc = None
    action = "volunteer.correction_approve" if approved else "volunteer.correction_reject"
    audit.record(
        actor, action, "volunteer", volunteer.id, reason=reason, data={"correction_id": correction.id}
    )
    what = "、".join(LABELS[f] for f in _fields(correction))
    outbox.notify(
        volunteer.user_id,
        "volunteer.correction",
        title="信息更正已通过" if approved else "信息更正未通过",
        body=(f"您申请更正的{what}已更新。" if approved else f"您申请更正的{what}未通过：{reason}"),
        dedupe_key=f"volunteer-correction:{correction.id}",
        data={"result": "已通过" if approved else "未通过", "reason": reason},
        page="pages/volunteer/index",
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("新的身份证号已被另一份进行中的申请使用，无法更正", code="id_number_taken") from None
    return view_for_staff(correction, volunteer)
