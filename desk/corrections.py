"""Vetting requests to correct a volunteer's name, phone or ID number (like an application)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.pagination import Page
from yijing.services import corrections as correction_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of

blp = Blueprint(
    "desk_corrections",
    __name__,
    url_prefix="/api/v1/desk/volunteer-corrections",
    description="值班台：义警信息更正审核",
)


class CorrectionArgsSchema(PageArgsSchema):
    status = fields.String(
        load_default="pending", validate=validate.OneOf(["pending", "approved", "rejected"])
    )


class MaskedSchema(Schema):
    name_masked = fields.String(dump_only=True, allow_none=True)
    phone_masked = fields.String(dump_only=True, allow_none=True)
    id_number_masked = fields.String(dump_only=True, allow_none=True)


class FlagSchema(Schema):
    message = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    another_account = fields.Boolean(dump_only=True)
    applied_at = fields.DateTime(dump_only=True)
    decided_at = fields.DateTime(dump_only=True, allow_none=True)
    reason = fields.String(dump_only=True, allow_none=True)


class DeskCorrectionSchema(Schema):
    id = fields.Integer(dump_only=True)
    volunteer_id = fields.Integer(dump_only=True)
    status = fields.String(dump_only=True)
    fields_ = fields.List(fields.String(), dump_only=True, data_key="fields", attribute="fields")
    current = fields.Nested(MaskedSchema, dump_only=True)
    proposed = fields.Nested(MaskedSchema, dump_only=True)
    id_number_flags = fields.List(
        fields.Nested(FlagSchema), dump_only=True, metadata={"description": "新身份证号在其他申请中的情况"}
    )
    note = fields.String(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    decided_at = fields.DateTime(dump_only=True, allow_none=True)
    decision_reason = fields.String(dump_only=True, allow_none=True)


class CorrectionReviewSchema(Schema):
    decision = fields.String(
        required=True, validate=validate.OneOf(["approve", "reject"], error="审核结果应为 approve 或 reject")
    )
    reason = fields.String(
        required=True, validate=validate.Length(min=2, max=500, error="请填写 2–500 字的理由")
    )


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(CorrectionArgsSchema, location="query")
@blp.response(200, page_of(DeskCorrectionSchema))
def list_corrections(args: dict[str, Any]) -> Page[correction_service.CorrectionView]:
    """Correction requests of volunteers in my jurisdiction (masked old and new values)."""
    return correction_service.list_for_staff(
        current_principal(), status=args["status"], cursor=args["cursor"], limit=args["limit"]
    )


@blp.route("/<int:correction_id>/review", methods=["POST"])
@login_required
@idempotent
@blp.arguments(CorrectionReviewSchema)
@blp.response(200, DeskCorrectionSchema)
def review(data: dict[str, Any], correction_id: int) -> correction_service.CorrectionView:
    """Approve (the new values replace the old) or reject a correction, with a reason."""
    return correction_service.review(
        current_principal(), correction_id, data["decision"], data["reason"], current_actor()
    )
