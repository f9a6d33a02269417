"""Participation review for leaders and the desk: figures, series, coverage, leaderboards."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from flask import Response
from marshmallow import Schema, fields, post_dump, validate
from werkzeug.datastructures import MultiDict

from yijing.services import reports as report_service
from yijing.web import rendered
from yijing.web.auth import (
    admit,
    current_principal,
    login_required,
    login_required_in_view,
    take_pending_token,
)
from yijing.web.contract import Blueprint, errors

blp = Blueprint(
    "desk_reports", __name__, url_prefix="/api/v1/desk/reports", description="值班台：参与情况统计"
)


class ReportArgsSchema(Schema):
    jurisdiction_id = fields.Integer(load_default=None, metadata={"description": "默认：本人管辖的辖区"})
    from_ = fields.Date(data_key="from", load_default=None, metadata={"description": "含当天；默认本月1日"})
    to = fields.Date(load_default=None, metadata={"description": "含当天；默认今天（北京时间）"})


_ID = re.compile("[0-9]{1,18}")
_DAY = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}")
_REPORT_ARGS = {"jurisdiction_id": "jurisdiction_id", "from": "from_", "to": "to"}


def _plain_report_args(query: MultiDict[str, str]) -> dict[str, Any] | None:
    """What ``ReportArgsSchema`` loads from a plainly written query (each argument once, an id of
    digits, days as YYYY-MM-DD), parsed by hand; None for anything else (the schema parses it)."""
    args: dict[str, Any] = {"jurisdiction_id": None, "from_": None, "to": None}
    for name, values in query.lists():
        field = _REPORT_ARGS.get(name)
        if field is None or len(values) != 1:
            return None
        value = values[0]
        if field == "jurisdiction_id":
            if not _ID.fullmatch(value):
                return None
            args[field] = int(value)
        else:
            if not _DAY.fullmatch(value):
                return None
            try:
                args[field] = date.fromisoformat(value)
            except ValueError:
                return None
    return args


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
    id = fields.Integer(metadata={"description": "辖区编号"})
    name = fields.String(metadata={"description": "辖区名称"})
    level = fields.String(metadata={"description": "层级：city | district | street | community | grid"})
    key = fields.String(metadata={"description": "辖区代码（导入时的 key）"})


# The definitions below are the figures' contract: what is counted, on which day, in which time
# zone. A day is a calendar day in Beijing time (Asia/Shanghai); a period includes both its days.
# Each figure counts an event on the day it happened, so a past period's figures never change.
DAY = "（北京时间，按日计）"


def _count(text: str) -> fields.Integer:
    return fields.Integer(metadata={"description": text})


def _rate(text: str) -> fields.Float:
    return fields.Float(allow_none=True, metadata={"description": text + "；分母为 0 时为 null"})


def _by(text: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": text})


class VolunteerFiguresSchema(Schema):
    by_status = _by(
        "现有申请按状态计数（approved 已通过、pending 待审核、suspended 已暂停、rejected 未通过、"
        "withdrawn 已退出）："
        "查询时的现状，不随所选时段变化；已通过 + 待审核 + 已暂停 = 义警名册导出的行数"
    )
    by_category = _by("现有已通过义警按职业类别计数：查询时的现状，不随所选时段变化")
    newly_approved = _count(
        "新批准义警：首次审核通过的日期"
        + DAY
        + "在时段内的义警人数，不论其后是否暂停或退出；按义警所在社区计"
    )
    newly_approved_by_category = _by("新批准义警按职业类别计数（定义同 newly_approved）")
    active = _count(
        "活跃义警：在时段内结束的任务中完成服务（签到并签退）的不同义警人数；任务按其结束日" + DAY + "计，"
        "义警按其所在社区计"
    )
    active_previous_period = _count("上期活跃义警：紧接在前、等长时段的活跃义警人数（定义同 active）")
    retained = _count("留存义警：本期与上期都活跃的义警人数")
    retention_rate = _rate("留存率 = retained / active_previous_period")


class KindFiguresSchema(Schema):
    published = _count("该类任务的发布任务数（定义同 service.published）")
    filled = _count("该类任务的满员任务数（定义同 service.filled）")
    completed = _count("该类任务的完成任务数（定义同 service.completed）")
    unserved = _count("该类任务的无人服务任务数（定义同 service.unserved）")
    cancelled = _count("该类任务的取消任务数（定义同 service.cancelled）")
    checkins = _count("该类任务的签到人次（定义同 service.checkins）")
    no_shows = _count("该类任务的缺勤人次（定义同 service.no_shows）")
    service_minutes = _count("该类任务的服务时长，分钟（定义同 service.service_minutes）")


class ServiceFiguresSchema(Schema):
    published = _count("发布任务：已发布（不含草稿）且开始时间在时段内" + DAY + "的任务数，含其后取消的")
    ended = _count(
        "结束任务：时段结束后、在时段内被关闭" + DAY + "的任务数 = completed + unserved（不含取消的）"
    )
    completed = _count("完成任务（有人服务）：在时段内关闭" + DAY + "、至少一名义警签到服务的任务数")
    unserved = _count(
        "无人服务任务：在时段内关闭" + DAY + "、无人签到的任务数（状态 unserved），不计入完成任务"
    )
    filled = _count("满员任务：在时段内关闭" + DAY + "、完成服务的义警人数达到名额的任务数")
    cancelled = _count("取消任务：在时段内被取消" + DAY + "的已发布任务数")
    completion_rate = _rate("任务完成率 = completed / ended")
    fill_rate = _rate("满员率 = filled / ended")
    checkins = _count("签到人次：在时段内结束（关闭或取消）" + DAY + "的任务上签到过的报名人次")
    no_shows = _count("缺勤人次：在时段内关闭" + DAY + "的任务上已接受却始终未签到的报名人次")
    no_show_rate = _rate("缺勤率 = no_shows / (checkins + no_shows)")
    served = _count("完成服务人次：在时段内结束" + DAY + "的任务上签到并签退（含结束时自动签退）的报名人次")
    service_minutes = _count("服务时长（分钟）：served 各人次签到至签退的分钟数之和（截至任务时段结束）")
    service_hours = fields.Float(
        metadata={"description": "服务时长（小时）= service_minutes / 60，保留 1 位小数"}
    )
    by_kind = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(KindFiguresSchema),
        metadata={"description": "按任务类别（patrol、campus_guard……）分列的上述计数"},
    )


class ClueFiguresSchema(Schema):
    reported = _count("上报线索：上报时间在时段内" + DAY + "的线索数")
    by_category = _by("上报线索按类别计数（定义同 reported）")
    by_outcome = _by(
        "线索处理结果：在时段内办结" + DAY + "的线索按办结时的状态计数（resolved 已办结、rejected 不予采纳、"
        "duplicate 重复、transferred 已移交）；办结后的线索不再变化"
    )
    judged = _count("已判定线索：在时段内办结（resolved）" + DAY + "并判定了是否有效的线索数")
    valid = _count("有效线索：judged 中判定为有效的线索数")
    valid_share = _rate("有效线索占比 = valid / judged")
    answered = _count(
        "已公开答复线索：首次公开答复（民警带公开说明的处理步骤，或值班台的首条留言）在时段内"
        + DAY
        + "的线索数"
    )
    answer_median_minutes = fields.Float(
        allow_none=True,
        metadata={
            "description": "首次公开答复用时中位数（分钟）：answered 各线索从上报到首次公开答复的"
            "整分钟数的中位数；无则 null"
        },
    )


class ResponseFiguresSchema(Schema):
    nearby_tasks = _count("就近派单任务：在时段内结束（关闭或取消）" + DAY + "、发出过派单的就近调度任务数")
    accept_median_seconds = fields.Float(
        allow_none=True,
        metadata={
            "description": "接单用时中位数（秒）：nearby_tasks 各任务从首轮派单到首位义警接单的整秒数；"
            "无则 null"
        },
    )
    accept_p90_seconds = fields.Float(
        allow_none=True, metadata={"description": "接单用时第 90 百分位（秒，最近秩法）；定义同上"}
    )
    checkin_median_seconds = fields.Float(
        allow_none=True,
        metadata={
            "description": "签到用时中位数（秒）：nearby_tasks 各任务从首轮派单到首位义警签到的整秒数；"
            "无则 null"
        },
    )
    checkin_p90_seconds = fields.Float(
        allow_none=True, metadata={"description": "签到用时第 90 百分位（秒，最近秩法）；定义同上"}
    )


class FiguresSchema(Schema):
    jurisdiction = fields.Nested(
        ReportJurisdictionSchema, metadata={"description": "统计的辖区（含其全部下级）"}
    )
    volunteers = fields.Nested(VolunteerFiguresSchema, metadata={"description": "义警"})
    service = fields.Nested(ServiceFiguresSchema, metadata={"description": "任务与服务"})
    clues = fields.Nested(ClueFiguresSchema, metadata={"description": "线索"})
    response = fields.Nested(ResponseFiguresSchema, metadata={"description": "就近派单的响应"})


class SummarySchema(FiguresSchema):
    from_ = fields.Date(
        data_key="from", attribute="first", metadata={"description": "时段第一天（北京时间，含）"}
    )
    to = fields.Date(attribute="last", metadata={"description": "时段最后一天（北京时间，含）"})
    children = fields.List(
        fields.Nested(FiguresSchema),
        metadata={"description": "下一级辖区各自的数据：区县下为街道，街道下为社区，社区下为网格"},
    )


class SeriesPointSchema(Schema):
    """A series point's figures are a map keyed by metric name (``SeriesPoint.figures``)."""

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        return getattr(obj, attr) if attr in ("start", "end") else obj.figures.get(attr, default)

    start = fields.String(
        metadata={"description": "本段第一天（北京时间，含；周从周一起，月从 1 日起，截在时段内）"}
    )
    end = fields.String(metadata={"description": "本段最后一天（北京时间，含）"})
    task_published = _count("发布任务（定义同 summary 的 service.published）")
    task_ended = _count("结束任务（定义同 service.ended）")
    task_filled = _count("满员任务（定义同 service.filled）")
    task_completed = _count("完成任务（有人服务，定义同 service.completed）")
    task_unserved = _count("无人服务任务（定义同 service.unserved）")
    task_cancelled = _count("取消任务（定义同 service.cancelled）")
    checkins = _count("签到人次（定义同 service.checkins）")
    no_shows = _count("缺勤人次（定义同 service.no_shows）")
    served = _count("完成服务人次（定义同 service.served）")
    service_minutes = _count("服务时长，分钟（定义同 service.service_minutes）")
    vol_approved = _count("新批准义警（定义同 volunteers.newly_approved）")
    clue_reported = _count("上报线索（定义同 clues.reported）")
    clue_judged = _count("已判定线索（定义同 clues.judged）")
    clue_valid = _count("有效线索（定义同 clues.valid）")
    completion_rate = _rate("任务完成率 = task_completed / task_ended")
    fill_rate = _rate("满员率 = task_filled / task_ended")
    no_show_rate = _rate("缺勤率 = no_shows / (checkins + no_shows)")
    service_hours = fields.Float(
        metadata={"description": "服务时长（小时）= service_minutes / 60，保留 1 位小数"}
    )
    valid_share = _rate("有效线索占比 = clue_valid / clue_judged")
    clues_answered = _count("已公开答复线索（定义同 clues.answered）")
    answer_median_minutes = fields.Float(
        allow_none=True,
        metadata={"description": "首次公开答复用时中位数（分钟，定义同 clues.answer_median_minutes）"},
    )
    nearby_tasks = _count("就近派单任务（定义同 response.nearby_tasks）")
    accept_median_seconds = fields.Float(
        allow_none=True, metadata={"description": "接单用时中位数（秒，定义同 response）"}
    )
    accept_p90_seconds = fields.Float(
        allow_none=True, metadata={"description": "接单用时 P90（秒，定义同 response）"}
    )
    checkin_median_seconds = fields.Float(
        allow_none=True, metadata={"description": "签到用时中位数（秒，定义同 response）"}
    )
    checkin_p90_seconds = fields.Float(
        allow_none=True, metadata={"description": "签到用时 P90（秒，定义同 response）"}
    )
    active_volunteers = _count(
        "本段活跃义警：本段内结束的任务中完成服务的不同义警人数（定义同 volunteers.active）"
    )


