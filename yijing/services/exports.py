"""CSV exports of the participation review, built by a worker job on the ``reports`` queue.

The request is checked and recorded here (scope, kind, whether the roster shows clear personal
information — only for roles with ``volunteer.read_pii``, and then audited); the job writes the
file in batches, updating ``done``/``total`` so the requester can poll the progress, and only the
requester may download it.
"""

from __future__ import annotations

import csv
import os
import secrets
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from yijing import jobs, pii, policies, replica
from yijing.actor import Actor
from yijing.config import settings
from yijing.errors import Conflict, NotFound
from yijing.extensions import db
from yijing.models import ExportKind, ExportStatus, Jurisdiction, ReportExport, Volunteer
from yijing.models.base import utcnow
from yijing.models.volunteer import CATEGORY_LABELS
from yijing.policies import Permission, Principal
from yijing.services import audit, jurisdictions, reports
from yijing.services.volunteers import ID_NUMBER_CONTEXT, NAME_CONTEXT, PHONE_CONTEXT, STATUS_LABELS

BATCH = 5000
ROSTER_HEADER = ["义警编号", "姓名", "身份证号", "手机号", "类别", "状态", "社区", "审核时间"]


def progress(export: ReportExport) -> float:
    """The share of the export's rows written (1.0 once done, also when it had none)."""
    if export.total:
        return round(export.done / export.total, 4)
    return 1.0 if export.status == ExportStatus.DONE else 0.0


def download_url(export: ReportExport) -> str | None:
    """Where a finished export is downloaded (None before it is done)."""
    return f"/api/v1/desk/exports/{export.id}/file" if export.status == ExportStatus.DONE else None


def request_export(
    principal: Principal,
    kind: str,
    jurisdiction_id: int | None,
    first: date | None,
    last: date | None,
    actor: Actor,
    *,
    granularity: str = "day",
    by: str = "hours",
) -> ReportExport:
    """Record an export and queue its job. ``granularity`` is the series' buckets, ``by`` the
    leaderboard's measure."""
    node = reports.authorised_node(principal, jurisdiction_id)
    first, last = reports.period(first, last)
    with_pii = kind == ExportKind.ROSTER and policies.may(principal, Permission.VOLUNTEER_PII, node.path)
    export = ReportExport(
        user_id=principal.user_id,
        kind=kind,
        jurisdiction_id=node.id,
        params={"from": first.isoformat(), "to": last.isoformat(), "granularity": granularity, "by": by},
        with_pii=with_pii,
        status=ExportStatus.QUEUED,
    )
    db.session.add(export)
    db.session.flush()
    if with_pii:
        audit.record(actor, "volunteer.export_pii", "jurisdiction", node.id, data={"export_id": export.id})
    jobs.enqueue_after_commit(db.session(), build_job(export.id))
    db.session.commit()
    return export


#: The RQ timeout of an export job.
BUILD_TIMEOUT = 3600
#: A queued export not started after this long lost its job (Redis down at the request, a flushed queue).
QUEUED_GRACE = timedelta(minutes=10)


def build_job(export_id: int, attempt: str = "") -> jobs.JobSpec:
    """The job that builds export ``export_id`` (``attempt`` gives a sweeper's job an id of its own)."""
    return jobs.JobSpec(
        queue=jobs.REPORTS,
        func="workers.reports.build_export",
        args=(export_id,),
        job_id=f"export-{export_id}{attempt}",
        timeout=BUILD_TIMEOUT,
    )


def unfinished_jobs(now: datetime | None = None) -> list[jobs.JobSpec]:
    """Jobs for exports whose job was lost: still queued after ``QUEUED_GRACE``, or still running
    after the job's timeout (its worker died: RQ does not run an interrupted job again)."""
    now = now or utcnow()
    queued = db.session.scalars(
        select(ReportExport.id).where(
            ReportExport.status == ExportStatus.QUEUED, ReportExport.created_at <= now - QUEUED_GRACE
        )
    ).all()
    stalled = db.session.scalars(
        select(ReportExport.id).where(
            ReportExport.status == ExportStatus.RUNNING,
            ReportExport.created_at <= now - timedelta(seconds=BUILD_TIMEOUT) - QUEUED_GRACE,
        )
    ).all()
    db.session.rollback()
    # One id per sweep window: a second sweep while the first's job waits adds nothing.
    window = f"-swept-{int(now.timestamp()) // int(QUEUED_GRACE.total_seconds())}"
    return [build_job(export_id, window) for export_id in sorted([*queued, *stalled])]


def _mine(principal: Principal, export_id: int) -> ReportExport:
    export = db.session.get(ReportExport, export_id)
    if export is None or export.user_id != principal.user_id:
        raise NotFound("导出任务不存在", code="export_not_found")
    return export


def status(principal: Principal, export_id: int) -> ReportExport:
    return _mine(principal, export_id)


