"""CSV exports of the participation review: request, poll the progress, download."""

from __future__ import annotations

from typing import Any

from flask import Response, send_file
from marshmallow import Schema, fields, validate

from yijing.models import ExportKind, ReportExport
from yijing.services import exports as export_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.schemas import label_of

blp = Blueprint("desk_exports", __name__, url_prefix="/api/v1/desk/exports", description="值班台：导出")


class ExportRequestSchema(Schema):
    kind = fields.String(
        required=True,
        validate=validate.OneOf(
            [k.value for k in ExportKind],
            error="导出类型应为 summary、series、coverage、leaderboard 或 roster",
        ),
        metadata={
            "description": "summary 各项指标（含下级辖区）；series 时间序列；coverage 覆盖情况；"
            "leaderboard 义警排行（全部）；roster 义警名册"
        },
    )
    jurisdiction_id = fields.Integer(load_default=None)
    from_ = fields.Date(data_key="from", load_default=None)
    to = fields.Date(load_default=None)
    granularity = fields.String(
        load_default="day",
        validate=validate.OneOf(["day", "week", "month"], error="粒度应为 day、week 或 month"),
        metadata={"description": "series 的粒度"},
    )
    by = fields.String(
        load_default="hours",
        validate=validate.OneOf(["hours", "points"], error="排序应为 hours 或 points"),
        metadata={"description": "leaderboard 的排序依据"},
    )


class ExportSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    jurisdiction_id = fields.Integer()
    status = fields.String()
    status_label = label_of("export_status", "status")
    kind_label = label_of("export_kind", "kind")
    with_pii = fields.Boolean()
    total = fields.Integer()
    done = fields.Integer()
    progress = fields.Function(export_service.progress, metadata={"type": "number"})
    error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    download_url = fields.Function(export_service.download_url, allow_none=True, metadata={"type": "string"})


@blp.route("", methods=["POST"])
@login_required
@idempotent
@blp.arguments(ExportRequestSchema)
@blp.response(202, ExportSchema)
def request_export(data: dict[str, Any]) -> ReportExport:
    """Start a CSV export (built in the background)."""
    return export_service.request_export(
        current_principal(),
        data["kind"],
        data["jurisdiction_id"],
        data["from_"],
        data["to"],
        current_actor(),
        granularity=data["granularity"],
        by=data["by"],
    )


@blp.route("/<int:export_id>", methods=["GET"])
@login_required
@blp.response(200, ExportSchema)
def get_export(export_id: int) -> ReportExport:
    """An export's progress."""
    return export_service.status(current_principal(), export_id)


@blp.route("/<int:export_id>/file", methods=["GET"])
@login_required
@blp.doc(
    responses={
        200: {
            "description": "CSV 文件（UTF-8 带 BOM，Excel 可直接打开）",
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
)
def download_export(export_id: int) -> Response:
    """Download a finished export (only its requester)."""
    path, name = export_service.file_for(current_principal(), export_id)
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=name)
