"""Patrol tasks on the volunteer's phone: open tasks nearby, invitations, taking a place,
check-in and check-out on site, track points, and the service done."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from yijing.models import Assignment
from yijing.models.task import KIND_LABELS, AssignmentStatus
from yijing.pagination import Page
from yijing.services import onsite
from yijing.services import tasks as task_service
from yijing.web import rendered
from yijing.web.auth import current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import (
    AssignmentSchema,
    DatumMixin,
    JurisdictionSummarySchema,
    ServiceTotalsSchema,
    TaskSchema,
)

blp = Blueprint("tasks", __name__, url_prefix="/api/v1/tasks", description="义警任务：接单、签到签退、轨迹")

MAX_LAT = 85.05112878
LAT = validate.Range(-MAX_LAT, MAX_LAT, error="纬度超出范围")
LNG = validate.Range(-180, 180, error="经度超出范围")
ACCURACY = validate.Range(min=0, max=100_000, error="定位精度应为非负数（米）")
REASON = validate.Length(max=200, error="原因不超过 200 字")


class TaskPointArgsSchema(Schema):
    lat = fields.Float(load_default=None, validate=LAT, metadata={"description": "手机当前位置（可选）"})
    lng = fields.Float(load_default=None, validate=LNG)

    @validates_schema
    def _both(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (data.get("lat") is None) != (data.get("lng") is None):
            raise ValidationError("经纬度须同时提供", "lat")


class TaskListArgsSchema(PageArgsSchema, TaskPointArgsSchema):
    pass


class MyTasksArgsSchema(PageArgsSchema):
    status = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in AssignmentStatus])), load_default=list
    )


class TaskCardSchema(Schema):
    """A task in the list: what the card shows; the detail has the rest."""

    id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True)
    kind_label = fields.Function(lambda t: KIND_LABELS.get(t.kind, t.kind), dump_only=True)
    title = fields.String(dump_only=True)
    address = fields.String(dump_only=True)
    lat = fields.Float(dump_only=True)
    lng = fields.Float(dump_only=True)
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    starts_at = fields.DateTime(dump_only=True)
    ends_at = fields.DateTime(dump_only=True)
    slots = fields.Integer(dump_only=True)
    filled = fields.Integer(dump_only=True)
    remaining = fields.Integer(dump_only=True)
    points = fields.Integer(dump_only=True)
    categories = fields.List(fields.String(), dump_only=True)
    skills = fields.List(fields.String(), dump_only=True)
    series_id = fields.Integer(dump_only=True, allow_none=True, metadata={"description": "周期任务的编号"})
    distance_m = fields.Float(dump_only=True, allow_none=True, metadata={"description": "距您的距离（米）"})
    my_status = fields.Function(
        lambda t: t.my_assignment.status if t.my_assignment else None,
        dump_only=True,
        allow_none=True,
        metadata={"description": "我在该任务上的状态（accepted 等），未参与为 null"},
    )


class TaskForVolunteerSchema(TaskSchema):
    distance_m = fields.Float(dump_only=True, allow_none=True, metadata={"description": "距您的距离（米）"})
    my_assignment = fields.Nested(AssignmentSchema, dump_only=True, allow_none=True)


class MyAssignmentSchema(AssignmentSchema):
    task = fields.Nested(TaskSchema, dump_only=True)


class WithdrawReasonSchema(Schema):
    reason = fields.String(load_default=None, allow_none=True, validate=REASON)


class CheckLocationSchema(DatumMixin, Schema):
    lat = fields.Float(required=True, validate=LAT)
    lng = fields.Float(required=True, validate=LNG)
    accuracy_m = fields.Float(
        load_default=None, allow_none=True, validate=ACCURACY, metadata={"description": "定位精度（米）"}
    )


class TrackPointInSchema(CheckLocationSchema):
    recorded_at = fields.AwareDateTime(
        required=True, metadata={"description": "手机记录该点的时间（带时区）"}
    )


class TrackBatchSchema(Schema):
    points = fields.List(
        fields.Nested(TrackPointInSchema),
        required=True,
        validate=validate.Length(min=1, max=onsite.MAX_TRACK_BATCH, error="每批 1–500 个轨迹点"),
    )


class RejectedTrackPointSchema(Schema):
    index = fields.Integer(dump_only=True)
    reason = fields.String(dump_only=True)


class TrackResultSchema(Schema):
    stored = fields.Integer(dump_only=True)
    duplicates = fields.Integer(dump_only=True, metadata={"description": "已上传过的点（忽略）"})
    rejected = fields.List(fields.Nested(RejectedTrackPointSchema), dump_only=True)


@blp.route("", methods=["GET"])
@login_required
@blp.arguments(TaskListArgsSchema, location="query")
@blp.response(200, page_of(TaskCardSchema))
def list_open(args: dict[str, Any]) -> Response | Page[task_service.TaskView]:
    """Open tasks I can take, nearest first, then by start time."""
    result = task_service.open_tasks(
        current_principal().user_id,
        lat=args["lat"],
        lng=args["lng"],
        cursor=args["cursor"],
        limit=args["limit"],
    )
    # From the task index the page comes rendered (the cards kept there; yijing.web.rendered).
    return rendered.json_response(result) if isinstance(result, bytes) else result


@blp.route("/mine", methods=["GET"])
@login_required
@blp.arguments(MyTasksArgsSchema, location="query")
@blp.response(200, page_of(MyAssignmentSchema))
def list_mine(args: dict[str, Any]) -> Page[Assignment]:
    """My invitations and tasks, newest first."""
    return task_service.my_assignments(
        current_principal().user_id, args["status"], cursor=args["cursor"], limit=args["limit"]
    )


@blp.route("/mine/service", methods=["GET"])
@login_required
@blp.response(200, ServiceTotalsSchema)
def my_service() -> task_service.ServiceTotals:
    """My service: tasks, completed, no-shows, minutes and hours served, points earned."""
    return task_service.my_service(current_principal().user_id)


@blp.route("/<int:task_id>", methods=["GET"])
@login_required
@blp.arguments(TaskPointArgsSchema, location="query")
@blp.response(200, TaskForVolunteerSchema)
def get_one(args: dict[str, Any], task_id: int) -> task_service.TaskView:
    """One task, with my place on it if I have one."""
    return task_service.task_for_volunteer(
        current_principal().user_id, task_id, lat=args["lat"], lng=args["lng"]
    )


@blp.route("/<int:task_id>/accept", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TaskPointArgsSchema)
@blp.response(200, AssignmentSchema)
def accept(data: dict[str, Any], task_id: int) -> Assignment:
    """Take a place on an open task, or accept an invitation (409 task_full when full)."""
    return task_service.accept(current_principal().user_id, task_id, lat=data["lat"], lng=data["lng"])


@blp.route("/<int:task_id>/decline", methods=["POST"])
@login_required
@idempotent
@blp.arguments(WithdrawReasonSchema)
@blp.response(200, AssignmentSchema)
def decline(data: dict[str, Any], task_id: int) -> Assignment:
    """Decline an invitation."""
    return task_service.decline(current_principal().user_id, task_id, data["reason"])


@blp.route("/<int:task_id>/withdraw", methods=["POST"])
@login_required
@idempotent
@blp.arguments(WithdrawReasonSchema)
@blp.response(200, AssignmentSchema)
def withdraw(data: dict[str, Any], task_id: int) -> Assignment:
    """Give my place back before checking in."""
    return task_service.withdraw(current_principal().user_id, task_id, data["reason"])


@blp.route("/<int:task_id>/check-in", methods=["POST"])
@login_required
@idempotent
@blp.arguments(CheckLocationSchema)
@blp.response(200, AssignmentSchema)
def check_in(data: dict[str, Any], task_id: int) -> Assignment:
    """Check in on site (inside the geofence, from shortly before the start to the end)."""
    return onsite.check_in(current_principal().user_id, task_id, data["lat"], data["lng"], data["accuracy_m"])


@blp.route("/<int:task_id>/check-out", methods=["POST"])
@login_required
@idempotent
@blp.arguments(CheckLocationSchema)
@blp.response(200, AssignmentSchema)
def check_out(data: dict[str, Any], task_id: int) -> Assignment:
    """Check out on site: service minutes and points, counted once."""
    return onsite.check_out(
        current_principal().user_id, task_id, data["lat"], data["lng"], data["accuracy_m"]
    )


@blp.route("/<int:task_id>/track", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TrackBatchSchema)
@blp.response(200, TrackResultSchema)
def upload_track(data: dict[str, Any], task_id: int) -> onsite.TrackUpload:
    """Upload a batch of track points recorded while on patrol (duplicates are ignored)."""
    return onsite.upload_track(current_principal().user_id, task_id, data["points"])
