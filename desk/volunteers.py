"""Vetting volunteers, reading their personal information for a reason, verifying cards, finding
on-duty volunteers, and a volunteer's patrol tasks with their service hours. Every endpoint is
limited to the staff member's jurisdiction."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from desk.tasks import DeskAssignmentSchema
from yijing.models import Volunteer
from yijing.models.volunteer import CATEGORY_LABELS, VolunteerCategory, VolunteerStatus
from yijing.pagination import Page
from yijing.services import duty as duty_service
from yijing.services import tasks as task_service
from yijing.services import volunteers as volunteer_service
from yijing.services.volunteers import CardCheck, ForgedCard, VolunteerDetail
from yijing.web import rendered
from yijing.web.auth import (
    admit,
    current_actor,
    current_principal,
    login_required,
    login_required_in_view,
    take_pending_token,
)
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import (
    JurisdictionSummarySchema,
    ServiceTotalsSchema,
    TaskSchema,
    TeamSummarySchema,
    VolunteerSchema,
)

blp = Blueprint(
    "desk_volunteers", __name__, url_prefix="/api/v1/desk/volunteers", description="值班台：义警审核与在岗"
)

STATUSES = [s.value for s in VolunteerStatus]
CATEGORIES = [c.value for c in VolunteerCategory]
REASON = validate.Length(min=2, max=500, error="请填写理由（2–500 字）")


class VolunteerListArgsSchema(PageArgsSchema):
    status = fields.List(fields.String(validate=validate.OneOf(STATUSES)), load_default=list)
    category = fields.List(fields.String(validate=validate.OneOf(CATEGORIES)), load_default=list)
    jurisdiction_id = fields.Integer(load_default=None, metadata={"description": "只看该辖区及其下级"})
    on_duty = fields.Boolean(load_default=None)
    q = fields.String(
        load_default=None,
        validate=validate.Length(max=50),
        metadata={"description": "工作单位、脱敏姓名（如 张*三）或义警编号"},
    )


class VolunteerLookupSchema(Schema):
    id_number = fields.String(load_default=None, validate=validate.Length(max=32))
    phone = fields.String(load_default=None, validate=validate.Length(max=20))


class VolunteerHistoryEntrySchema(Schema):
    action = fields.String(dump_only=True)
    reason = fields.String(dump_only=True, allow_none=True)
    actor = fields.String(dump_only=True, allow_none=True)
    at = fields.DateTime(dump_only=True)


class IdNumberFlagSchema(Schema):
    message = fields.String(
        dump_only=True, metadata={"description": "如：此身份证号曾被驳回（曾由其他账号申请）"}
    )
    status = fields.String(dump_only=True, metadata={"description": "那份申请的状态"})
    another_account = fields.Boolean(dump_only=True, metadata={"description": "是否由其他微信账号申请"})
    applied_at = fields.DateTime(dump_only=True)
    decided_at = fields.DateTime(dump_only=True, allow_none=True)
    reason = fields.String(dump_only=True, allow_none=True, metadata={"description": "当时的审核理由"})


class DeskVolunteerSchema(VolunteerSchema):
    """A volunteer as the vetting desk sees it: with what is known of its ID number elsewhere."""

    id_number_flags = fields.Function(
        lambda v: IdNumberFlagSchema(many=True).dump(getattr(v, "id_number_flags", [])),
        dump_only=True,
        metadata={"description": "同一身份证号的其他申请：曾被驳回、撤回或由其他账号申请"},
    )


class VolunteerDetailSchema(Schema):
    volunteer = fields.Nested(DeskVolunteerSchema, dump_only=True)
    history = fields.List(fields.Nested(VolunteerHistoryEntrySchema), dump_only=True)


class VolunteerReviewSchema(Schema):
    decision = fields.String(
        required=True,
        validate=validate.OneOf(["approve", "reject"], error="请选择通过（approve）或不通过（reject）"),
    )
    reason = fields.String(required=True, validate=REASON)


class VolunteerReasonSchema(Schema):
    reason = fields.String(required=True, validate=REASON)


class VolunteerPIIReadSchema(Schema):
    reason = fields.String(
        required=True,
        validate=validate.Length(min=2, max=200, error="请填写查看事由（2–200 字）"),
        metadata={"description": "查看事由，记入审计日志"},
    )
    fields_ = fields.List(
        fields.String(validate=validate.OneOf(list(volunteer_service.PII_FIELDS))),
        data_key="fields",
        load_default=None,
        metadata={"description": "real_name / id_number / phone，默认全部"},
    )


class VolunteerPIISchema(Schema):
    volunteer_id = fields.Integer(dump_only=True)
    real_name = fields.String(dump_only=True)
    id_number = fields.String(dump_only=True)
    phone = fields.String(dump_only=True)


class CardVerifyArgsSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=500))


class CardVerifySchema(Schema):
    genuine = fields.Boolean(dump_only=True, metadata={"description": "二维码是否由本系统签发"})
    valid = fields.Boolean(dump_only=True, metadata={"description": "是否为当前有效的义警（已通过且未暂停）"})
    message = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    volunteer_number = fields.String(dump_only=True)
    name_masked = fields.String(dump_only=True)
    category = fields.String(dump_only=True)
    category_label = fields.String(dump_only=True)
    team = fields.Nested(TeamSummarySchema, dump_only=True, allow_none=True)
    community = fields.Nested(JurisdictionSummarySchema, dump_only=True)


class OnDutyArgsSchema(Schema):
    lat = fields.Float(load_default=None, validate=validate.Range(-85.05112878, 85.05112878))
    lng = fields.Float(load_default=None, validate=validate.Range(-180, 180))
    radius_m = fields.Float(
        load_default=None,
        validate=validate.Range(min=1, max=duty_service.JURISDICTION_RADIUS_M, error="半径超出范围"),
        metadata={"description": "按位置搜索时默认 3000、最大 50000；按辖区搜索时默认覆盖整个辖区"},
    )
    jurisdiction_id = fields.Integer(load_default=None, metadata={"description": "不填则为本人辖区"})
    category = fields.List(fields.String(validate=validate.OneOf(CATEGORIES)), load_default=list)
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))

    @validates_schema
    def _point(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (data.get("lat") is None) != (data.get("lng") is None):
            raise ValidationError("经纬度须同时提供", "lat")


class OnDutyItemSchema(Schema):
    volunteer_id = fields.Integer(dump_only=True)
    name_masked = fields.String(dump_only=True)
    category = fields.String(dump_only=True)
    category_label = fields.Function(lambda h: CATEGORY_LABELS.get(h.category, h.category), dump_only=True)
    jurisdiction_id = fields.Integer(dump_only=True, metadata={"description": "所在社区或网格"})
    team_id = fields.Integer(dump_only=True, allow_none=True)
    distance_m = fields.Float(dump_only=True)
    lat = fields.Float(dump_only=True)
    lng = fields.Float(dump_only=True)
    last_seen_at = fields.DateTime(dump_only=True)


class OnDutyOriginSchema(Schema):
    lat = fields.Float(dump_only=True)
    lng = fields.Float(dump_only=True)


class OnDutySchema(Schema):
    origin = fields.Nested(OnDutyOriginSchema, dump_only=True)
    radius_m = fields.Float(dump_only=True)
    items = fields.List(fields.Nested(OnDutyItemSchema), dump_only=True)


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(VolunteerListArgsSchema, location="query")
@blp.response(200, page_of(DeskVolunteerSchema))
def list_volunteers(args: dict[str, Any]) -> Page[Volunteer]:
    """Applications and volunteers in my jurisdiction, newest first, with filters."""
    cursor, limit = args.pop("cursor"), args.pop("limit")
    return volunteer_service.list_for_staff(current_principal(), args, cursor=cursor, limit=limit)


@blp.route("/lookup", methods=["POST"])
@login_required
@blp.arguments(VolunteerLookupSchema)
@blp.response(200, VolunteerSchema(many=True))
def lookup(data: dict[str, Any]) -> list[Volunteer]:
    """Find records in my jurisdiction by ID number or phone (matched by keyed hash)."""
    return volunteer_service.lookup_for_staff(current_principal(), **data)


@blp.route("/on-duty", methods=["GET"])
@login_required_in_view
@blp.arguments(OnDutyArgsSchema, location="query")
@blp.response(200, OnDutySchema)
def on_duty(args: dict[str, Any]) -> Response:
    """On-duty volunteers of my jurisdiction near a point (or its centre), nearest first."""
    # The token and the search in one Redis read, answered as OnDutySchema's bytes (yijing/web/rendered.py).
    body = duty_service.on_duty_json(
        take_pending_token(),
        admit,
        lat=args["lat"],
        lng=args["lng"],
        radius_m=args["radius_m"],
        jurisdiction_id=args["jurisdiction_id"],
        categories=args["category"],
        limit=args["limit"],
    )
    return rendered.json_response(body)


@blp.route("/verify", methods=["GET"])
@login_required
@blp.arguments(CardVerifyArgsSchema, location="query")
@blp.response(200, CardVerifySchema)
def verify(args: dict[str, Any]) -> CardCheck | ForgedCard:
    """Whether a volunteer card's QR code is genuine and the volunteer currently approved."""
    return volunteer_service.verify_card(current_principal(), args["code"])


