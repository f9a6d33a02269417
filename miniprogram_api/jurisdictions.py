"""The jurisdiction tree for pickers (public: names of districts and communities)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marshmallow import Schema, fields

from yijing.models import Jurisdiction
from yijing.services import jurisdictions as jurisdiction_service
from yijing.web.contract import Blueprint
from yijing.web.schemas import JurisdictionSchema

blp = Blueprint("jurisdictions", __name__, url_prefix="/api/v1/jurisdictions", description="辖区（选择器用）")


class ChildrenArgsSchema(Schema):
    parent_id = fields.Integer(load_default=None, metadata={"description": "不传则返回根节点（市）"})


@blp.route("", methods=["GET"])
@blp.arguments(ChildrenArgsSchema, location="query")
@blp.response(200, JurisdictionSchema(many=True))
def list_children(args: dict[str, Any]) -> Sequence[Jurisdiction]:
    """Children of a node, for a cascading picker."""
    if args["parent_id"] is not None:
        jurisdiction_service.get(args["parent_id"])
    return jurisdiction_service.children(args["parent_id"])


@blp.route("/<int:jurisdiction_id>", methods=["GET"])
@blp.response(200, JurisdictionSchema)
def get_one(jurisdiction_id: int) -> Jurisdiction:
    """One node."""
    return jurisdiction_service.get(jurisdiction_id)
