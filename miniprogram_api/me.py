"""The logged-in user."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import Schema, fields

from yijing.services import account as account_service
from yijing.services import auth as auth_service
from yijing.services import feed as feed_service
from yijing.services import personal_data
from yijing.services import points as points_service
from yijing.web import rendered
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.pagination import PageArgsSchema
from yijing.web.schemas import MeSchema

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="当前用户")


_ME = MeSchema()


def _render_me(me: auth_service.Me) -> bytes:
    return rendered.render(_ME, me)


@blp.route("", methods=["GET"])
@login_required
@blp.response(200, MeSchema)
def get_me() -> Response:
    """The user, their roles and the jurisdictions they hold them in."""
    # A hot read: kept rendered beside the principal's cache entry (yijing.web.rendered).
    return rendered.json_response(auth_service.me_body(current_principal(), render=_render_me))


class DistrictInSchema(Schema):
    district_id = fields.Integer(required=True, metadata={"description": "区（旗县）一级辖区的编号"})


@blp.route("/district", methods=["PUT"])
@login_required
@blp.arguments(DistrictInSchema)
@blp.response(200, MeSchema)
def set_district(data: dict[str, Any]) -> auth_service.Me:
    """Follow a district: its posts join your feed and your messages go to its police."""
    return feed_service.set_home_district(current_principal().user_id, data["district_id"], current_actor())


# -- personal information: cancelling the account, a copy of one's data (issue 13) ----------------


class CancellationSchema(Schema):
    status = fields.String(dump_only=True, metadata={"description": "none：未申请；pending：冷静期中"})
    requested_at = fields.DateTime(dump_only=True, allow_none=True)
    due_at = fields.DateTime(
        dump_only=True, allow_none=True, metadata={"description": "冷静期结束、注销生效的时间"}
    )
    cooling_off_days = fields.Integer(dump_only=True)
    statement = fields.String(dump_only=True, metadata={"description": "注销的后果说明"})
    consequences = fields.List(
        fields.String(), dump_only=True, metadata={"description": "对您正在执勤或已接受任务的影响"}
    )


class CancellationInSchema(Schema):
    acknowledged = fields.Boolean(
        load_default=False, metadata={"description": "已阅读对执勤和任务的影响（有执勤或任务时必填 true）"}
    )


@blp.route("/cancellation", methods=["GET"])
@login_required
@blp.response(200, CancellationSchema)
def cancellation_state() -> account_service.CancellationState:
    """What cancelling the account does, and whether it is pending."""
    return account_service.state(current_principal().user_id)


@blp.route("/cancellation", methods=["POST"])
@login_required
@blp.arguments(CancellationInSchema)
@blp.response(202, CancellationSchema)
def request_cancellation(data: dict[str, Any]) -> account_service.CancellationState:
    """Ask to cancel the account (注销); it takes effect after the cooling-off period."""
    return account_service.request(
        current_principal().user_id, current_actor(), acknowledged=data["acknowledged"]
    )


@blp.route("/cancellation", methods=["DELETE"])
@login_required
@blp.response(200, CancellationSchema)
def withdraw_cancellation() -> account_service.CancellationState:
    """Change one's mind during the cooling-off period (logging in again does the same)."""
    principal = current_principal()
    account_service.withdraw(principal.user_id, current_actor())
    return account_service.state(principal.user_id)


class PersonalDataCopySchema(Schema):
    """The parts are documents of plain JSON values whose shape follows what is stored."""

    generated_at = fields.String(dump_only=True, metadata={"description": "生成时间（ISO 8601）"})
    account = fields.Dict(dump_only=True, metadata={"description": "账号"})
    volunteer_applications = fields.List(fields.Dict(), dump_only=True, metadata={"description": "义警申请"})
    privacy_consents = fields.List(fields.Dict(), dump_only=True, metadata={"description": "隐私同意记录"})
    tasks = fields.List(fields.Dict(), dump_only=True, metadata={"description": "参与的任务"})
    clues = fields.List(fields.Dict(), dump_only=True, metadata={"description": "提交的线索"})
    points = fields.Dict(dump_only=True, metadata={"description": "积分余额与明细"})
    comments = fields.List(fields.Dict(), dump_only=True, metadata={"description": "评论"})
    likes = fields.List(fields.Dict(), dump_only=True, metadata={"description": "点赞"})
    messages = fields.List(fields.Dict(), dump_only=True, metadata={"description": "给民警的留言及回复"})
    notifications = fields.List(fields.Dict(), dump_only=True, metadata={"description": "通知"})
    subscription_consents = fields.List(
        fields.Dict(), dump_only=True, metadata={"description": "订阅消息授权"}
    )


@blp.route("/data", methods=["GET"])
@login_required
@blp.response(200, PersonalDataCopySchema)
def my_data() -> tuple[personal_data.PersonalDataCopy, int, dict[str, str]]:
    """A copy of everything the service holds about you, in clear, for you alone (audited)."""
    copy = personal_data.copy_for(current_principal().user_id, current_actor())
    return copy, 200, {"Cache-Control": "no-store"}


class PointsEntrySchema(Schema):
    id = fields.Integer(dump_only=True)
    amount = fields.Integer(dump_only=True)
    reason = fields.String(dump_only=True, metadata={"description": "task_completed 或 clue_valid"})
    reason_label = fields.Function(points_service.reason_label, dump_only=True, metadata={"type": "string"})
    created_at = fields.DateTime(dump_only=True)
    clue_id = fields.Function(
        lambda entry: points_service.source_id(entry, "clue_id"),
        dump_only=True,
        allow_none=True,
        metadata={"type": "integer", "description": "匿名线索不显示"},
    )
    task_id = fields.Function(
        lambda entry: points_service.source_id(entry, "task_id"),
        dump_only=True,
        allow_none=True,
        metadata={"type": "integer"},
    )


class PointsLedgerSchema(Schema):
    balance = fields.Integer(dump_only=True)
    items = fields.List(fields.Nested(PointsEntrySchema), dump_only=True)
    next_cursor = fields.String(dump_only=True, allow_none=True)


@blp.route("/points", methods=["GET"])
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, PointsLedgerSchema)
def my_points(args: dict[str, Any]) -> points_service.Ledger:
    """Your points balance and what earned each entry (tasks completed, clues confirmed valid)."""
    return points_service.ledger(current_principal().user_id, cursor=args["cursor"], limit=args["limit"])
