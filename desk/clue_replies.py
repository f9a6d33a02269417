"""Canned public replies for clues: the desk picks one and edits it before sending."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marshmallow import Schema, fields, validate

from yijing.models import CannedReply
from yijing.services import clues as clue_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent

blp = Blueprint(
    "desk_clue_replies", __name__, url_prefix="/api/v1/desk/clue-replies", description="值班台：线索常用回复"
)


class CannedReplySchema(Schema):
    id = fields.Integer(dump_only=True)
    jurisdiction_id = fields.Integer(required=True, metadata={"description": "在该辖区及其下级可用"})
    title = fields.String(required=True, validate=validate.Length(min=1, max=64))
    body = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class CannedReplyPatchSchema(Schema):
    title = fields.String(validate=validate.Length(min=1, max=64))
    body = fields.String(validate=validate.Length(min=1, max=1000))


@blp.route("", methods=["GET"])
@login_required
@blp.response(200, CannedReplySchema(many=True))
def list_replies() -> Sequence[CannedReply]:
    """Replies usable here: set up in my jurisdiction, below it or above it."""
    return clue_service.canned_replies(current_principal())


@blp.route("", methods=["POST"])
@login_required
@idempotent
@blp.arguments(CannedReplySchema)
@blp.response(201, CannedReplySchema)
def create_reply(data: dict[str, Any]) -> CannedReply:
    """Add a canned reply for a jurisdiction I triage."""
    return clue_service.create_canned_reply(current_principal(), current_actor(), **data)


@blp.route("/<int:reply_id>", methods=["PATCH"])
@login_required
@blp.arguments(CannedReplyPatchSchema)
@blp.response(200, CannedReplySchema)
def update_reply(data: dict[str, Any], reply_id: int) -> CannedReply:
    """Edit a canned reply of my jurisdiction."""
    return clue_service.update_canned_reply(current_principal(), current_actor(), reply_id, **data)


@blp.route("/<int:reply_id>", methods=["DELETE"])
@login_required
@blp.response(204)
def delete_reply(reply_id: int) -> None:
    """Delete a canned reply of my jurisdiction."""
    clue_service.delete_canned_reply(current_principal(), current_actor(), reply_id)
