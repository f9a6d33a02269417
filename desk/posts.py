"""Feed posts as the desk writes them: drafts, publication now or later, pinning, withdrawal."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.models import PostStatus
from yijing.pagination import Page
from yijing.services import feed as feed_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import JurisdictionSummarySchema, label_of

blp = Blueprint("desk_posts", __name__, url_prefix="/api/v1/desk/posts", description="值班台：24小时警局发布")

_KIND = validate.OneOf(feed_service.DESK_KINDS)


class PostInSchema(Schema):
    kind = fields.String(
        required=True, validate=_KIND, metadata={"description": "notice/alert/anti_fraud/wanted/case_report"}
    )
    title = fields.String(required=True, validate=validate.Length(min=1, max=100))
    body = fields.String(required=True, validate=validate.Length(min=1, max=20000))
    images = fields.List(
        fields.String(validate=validate.Length(min=1, max=500)),
        load_default=list,
        metadata={"description": "已上传图片的编号或 http(s) 地址，最多 9 张"},
    )
    jurisdiction_id = fields.Integer(required=True, metadata={"description": "发布范围：市或区（旗县）"})
    pinned = fields.Boolean(load_default=False)


class PostPatchSchema(Schema):
    kind = fields.String(validate=validate.OneOf([*feed_service.DESK_KINDS, "qa"]))
    title = fields.String(validate=validate.Length(min=1, max=100))
    body = fields.String(validate=validate.Length(min=1, max=20000))
    images = fields.List(fields.String(validate=validate.Length(min=1, max=500)))
    jurisdiction_id = fields.Integer()


class PublishSchema(Schema):
    publish_at = fields.AwareDateTime(
        load_default=None, metadata={"description": "定时发布的时间（带时区）；不传或已过则立即发布"}
    )
    push = fields.Boolean(
        load_default=False, metadata={"description": "预警：发布时推送给范围内的群众和义警"}
    )


class WithdrawSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


class DeskPostArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf([s.value for s in PostStatus]))
    kind = fields.String(load_default=None, validate=validate.OneOf([*feed_service.DESK_KINDS, "qa"]))
    q = fields.String(
        load_default=None, validate=validate.Length(max=50), metadata={"description": "标题或正文中的文字"}
    )


class DeskPostSchema(Schema):
    id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True)
    title = fields.String(dump_only=True)
    body = fields.String(dump_only=True)
    images = fields.List(fields.String(), dump_only=True)
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    status = fields.String(dump_only=True, metadata={"description": "draft/scheduled/published/withdrawn"})
    status_label = label_of("post_status", "status")
    kind_label = label_of("post_kind", "kind")
    pinned = fields.Boolean(dump_only=True)
    published_at = fields.DateTime(dump_only=True, allow_none=True)
    push_requested = fields.Boolean(dump_only=True)
    push_requested_at = fields.DateTime(dump_only=True, allow_none=True)
    push_done_at = fields.DateTime(dump_only=True, allow_none=True)
    author_id = fields.Integer(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True, allow_none=True)
    withdrawn_at = fields.DateTime(dump_only=True, allow_none=True)
    withdrawn_reason = fields.String(dump_only=True, allow_none=True)
    view_count = fields.Integer(dump_only=True)
    like_count = fields.Integer(dump_only=True)
    comment_count = fields.Integer(dump_only=True)


@blp.route("", methods=["POST"])
@login_required
@idempotent
@blp.arguments(PostInSchema)
@blp.response(201, DeskPostSchema)
def create_post(data: dict[str, Any]) -> feed_service.DeskPost:
    """Create a draft post."""
    return feed_service.create_post(current_principal(), current_actor(), data)


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(DeskPostArgsSchema, location="query")
@blp.response(200, page_of(DeskPostSchema))
def list_posts(args: dict[str, Any]) -> Page[feed_service.DeskPost]:
    """Posts in your jurisdiction, newest first."""
    return feed_service.desk_list(
        current_principal(),
        status=args["status"],
        kind=args["kind"],
        q=args["q"],
        cursor=args["cursor"],
        limit=args["limit"],
    )


@blp.route("/<int:post_id>", methods=["GET"])
@login_required
@blp.response(200, DeskPostSchema)
def get_post(post_id: int) -> feed_service.DeskPost:
    """One post."""
    return feed_service.desk_get(current_principal(), post_id)


@blp.route("/<int:post_id>", methods=["PATCH"])
@login_required
@blp.arguments(PostPatchSchema)
@blp.response(200, DeskPostSchema)
def edit_post(data: dict[str, Any], post_id: int) -> feed_service.DeskPost:
    """Edit a post (also a published one: the feed shows the change at once)."""
    return feed_service.update_post(current_principal(), current_actor(), post_id, data)


@blp.route("/<int:post_id>/publish", methods=["POST"])
@login_required
@idempotent
@blp.arguments(PublishSchema)
@blp.response(200, DeskPostSchema)
def publish_post(data: dict[str, Any], post_id: int) -> feed_service.DeskPost:
    """Publish now, or at publish_at; an alert may be pushed to its scope."""
    return feed_service.publish_post(
        current_principal(), current_actor(), post_id, publish_at=data["publish_at"], push=data["push"]
    )


@blp.route("/<int:post_id>/pin", methods=["POST"])
@login_required
@idempotent
@blp.response(200, DeskPostSchema)
def pin_post(post_id: int) -> feed_service.DeskPost:
    """Pin the post to the top of the feed."""
    return feed_service.set_pinned(current_principal(), current_actor(), post_id, True)


@blp.route("/<int:post_id>/unpin", methods=["POST"])
@login_required
@idempotent
@blp.response(200, DeskPostSchema)
def unpin_post(post_id: int) -> feed_service.DeskPost:
    """Unpin the post."""
    return feed_service.set_pinned(current_principal(), current_actor(), post_id, False)


@blp.route("/<int:post_id>/withdraw", methods=["POST"])
@login_required
@idempotent
@blp.arguments(WithdrawSchema)
@blp.response(200, DeskPostSchema)
def withdraw_post(data: dict[str, Any], post_id: int) -> feed_service.DeskPost:
    """Withdraw the post: it leaves the feed at once."""
    return feed_service.withdraw_post(current_principal(), current_actor(), post_id, data["reason"])