def file_for(principal: Principal, export_id: int) -> tuple[str, str]:
    """The path and download name of a finished export (only for its requester)."""
    export = _mine(principal, export_id)
    if export.status != ExportStatus.DONE or not export.file_path or not os.path.exists(export.file_path):
        raise Conflict("导出尚未完成，请稍后再试", code="export_not_ready")
    return export.file_path, f"{export.kind}-{export.id}.csv"


def _roster_rows(export: ReportExport, node: Jurisdiction, writer: Any) -> None:
    """The open volunteers of the subtree by id, a batch per transaction (progress after each)."""
    in_scope = (
        Volunteer.community_id.in_(
            select(Jurisdiction.id).where(jurisdictions.in_subtrees(Jurisdiction.path, [node.path]))
        ),
        Volunteer.open_user_id.is_not(None),
    )
    export.total = db.session.scalar(select(func.count()).select_from(Volunteer).where(*in_scope)) or 0
    db.session.commit()
    names = dict(db.session.execute(select(Jurisdiction.id, Jurisdiction.name)).all()) if export.total else {}
    clear = (Volunteer.real_name_enc, Volunteer.id_number_enc, Volunteer.phone_enc)
    masked = (Volunteer.name_masked, Volunteer.id_number_masked, Volunteer.phone_masked)
    columns = (
        Volunteer.id,
        Volunteer.volunteer_number,
        *(clear if export.with_pii else masked),
        Volunteer.category,
        Volunteer.status,
        Volunteer.community_id,
        Volunteer.decided_at,
    )
    writer.writerow(ROSTER_HEADER)
    last_id = 0
    while True:
        batch = db.session.execute(
            select(*columns).where(*in_scope, Volunteer.id > last_id).order_by(Volunteer.id).limit(BATCH)
        ).all()
        if not batch:
            break
        for _, number, name, id_number, phone, category, status, community_id, decided_at in batch:
            if export.with_pii:
                name = pii.decrypt(name, context=NAME_CONTEXT)
                id_number = pii.decrypt(id_number, context=ID_NUMBER_CONTEXT)
                phone = pii.decrypt(phone, context=PHONE_CONTEXT)
            writer.writerow(
                [
                    number or "",
                    name,
                    id_number,
                    phone,
                    CATEGORY_LABELS.get(category, category),
                    STATUS_LABELS.get(status, status),  # as the summary export's columns name them
                    names.get(community_id, ""),
                    decided_at.isoformat() if decided_at and status != "pending" else "",
                ]
            )
        last_id = batch[-1][0]
        export.done += len(batch)
        db.session.commit()


def _coverage_rows(export: ReportExport, node: Jurisdiction, writer: Any) -> None:
    result = reports.coverage_rows(node)
    export.total = len(result.items)
    writer.writerow(["社区", "有义警队伍", "有联络民警", "有队长", "近30天活跃义警", "达标", "原因"])
    yes = {True: "是", False: "否"}
    for item in result.items:
        writer.writerow(
            [
                item.jurisdiction.name,
                yes[item.has_team],
                yes[item.has_liaison],
                yes[item.has_captain],
                item.active_volunteers,
                yes[item.covered],
                "；".join(item.reasons),
            ]
        )
    export.done = export.total


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


SUMMARY_COLUMNS = [
    ("辖区", lambda f: f.jurisdiction.name),
    # The roster export lists every open application (已通过、待审核、已暂停): these three
    # columns add up to its rows, and each equals its rows of that status.
    ("已通过义警", lambda f: f.volunteers.by_status.get("approved", 0)),
    ("待审核申请", lambda f: f.volunteers.by_status.get("pending", 0)),
    ("已暂停义警", lambda f: f.volunteers.by_status.get("suspended", 0)),
    ("新批准义警", lambda f: f.volunteers.newly_approved),
    ("活跃义警", lambda f: f.volunteers.active),
    ("上期活跃义警", lambda f: f.volunteers.active_previous_period),
    ("留存义警", lambda f: f.volunteers.retained),
    ("留存率", lambda f: _percent(f.volunteers.retention_rate)),
    ("发布任务", lambda f: f.service.published),
    ("结束任务", lambda f: f.service.ended),
    ("完成任务（有人服务）", lambda f: f.service.completed),
    ("无人服务任务", lambda f: f.service.unserved),
    ("任务完成率", lambda f: _percent(f.service.completion_rate)),
    ("满员任务", lambda f: f.service.filled),
    ("满员率", lambda f: _percent(f.service.fill_rate)),
    ("取消任务", lambda f: f.service.cancelled),
    ("签到人次", lambda f: f.service.checkins),
    ("缺勤人次", lambda f: f.service.no_shows),
    ("缺勤率", lambda f: _percent(f.service.no_show_rate)),
    ("服务时长（小时）", lambda f: f.service.service_hours),
    ("上报线索", lambda f: f.clues.reported),
    ("已判定线索", lambda f: f.clues.judged),
    ("有效线索", lambda f: f.clues.valid),
    ("有效占比", lambda f: _percent(f.clues.valid_share)),
    ("首次公开答复用时中位数（分钟）", lambda f: f.clues.answer_median_minutes),
    ("就近派单任务", lambda f: f.response.nearby_tasks),
    ("接单用时中位数（秒）", lambda f: f.response.accept_median_seconds),
    ("接单用时P90（秒）", lambda f: f.response.accept_p90_seconds),
    ("签到用时中位数（秒）", lambda f: f.response.checkin_median_seconds),
    ("签到用时P90（秒）", lambda f: f.response.checkin_p90_seconds),
]


