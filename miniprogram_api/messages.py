"""Messages to the police (留言): a resident writes to their district's police and reads the answers."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.config import settings
from yijing.extensions import limiter
from yijing.pagination import Page
from yijing.services import messages as message_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.ratelimit import user_key
from yijing.web.schemas import MessageSchema

blp = Blueprint("messages", __name__, url_prefix="/api/v1/messages", description="给民警留言")


class MessageInSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=message_service.MAX_LENGTH))
    district_id = fields.Integer(
        load_default=None, metadata={"description": "发给哪个区（旗县）的民警；不传则发给本人所在区"}
    )
    publish_consent = fields.Boolean(
        load_default=False, metadata={"description": "同意民警将问题和答复（可删去个人信息后）公开为问答"}
    )


class ConsentSchema(Schema):
    publish_consent = fields.Boolean(required=True)


def _message_limit() -> str:
    return settings().message_rate_limit


@blp.route("", methods=["POST"])
@login_required
@idempotent
@limiter.limit(_message_limit, key_func=user_key)
@blp.arguments(MessageInSchema)
@blp.response(201, MessageSchema)
def create_message(data: dict[str, Any]) -> message_service.MessageDetail:
    """Leave a message for the police of your district."""
    return message_service.create(
        current_principal().user_id,
        data["body"],
        district_id=data["district_id"],
        publish_consent=data["publish_consent"],
    )


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_of(MessageSchema))
def list_messages(args: dict[str, Any]) -> Page[message_service.MessageView]:
    """Your messages, newest first."""
    return message_service.list_mine(current_principal().user_id, cursor=args["cursor"], limit=args["limit"])


@blp.route("/<int:message_id>", methods=["GET"])
@login_required
@blp.response(200, MessageSchema)
def get_message(message_id: int) -> message_service.MessageDetail:
    """One of your messages with the police's replies."""
    return message_service.get_mine(current_principal().user_id, message_id)


@blp.route("/<int:message_id>/consent", methods=["PUT"])
@login_required
@blp.arguments(ConsentSchema)
@blp.response(200, MessageSchema)
def set_consent(data: dict[str, Any], message_id: int) -> message_service.MessageDetail:
    """Agree (or no longer agree) to the message and its answer being published as a Q&A."""
    return message_service.set_consent(
        current_principal().user_id, message_id, data["publish_consent"], current_actor()
    )
