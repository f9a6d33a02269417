"""The logged-in user."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from yijing.services import auth as auth_service
from yijing.services import feed as feed_service
from yijing.services import points as points_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.pagination import PageArgsSchema
from yijing.web.schemas import MeSchema

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="当前用户")


@blp.route("", methods=["GET"])
@login_required
@blp.response(200, MeSchema)
def get_me() -> dict[str, Any]:
    """The user, their roles and the jurisdictions they hold them in."""
    principal = current_principal()
    return auth_service.me(principal.user_id, principal.profile)


class DistrictInSchema(Schema):
    district_id = fields.Integer(required=True, metadata={"description": "区（旗县）一级辖区的编号"})


@blp.route("/district", methods=["PUT"])
@login_required
@blp.arguments(DistrictInSchema)
@blp.response(200, MeSchema)
def set_district(data: dict[str, Any]) -> dict[str, Any]:
    """Follow a district: its posts join your feed and your messages go to its police."""
    return feed_service.set_home_district(current_principal().user_id, data["district_id"], current_actor())


class PointsEntrySchema(Schema):
    id = fields.Integer(dump_only=True)
    amount = fields.Integer(dump_only=True)
    reason = fields.String(dump_only=True, metadata={"description": "task_completed 或 clue_valid"})
    reason_label = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    clue_id = fields.Integer(dump_only=True, allow_none=True, metadata={"description": "匿名线索不显示"})
    task_id = fields.Integer(dump_only=True, allow_none=True)


class PointsLedgerSchema(Schema):
    balance = fields.Integer(dump_only=True)
    items = fields.List(fields.Nested(PointsEntrySchema), dump_only=True)
    next_cursor = fields.String(dump_only=True, allow_none=True)


@blp.route("/points", methods=["GET"])
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, PointsLedgerSchema)
def my_points(args: dict[str, Any]) -> dict[str, Any]:
    """Your points balance and what earned each entry (tasks completed, clues confirmed valid)."""
    return points_service.ledger(current_principal().user_id, cursor=args["cursor"], limit=args["limit"])
