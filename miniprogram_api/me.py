"""The logged-in user."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from yijing.services import auth as auth_service
from yijing.web.auth import current_principal, login_required
from yijing.web.schemas import MeSchema

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="当前用户")


@blp.route("", methods=["GET"])
@login_required
@blp.response(200, MeSchema)
def get_me() -> dict[str, Any]:
    """The user, their roles and the jurisdictions they hold them in."""
    principal = current_principal()
    return auth_service.me(principal.user_id, principal.profile)
