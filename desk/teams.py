"""Teams as the desk sees them: one per community, with its liaison officer and captain."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.pagination import Page
from yijing.services import teams as team_service
from yijing.services.teams import LiaisonCandidate, TeamDetail, TeamView
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import TeamSchema

blp = Blueprint("desk_teams", __name__, url_prefix="/api/v1/desk/teams", description="值班台：义警队伍")


class TeamListArgsSchema(PageArgsSchema):
    jurisdiction_id = fields.Integer(load_default=None, metadata={"description": "只看该辖区及其下级"})


class TeamCreateSchema(Schema):
    community_id = fields.Integer(required=True)
    name = fields.String(load_default=None, validate=validate.Length(min=1, max=100))


class TeamUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=100))
    liaison_user_id = fields.Integer(
        allow_none=True, metadata={"description": "联络民警（值班台用户）；null 清除"}
    )
    captain_volunteer_id = fields.Integer(
        allow_none=True, metadata={"description": "队长（本队义警）；null 清除"}
    )
    reason = fields.String(load_default=None, validate=validate.Length(max=500))


class TeamMemberSchema(Schema):
    id = fields.Integer(dump_only=True)
    name_masked = fields.String(dump_only=True)
    category = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    volunteer_number = fields.String(dump_only=True, allow_none=True)
    on_duty = fields.Boolean(dump_only=True)


class LiaisonPlaceSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)


class LiaisonCandidateSchema(Schema):
    id = fields.Integer(dump_only=True, metadata={"description": "值班台用户 id（即 liaison_user_id）"})
    display_name = fields.String(dump_only=True)
    jurisdiction = fields.Nested(
        LiaisonPlaceSchema,
        dump_only=True,
        metadata={"description": "其值班台授权所在辖区（离社区最近的一级）"},
    )
    current = fields.Boolean(dump_only=True, metadata={"description": "是否为现任联络民警"})


class TeamDetailSchema(TeamSchema):
    members = fields.List(fields.Nested(TeamMemberSchema), dump_only=True)


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(TeamListArgsSchema, location="query")
@blp.response(200, page_of(TeamSchema))
def list_teams(args: dict[str, Any]) -> Page[TeamView]:
    """Teams in my jurisdiction."""
    return team_service.list_for_staff(
        current_principal(),
        jurisdiction_id=args["jurisdiction_id"],
        cursor=args["cursor"],
        limit=args["limit"],
    )


@blp.route("", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TeamCreateSchema)
@blp.response(201, TeamSchema)
def create_team(data: dict[str, Any]) -> TeamView:
    """Create a community's team (one per community; also created on the first approval)."""
    return team_service.create(current_principal(), data["community_id"], data["name"], current_actor())


@blp.route("/<int:team_id>", methods=["GET"])
@login_required
@blp.response(200, TeamDetailSchema)
def get_team(team_id: int) -> TeamDetail:
    """A team with its members (masked names)."""
    return team_service.detail_for_staff(current_principal(), team_id)


@blp.route("/<int:team_id>", methods=["PATCH"])
@login_required
@blp.arguments(TeamUpdateSchema)
@blp.response(200, TeamSchema)
def update_team(changes: dict[str, Any], team_id: int) -> TeamView:
    """Rename a team, or change its liaison officer or captain."""
    return team_service.update(current_principal(), team_id, changes, current_actor())


@blp.route("/<int:team_id>/liaison-candidates", methods=["GET"])
@login_required
@blp.response(200, LiaisonCandidateSchema(many=True))
def liaison_candidates(team_id: int) -> list[LiaisonCandidate]:
    """Desk staff who may be named the team's liaison officer (name and post only)."""
    return team_service.liaison_candidates(current_principal(), team_id)
