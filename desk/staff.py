"""Staff accounts managed from the desk (admins, within their own subtree), and the label table."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing import labels
from yijing.pagination import Page
from yijing.services import console as console_service
from yijing.services import staff as staff_service
from yijing.services.staff import StaffAccount
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import GrantSchema

blp = Blueprint("desk_staff", __name__, url_prefix="/api/v1/desk", description="值班台：工作人员账号与授权")

ROLES = [r.value for r in staff_service.STAFF_ROLE_VALUES]
PASSWORD = validate.Length(min=1, max=256)


class StaffSchema(Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String(dump_only=True)
    display_name = fields.String(dump_only=True)
    is_active = fields.Boolean(dump_only=True)
    must_change_password = fields.Boolean(dump_only=True)
    last_login_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    grants = fields.List(fields.Nested(GrantSchema), dump_only=True)


class StaffListArgsSchema(PageArgsSchema):
    q = fields.String(
        load_default=None, validate=validate.Length(max=64), metadata={"description": "用户名或姓名"}
    )


class StaffCreateSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=3, max=64))
    display_name = fields.String(load_default="", validate=validate.Length(max=64))
    password = fields.String(
        required=True,
        load_only=True,
        validate=PASSWORD,
        metadata={"description": "初始密码：至少 10 位，含字母和数字，不含用户名；首次登录须修改"},
    )
    role = fields.String(required=True, validate=validate.OneOf(ROLES, error="角色无效"))
    jurisdiction_id = fields.Integer(required=True)


class GrantInSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES, error="角色无效"))
    jurisdiction_id = fields.Integer(required=True)


class ReasonInSchema(Schema):
    reason = fields.String(
        required=True, validate=validate.Length(min=2, max=200, error="请填写理由（2–200 字）")
    )


class PasswordResetSchema(Schema):
    password = fields.String(required=True, load_only=True, validate=PASSWORD)


class LabelsSchema(Schema):
    tables = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.String()),
        dump_only=True,
        metadata={"description": "表名 → {代码: 中文名}"},
    )


class ConsoleConfigSchema(Schema):
    map_tile_url = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "地图瓦片地址（GCJ-02，含 {z}/{x}/{y}）；为空时值班台使用离线底图"},
    )
    datum = fields.String(dump_only=True, metadata={"description": "坐标系，始终为 GCJ-02"})


@blp.route("/console-config", methods=["GET"])
@login_required
@blp.response(200, ConsoleConfigSchema)
def console_config() -> console_service.ConsoleConfig:
    """What the desk console needs to know about this deployment (map tiles, datum)."""
    return console_service.console_config()


@blp.route("/labels", methods=["GET"])
@login_required
@blp.response(200, LabelsSchema)
def label_tables() -> labels.LabelTables:
    """The Chinese label of every code the desk API returns, by table."""
    return labels.label_tables()


@blp.route("/staff", methods=["GET"])
@login_required
@blp.arguments(StaffListArgsSchema, location="query")
@blp.response(200, page_of(StaffSchema))
def list_staff(args: dict[str, Any]) -> Page[StaffAccount]:
    """Staff accounts of my subtree (admins), newest first."""
    return staff_service.list_staff(
        current_principal(), args["q"], cursor=args["cursor"], limit=args["limit"]
    )


@blp.route("/staff", methods=["POST"])
@login_required
@blp.arguments(StaffCreateSchema)
@blp.response(201, StaffSchema)
def create_staff(data: dict[str, Any]) -> StaffAccount:
    """Create a staff account with one grant; it changes its password at the first login."""
    return staff_service.create_staff(current_principal(), current_actor(), **data)


@blp.route("/staff/<int:user_id>", methods=["GET"])
@login_required
@blp.response(200, StaffSchema)
def get_staff(user_id: int) -> StaffAccount:
    """One staff account of my subtree with its grants."""
    return staff_service.get_staff(current_principal(), user_id)


@blp.route("/staff/<int:user_id>/deactivate", methods=["POST"])
@login_required
@blp.arguments(ReasonInSchema)
@blp.response(200, StaffSchema)
def deactivate(data: dict[str, Any], user_id: int) -> StaffAccount:
    """Deactivate an account; its tokens stop working at once."""
    return staff_service.set_active(current_principal(), current_actor(), user_id, False, data["reason"])


@blp.route("/staff/<int:user_id>/activate", methods=["POST"])
@login_required
@blp.arguments(ReasonInSchema)
@blp.response(200, StaffSchema)
def activate(data: dict[str, Any], user_id: int) -> StaffAccount:
    """Reactivate an account."""
    return staff_service.set_active(current_principal(), current_actor(), user_id, True, data["reason"])


@blp.route("/staff/<int:user_id>/password-reset", methods=["POST"])
@login_required
@blp.arguments(PasswordResetSchema)
@blp.response(200, StaffSchema)
def reset_password(data: dict[str, Any], user_id: int) -> StaffAccount:
    """Set a new password (the user must change it at the next login); live tokens are revoked."""
    return staff_service.reset_password(current_principal(), current_actor(), user_id, data["password"])


@blp.route("/staff/<int:user_id>/force-password-change", methods=["POST"])
@login_required
@blp.response(200, StaffSchema)
def force_password_change(user_id: int) -> StaffAccount:
    """Require the user to change their password before doing anything else."""
    return staff_service.force_password_change(current_principal(), current_actor(), user_id)


@blp.route("/staff/<int:user_id>/grants", methods=["POST"])
@login_required
@blp.arguments(GrantInSchema)
@blp.response(200, StaffSchema)
def add_grant(data: dict[str, Any], user_id: int) -> StaffAccount:
    """Grant a role over a jurisdiction of my subtree."""
    return staff_service.grant(
        current_principal(), current_actor(), user_id, data["role"], data["jurisdiction_id"]
    )


@blp.route("/staff/<int:user_id>/grants/revoke", methods=["POST"])
@login_required
@blp.arguments(GrantInSchema)
@blp.response(200, StaffSchema)
def revoke_grant(data: dict[str, Any], user_id: int) -> StaffAccount:
    """Revoke a role over a jurisdiction (an account keeps at least one grant)."""
    return staff_service.revoke(
        current_principal(), current_actor(), user_id, data["role"], data["jurisdiction_id"]
    )