@blp.route("/<int:volunteer_id>", methods=["GET"])
@login_required
@blp.response(200, VolunteerDetailSchema)
def get_one(volunteer_id: int) -> VolunteerDetail:
    """One volunteer (masked) with the history of decisions and reads."""
    return volunteer_service.detail_for_staff(current_principal(), volunteer_id)


@blp.route("/<int:volunteer_id>/review", methods=["POST"])
@login_required
@idempotent
@blp.arguments(VolunteerReviewSchema)
@blp.response(200, VolunteerSchema)
def review(data: dict[str, Any], volunteer_id: int) -> Volunteer:
    """Approve or reject a pending application, with a reason."""
    return volunteer_service.review(
        current_principal(), volunteer_id, data["decision"], data["reason"], current_actor()
    )


@blp.route("/<int:volunteer_id>/suspend", methods=["POST"])
@login_required
@idempotent
@blp.arguments(VolunteerReasonSchema)
@blp.response(200, VolunteerSchema)
def suspend(data: dict[str, Any], volunteer_id: int) -> Volunteer:
    """Suspend an approved volunteer, with a reason."""
    return volunteer_service.suspend(current_principal(), volunteer_id, data["reason"], current_actor())


@blp.route("/<int:volunteer_id>/reinstate", methods=["POST"])
@login_required
@idempotent
@blp.arguments(VolunteerReasonSchema)
@blp.response(200, VolunteerSchema)
def reinstate(data: dict[str, Any], volunteer_id: int) -> Volunteer:
    """Reinstate a suspended volunteer, with a reason."""
    return volunteer_service.reinstate(current_principal(), volunteer_id, data["reason"], current_actor())


