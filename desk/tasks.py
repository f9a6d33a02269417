"""Patrol tasks at the desk: create, edit while draft, publish, cancel; invite named volunteers;
recurring series; the board, one task's volunteers, track points and nearby-dispatch rings.
Everything is limited to the staff member's jurisdiction (``task.manage``). A volunteer's own
history of tasks is served with the volunteers (``desk/volunteers.py``)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.models import Assignment, TaskSeries, TrackPoint
from yijing.models.task import AssignmentStatus, DispatchMode, TaskKind, TaskStatus
from yijing.models.volunteer import Skill, VolunteerCategory
from yijing.pagination import Page
from yijing.services import dispatch, onsite
from yijing.services import tasks as task_service
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.pagination import PageArgsSchema, page_of
from yijing.web.schemas import (
    AssignmentSchema,
    JurisdictionSummarySchema,
    TaskSchema,
)

blp = Blueprint("desk_tasks", __name__, url_prefix="/api/v1/desk", description="值班台：巡逻任务与调度")

MAX_LAT = 85.05112878
KINDS = [k.value for k in TaskKind]
MODES = [m.value for m in DispatchMode]
CATEGORY = validate.OneOf([c.value for c in VolunteerCategory], error="职业类别不在可选范围内")
SKILL = validate.OneOf([s.value for s in Skill], error="技能不在可选范围内")
REASON = validate.Length(min=2, max=500, error="请填写原因（2–500 字）")
HHMM = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="时间格式应为 HH:MM，如 07:30")


class RoutePointField(fields.List):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            fields.Float(), validate=validate.Length(equal=2, error="路线点应为 [纬度, 经度]"), **kwargs
        )


class TaskTemplateSchema(Schema):
    """What a task and a series have in common."""

    kind = fields.String(required=True, validate=validate.OneOf(KINDS, error="任务类型不在可选范围内"))
    title = fields.String(required=True, validate=validate.Length(min=2, max=100, error="标题 2–100 字"))
    description = fields.String(
        load_default="", validate=validate.Length(max=2000, error="说明不超过 2000 字")
    )
    jurisdiction_id = fields.Integer(required=True, metadata={"description": "任务所属辖区"})
    lat = fields.Float(required=True, validate=validate.Range(-MAX_LAT, MAX_LAT, error="纬度超出范围"))
    lng = fields.Float(required=True, validate=validate.Range(-180, 180, error="经度超出范围"))
    address = fields.String(load_default="", validate=validate.Length(max=200, error="地址不超过 200 字"))
    geofence_radius_m = fields.Integer(
        load_default=200,
        validate=validate.Range(min=20, max=5000, error="签到范围 20–5000 米"),
        metadata={"description": "签到范围半径（米）"},
    )
    route = fields.List(
        RoutePointField(),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=200, error="路线点不超过 200 个"),
        metadata={"description": "巡逻路线 [[lat, lng], …]，可选"},
    )
    slots = fields.Integer(required=True, validate=validate.Range(min=1, max=500, error="名额 1–500"))
    categories = fields.List(
        fields.String(validate=CATEGORY), load_default=list, metadata={"description": "空为不限"}
    )
    skills = fields.List(fields.String(validate=SKILL), load_default=list)
    points = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1000, error="积分 0–1000"))


class TaskCreateSchema(TaskTemplateSchema):
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)
    dispatch_mode = fields.String(
        load_default=DispatchMode.OPEN.value,
        validate=validate.OneOf(MODES, error="调度方式应为 open、assigned 或 nearby"),
        metadata={"description": "open 公开报名 | assigned 指派 | nearby 就近调度（发布即按距离逐圈邀请）"},
    )
    publish = fields.Boolean(load_default=False, metadata={"description": "创建后立即发布"})


class TaskUpdateSchema(Schema):
    kind = fields.String(validate=validate.OneOf(KINDS, error="任务类型不在可选范围内"))
    title = fields.String(validate=validate.Length(min=2, max=100, error="标题 2–100 字"))
    description = fields.String(validate=validate.Length(max=2000, error="说明不超过 2000 字"))
    jurisdiction_id = fields.Integer()
    lat = fields.Float(validate=validate.Range(-MAX_LAT, MAX_LAT, error="纬度超出范围"))
    lng = fields.Float(validate=validate.Range(-180, 180, error="经度超出范围"))
    address = fields.String(validate=validate.Length(max=200, error="地址不超过 200 字"))
    geofence_radius_m = fields.Integer(validate=validate.Range(min=20, max=5000, error="签到范围 20–5000 米"))
    route = fields.List(RoutePointField(), allow_none=True, validate=validate.Length(max=200))
    starts_at = fields.AwareDateTime()
    ends_at = fields.AwareDateTime()
    slots = fields.Integer(validate=validate.Range(min=1, max=500, error="名额 1–500"))
    categories = fields.List(fields.String(validate=CATEGORY))
    skills = fields.List(fields.String(validate=SKILL))
    points = fields.Integer(validate=validate.Range(min=0, max=1000, error="积分 0–1000"))
    dispatch_mode = fields.String(
        validate=validate.OneOf(MODES, error="调度方式应为 open、assigned 或 nearby")
    )


class TaskBoardArgsSchema(PageArgsSchema):
    status = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in TaskStatus])), load_default=list
    )
    kind = fields.List(fields.String(validate=validate.OneOf(KINDS)), load_default=list)
    dispatch_mode = fields.List(fields.String(validate=validate.OneOf(MODES)), load_default=list)
    jurisdiction_id = fields.Integer(load_default=None, metadata={"description": "只看该辖区及其下级"})
    day = fields.Date(load_default=None, metadata={"description": "只看这一天（北京时间）有时段的任务"})
    series_id = fields.Integer(load_default=None)
    q = fields.String(
        load_default=None,
        validate=validate.Length(max=50),
        metadata={"description": "标题、地址或说明中的文字"},
    )


class TaskCountsSchema(Schema):
    invited = fields.Integer(dump_only=True, metadata={"description": "待回复的邀请"})
    accepted = fields.Integer(dump_only=True, metadata={"description": "已接受、尚未签到"})
    checked_in = fields.Integer(dump_only=True, metadata={"description": "在岗（已签到未签退）"})
    completed = fields.Integer(dump_only=True)
    arrived = fields.Integer(dump_only=True, metadata={"description": "签到过的人数"})
    no_show = fields.Integer(dump_only=True)
    declined = fields.Integer(dump_only=True)
    expired = fields.Integer(dump_only=True)
    cancelled = fields.Integer(dump_only=True)


class DeskTaskSchema(TaskSchema):
    counts = fields.Nested(TaskCountsSchema, dump_only=True)
    created_by_id = fields.Integer(dump_only=True, allow_none=True)
    dispatch_ring = fields.Integer(dump_only=True)
    dispatch_next_at = fields.DateTime(dump_only=True, allow_none=True)
    dispatch_exhausted_at = fields.DateTime(dump_only=True, allow_none=True)
    closed_at = fields.DateTime(dump_only=True, allow_none=True)
    cancelled_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)


class TaskVolunteerBriefSchema(Schema):
    id = fields.Integer(dump_only=True)
    name_masked = fields.String(dump_only=True)
    category = fields.String(dump_only=True)
    volunteer_number = fields.String(dump_only=True, allow_none=True)


class DeskAssignmentSchema(AssignmentSchema):
    volunteer = fields.Nested(TaskVolunteerBriefSchema, dump_only=True)
    ring_no = fields.Function(lambda a: a.ring.ring_no if a.ring else None, dump_only=True, allow_none=True)
    response_seconds = fields.Float(
        dump_only=True, allow_none=True, metadata={"description": "受邀到答复的秒数"}
    )
    decline_reason = fields.String(dump_only=True, allow_none=True)
    invited_by_id = fields.Integer(dump_only=True, allow_none=True)
    checkin_lat = fields.Float(dump_only=True, allow_none=True)
    checkin_lng = fields.Float(dump_only=True, allow_none=True)
    checkin_accuracy_m = fields.Float(dump_only=True, allow_none=True)
    checkout_lat = fields.Float(dump_only=True, allow_none=True)
    checkout_lng = fields.Float(dump_only=True, allow_none=True)
    checkout_accuracy_m = fields.Float(dump_only=True, allow_none=True)


class TaskAssignmentArgsSchema(PageArgsSchema):
    status = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in AssignmentStatus])), load_default=list
    )


class TaskTrackArgsSchema(PageArgsSchema):
    assignment_id = fields.Integer(load_default=None, metadata={"description": "只看这位义警的轨迹"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=100))


class TrackPointOutSchema(Schema):
    id = fields.Integer(dump_only=True)
    assignment_id = fields.Integer(dump_only=True)
    recorded_at = fields.DateTime(dump_only=True)
    lat = fields.Float(dump_only=True)
    lng = fields.Float(dump_only=True)
    accuracy_m = fields.Float(dump_only=True, allow_none=True)
    received_at = fields.DateTime(dump_only=True)


class DispatchInvitationSchema(Schema):
    assignment_id = fields.Integer(dump_only=True)
    volunteer_id = fields.Integer(dump_only=True)
    name_masked = fields.String(dump_only=True)
    category = fields.String(dump_only=True)
    distance_m = fields.Float(dump_only=True, allow_none=True)
    status = fields.String(dump_only=True)
    invited_at = fields.DateTime(dump_only=True, allow_none=True)
    responded_at = fields.DateTime(dump_only=True, allow_none=True)
    response_seconds = fields.Float(
        dump_only=True, allow_none=True, metadata={"description": "受邀到答复的秒数"}
    )


class DispatchRingSchema(Schema):
    ring_no = fields.Integer(dump_only=True)
    radius_m = fields.Integer(dump_only=True)
    sent_at = fields.DateTime(dump_only=True)
    found = fields.Integer(dump_only=True, metadata={"description": "圈内新发现的在岗义警"})
    invited = fields.Integer(dump_only=True)
    slots_open = fields.Integer(dump_only=True, metadata={"description": "发出时尚缺的名额"})
    next_at = fields.DateTime(
        dump_only=True, allow_none=True, metadata={"description": "名额未满时下一圈的时间"}
    )
    invitations = fields.List(fields.Nested(DispatchInvitationSchema), dump_only=True)


class DispatchViewSchema(Schema):
    task_id = fields.Integer(dump_only=True)
    status = fields.String(dump_only=True)
    slots = fields.Integer(dump_only=True)
    filled = fields.Integer(dump_only=True)
    ring = fields.Integer(dump_only=True, metadata={"description": "已发出的圈数"})
    next_ring_at = fields.DateTime(dump_only=True, allow_none=True)
    exhausted_at = fields.DateTime(dump_only=True, allow_none=True, metadata={"description": "已达最大半径"})
    radii_m = fields.List(fields.Integer(), dump_only=True)
    rings = fields.List(fields.Nested(DispatchRingSchema), dump_only=True)


class TaskInviteSchema(Schema):
    volunteer_ids = fields.List(
        fields.Integer(),
        required=True,
        validate=validate.Length(min=1, max=200, error="一次邀请 1–200 名义警"),
    )
    expires_at = fields.AwareDateTime(
        load_default=None, allow_none=True, metadata={"description": "答复截止时间，默认为现在起 60 分钟"}
    )


class TaskReasonSchema(Schema):
    reason = fields.String(required=True, validate=REASON)


class TaskSeriesCreateSchema(TaskTemplateSchema):
    weekdays = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=7, error="星期应为 1（周一）到 7（周日）")),
        required=True,
        validate=validate.Length(min=1, max=7, error="请选择星期"),
    )
    start_time = fields.String(required=True, validate=HHMM, metadata={"description": "北京时间，如 07:30"})
    end_time = fields.String(
        required=True, validate=HHMM, metadata={"description": "早于开始时间表示次日结束"}
    )
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(load_default=None, allow_none=True)
    skip_dates = fields.List(
        fields.Date(), load_default=list, metadata={"description": "跳过的日期（节假日）"}
    )


class TaskSeriesSchema(Schema):
    id = fields.Integer(dump_only=True)
    status = fields.String(dump_only=True, metadata={"description": "active | ended"})
    kind = fields.String(dump_only=True)
    title = fields.String(dump_only=True)
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    lat = fields.Float(dump_only=True)
    lng = fields.Float(dump_only=True)
    address = fields.String(dump_only=True)
    geofence_radius_m = fields.Integer(dump_only=True)
    slots = fields.Integer(dump_only=True)
    categories = fields.List(fields.String(), dump_only=True)
    skills = fields.List(fields.String(), dump_only=True)
    points = fields.Integer(dump_only=True)
    weekdays = fields.List(fields.Integer(), dump_only=True)
    start_time = fields.String(dump_only=True)
    end_time = fields.String(dump_only=True)
    starts_on = fields.Date(dump_only=True)
    ends_on = fields.Date(dump_only=True, allow_none=True)
    skip_dates = fields.List(fields.String(), dump_only=True)
    generated_through = fields.Date(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    ended_at = fields.DateTime(dump_only=True, allow_none=True)


# -- tasks ----------------------------------------------------------------------------------------


@blp.route("/tasks", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TaskCreateSchema)
@blp.response(201, DeskTaskSchema)
def create(data: dict[str, Any]) -> task_service.TaskRow:
    """Create a task as a draft (or publish it at once with publish=true)."""
    return task_service.create_task(current_principal(), data, current_actor())


@blp.route("/tasks", methods=["GET"])
@login_required
@blp.arguments(TaskBoardArgsSchema, location="query")
@blp.response(200, page_of(DeskTaskSchema))
def board(args: dict[str, Any]) -> Page[task_service.TaskRow]:
    """The task board: filters status, kind, jurisdiction, day; with filled slots, check-ins, no-shows."""
    cursor, limit = args.pop("cursor"), args.pop("limit")
    return task_service.board(current_principal(), args, cursor=cursor, limit=limit)


@blp.route("/tasks/<int:task_id>", methods=["GET"])
@login_required
@blp.response(200, DeskTaskSchema)
def get_one(task_id: int) -> task_service.TaskRow:
    """One task with its counts."""
    return task_service.detail_for_staff(current_principal(), task_id)


@blp.route("/tasks/<int:task_id>", methods=["PATCH"])
@login_required
@blp.arguments(TaskUpdateSchema)
@blp.response(200, DeskTaskSchema)
def update(changes: dict[str, Any], task_id: int) -> task_service.TaskRow:
    """Edit a draft task."""
    return task_service.update_task(current_principal(), task_id, changes, current_actor())


@blp.route("/tasks/<int:task_id>/publish", methods=["POST"])
@login_required
@idempotent
@blp.response(200, DeskTaskSchema)
def publish(task_id: int) -> task_service.TaskRow:
    """Publish a draft (a nearby task starts inviting the nearest on-duty volunteers)."""
    return task_service.publish(current_principal(), task_id, current_actor())


@blp.route("/tasks/<int:task_id>/cancel", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TaskReasonSchema)
@blp.response(200, DeskTaskSchema)
def cancel(data: dict[str, Any], task_id: int) -> task_service.TaskRow:
    """Cancel a task; the reason reaches every volunteer on it or invited to it."""
    return task_service.cancel(current_principal(), task_id, data["reason"], current_actor())


@blp.route("/tasks/<int:task_id>/invitations", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TaskInviteSchema)
@blp.response(200, DeskAssignmentSchema(many=True))
def invite(data: dict[str, Any], task_id: int) -> list[Assignment]:
    """Invite named volunteers, who accept or decline before the deadline."""
    return dispatch.invite(
        current_principal(), task_id, data["volunteer_ids"], data["expires_at"], current_actor()
    )


@blp.route("/tasks/<int:task_id>/assignments", methods=["GET"])
@login_required
@blp.arguments(TaskAssignmentArgsSchema, location="query")
@blp.response(200, page_of(DeskAssignmentSchema))
def assignments(args: dict[str, Any], task_id: int) -> Page[Assignment]:
    """Everyone invited to or on the task: answers, check-in/out, minutes."""
    return task_service.assignments_for_staff(
        current_principal(), task_id, args["status"], cursor=args["cursor"], limit=args["limit"]
    )


@blp.route("/tasks/<int:task_id>/track", methods=["GET"])
@login_required
@blp.arguments(TaskTrackArgsSchema, location="query")
@blp.response(200, page_of(TrackPointOutSchema))
def track(args: dict[str, Any], task_id: int) -> Page[TrackPoint]:
    """Track points of the task (or of one volunteer on it), oldest first."""
    return onsite.track_for_staff(
        current_principal(), task_id, args["assignment_id"], cursor=args["cursor"], limit=args["limit"]
    )


@blp.route("/tasks/<int:task_id>/dispatch", methods=["GET"])
@login_required
@blp.response(200, DispatchViewSchema)
def dispatch_view(task_id: int) -> dispatch.DispatchView:
    """Nearby dispatch: each ring, who was invited, who answered and how fast."""
    return dispatch.dispatch_view(current_principal(), task_id)


# -- recurring series -------------------------------------------------------------------------------


@blp.route("/task-series", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TaskSeriesCreateSchema)
@blp.response(201, TaskSeriesSchema)
def create_series(data: dict[str, Any]) -> TaskSeries:
    """Create a recurring task; its occurrences are created ahead of time by a scheduled job."""
    return task_service.create_series(current_principal(), data, current_actor())


@blp.route("/task-series", methods=["GET"])
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_of(TaskSeriesSchema))
def list_series(args: dict[str, Any]) -> Page[TaskSeries]:
    """Recurring tasks in my jurisdiction, newest first."""
    return task_service.list_series(current_principal(), cursor=args["cursor"], limit=args["limit"])


@blp.route("/task-series/<int:series_id>/end", methods=["POST"])
@login_required
@idempotent
@blp.arguments(TaskReasonSchema)
@blp.response(200, TaskSeriesSchema)
def end_series(data: dict[str, Any], series_id: int) -> TaskSeries:
    """Stop a recurring task; upcoming occurrences are cancelled with the reason."""
    return task_service.end_series(current_principal(), series_id, data["reason"], current_actor())
