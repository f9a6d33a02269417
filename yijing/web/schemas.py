"""Schemas shared by the mini-program API and the desk."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load, validate


def _get(obj: object, name: str) -> object:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def label_of(table: str, name: str) -> fields.Function:
    """A ``<code>_label`` field: the Chinese label of the code in ``name`` (see :mod:`yijing.labels`)."""
    from yijing import labels

    return fields.Function(
        lambda obj: labels.label(table, _get(obj, name)),  # type: ignore[arg-type]
        dump_only=True,
        metadata={"type": "string", "description": f"{name} 的中文名"},
    )


class JurisdictionSummarySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)
    level = fields.String(dump_only=True)
    level_label = label_of("jurisdiction_level", "level")


class JurisdictionSchema(JurisdictionSummarySchema):
    parent_id = fields.Integer(dump_only=True, allow_none=True)
    code = fields.String(dump_only=True, allow_none=True)
    lat = fields.Float(dump_only=True, allow_none=True)
    lng = fields.Float(dump_only=True, allow_none=True)


class GrantSchema(Schema):
    role = fields.String(dump_only=True)
    role_label = label_of("role", "role")
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)


class MeSchema(Schema):
    id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True, metadata={"description": "wechat 或 staff"})
    display_name = fields.String(dump_only=True)
    username = fields.String(dump_only=True, allow_none=True)
    phone_masked = fields.String(dump_only=True, allow_none=True)
    home_jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True, allow_none=True)
    roles = fields.List(fields.String(), dump_only=True)
    grants = fields.List(fields.Nested(GrantSchema), dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    must_change_password = fields.Boolean(
        dump_only=True, load_default=False, metadata={"description": "工作人员须先修改密码才能使用值班台"}
    )


class TokenSchema(Schema):
    token = fields.String(dump_only=True)
    token_type = fields.Constant("Bearer", dump_only=True)
    expires_at = fields.DateTime(dump_only=True)
    user = fields.Nested(MeSchema, dump_only=True)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "机器可读的错误码，如 task_full"})
    message = fields.String(required=True, metadata={"description": "给人看的中文说明"})
    fields = fields.Dict(
        required=True,
        metadata={
            "description": '按字段（可嵌套）给出的中文说明，如 {"place": {"lat": ["必填"]}}；无则为 {}'
        },
    )


class ErrorSchema(Schema):
    """The one error shape of the API: ``{"error": {"code", "message", "fields"}}``."""

    error = fields.Nested(ErrorDetailSchema, required=True)


# -- clues (issue 5): shared by the mini-program and the desk --


class DatumMixin(Schema):
    """``coord_type`` beside a ``lat``/``lng``: the service's datum is GCJ-02 (what the mini-program's
    map and Chinese tiles use); a client sending raw GPS says ``wgs84`` and the point is converted here."""

    coord_type = fields.String(
        load_only=True,
        load_default="gcj02",
        validate=validate.OneOf(["gcj02", "wgs84"], error="坐标系应为 gcj02 或 wgs84"),
        metadata={
            "description": "坐标系：gcj02（默认，wx.getLocation type=gcj02）或 wgs84（原始 GPS，服务端换算）"
        },
    )

    @post_load
    def _to_service_datum(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        from yijing.geo import to_service_datum

        coord_type = data.pop("coord_type", "gcj02")
        if data.get("lat") is not None and data.get("lng") is not None:
            data["lat"], data["lng"] = to_service_datum(data["lat"], data["lng"], coord_type)
        return data


class PlaceSchema(DatumMixin, Schema):
    lat = fields.Float(required=True, validate=validate.Range(min=-90, max=90))
    lng = fields.Float(required=True, validate=validate.Range(min=-180, max=180))
    address = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))


class PhotoSchema(Schema):
    id = fields.String(dump_only=True, metadata={"description": "图片 id（上传接口返回的 id）"})
    url = fields.String(
        dump_only=True,
        metadata={"description": "需登录访问；凭查询码查看时在请求头 X-Clue-Tracking-Code 带上查询码"},
    )
    width = fields.Integer(dump_only=True)
    height = fields.Integer(dump_only=True)


class ClueSummarySchema(Schema):
    id = fields.Integer(dump_only=True)
    category = fields.String(dump_only=True)
    category_label = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    status_label = fields.String(dump_only=True)
    description = fields.String(dump_only=True)
    place = fields.Nested(PlaceSchema, dump_only=True)
    occurred_at = fields.DateTime(dump_only=True, allow_none=True)
    anonymous = fields.Boolean(dump_only=True)
    urgent = fields.Boolean(dump_only=True)
    photo_count = fields.Integer(dump_only=True)
    valid = fields.Boolean(dump_only=True, allow_none=True, metadata={"description": "办结时认定是否有效"})
    transfer_target = fields.String(dump_only=True, allow_none=True)
    transfer_reference = fields.String(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    closed_at = fields.DateTime(dump_only=True, allow_none=True)


# -- volunteers (shared by the mini-program and the desk; personal information masked) -------------


class TeamSummarySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)


class PrivacyConsentSchema(Schema):
    version = fields.String(dump_only=True)
    accepted_at = fields.DateTime(dump_only=True, attribute="created_at")


def _category_label(obj: object) -> str:
    from yijing.models.volunteer import CATEGORY_LABELS

    category = obj["category"] if isinstance(obj, dict) else obj.category  # type: ignore[attr-defined]
    return CATEGORY_LABELS.get(category, category)


def _status_label(obj: object) -> str:
    from yijing.services.volunteers import STATUS_LABELS

    return STATUS_LABELS.get(obj.status, obj.status)  # type: ignore[attr-defined]


class VolunteerSchema(Schema):
    """A volunteer or an application, as everyone but the clear-read endpoint sees it."""

    id = fields.Integer(dump_only=True)
    status = fields.String(
        dump_only=True, metadata={"description": "pending | approved | rejected | suspended | withdrawn"}
    )
    status_label = fields.Function(_status_label, dump_only=True)
    category = fields.String(dump_only=True)
    category_label = fields.Function(_category_label, dump_only=True)
    employer = fields.String(dump_only=True)
    name_masked = fields.String(dump_only=True, metadata={"description": "张*三"})
    id_number_masked = fields.String(dump_only=True, metadata={"description": "150***********1234"})
    phone_masked = fields.String(dump_only=True, metadata={"description": "138****5678"})
    skills = fields.List(fields.String(), dump_only=True)
    home = fields.Nested(JurisdictionSummarySchema, dump_only=True, metadata={"description": "社区或网格"})
    community = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    team = fields.Nested(TeamSummarySchema, dump_only=True, allow_none=True)
    volunteer_number = fields.String(dump_only=True, allow_none=True)
    decision_reason = fields.String(dump_only=True, allow_none=True)
    decided_at = fields.DateTime(dump_only=True, allow_none=True)
    on_duty = fields.Boolean(dump_only=True)
    consent = fields.Nested(PrivacyConsentSchema, dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True, allow_none=True)


class CardSchema(Schema):
    volunteer_number = fields.String(dump_only=True)
    name_masked = fields.String(dump_only=True)
    category = fields.String(dump_only=True)
    category_label = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    team = fields.Nested(TeamSummarySchema, dump_only=True, allow_none=True)
    community = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    qr_payload = fields.String(dump_only=True, metadata={"description": "二维码内容（签名），值班台扫码核验"})


class LiaisonSchema(Schema):
    id = fields.Integer(dump_only=True)
    display_name = fields.String(dump_only=True)


class CaptainSchema(Schema):
    volunteer_id = fields.Integer(dump_only=True)
    name_masked = fields.String(dump_only=True)


class TeamSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)
    community = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    liaison = fields.Nested(
        LiaisonSchema, dump_only=True, allow_none=True, metadata={"description": "联络民警"}
    )
    captain = fields.Nested(CaptainSchema, dump_only=True, allow_none=True)
    member_count = fields.Integer(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True, allow_none=True)


# -- patrol tasks (shared by the mini-program and the desk) ---------------------------------------


def _task_kind_label(obj: object) -> str:
    from yijing.models.task import KIND_LABELS

    return KIND_LABELS.get(obj.kind, obj.kind)  # type: ignore[attr-defined]


def _task_status_label(obj: object) -> str:
    from yijing.services.tasks import TASK_STATUS_LABELS

    return TASK_STATUS_LABELS.get(obj.status, obj.status)  # type: ignore[attr-defined]


def _assignment_status_label(obj: object) -> str:
    from yijing.services.tasks import ASSIGNMENT_STATUS_LABELS

    return ASSIGNMENT_STATUS_LABELS.get(obj.status, obj.status)  # type: ignore[attr-defined]


class TaskSchema(Schema):
    """A patrol task as volunteers and the desk see it."""

    id = fields.Integer(dump_only=True)
    kind = fields.String(
        dump_only=True,
        metadata={"description": "patrol | campus_guard | event_security | missing_person | traffic | other"},
    )
    kind_label = fields.Function(_task_kind_label, dump_only=True)
    title = fields.String(dump_only=True)
    description = fields.String(dump_only=True)
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    lat = fields.Float(dump_only=True)
    lng = fields.Float(dump_only=True)
    address = fields.String(dump_only=True)
    geofence_radius_m = fields.Integer(dump_only=True, metadata={"description": "签到范围半径（米）"})
    route = fields.List(
        fields.List(fields.Float()),
        dump_only=True,
        allow_none=True,
        metadata={"description": "[[lat, lng], …]"},
    )
    starts_at = fields.DateTime(dump_only=True)
    ends_at = fields.DateTime(dump_only=True)
    slots = fields.Integer(dump_only=True)
    filled = fields.Integer(dump_only=True)
    remaining = fields.Integer(dump_only=True)
    categories = fields.List(fields.String(), dump_only=True, metadata={"description": "空表示不限"})
    skills = fields.List(fields.String(), dump_only=True)
    points = fields.Integer(dump_only=True)
    dispatch_mode = fields.String(dump_only=True, metadata={"description": "open | assigned | nearby"})
    status = fields.String(
        dump_only=True,
        metadata={
            "description": "draft | published | in_progress | completed（时段结束，有义警签到服务）"
            " | unserved（时段结束，无人签到服务）| cancelled"
        },
    )
    status_label = fields.Function(_task_status_label, dump_only=True)
    series_id = fields.Integer(dump_only=True, allow_none=True)
    occurrence_date = fields.Date(dump_only=True, allow_none=True)
    cancel_reason = fields.String(dump_only=True, allow_none=True)
    published_at = fields.DateTime(dump_only=True, allow_none=True)


class AssignmentSchema(Schema):
    """A volunteer's place on a task, from the invitation to the check-out."""

    id = fields.Integer(dump_only=True)
    task_id = fields.Integer(dump_only=True)
    status = fields.String(
        dump_only=True,
        metadata={
            "description": "invited | accepted | declined | expired | cancelled | checked_in | completed"
            " | no_show"
        },
    )
    status_label = fields.Function(_assignment_status_label, dump_only=True)
    source = fields.String(dump_only=True, metadata={"description": "open | assigned | nearby"})
    distance_m = fields.Float(dump_only=True, allow_none=True, metadata={"description": "受邀时距任务地点"})
    invited_at = fields.DateTime(dump_only=True, allow_none=True)
    invite_expires_at = fields.DateTime(dump_only=True, allow_none=True)
    responded_at = fields.DateTime(dump_only=True, allow_none=True)
    accepted_at = fields.DateTime(dump_only=True, allow_none=True)
    cancelled_by = fields.String(dump_only=True, allow_none=True)
    cancel_reason = fields.String(dump_only=True, allow_none=True)
    checkin_at = fields.DateTime(dump_only=True, allow_none=True)
    checkin_distance_m = fields.Float(dump_only=True, allow_none=True)
    checkout_at = fields.DateTime(dump_only=True, allow_none=True)
    checkout_distance_m = fields.Float(dump_only=True, allow_none=True)
    checkout_auto = fields.Boolean(dump_only=True, metadata={"description": "任务结束时由系统自动签退"})
    service_minutes = fields.Integer(dump_only=True, allow_none=True)
    points_awarded = fields.Integer(dump_only=True)