# No @idempotent here on purpose: a stored replay would keep the clear values in the database.
@blp.route("/<int:volunteer_id>/pii", methods=["POST"])
@login_required
@blp.arguments(VolunteerPIIReadSchema)
@blp.response(200, VolunteerPIISchema)
def read_pii(data: dict[str, Any], volunteer_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The clear name, ID number and phone, for a stated reason (audited: who, when, why, from where)."""
    clear = volunteer_service.read_pii(
        current_principal(), volunteer_id, data["reason"], data["fields_"], current_actor()
    )
    return clear, 200, {"Cache-Control": "no-store"}


# -- a volunteer's service (their patrol tasks) --------------------------------------------------


class VolunteerTaskItemSchema(DeskAssignmentSchema):
    task = fields.Nested(TaskSchema, dump_only=True)


class VolunteerHistorySchema(Schema):
    volunteer = fields.Nested(VolunteerSchema, dump_only=True)
    service = fields.Nested(ServiceTotalsSchema, dump_only=True)
    items = fields.List(fields.Nested(VolunteerTaskItemSchema), dump_only=True)
    next_cursor = fields.String(dump_only=True, allow_none=True)


@blp.route("/<int:volunteer_id>/tasks", methods=["GET"])
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, VolunteerHistorySchema)
def volunteer_history(args: dict[str, Any], volunteer_id: int) -> task_service.VolunteerHistory:
    """A volunteer's tasks, newest first, with their service hours."""
    return task_service.volunteer_history(
        current_principal(), volunteer_id, cursor=args["cursor"], limit=args["limit"]
    )