def _period_of(export: ReportExport) -> tuple[date, date]:
    return date.fromisoformat(export.params["from"]), date.fromisoformat(export.params["to"])


def _summary_rows(export: ReportExport, node: Jurisdiction, writer: Any) -> None:
    summary = reports.figures_with_children(node, *_period_of(export))
    export.total = 1 + len(summary.children)
    writer.writerow([title for title, _ in SUMMARY_COLUMNS])
    for figures in (summary, *summary.children):
        writer.writerow(["" if (v := get(figures)) is None else v for _, get in SUMMARY_COLUMNS])
        export.done += 1


def _series_rows(export: ReportExport, node: Jurisdiction, writer: Any) -> None:
    points = reports.series_points(node, *_period_of(export), export.params.get("granularity", "day"))
    export.total = len(points)
    writer.writerow(["开始日期", "结束日期", *reports.SERIES_FIELDS.values()])
    rates = {"completion_rate", "fill_rate", "no_show_rate", "valid_share"}
    for point in points:
        figures = point.figures
        values = [_percent(figures[k]) if k in rates else figures[k] for k in reports.SERIES_FIELDS]
        writer.writerow([point.start, point.end, *("" if v is None else v for v in values)])
        export.done += 1


def _leaderboard_rows(export: ReportExport, node: Jurisdiction, writer: Any) -> None:
    """Every volunteer with service (or points) in the period, ranked; masked names only."""
    by = export.params.get("by", "hours")
    ranked = reports.ranking(node, *_period_of(export), by)
    export.total = len(ranked.ids)
    db.session.commit()
    names = dict(db.session.execute(select(Jurisdiction.id, Jurisdiction.name)).all()) if export.total else {}
    writer.writerow(["名次", "义警编号", "姓名", "社区", "服务时长（小时）" if by == "hours" else "积分"])
    scores = ranked.scores
    for start in range(0, len(ranked.ids), BATCH):
        ids = ranked.ids[start : start + BATCH]
        people = {
            vid: (number, name_masked, community_id)
            for vid, number, name_masked, community_id in db.session.execute(
                select(
                    Volunteer.id, Volunteer.volunteer_number, Volunteer.name_masked, Volunteer.community_id
                ).where(Volunteer.id.in_(ids))
            )
        }
        for index, vid in enumerate(ids, start=start):
            number, name_masked, community_id = people[vid]
            rank = reports.rank_of(scores, scores[index])
            value = round(scores[index] / 60, 1) if by == "hours" else scores[index]
            writer.writerow([rank, number or "", name_masked, names.get(community_id, ""), value])
        export.done += len(ids)
        db.session.commit()


def build(export_id: int) -> None:
    export = db.session.get(ReportExport, export_id)
    if export is None or export.status == ExportStatus.DONE:
        return
    node = db.session.get(Jurisdiction, export.jurisdiction_id)
    assert node is not None
    export.status, export.done = ExportStatus.RUNNING, 0
    db.session.commit()
    directory = Path(settings().report_export_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"export-{export.id}-{secrets.token_hex(8)}.csv"
    try:
        # The rows from the replica, when there is one; the export's progress to the primary.
        with open(path, "w", newline="", encoding="utf-8-sig") as handle, replica.reads():
            writer = csv.writer(handle)
            {
                ExportKind.ROSTER: _roster_rows,
                ExportKind.COVERAGE: _coverage_rows,
                ExportKind.SUMMARY: _summary_rows,
                ExportKind.SERIES: _series_rows,
                ExportKind.LEADERBOARD: _leaderboard_rows,
            }[ExportKind(export.kind)](export, node, writer)
        export = db.session.get(ReportExport, export_id)  # type: ignore[assignment]
        assert export is not None
        export.status, export.file_path, export.finished_at = ExportStatus.DONE, str(path), utcnow()
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        export = db.session.get(ReportExport, export_id)  # type: ignore[assignment]
        assert export is not None
        export.status, export.error, export.finished_at = ExportStatus.FAILED, type(exc).__name__, utcnow()
        db.session.commit()
        raise
