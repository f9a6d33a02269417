"""Participation review for leaders and the desk: figures, series, coverage, leaderboards."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from yijing.services import reports as report_service
from yijing.web.auth import current_principal, login_required
from yijing.web.contract import Blueprint

blp = Blueprint(
    "desk_reports", __name__, url_prefix="/api/v1/desk/reports", description="值班台：参与情况统计"
)


class ReportArgsSchema(Schema):
    jurisdiction_id = fields.Integer(load_default=None, metadata={"description": "默认：本人管辖的辖区"})
    from_ = fields.Date(data_key="from", load_default=None, metadata={"description": "含当天；默认本月1日"})
    to = fields.Date(load_default=None, metadata={"description": "含当天；默认今天（北京时间）"})


class SeriesArgsSchema(ReportArgsSchema):
    granularity = fields.String(
        load_default="day",
        validate=validate.OneOf(["day", "week", "month"], error="粒度应为 day、week 或 month"),
    )


class LeaderboardArgsSchema(ReportArgsSchema):
    by = fields.String(
        load_default="hours", validate=validate.OneOf(["hours", "points"], error="排序应为 hours 或 points")
    )
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100, error="数量 1–100"))


class CoverageArgsSchema(Schema):
    jurisdiction_id = fields.Integer(load_default=None)


class ReportJurisdictionSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    level = fields.String()
    key = fields.String()


class FiguresSchema(Schema):
    jurisdiction = fields.Nested(ReportJurisdictionSchema)
    volunteers = fields.Dict()
    service = fields.Dict()
    clues = fields.Dict()
    response = fields.Dict(
        metadata={
            "description": "就近派单（按任务开始日计）：派单任务数，首轮派单到首位接单、首位签到的用时"
            "（整秒）中位数与第90百分位（最近秩）"
        }
    )


class SummarySchema(FiguresSchema):
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    children = fields.List(fields.Nested(FiguresSchema))


class SeriesSchema(Schema):
    jurisdiction = fields.Nested(ReportJurisdictionSchema)
    granularity = fields.String()
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    points = fields.List(
        fields.Dict(),
        metadata={
            "description": "每个时间段：start、end，各项计数（task_published、task_filled、task_completed、"
            "task_cancelled、checkins、no_shows、served、service_minutes、vol_approved、clue_reported、"
            "clue_judged、clue_valid），fill_rate、no_show_rate、service_hours、valid_share、clues_answered、"
            "answer_median_minutes，就近派单 nearby_tasks 与接单/签到用时中位数、P90，active_volunteers"
        },
    )


class CoverageItemSchema(Schema):
    jurisdiction = fields.Nested(ReportJurisdictionSchema)
    has_team = fields.Boolean()
    has_liaison = fields.Boolean()
    has_captain = fields.Boolean()
    active_volunteers = fields.Integer()
    covered = fields.Boolean()
    reasons = fields.List(fields.String())


class CoverageSchema(Schema):
    jurisdiction = fields.Nested(ReportJurisdictionSchema)
    min_active_volunteers = fields.Integer()
    active_window_days = fields.Integer()
    communities = fields.Integer()
    covered = fields.Integer()
    coverage_share = fields.Float(allow_none=True)
    items = fields.List(fields.Nested(CoverageItemSchema))
    falling_short = fields.List(fields.Nested(CoverageItemSchema))


class LeaderboardSchema(Schema):
    jurisdiction = fields.Nested(ReportJurisdictionSchema)
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    by = fields.String()
    volunteers = fields.List(fields.Dict())
    communities = fields.List(fields.Dict())


@blp.route("/summary", methods=["GET"])
@login_required
@blp.arguments(ReportArgsSchema, location="query")
@blp.response(200, SummarySchema)
def summary(args: dict[str, Any]) -> dict[str, Any]:
    """Figures of a jurisdiction for a period, with each child jurisdiction side by side."""
    return report_service.summary(current_principal(), args["jurisdiction_id"], args["from_"], args["to"])


@blp.route("/series", methods=["GET"])
@login_required
@blp.arguments(SeriesArgsSchema, location="query")
@blp.response(200, SeriesSchema)
def series(args: dict[str, Any]) -> dict[str, Any]:
    """Figures of a jurisdiction by day, week or month."""
    return report_service.series(
        current_principal(), args["jurisdiction_id"], args["from_"], args["to"], args["granularity"]
    )


@blp.route("/coverage", methods=["GET"])
@login_required
@blp.arguments(CoverageArgsSchema, location="query")
@blp.response(200, CoverageSchema)
def coverage(args: dict[str, Any]) -> dict[str, Any]:
    """Each community: liaison, team, captain, enough active volunteers; who falls short and why."""
    return report_service.coverage(current_principal(), args["jurisdiction_id"])


@blp.route("/leaderboard", methods=["GET"])
@login_required
@blp.arguments(LeaderboardArgsSchema, location="query")
@blp.response(200, LeaderboardSchema)
def leaderboard(args: dict[str, Any]) -> dict[str, Any]:
    """Volunteers by service hours or points (masked names); communities by coverage and activity."""
    return report_service.leaderboard(
        current_principal(), args["jurisdiction_id"], args["from_"], args["to"], args["by"], args["limit"]
    )