class SeriesSchema(Schema):
    jurisdiction = fields.Nested(
        ReportJurisdictionSchema, metadata={"description": "统计的辖区（含其全部下级）"}
    )
    granularity = fields.String(metadata={"description": "day | week（自周一起）| month"})
    from_ = fields.Date(
        data_key="from", attribute="first", metadata={"description": "时段第一天（北京时间，含）"}
    )
    to = fields.Date(attribute="last", metadata={"description": "时段最后一天（北京时间，含）"})
    points = fields.List(fields.Nested(SeriesPointSchema), metadata={"description": "各段的数据，按时间先后"})


class CoverageItemSchema(Schema):
    jurisdiction = fields.Nested(ReportJurisdictionSchema, metadata={"description": "社区（村）"})
    has_team = fields.Boolean(metadata={"description": "已组建义警队伍（查询时的现状）"})
    has_liaison = fields.Boolean(
        metadata={"description": "队伍已配备联络民警（值班台民警账号，查询时的现状）"}
    )
    has_captain = fields.Boolean(metadata={"description": "队伍已指定队长（查询时的现状）"})
    active_volunteers = _count(
        "近 active_window_days 天（含今天，北京时间）结束的任务中完成服务的本社区不同义警人数"
    )
    covered = fields.Boolean(metadata={"description": "达标：有队伍、有联络民警、有队长且活跃义警不少于门槛"})
    reasons = fields.List(fields.String(), metadata={"description": "未达标的原因（中文），达标时为空"})