class ServiceTotalsSchema(Schema):
    tasks = fields.Integer(dump_only=True, metadata={"description": "接受过的任务数"})
    completed = fields.Integer(dump_only=True)
    no_shows = fields.Integer(dump_only=True)
    service_minutes = fields.Integer(dump_only=True)
    service_hours = fields.Float(dump_only=True)
    points = fields.Integer(dump_only=True, metadata={"description": "完成任务获得的积分"})


class MessageReplySchema(Schema):
    """An answer on a message to the police, as the resident and the desk see it."""

    id = fields.Integer(dump_only=True)
    body = fields.String(dump_only=True)
    author_name = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class MessageSchema(Schema):
    """A message to the police (留言) with its answers: the mini-program's view, which the desk extends."""

    id = fields.Integer(dump_only=True)
    body = fields.String(dump_only=True)
    status = fields.String(
        dump_only=True, metadata={"description": "new 待回复 / answered 已回复 / closed 已关闭"}
    )
    status_label = label_of("message_status", "status")
    publish_consent = fields.Boolean(dump_only=True)
    district = fields.Nested(JurisdictionSummarySchema, dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    answered_at = fields.DateTime(dump_only=True, allow_none=True)
    closed_at = fields.DateTime(dump_only=True, allow_none=True)
    qa_post_id = fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "公开问答的动态编号"}
    )
    replies = fields.List(fields.Nested(MessageReplySchema), dump_only=True)
