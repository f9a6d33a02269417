"""The 24-hour police station feed: reading (anyone), liking, commenting and reporting (logged in)."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import Schema, fields, validate

from yijing.config import settings
from yijing.extensions import limiter
from yijing.models import PostKind
from yijing.pagination import Page
from yijing.services import comments as comment_service
from yijing.services import feed as feed_service
from yijing.web import rendered
from yijing.web.auth import (
    current_principal,
    login_optional,
    login_optional_in_view,
    login_required,
    optional_principal,
    pending_token,
    resolve_optional_principal,
    use_principal,
)
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.ratelimit import user_key
from yijing.web.schemas import JurisdictionSummarySchema

blp = Blueprint("feed", __name__, url_prefix="/api/v1/feed", description="24小时警局：动态、点赞、评论")

KINDS = [k.value for k in PostKind]


class FeedArgsSchema(PageArgsSchema):
    kind = fields.String(load_default=None, validate=validate.OneOf(KINDS))
    district_id = fields.Integer(
        load_default=None, metadata={"description": "再看某个区（旗县）的动态；不传则看本人所在区（登录时）"}
    )


class FeedItemSchema(Schema):
    id = fields.Integer(dump_only=True)
    kind = fields.String(
        dump_only=True, metadata={"description": "notice/alert/anti_fraud/wanted/case_report/qa"}
    )
    title = fields.String(dump_only=True)
    summary = fields.String(dump_only=True)
    images = fields.List(fields.String(), dump_only=True)
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    pinned = fields.Boolean(dump_only=True)
    published_at = fields.DateTime(dump_only=True)
    view_count = fields.Integer(dump_only=True)
    like_count = fields.Integer(dump_only=True)
    comment_count = fields.Integer(dump_only=True)


class PostDetailSchema(Schema):
    id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True)
    title = fields.String(dump_only=True)
    body = fields.String(dump_only=True)
    images = fields.List(fields.String(), dump_only=True)
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    pinned = fields.Boolean(dump_only=True)
    published_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True, allow_none=True)
    view_count = fields.Integer(dump_only=True)
    like_count = fields.Integer(dump_only=True)
    comment_count = fields.Integer(dump_only=True)
    liked = fields.Boolean(dump_only=True, metadata={"description": "当前用户是否点过赞（登录时才有）"})


class LikeSchema(Schema):
    liked = fields.Boolean(dump_only=True)
    like_count = fields.Integer(dump_only=True)


class CommentInSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=comment_service.MAX_LENGTH))


class CommentSchema(Schema):
    id = fields.Integer(dump_only=True)
    post_id = fields.Integer(dump_only=True)
    body = fields.String(dump_only=True)
    status = fields.String(dump_only=True, metadata={"description": "pending_check：审核中，通过后显示"})
    author_name = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class ReportInSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=200))


class ReportedSchema(Schema):
    reported = fields.Boolean(dump_only=True)


def _comment_limit() -> str:
    return settings().comment_rate_limit


def _user_id() -> int | None:
    principal = optional_principal()
    return principal.user_id if principal else None


_FEED_PAGE = page_of(FeedItemSchema)()


def _render_page(page: Page[feed_service.FeedItem]) -> bytes:
    return rendered.render(_FEED_PAGE, page)


@blp.route("", methods=["GET"])
@login_optional_in_view
@blp.arguments(FeedArgsSchema, location="query")
@blp.response(200, page_of(FeedItemSchema))
def list_feed(args: dict[str, Any]) -> Response | Page[feed_service.FeedItem]:
    """The feed: city-wide posts and the district's, pinned first, then newest."""
    token = pending_token()
    if token and args["district_id"] is None and feed_service.serves_rendered(args["cursor"], args["limit"]):
        # The logged-in first page: the token, the reader's scopes and the rendered page in one read.
        reader = feed_service.reader_first_page(
            token, kind=args["kind"], limit=args["limit"], render=_render_page
        )
        use_principal(reader.principal)
        return rendered.json_response(reader.body)
    principal = resolve_optional_principal()
    reader = {
        "user_id": principal.user_id if principal else None,
        "profile": principal.profile if principal else None,
        "district_id": args["district_id"],
        "kind": args["kind"],
        "limit": args["limit"],
    }
    if feed_service.serves_rendered(args["cursor"], args["limit"]):
        # The hottest read: the first page is kept rendered by this schema (yijing.web.rendered).
        return rendered.json_response(feed_service.first_page(**reader, render=_render_page))
    return feed_service.feed(**reader, cursor=args["cursor"])


@blp.route("/<int:post_id>", methods=["GET"])
@login_optional
@blp.response(200, PostDetailSchema)
def get_post(post_id: int) -> feed_service.PostDetail:
    """One post with its view, like and comment counts (counts this view)."""
    return feed_service.post_detail(post_id, _user_id())


@blp.route("/<int:post_id>/like", methods=["POST"])
@login_required
@idempotent
@blp.response(200, LikeSchema)
def like(post_id: int) -> feed_service.LikeState:
    """Like a post; liking again changes nothing."""
    return feed_service.like(post_id, current_principal().user_id)


@blp.route("/<int:post_id>/like", methods=["DELETE"])
@login_required
@blp.response(200, LikeSchema)
def unlike(post_id: int) -> feed_service.LikeState:
    """Take the like back."""
    return feed_service.unlike(post_id, current_principal().user_id)


@blp.route("/<int:post_id>/comments", methods=["GET"])
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_of(CommentSchema))
def list_comments(args: dict[str, Any], post_id: int) -> Page[comment_service.CommentView]:
    """Visible comments on a post, newest first."""
    return comment_service.list_for_post(post_id, cursor=args["cursor"], limit=args["limit"])


@blp.route("/<int:post_id>/comments", methods=["POST"])
@login_required
@idempotent
@limiter.limit(_comment_limit, key_func=user_key)
@blp.arguments(CommentInSchema)
@blp.response(201, CommentSchema)
def add_comment(data: dict[str, Any], post_id: int) -> comment_service.CommentView:
    """Comment on a post; it is shown once the content check passes."""
    return comment_service.create(post_id, current_principal().user_id, data["body"])


@blp.route("/comments/<int:comment_id>/report", methods=["POST"])
@login_required
@idempotent
@blp.arguments(ReportInSchema)
@blp.response(200, ReportedSchema)
def report_comment(data: dict[str, Any], comment_id: int) -> comment_service.ReportReceipt:
    """Report a comment to the desk; reporting twice is one report."""
    return comment_service.report(comment_id, current_principal().user_id, data["reason"])
