"""The notification outbox for admins: counts by status, failed rows and their reasons, retries."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.models import NotificationStatus
from yijing.pagination import Page
from yijing.services import outbox_admin
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import label_of

blp = Blueprint(
    "desk_outbox", __name__, url_prefix="/api/v1/desk/outbox", description="值班台：消息发送记录（管理员）"
)


class OutboxCountsSchema(Schema):
    pending = fields.Integer(dump_only=True)
    sent = fields.Integer(dump_only=True)
    inbox_only = fields.Integer(dump_only=True)
    failed = fields.Integer(dump_only=True)


class OutboxArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf([s.value for s in NotificationStatus]))
    kind = fields.String(load_default=None, validate=validate.Length(max=48))


class OutboxRowSchema(Schema):
    id = fields.Integer(dump_only=True)
    user_id = fields.Method(
        "_recipient",
        dump_only=True,
        allow_none=True,
        metadata={"description": "收件人；匿名举报人的消息（sealed）不显示"},
    )
    sealed = fields.Boolean(dump_only=True, metadata={"description": "发给匿名举报人的消息"})
    kind = fields.String(dump_only=True)
    title = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    status_label = label_of("notification_status", "status")
    attempts = fields.Integer(dump_only=True)
    last_error = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "失败原因（微信的错误码与说明）"}
    )
    error_code = fields.Integer(dump_only=True, allow_none=True)
    template_id = fields.String(dump_only=True, allow_none=True)
    last_attempt_at = fields.DateTime(dump_only=True, allow_none=True)
    next_attempt_at = fields.DateTime(dump_only=True, allow_none=True)
    sent_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)

    def _recipient(self, row: Any) -> int | None:
        # An anonymous reporter's message names nobody to staff (issue 13).
        return None if row.sealed else row.user_id


class RetrySchema(Schema):
    ids = fields.List(fields.Integer(), load_default=None, validate=validate.Length(min=1, max=1000))
    kind = fields.String(load_default=None, validate=validate.Length(max=48))


class RetriedSchema(Schema):
    requeued = fields.Integer(dump_only=True)


@blp.route("", methods=["GET"])
@login_required
@blp.response(200, OutboxCountsSchema)
def counts() -> dict[str, int]:
    """Outbox rows by status."""
    return outbox_admin.counts(current_principal())


@blp.route("/notifications", methods=["GET"])
@login_required
@blp.arguments(OutboxArgsSchema, location="query")
@blp.response(200, page_of(OutboxRowSchema))
def rows(args: dict[str, Any]) -> Page[Any]:
    """Outbox rows (e.g. status=failed with WeChat's reasons), newest first."""
    return outbox_admin.rows(
        current_principal(),
        status=args["status"],
        kind=args["kind"],
        cursor=args["cursor"],
        limit=args["limit"],
    )


@blp.route("/retry", methods=["POST"])
@login_required
@idempotent
@blp.arguments(RetrySchema)
@blp.response(200, RetriedSchema)
def retry(data: dict[str, Any]) -> outbox_admin.Requeued:
    """Send failed rows again (all, or the given ids or kind)."""
    return outbox_admin.retry(current_principal(), current_actor(), ids=data["ids"], kind=data["kind"])
