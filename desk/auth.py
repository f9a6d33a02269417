"""Staff login with username and password."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, fields, validate

from yijing.config import settings
from yijing.extensions import limiter
from yijing.services import auth as auth_service
from yijing.web.auth import bearer_token, current_actor, login_required
from yijing.web.contract import Blueprint
from yijing.web.ratelimit import failed_login
from yijing.web.schemas import TokenSchema

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
def login(data: dict[str, Any]) -> dict[str, Any]:
    """Log in; repeated failures lock the username out for a while."""
    issued = auth_service.staff_login(data["username"], data["password"], current_actor())
    return {
        "token": issued.token,
        "expires_at": issued.expires_at,
        "user": auth_service.me(issued.user.id),
    }


@blp.route("/logout", methods=["POST"])
@login_required
@blp.response(204)
def logout() -> None:
    """Revoke the current token."""
    auth_service.logout(bearer_token() or "")
