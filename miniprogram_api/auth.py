"""Logging in with WeChat and binding the phone number."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.config import settings
from yijing.extensions import limiter
from yijing.services import auth as auth_service
from yijing.web.auth import bearer_token, current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.ratelimit import failed_login
from yijing.web.schemas import TokenSchema

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="小程序登录")


class WeChatLoginSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128))


class PhoneCodeSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128))


class PhoneBoundSchema(Schema):
    phone_masked = fields.String(dump_only=True)


def _login_limit() -> str:
    return settings().login_rate_limit


@blp.route("/wechat-login", methods=["POST"])
@limiter.limit(_login_limit, deduct_when=failed_login)
@blp.arguments(WeChatLoginSchema)
@blp.response(200, TokenSchema)
def wechat_login(data: dict[str, Any]) -> auth_service.IssuedToken:
    """Exchange the wx.login code for a bearer token."""
    return auth_service.wechat_login(data["code"], current_actor())


@blp.route("/phone", methods=["POST"])
@login_required
@blp.arguments(PhoneCodeSchema)
@blp.response(200, PhoneBoundSchema)
def bind_phone(data: dict[str, Any]) -> auth_service.PhoneBound:
    """Bind the phone number from the phone-number button's code."""
    return auth_service.bind_phone(current_principal().user_id, data["code"])


@blp.route("/logout", methods=["POST"])
@login_required
@blp.response(204)
def logout() -> None:
    """Revoke the current token."""
    auth_service.logout(bearer_token() or "")
