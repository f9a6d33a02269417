"""Applying to the corps, the volunteer card, the team, and duty status with location pings."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from yijing.extensions import limiter
from yijing.models import Volunteer
from yijing.models.volunteer import Skill, VolunteerCategory
from yijing.services import corrections as correction_service
from yijing.services import duty as duty_service
from yijing.services import teams as team_service
from yijing.services import volunteers as volunteer_service
from yijing.services.duty import DutyState
from yijing.services.volunteers import Card, FormOptions
from yijing.web.auth import current_actor, current_principal, login_required
from yijing.web.contract import Blueprint
from yijing.web.idempotency import idempotent
from yijing.web.ratelimit import user_key
from yijing.web.schemas import CardSchema, DatumMixin, TeamSchema, VolunteerSchema

blp = Blueprint(
    "volunteers", __name__, url_prefix="/api/v1/volunteers", description="义警：申请、义警证、上岗"
)

# Chinese (incl. rare characters), Latin letters, the middle dots of minority and foreign names.
NAME_PATTERN = r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaffA-Za-z·・•. ]{2,30}$"
MAX_LAT = 85.05112878  # Redis GEO's limit (Web Mercator)


class VolunteerOptionSchema(Schema):
    value = fields.String(dump_only=True)
    label = fields.String(dump_only=True)


class VolunteerPrivacyTermsSchema(Schema):
    version = fields.String(dump_only=True)
    summary = fields.String(dump_only=True)


class VolunteerAgeLimitsSchema(Schema):
    min = fields.Integer(dump_only=True)
    max = fields.Integer(dump_only=True)


class VolunteerFormSchema(Schema):
    categories = fields.List(fields.Nested(VolunteerOptionSchema), dump_only=True)
    skills = fields.List(fields.Nested(VolunteerOptionSchema), dump_only=True)
    privacy_terms = fields.Nested(VolunteerPrivacyTermsSchema, dump_only=True)
    age_limits = fields.Nested(VolunteerAgeLimitsSchema, dump_only=True)


CATEGORY_CHOICE = validate.OneOf([c.value for c in VolunteerCategory], error="请从列表中选择职业类别")
SKILL_CHOICE = validate.OneOf([s.value for s in Skill], error="技能不在可选范围内")
NAME_RULE = validate.Regexp(NAME_PATTERN, error="请填写与身份证一致的真实姓名（2–30 个字）")
EMPLOYER_RULE = validate.Length(max=100, error="工作单位不超过 100 字")
ID_NUMBER_RULE = validate.Length(max=32, error="身份证号码应为 18 位")
PHONE_RULE = validate.Length(max=20, error="请填写 11 位手机号")
SKILLS_RULE = validate.Length(max=len(Skill), error="技能选择过多")


class ApplicationSchema(Schema):
    category = fields.String(
        required=True,
        validate=CATEGORY_CHOICE,
        metadata={"description": "security_guard | courier | taxi_driver | ride_hailing_driver | …"},
    )
    employer = fields.String(
        required=True,
        validate=EMPLOYER_RULE,
        metadata={"description": "工作单位；必填，类别为 other（其他）时可为空字符串"},
    )
    real_name = fields.String(
        required=True, validate=NAME_RULE, metadata={"description": "加密保存，只返回脱敏值"}
    )
    id_number = fields.String(
        required=True, validate=ID_NUMBER_RULE, metadata={"description": "18 位居民身份证号码；加密保存"}
    )
    phone = fields.String(
        load_default=None,
        allow_none=True,
        validate=PHONE_RULE,
        metadata={"description": "不填则用已绑定的手机号"},
    )
    jurisdiction_id = fields.Integer(required=True, metadata={"description": "所在社区（村）或网格"})
    skills = fields.List(fields.String(validate=SKILL_CHOICE), load_default=list, validate=SKILLS_RULE)
    consent_accepted = fields.Boolean(required=True, metadata={"description": "同意《义警个人信息保护条款》"})
    consent_version = fields.String(
        required=True,
        validate=validate.Length(max=32),
        metadata={"description": "所同意条款的版本（见 GET /api/v1/volunteers/form）"},
    )

    @validates_schema
    def _employer_unless_other(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (
            data.get("category") not in (None, VolunteerCategory.OTHER)
            and not data.get("employer", "").strip()
        ):
            raise ValidationError("请填写工作单位", "employer")


class ApplicationUpdateSchema(Schema):
    """Any subset of the application's fields."""

    category = fields.String(validate=CATEGORY_CHOICE)
    employer = fields.String(validate=EMPLOYER_RULE)
    real_name = fields.String(validate=NAME_RULE)
    id_number = fields.String(validate=ID_NUMBER_RULE)
    phone = fields.String(validate=PHONE_RULE)
    jurisdiction_id = fields.Integer()
    skills = fields.List(fields.String(validate=SKILL_CHOICE), validate=SKILLS_RULE)


class VolunteerWithdrawSchema(Schema):
    reason = fields.String(load_default=None, validate=validate.Length(max=500, error="不超过 500 字"))


class DutyLocationSchema(DatumMixin, Schema):
    lat = fields.Float(required=True, validate=validate.Range(-MAX_LAT, MAX_LAT, error="纬度超出范围"))
    lng = fields.Float(required=True, validate=validate.Range(-180, 180, error="经度超出范围"))
    accuracy = fields.Float(load_default=None, validate=validate.Range(min=0, error="精度不能为负"))


