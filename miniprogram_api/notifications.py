"""The in-app inbox and subscribe-message consents."""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validates_schema

from yijing.pagination import Page
from yijing.services import notifications as notification_service
from yijing.services.notifications import ReadAll, Subscription
from yijing.web.auth import current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of

blp = Blueprint(
    "notifications", __name__, url_prefix="/api/v1/notifications", description="站内信与订阅消息授权"
)


class NotificationSchema(Schema):
    id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True, metadata={"description": "通知类型，如 task.invitation"})
    title = fields.String(dump_only=True)
    body = fields.String(dump_only=True)
    data = fields.Dict(dump_only=True)
    page = fields.String(dump_only=True, allow_none=True, metadata={"description": "点击后打开的小程序页面"})
    is_read = fields.Method("_is_read", dump_only=True)
    read_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)

    def _is_read(self, item: Any) -> bool:
        return item.read_at is not None


class UnreadCountSchema(Schema):
    unread = fields.Integer(dump_only=True)


class ReadAllSchema(Schema):
    updated = fields.Integer(dump_only=True)


class SubscriptionSchema(Schema):
    template_id = fields.String(dump_only=True)
    kinds = fields.List(fields.String(), dump_only=True)
    long_term = fields.Boolean(dump_only=True, metadata={"description": "长期订阅：授权不计次"})
    remaining = fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "一次性订阅剩余可发条数（长期订阅为 null）"}
    )
    last_answer = fields.String(dump_only=True, allow_none=True)
    answered_at = fields.DateTime(dump_only=True, allow_none=True)
    can_send = fields.Boolean(dump_only=True)


class SubscribeResultSchema(Schema):
    """The object ``wx.requestSubscribeMessage`` gives its success callback, as it is:
    ``{"errMsg": "requestSubscribeMessage:ok", "<template id>": "accept" | "reject" | "ban" | "filter"}``."""

    class Meta:
        unknown = INCLUDE

    errMsg = fields.String(load_default=None)

    @validates_schema
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        results = {k: v for k, v in data.items() if k != "errMsg"}
        if not results:
            raise ValidationError("应为 wx.requestSubscribeMessage 的返回结果", "results")
        if len(results) > 20:
            raise ValidationError("模板过多", "results")
        for key, value in results.items():
            if not isinstance(key, str) or len(key) > 64 or not isinstance(value, str):
                raise ValidationError("取值无效", key if isinstance(key, str) else "results")


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_of(NotificationSchema))
def list_inbox(args: dict[str, Any]) -> Page[Any]:
    """The user's notifications, unread first."""
    return notification_service.inbox(current_principal().user_id, cursor=args["cursor"], limit=args["limit"])


@blp.route("/unread-count", methods=["GET"])
@login_required
@blp.response(200, UnreadCountSchema)
def unread_count() -> notification_service.Unread:
    """How many notifications are unread."""
    return notification_service.unread_count(current_principal().user_id)


@blp.route("/<int:notification_id>/read", methods=["POST"])
@login_required
@idempotent
@blp.response(200, NotificationSchema)
def mark_read(notification_id: int) -> Any:
    """Mark one notification read."""
    return notification_service.mark_read(current_principal().user_id, notification_id)


@blp.route("/read-all", methods=["POST"])
@login_required
@idempotent
@blp.response(200, ReadAllSchema)
def mark_all_read() -> ReadAll:
    """Mark every notification read."""
    return notification_service.mark_all_read(current_principal().user_id)


@blp.route("/subscriptions", methods=["GET"])
@login_required
@blp.response(200, SubscriptionSchema(many=True))
def list_subscriptions() -> list[Subscription]:
    """The subscribe-message templates (which kinds each serves) and the user's consent for each."""
    return notification_service.subscriptions(current_principal().user_id)


@blp.route("/subscriptions", methods=["POST"])
@login_required
@idempotent
@blp.arguments(SubscribeResultSchema)
@blp.response(200, SubscriptionSchema(many=True))
def record_subscriptions(data: dict[str, Any]) -> list[Subscription]:
    """Record what the user answered in wx.requestSubscribeMessage."""
    results = {k: v for k, v in data.items() if k != "errMsg"}
    return notification_service.record_consents(current_principal().user_id, results)
