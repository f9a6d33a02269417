"""Reporting clues, following them, and answering the desk's questions.

The reporter-side POSTs handle ``Idempotency-Key`` in the clue service rather than with
``@idempotent``: a stored answer keyed by the user would tie an anonymous reporter to the clue.
"""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, fields, validate

from yijing.config import settings
from yijing.extensions import limiter
from yijing.localtime import SHANGHAI
from yijing.models import ClueCategory
from yijing.pagination import Page
from yijing.services import clues as clue_service
from yijing.web.auth import current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import accepts_idempotency_key
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.ratelimit import user_key
from yijing.web.request_log import redact_request
from yijing.web.schemas import ClueSummarySchema, PhotoSchema, PlaceSchema

blp = Blueprint("clues", __name__, url_prefix="/api/v1/clues", description="线索举报")
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED = {"Idempotent-Replayed": "true"}


@blp.before_request
def _keep_reporters_out_of_logs() -> None:
    redact_request()


class ClueInSchema(Schema):
    category = fields.String(required=True, validate=validate.OneOf([c.value for c in ClueCategory]))
    description = fields.String(required=True, validate=validate.Length(min=5, max=2000))
    photos = fields.List(
        fields.String(validate=validate.Length(min=1, max=32)),
        load_default=list,
        validate=validate.Length(max=clue_service.MAX_PHOTOS),
        metadata={"description": "上传接口返回的图片 id，最多 9 张"},
    )
    place = fields.Nested(PlaceSchema, required=True)
    occurred_at = fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        default_timezone=SHANGHAI,
        metadata={"description": "发生时间；不带时区时按北京时间理解"},
    )
    anonymous = fields.Boolean(load_default=False, metadata={"description": "匿名：民警看不到举报人身份"})
    urgent = fields.Boolean(load_default=False, metadata={"description": "正在发生、需要尽快处理"})


class TimelineEntrySchema(Schema):
    status = fields.String(dump_only=True, allow_none=True)
    status_label = fields.String(dump_only=True, allow_none=True)
    note = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class ThreadMessageSchema(Schema):
    id = fields.Integer(dump_only=True)
    sender = fields.String(dump_only=True, metadata={"description": "desk（值班民警）或 reporter（我）"})
    body = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class MyClueSchema(ClueSummarySchema):
    photos = fields.List(fields.Nested(PhotoSchema), dump_only=True)


class MyClueDetailSchema(MyClueSchema):
    timeline = fields.List(fields.Nested(TimelineEntrySchema), dump_only=True)
    messages = fields.List(fields.Nested(ThreadMessageSchema), dump_only=True)
    can_reply = fields.Boolean(dump_only=True)


class SubmittedClueSchema(MyClueDetailSchema):
    tracking_code = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "匿名线索的查询码，只显示这一次，请妥善保存"},
    )


class ReplySchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=1000))


def _idempotency_key() -> str | None:
    return request.headers.get(IDEMPOTENCY_HEADER)


def _submit_limit() -> str:
    return settings().clue_rate_limit


def _track_limit() -> str:
    return settings().clue_track_rate_limit


@blp.route("", methods=["POST"])
@accepts_idempotency_key
@login_required
@limiter.limit(_submit_limit, key_func=user_key, deduct_when=lambda response: response.status_code == 201)
@blp.arguments(ClueInSchema)
@blp.response(201, SubmittedClueSchema)
def submit(data: dict[str, Any]) -> Any:
    """Report a clue; photos are uploaded first through /api/v1/media."""
    place = data["place"]
    result = clue_service.submit(
        current_principal().user_id,
        category=data["category"],
        description=data["description"],
        lat=place["lat"],
        lng=place["lng"],
        address=place.get("address"),
        occurred_at=data["occurred_at"],
        anonymous=data["anonymous"],
        urgent=data["urgent"],
        photos=data["photos"],
        idempotency_key=_idempotency_key(),
    )
    return (result.view, REPLAYED) if result.replayed else result.view


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_of(MyClueSchema))
def my_clues(args: dict[str, Any]) -> Page[clue_service.ReporterClueItem]:
    """My clues, named and anonymous, newest first."""
    return clue_service.own_clues(current_principal().user_id, cursor=args["cursor"], limit=args["limit"])


@blp.route("/<int:clue_id>", methods=["GET"])
@login_required
@blp.response(200, MyClueDetailSchema)
def my_clue(clue_id: int) -> clue_service.ReporterClue:
    """One of my clues with its public timeline and the thread with the desk."""
    return clue_service.own_clue(current_principal().user_id, clue_id)


@blp.route("/<int:clue_id>/messages", methods=["POST"])
@accepts_idempotency_key
@login_required
@limiter.limit(_track_limit, key_func=user_key)
@blp.arguments(ReplySchema)
@blp.response(201, MyClueDetailSchema)
def reply(data: dict[str, Any], clue_id: int) -> clue_service.ReporterClue:
    """Answer the desk on one of my clues."""
    return clue_service.reply_as_reporter(
        current_principal().user_id, clue_id, data["body"], _idempotency_key()
    )


@blp.route("/track/<string:code>", methods=["GET"])
@limiter.limit(_track_limit)
@blp.response(200, MyClueDetailSchema)
def track(code: str) -> clue_service.ReporterClue:
    """Follow an anonymous clue with its tracking code (no login needed)."""
    return clue_service.tracked_clue(code)


@blp.route("/track/<string:code>/messages", methods=["POST"])
@accepts_idempotency_key
@limiter.limit(_track_limit)
@blp.arguments(ReplySchema)
@blp.response(201, MyClueDetailSchema)
def reply_with_code(data: dict[str, Any], code: str) -> clue_service.ReporterClue:
    """Answer the desk's question with the tracking code."""
    return clue_service.reply_with_code(code, data["body"], _idempotency_key())
