"""The desk's comment moderation queue: comments under review or reported; hide and restore."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.models import CommentStatus
from yijing.pagination import Page
from yijing.services import comments as comment_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import label_of

blp = Blueprint("desk_comments", __name__, url_prefix="/api/v1/desk/comments", description="值班台：评论审核")


class CommentQueueArgsSchema(PageArgsSchema):
    status = fields.String(
        load_default=None,
        validate=validate.OneOf([s.value for s in CommentStatus]),
        metadata={"description": "不传且不按举报筛选时为待审核（review）"},
    )
    reported = fields.Boolean(load_default=False, metadata={"description": "只看有未处理举报的评论"})
    post_id = fields.Integer(load_default=None)


class HideSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


class RestoreSchema(Schema):
    reason = fields.String(load_default=None, validate=validate.Length(min=1, max=200))


class DeskCommentSchema(Schema):
    id = fields.Integer(dump_only=True)
    post_id = fields.Integer(dump_only=True)
    post_title = fields.String(dump_only=True)
    body = fields.String(dump_only=True)
    status = fields.String(dump_only=True, metadata={"description": "pending_check/review/visible/hidden"})
    status_label = label_of("comment_status", "status")
    user_id = fields.Integer(dump_only=True)
    author_name = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    check_suggest = fields.String(dump_only=True, allow_none=True)
    check_label = fields.String(dump_only=True, allow_none=True)
    checked_at = fields.DateTime(dump_only=True, allow_none=True)
    report_count = fields.Integer(dump_only=True, metadata={"description": "未处理的举报数"})
    moderation_reason = fields.String(dump_only=True, allow_none=True)
    moderated_at = fields.DateTime(dump_only=True, allow_none=True)


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(CommentQueueArgsSchema, location="query")
@blp.response(200, page_of(DeskCommentSchema))
def moderation_queue(args: dict[str, Any]) -> Page[comment_service.DeskComment]:
    """Comments awaiting a decision in your jurisdiction, oldest first."""
    return comment_service.queue(
        current_principal(),
        status=args["status"],
        reported=args["reported"],
        post_id=args["post_id"],
        cursor=args["cursor"],
        limit=args["limit"],
    )


@blp.route("/<int:comment_id>/hide", methods=["POST"])
@login_required
@idempotent
@blp.arguments(HideSchema)
@blp.response(200, DeskCommentSchema)
def hide_comment(data: dict[str, Any], comment_id: int) -> comment_service.DeskComment:
    """Hide a comment; the author is told the reason."""
    return comment_service.hide(current_principal(), current_actor(), comment_id, data["reason"])


@blp.route("/<int:comment_id>/restore", methods=["POST"])
@login_required
@idempotent
@blp.arguments(RestoreSchema)
@blp.response(200, DeskCommentSchema)
def restore_comment(data: dict[str, Any], comment_id: int) -> comment_service.DeskComment:
    """Show a comment: approve it, restore it, or dismiss its reports."""
    return comment_service.restore(current_principal(), current_actor(), comment_id, data["reason"])