class DutySchema(DatumMixin, Schema):
    on_duty = fields.Boolean(required=True, metadata={"description": "true 上岗，false 下岗"})
    lat = fields.Float(load_default=None, validate=validate.Range(-MAX_LAT, MAX_LAT, error="纬度超出范围"))
    lng = fields.Float(load_default=None, validate=validate.Range(-180, 180, error="经度超出范围"))
    accuracy = fields.Float(load_default=None, validate=validate.Range(min=0, error="精度不能为负"))


class DutyStateSchema(Schema):
    on_duty = fields.Boolean(dump_only=True)
    since = fields.DateTime(dump_only=True, allow_none=True)
    last_ping_at = fields.DateTime(dump_only=True, allow_none=True)
    ping_window_seconds = fields.Integer(
        dump_only=True, metadata={"description": "超过这么久没有上报位置即自动下岗"}
    )
    indexed = fields.Boolean(dump_only=True, allow_none=True)


@blp.route("/form", methods=["GET"])
@blp.response(200, VolunteerFormSchema)
def form() -> FormOptions:
    """Categories, skills, age limits and the privacy terms' current version."""
    return volunteer_service.form_options()


@blp.route("", methods=["POST"])
@login_required
@idempotent
@limiter.limit("10/hour", key_func=user_key)
@blp.arguments(ApplicationSchema)
@blp.response(201, VolunteerSchema)
def apply(data: dict[str, Any]) -> Volunteer:
    """Apply to join the corps (one open application per user)."""
    return volunteer_service.apply(current_principal().user_id, data, current_actor())


@blp.route("/me", methods=["GET"])
@login_required
@blp.response(200, VolunteerSchema)
def get_mine() -> Volunteer:
    """My application (or volunteer record) and its status."""
    return volunteer_service.my_application(current_principal().user_id)


@blp.route("/me", methods=["PATCH"])
@login_required
@limiter.limit("20/hour", key_func=user_key)
@blp.arguments(ApplicationUpdateSchema)
@blp.response(200, VolunteerSchema)
def update_mine(changes: dict[str, Any]) -> Volunteer:
    """Edit my application while it is pending."""
    return volunteer_service.update_application(current_principal().user_id, changes, current_actor())


@blp.route("/me/withdraw", methods=["POST"])
@login_required
@idempotent
@blp.arguments(VolunteerWithdrawSchema)
@blp.response(200, VolunteerSchema)
def withdraw(data: dict[str, Any]) -> Volunteer:
    """Withdraw my application, or leave the corps."""
    return volunteer_service.withdraw(current_principal().user_id, data["reason"], current_actor())


@blp.route("/me/card", methods=["GET"])
@login_required
@blp.response(200, CardSchema)
def my_card() -> Card:
    """My volunteer card with its signed QR payload."""
    return volunteer_service.card(current_principal().user_id)


@blp.route("/me/team", methods=["GET"])
@login_required
@blp.response(200, TeamSchema)
def my_team() -> team_service.TeamView:
    """My team: its community, liaison officer and captain."""
    return team_service.my_team(current_principal().user_id)


@blp.route("/me/duty", methods=["GET"])
@login_required
@blp.response(200, DutyStateSchema)
def my_duty() -> DutyState:
    """Whether I am on duty, since when, and my last location ping."""
    return duty_service.my_state(current_principal().user_id)


@blp.route("/me/duty", methods=["POST"])
@login_required
@idempotent
@limiter.limit("60/hour", key_func=user_key)
@blp.arguments(DutySchema)
@blp.response(200, DutyStateSchema)
def set_duty(data: dict[str, Any]) -> DutyState:
    """Go on duty at my current location, or off duty."""
    return duty_service.set_duty(current_principal().user_id, data["on_duty"], data["lat"], data["lng"])


@blp.route("/me/location", methods=["POST"])
@login_required
@idempotent
@limiter.limit("30/minute", key_func=user_key)
@blp.arguments(DutyLocationSchema)
@blp.response(200, DutyStateSchema)
def ping(data: dict[str, Any]) -> DutyState:
    """Report my location while on duty (every minute or so)."""
    return duty_service.ping(current_principal().user_id, data["lat"], data["lng"])


# -- correcting name, phone or ID number (PIPL art. 46; issue 13) ---------------------------------


class CorrectionInSchema(Schema):
    real_name = fields.String(load_default=None, validate=validate.Length(min=2, max=30))
    phone = fields.String(load_default=None, validate=validate.Length(max=20))
    id_number = fields.String(load_default=None, validate=validate.Length(max=32))
    note = fields.String(
        load_default=None, validate=validate.Length(max=200), metadata={"description": "说明"}
    )


class CorrectionSchema(Schema):
    id = fields.Integer(dump_only=True)
    status = fields.String(dump_only=True, metadata={"description": "pending | approved | rejected"})
    name_masked = fields.String(dump_only=True, allow_none=True)
    phone_masked = fields.String(dump_only=True, allow_none=True)
    id_number_masked = fields.String(dump_only=True, allow_none=True)
    note = fields.String(dump_only=True, allow_none=True)
    decision_reason = fields.String(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    decided_at = fields.DateTime(dump_only=True, allow_none=True)


@blp.route("/me/corrections", methods=["POST"])
@login_required
@idempotent
@limiter.limit("10/day", key_func=user_key)
@blp.arguments(CorrectionInSchema)
@blp.response(201, CorrectionSchema)
def request_correction(data: dict[str, Any]) -> Any:
    """Ask to correct my name, phone or ID number; the desk reviews it."""
    return correction_service.request(current_principal().user_id, data, current_actor())


@blp.route("/me/corrections", methods=["GET"])
@login_required
@blp.response(200, CorrectionSchema(many=True))
def my_corrections() -> Any:
    """My correction requests and their outcome, newest first."""
    return correction_service.mine(current_principal().user_id)
