"""Image upload and download.

Uploads honour ``Idempotency-Key`` without storing an answer (which would tie the uploader to an
image that may end up on an anonymous clue): the image's key is derived from the uploader and their
key, so a retry finds the first upload.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

from yijing.config import settings
from yijing.extensions import limiter
from yijing.models import MediaPurpose
from yijing.services import media as media_service
from yijing.web.auth import current_principal, login_optional, login_required, optional_principal
from yijing.web.contract import Blueprint
from yijing.web.idempotency import accepts_idempotency_key
from yijing.web.ratelimit import user_key
from yijing.web.request_log import redact_request

blp = Blueprint("media", __name__, url_prefix="/api/v1/media", description="图片上传与读取")
TRACKING_HEADER = "X-Clue-Tracking-Code"


@blp.before_request
def _keep_reporters_out_of_logs() -> None:
    redact_request()


class UploadArgsSchema(Schema):
    purpose = fields.String(
        load_default=MediaPurpose.CLUE.value,
        validate=validate.OneOf([p.value for p in MediaPurpose]),
        metadata={"description": "clue（线索照片，仅举报人与民警可见）或 feed（公开发布）"},
    )


class UploadFileSchema(Schema):
    file = Upload(required=True, metadata={"description": "JPEG、PNG 或 WebP 图片"})


class MediaSchema(Schema):
    id = fields.String(attribute="key", dump_only=True)
    purpose = fields.String(dump_only=True)
    content_type = fields.String(dump_only=True)
    width = fields.Integer(dump_only=True)
    height = fields.Integer(dump_only=True)
    size_bytes = fields.Integer(dump_only=True)
    url = fields.Function(media_service.content_url, dump_only=True)
    created_at = fields.DateTime(dump_only=True)


def _upload_limit() -> str:
    return settings().media_rate_limit


@blp.route("", methods=["POST"])
@login_required
@accepts_idempotency_key
@limiter.limit(_upload_limit, key_func=user_key)
@blp.arguments(UploadArgsSchema, location="query")
@blp.arguments(UploadFileSchema, location="files")
@blp.response(201, MediaSchema)
def upload(args: dict[str, Any], files: dict[str, Any]) -> Any:
    """Upload an image; it is checked, re-encoded and stripped of EXIF/GPS before it is kept."""
    media, replayed = media_service.upload(
        current_principal(), args["purpose"], files["file"].read(), request.headers.get("Idempotency-Key")
    )
    return (media, {"Idempotent-Replayed": "true"}) if replayed else media


@blp.route("/<string:key>", methods=["GET"])
@login_optional
@blp.doc(responses={200: {"description": "图片内容", "content": {"image/*": {}}}})
def content(key: str) -> Response:
    """The image: feed images are public; a clue photo only for its reporter and the desk."""
    item, data = media_service.content(optional_principal(), key, request.headers.get(TRACKING_HEADER))
    response = Response(data, mimetype=item.content_type)
    if item.purpose == MediaPurpose.FEED:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = "inline"
    response.set_etag(item.sha256)
    return response
