"""Mass alerts from the desk: send, follow progress, cancel."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.extensions import limiter
from yijing.models import BroadcastAudience
from yijing.pagination import Page
from yijing.services import broadcasts as broadcast_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.ratelimit import user_key
from yijing.web.schemas import label_of

blp = Blueprint(
    "desk_broadcasts", __name__, url_prefix="/api/v1/desk/broadcasts", description="值班台：群发预警"
)


class BroadcastCreateSchema(Schema):
    jurisdiction_id = fields.Integer(required=True)
    audience = fields.String(
        required=True,
        validate=validate.OneOf([a.value for a in BroadcastAudience]),
        metadata={"description": "volunteers 辖区义警；residents 辖区居民；on_duty 半径内在岗义警"},
    )
    title = fields.String(required=True, validate=validate.Length(min=1, max=100))
    body = fields.String(load_default="", validate=validate.Length(max=2000))
    page = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))
    lat = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=-90, max=90))
    lng = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=-180, max=180))
    radius_m = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=50, max=50_000))
    rate_per_minute = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1),
        metadata={"description": "每分钟最多写入/发送的条数（不超过系统的微信发送上限）"},
    )


class JurisdictionRefSchema(Schema):
    id = fields.Integer(dump_only=True)


class BroadcastSchema(Schema):
    id = fields.Integer(dump_only=True)
    jurisdiction_id = fields.Integer(dump_only=True)
    audience = fields.String(dump_only=True)
    audience_label = label_of("broadcast_audience", "audience")
    kind = fields.String(dump_only=True)
    title = fields.String(dump_only=True)
    body = fields.String(dump_only=True)
    page = fields.String(dump_only=True, allow_none=True)
    center_lat = fields.Float(dump_only=True, allow_none=True)
    center_lng = fields.Float(dump_only=True, allow_none=True)
    radius_m = fields.Integer(dump_only=True, allow_none=True)
    rate_per_minute = fields.Integer(dump_only=True)
    status = fields.String(
        dump_only=True, metadata={"description": "queued running completed cancelled failed"}
    )
    status_label = label_of("broadcast_status", "status")
    total = fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "收件人数（开始后得出）"}
    )
    written = fields.Integer(dump_only=True, metadata={"description": "已写入站内信/发送队列的条数"})
    progress = fields.Method("_progress", dump_only=True, metadata={"description": "written / total，0 到 1"})
    created_by_id = fields.Integer(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    started_at = fields.DateTime(dump_only=True, allow_none=True)
    finished_at = fields.DateTime(dump_only=True, allow_none=True)
    cancelled_at = fields.DateTime(dump_only=True, allow_none=True)
    error = fields.String(dump_only=True, allow_none=True)

    def _progress(self, item: Any) -> float | None:
        return broadcast_service.progress(item)


@blp.route("", methods=["POST"])
@login_required
@idempotent
@limiter.limit("30/hour", key_func=user_key)
@blp.arguments(BroadcastCreateSchema)
@blp.response(201, BroadcastSchema)
def create(data: dict[str, Any]) -> Any:
    """Send an alert to everyone in a scope; the fan-out runs in a worker."""
    return broadcast_service.create(current_principal(), current_actor(), **data)


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_of(BroadcastSchema))
def list_broadcasts(args: dict[str, Any]) -> Page[Any]:
    """Broadcasts in the staff member's jurisdiction, newest first."""
    return broadcast_service.list_for(current_principal(), cursor=args["cursor"], limit=args["limit"])


@blp.route("/<int:broadcast_id>", methods=["GET"])
@login_required
@blp.response(200, BroadcastSchema)
def get_one(broadcast_id: int) -> Any:
    """One broadcast and its progress."""
    return broadcast_service.detail(current_principal(), broadcast_id)


@blp.route("/<int:broadcast_id>/cancel", methods=["POST"])
@login_required
@idempotent
@blp.response(200, BroadcastSchema)
def cancel(broadcast_id: int) -> Any:
    """Stop a broadcast; what was not yet sent stays in the inbox only."""
    return broadcast_service.cancel(current_principal(), current_actor(), broadcast_id)
