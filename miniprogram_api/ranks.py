"""A volunteer's own rank by service hours and points."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_dump

from yijing.services import reports as report_service
from yijing.web.auth import current_principal, login_required
from yijing.web.contract import Blueprint

blp = Blueprint("volunteer_rank", __name__, url_prefix="/api/v1/volunteers", description="义警：我的排名")


class RankArgsSchema(Schema):
    from_ = fields.Date(data_key="from", load_default=None, metadata={"description": "默认本月1日"})
    to = fields.Date(load_default=None)


class RankPartSchema(Schema):
    value = fields.Integer()
    rank = fields.Integer(allow_none=True)
    of = fields.Integer()
    service_hours = fields.Float()

    @post_dump
    def _hours_only(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """Only the hours part carries ``service_hours``."""
        if data.get("service_hours") is None:
            data.pop("service_hours", None)
        return data


class RankScopeSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    level = fields.String()
    key = fields.String()


class RankSchema(Schema):
    scope = fields.Nested(RankScopeSchema)
    from_ = fields.Date(data_key="from", attribute="first")
    to = fields.Date(attribute="last")
    name_masked = fields.String()
    hours = fields.Nested(RankPartSchema)
    points = fields.Nested(RankPartSchema)


@blp.route("/me/rank", methods=["GET"])
@login_required
@blp.arguments(RankArgsSchema, location="query")
@blp.response(200, RankSchema)
def my_rank(args: dict[str, Any]) -> report_service.MyRank:
    """My rank in my district by service hours and by points."""
    return report_service.my_rank(current_principal().user_id, args["from_"], args["to"])
