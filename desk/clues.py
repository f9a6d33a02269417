"""Clue triage for the desk, inside the staff member's jurisdiction."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.localtime import SHANGHAI
from yijing.models import ClueCategory, ClueStatus
from yijing.models.clue import TransferTarget
from yijing.pagination import Page
from yijing.services import clues as clue_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import ClueSummarySchema, JurisdictionSummarySchema, PhotoSchema

blp = Blueprint("desk_clues", __name__, url_prefix="/api/v1/desk/clues", description="值班台：线索研判")

STATUSES = [s.value for s in ClueStatus]


class QueueArgsSchema(PageArgsSchema):
    status = fields.List(
        fields.String(validate=validate.OneOf(STATUSES)),
        load_default=list,
        metadata={"description": "可重复；不传则为未办结的线索"},
    )
    category = fields.String(load_default=None, validate=validate.OneOf([c.value for c in ClueCategory]))
    jurisdiction_id = fields.Integer(load_default=None, metadata={"description": "只看该辖区及其下级"})
    created_from = fields.AwareDateTime(load_default=None, default_timezone=SHANGHAI)
    created_to = fields.AwareDateTime(load_default=None, default_timezone=SHANGHAI)
    has_photos = fields.Boolean(load_default=None)
    assignee = fields.String(
        load_default=None, validate=validate.OneOf(["me", "none"]), metadata={"description": "me 或 none"}
    )
    q = fields.String(
        load_default=None,
        validate=validate.Length(max=50),
        metadata={"description": "描述或地址中的文字（空格分隔多个词）"},
    )


class StaffSummarySchema(Schema):
    id = fields.Integer(dump_only=True)
    display_name = fields.String(dump_only=True)


class DeskClueItemSchema(ClueSummarySchema):
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    assignee = fields.Nested(StaffSummarySchema, dump_only=True, allow_none=True)
    assigned_at = fields.DateTime(dump_only=True, allow_none=True)
    content_flag = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "内容安全检测：pass/review/risky/skipped"}
    )
    duplicate_of_id = fields.Integer(dump_only=True, allow_none=True)


class ReporterSchema(Schema):
    display_name = fields.String(dump_only=True, allow_none=True)
    phone_masked = fields.String(dump_only=True, allow_none=True)


class EventSchema(Schema):
    id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True)
    from_status = fields.String(dump_only=True, allow_none=True)
    to_status = fields.String(dump_only=True, allow_none=True)
    public_note = fields.String(dump_only=True, allow_none=True)
    internal_note = fields.String(dump_only=True, allow_none=True)
    actor = fields.Nested(StaffSummarySchema, dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)


class DeskMessageSchema(Schema):
    id = fields.Integer(dump_only=True)
    sender = fields.String(dump_only=True, metadata={"description": "desk 或 reporter（举报人，不显示身份）"})
    author = fields.Nested(StaffSummarySchema, dump_only=True, allow_none=True)
    body = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class CandidateSchema(Schema):
    id = fields.Integer(dump_only=True)
    category = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    status_label = fields.String(dump_only=True)
    description = fields.String(dump_only=True)
    distance_m = fields.Integer(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class DeskClueSchema(DeskClueItemSchema):
    photos = fields.List(fields.Nested(PhotoSchema), dump_only=True)
    reporter = fields.Nested(
        ReporterSchema, dump_only=True, allow_none=True, metadata={"description": "匿名线索始终为空"}
    )
    content_label = fields.Integer(dump_only=True, allow_none=True)
    events = fields.List(fields.Nested(EventSchema), dump_only=True)
    messages = fields.List(fields.Nested(DeskMessageSchema), dump_only=True)
    duplicate_candidates = fields.List(fields.Nested(CandidateSchema), dump_only=True)
    allowed_transitions = fields.List(fields.String(), dump_only=True)


class TransitionSchema(Schema):
    to = fields.String(required=True, validate=validate.OneOf(STATUSES))
    public_note = fields.String(
        load_default=None, validate=validate.Length(max=1000), metadata={"description": "举报人可见"}
    )
    internal_note = fields.String(
        load_default=None, validate=validate.Length(max=2000), metadata={"description": "仅民警可见"}
    )
    canned_reply_id = fields.Integer(load_default=None, metadata={"description": "不填公开说明时使用"})
    valid = fields.Boolean(load_default=None, metadata={"description": "办结（resolved）时必填"})
    duplicate_of_id = fields.Integer(
        load_default=None, metadata={"description": "标为重复（duplicate）时必填"}
    )
    transfer_target = fields.String(
        load_default=None, validate=validate.OneOf([t.value for t in TransferTarget])
    )
    transfer_reference = fields.String(load_default=None, validate=validate.Length(max=64))


class ClueAssignmentSchema(Schema):
    assignee_id = fields.Integer(required=True, allow_none=True, metadata={"description": "null 为取消指派"})
    force = fields.Boolean(load_default=False, metadata={"description": "接手他人正在处理的线索"})


class UrgencySchema(Schema):
    urgent = fields.Boolean(required=True)


class QuestionSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=1000))


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(QueueArgsSchema, location="query")
@blp.response(200, page_of(DeskClueItemSchema))
def triage_queue(args: dict[str, Any]) -> Page[clue_service.DeskClueItem]:
    """The triage queue: urgent first, then oldest first."""
    filters = clue_service.QueueFilters(
        statuses=args["status"],
        category=args["category"],
        jurisdiction_id=args["jurisdiction_id"],
        created_from=args["created_from"],
        created_to=args["created_to"],
        has_photos=args["has_photos"],
        assignee=args["assignee"],
        q=args["q"],
    )
    return clue_service.queue(current_principal(), filters, cursor=args["cursor"], limit=args["limit"])


@blp.route("/<int:clue_id>", methods=["GET"])
@login_required
@blp.response(200, DeskClueSchema)
def get_clue(clue_id: int) -> clue_service.DeskClue:
    """A clue with its events, thread, photos and possible duplicates."""
    return clue_service.desk_clue(current_principal(), clue_id)


@blp.route("/<int:clue_id>", methods=["PATCH"])
@login_required
@blp.arguments(UrgencySchema)
@blp.response(200, DeskClueSchema)
def set_urgency(data: dict[str, Any], clue_id: int) -> clue_service.DeskClue:
    """Mark the clue urgent or not."""
    return clue_service.set_urgency(current_principal(), current_actor(), clue_id, data["urgent"])


@blp.route("/<int:clue_id>/transitions", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TransitionSchema)
@blp.response(200, DeskClueSchema)
def transition(data: dict[str, Any], clue_id: int) -> clue_service.DeskClue:
    """Move the clue to another status (409 when the state machine does not allow it)."""
    target = data.pop("to")
    return clue_service.transition(current_principal(), current_actor(), clue_id, target, **data)


@blp.route("/<int:clue_id>/assignment", methods=["POST"])
@login_required
@idempotent
@blp.arguments(ClueAssignmentSchema)
@blp.response(200, DeskClueSchema)
def assign(data: dict[str, Any], clue_id: int) -> clue_service.DeskClue:
    """Say who handles the clue; taking over someone else's needs force=true."""
    return clue_service.assign(
        current_principal(), current_actor(), clue_id, data["assignee_id"], force=data["force"]
    )


@blp.route("/<int:clue_id>/messages", methods=["POST"])
@login_required
@idempotent
@blp.arguments(QuestionSchema)
@blp.response(201, DeskClueSchema)
def ask(data: dict[str, Any], clue_id: int) -> clue_service.DeskClue:
    """Ask the reporter a question on the pseudonymous thread."""
    return clue_service.ask(current_principal(), current_actor(), clue_id, data["body"])
