"""Jurisdictions as the desk sees them: only inside the staff member's own subtree."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from yijing.services import jurisdictions as jurisdiction_service
from yijing.web.auth import current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.schemas import JurisdictionSchema, JurisdictionSummarySchema

blp = Blueprint(
    "desk_jurisdictions", __name__, url_prefix="/api/v1/desk/jurisdictions", description="值班台：辖区"
)


class JurisdictionDetailSchema(JurisdictionSchema):
    ancestors = fields.List(fields.Nested(JurisdictionSummarySchema), dump_only=True)
    children = fields.List(fields.Nested(JurisdictionSummarySchema), dump_only=True)


@blp.route("", methods=["GET"])
@login_required
@blp.response(200, JurisdictionSchema(many=True))
def my_roots() -> Any:
    """The roots of the subtrees the staff member may read."""
    return jurisdiction_service.readable_roots(current_principal())


@blp.route("/<int:jurisdiction_id>", methods=["GET"])
@login_required
@blp.response(200, JurisdictionDetailSchema)
def get_one(jurisdiction_id: int) -> jurisdiction_service.JurisdictionDetail:
    """A node with its ancestors and children; 403 outside the staff member's jurisdiction."""
    return jurisdiction_service.detail_for(current_principal(), jurisdiction_id)