class CoverageSchema(Schema):
    jurisdiction = fields.Nested(ReportJurisdictionSchema, metadata={"description": "统计的辖区"})
    min_active_volunteers = _count("达标所需的活跃义警人数门槛（COVERAGE_MIN_ACTIVE_VOLUNTEERS）")
    active_window_days = _count("活跃义警的统计窗口（天）")
    communities = _count("辖区内的社区（村）数")
    covered = _count("达标社区数")
    coverage_share = _rate("覆盖率 = covered / communities")
    items = fields.List(fields.Nested(CoverageItemSchema), metadata={"description": "每个社区，按辖区顺序"})
    falling_short = fields.List(
        fields.Nested(CoverageItemSchema), metadata={"description": "未达标的社区（items 的子集）"}
    )


MEASURE_FIELDS = frozenset({"points", "service_minutes", "service_hours"})


class LeaderboardVolunteerSchema(Schema):
    rank = _count("名次（并列同名次）")
    volunteer_id = fields.Integer(metadata={"description": "义警编号"})
    name_masked = fields.String(metadata={"description": "脱敏姓名"})
    community = fields.String(allow_none=True, metadata={"description": "所在社区名称"})
    points = _count("时段内积分（by=points 时）")
    service_minutes = _count("时段内服务时长，分钟（by=hours 时）")
    service_hours = fields.Float(metadata={"description": "服务时长（小时，by=hours 时），保留 1 位小数"})

    @post_dump
    def _only_the_measure(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """A volunteer carries the figures of the ranking's measure only (points, or minutes and hours)."""
        return {k: v for k, v in data.items() if v is not None or k not in MEASURE_FIELDS}


class LeaderboardCommunitySchema(Schema):
    rank = _count("名次：先达标的，再按活跃义警、服务时长")
    jurisdiction = fields.Nested(ReportJurisdictionSchema, metadata={"description": "社区（村）"})
    covered = fields.Boolean(metadata={"description": "达标（定义同 coverage）"})
    checks_met = _count("四项达标条件中满足的项数（队伍、联络民警、队长、活跃义警）")
    active_volunteers = _count("活跃义警（定义同 coverage）")
    service_minutes = _count("时段内服务时长，分钟")


class LeaderboardSchema(Schema):
    jurisdiction = fields.Nested(ReportJurisdictionSchema)
    from_ = fields.Date(data_key="from", attribute="first")
    to = fields.Date(attribute="last")
    by = fields.String(metadata={"description": "hours | points"})
    volunteers = fields.List(fields.Nested(LeaderboardVolunteerSchema))
    communities = fields.List(fields.Nested(LeaderboardCommunitySchema))


def _render_summary(result: report_service.Summary) -> bytes:
    """The summary's JSON as ``@blp.response(200, SummarySchema)`` would answer it."""
    return rendered.render(SummarySchema(), result)


@blp.route("/summary", methods=["GET"])
@errors((401, "missing_token", "请先登录"))  # raised by login_required_in_view, which the reader skips
@login_required_in_view
@blp.arguments(ReportArgsSchema, location="query", fast=_plain_report_args)
@blp.response(200, SummarySchema)
def summary(args: dict[str, Any]) -> Response:
    """Figures of a jurisdiction for a period, with each child jurisdiction side by side."""
    # The hot cached read: the answer is kept rendered by SummarySchema (yijing/web/rendered.py),
    # read in the token's own round trip.
    body = report_service.summary_json_for_token(
        take_pending_token(), args["jurisdiction_id"], args["from_"], args["to"], _render_summary, admit
    )
    return rendered.json_response(body)


@blp.route("/series", methods=["GET"])
@login_required
@blp.arguments(SeriesArgsSchema, location="query")
@blp.response(200, SeriesSchema)
def series(args: dict[str, Any]) -> report_service.Series:
    """Figures of a jurisdiction by day, week or month."""
    return report_service.series(
        current_principal(), args["jurisdiction_id"], args["from_"], args["to"], args["granularity"]
    )


@blp.route("/coverage", methods=["GET"])
@login_required
@blp.arguments(CoverageArgsSchema, location="query")
@blp.response(200, CoverageSchema)
def coverage(args: dict[str, Any]) -> report_service.Coverage:
    """Each community: liaison, team, captain, enough active volunteers; who falls short and why."""
    return report_service.coverage(current_principal(), args["jurisdiction_id"])


@blp.route("/leaderboard", methods=["GET"])
@login_required
@blp.arguments(LeaderboardArgsSchema, location="query")
@blp.response(200, LeaderboardSchema)
def leaderboard(args: dict[str, Any]) -> report_service.Leaderboard:
    """Volunteers by service hours or points (masked names); communities by coverage and activity."""
    return report_service.leaderboard(
        current_principal(), args["jurisdiction_id"], args["from_"], args["to"], args["by"], args["limit"]
    )
