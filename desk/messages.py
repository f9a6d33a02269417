"""The desk's inbox of messages to the police: reply, close, publish as a Q&A."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.models import MessageStatus
from yijing.pagination import Page
from yijing.services import messages as message_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import MessageReplySchema, MessageSchema

blp = Blueprint("desk_messages", __name__, url_prefix="/api/v1/desk/messages", description="值班台：群众留言")


class InboxArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf([s.value for s in MessageStatus]))
    q = fields.String(
        load_default=None, validate=validate.Length(max=50), metadata={"description": "留言中的文字"}
    )


class DeskReplySchema(MessageReplySchema):
    author_id = fields.Integer(dump_only=True)


class PoliceMessageDeskSchema(MessageSchema):
    user_id = fields.Integer(dump_only=True)
    user_name = fields.String(dump_only=True)
    replies = fields.List(fields.Nested(DeskReplySchema), dump_only=True)


class ReplyInSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=message_service.MAX_LENGTH))


class CloseSchema(Schema):
    reason = fields.String(load_default=None, validate=validate.Length(max=200))


class PublishQASchema(Schema):
    title = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    question = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=message_service.MAX_LENGTH),
        metadata={"description": "公开的问题文字（可删去个人信息）；不传则用留言原文"},
    )
    answer = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=message_service.MAX_LENGTH),
        metadata={"description": "公开的答复文字；不传则用最后一条回复"},
    )


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(InboxArgsSchema, location="query")
@blp.response(200, page_of(PoliceMessageDeskSchema))
def inbox(args: dict[str, Any]) -> Page[message_service.DeskMessage]:
    """Messages to the districts of your jurisdiction, newest first."""
    return message_service.inbox(
        current_principal(), status=args["status"], q=args["q"], cursor=args["cursor"], limit=args["limit"]
    )


@blp.route("/<int:message_id>", methods=["GET"])
@login_required
@blp.response(200, PoliceMessageDeskSchema)
def get_message(message_id: int) -> message_service.DeskMessageDetail:
    """One message with its replies."""
    return message_service.desk_get(current_principal(), message_id)


@blp.route("/<int:message_id>/replies", methods=["POST"])
@login_required
@idempotent
@blp.arguments(ReplyInSchema)
@blp.response(201, PoliceMessageDeskSchema)
def reply(data: dict[str, Any], message_id: int) -> message_service.DeskMessageDetail:
    """Reply to the message; the resident is notified."""
    return message_service.reply(current_principal(), current_actor(), message_id, data["body"])


@blp.route("/<int:message_id>/close", methods=["POST"])
@login_required
@idempotent
@blp.arguments(CloseSchema)
@blp.response(200, PoliceMessageDeskSchema)
def close(data: dict[str, Any], message_id: int) -> message_service.DeskMessageDetail:
    """Close the message."""
    return message_service.close(current_principal(), current_actor(), message_id, data["reason"])


@blp.route("/<int:message_id>/publish-qa", methods=["POST"])
@login_required
@idempotent
@blp.arguments(PublishQASchema)
@blp.response(201, PoliceMessageDeskSchema)
def publish_qa(data: dict[str, Any], message_id: int) -> message_service.DeskMessageDetail:
    """Publish the question and answer as a public Q&A (needs the resident's consent)."""
    return message_service.publish_qa(current_principal(), current_actor(), message_id, **data)
