"""Staff login with username and password."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, fields, validate

from yijing.config import settings
from yijing.extensions import limiter
from yijing.services import auth as auth_service
from yijing.services import staff as staff_service
from yijing.web.auth import bearer_token, current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.ratelimit import failed_login
from yijing.web.schemas import MeSchema, TokenSchema

blp = Blueprint("desk_auth", __name__, url_prefix="/api/v1/desk/auth", description="值班台登录")


class StaffLoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))


def _failure_limit() -> str:
    return settings().staff_login_failure_limit


def _username_key() -> str:
    body = request.get_json(silent=True) or {}
    username = body.get("username") if isinstance(body, dict) else None
    return f"staff-login:{str(username or '').strip().lower()}"


@blp.route("/login", methods=["POST"])
@limiter.limit(lambda: settings().login_rate_limit, deduct_when=failed_login)
@limiter.limit(_failure_limit, key_func=_username_key, deduct_when=lambda r: r.status_code == 401)
@blp.arguments(StaffLoginSchema)
@blp.response(200, TokenSchema)
def login(data: dict[str, Any]) -> auth_service.IssuedToken:
    """Log in; repeated failures lock the username out for a while."""
    return auth_service.staff_login(data["username"], data["password"], current_actor())


@blp.route("/logout", methods=["POST"])
@login_required
@blp.response(204)
def logout() -> None:
    """Revoke the current token."""
    auth_service.logout(bearer_token() or "")


class DeskMeSchema(MeSchema):
    permissions = fields.List(
        fields.String(), dump_only=True, metadata={"description": "在某处持有的权限（值班台据此显示菜单）"}
    )


class PasswordChangeSchema(Schema):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))
    new_password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=256),
        metadata={"description": "至少 10 位，含字母和数字，不含用户名"},
    )


@blp.route("/me", methods=["GET"])
@login_required
@blp.response(200, DeskMeSchema)
def me() -> dict[str, Any]:
    """The staff member, their grants and the permissions they hold somewhere."""
    return staff_service.desk_me(current_principal())


@blp.route("/password", methods=["POST"])
@login_required
@blp.arguments(PasswordChangeSchema)
@blp.response(204)
def change_password(data: dict[str, Any]) -> None:
    """Change my own password (required after an admin created or reset the account)."""
    staff_service.change_own_password(
        current_principal().user_id, current_actor(), data["current_password"], data["new_password"]
    )
