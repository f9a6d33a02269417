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
from datetime import date
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from workers import queues
from yijing import pii, policies
from yijing.actor import Actor
from yijing.errors import Conflict, NotFound
from yijing.extensions import db
from yijing.models import ExportKind, ExportStatus, Jurisdiction, ReportExport, Volunteer
from yijing.models.base import utcnow
from yijing.models.volunteer import CATEGORY_LABELS
from yijing.policies import Permission, Principal
from yijing.services import audit, jurisdictions, reports
from yijing.services.volunteers import ID_NUMBER_CONTEXT, NAME_CONTEXT, PHONE_CONTEXT

BATCH = 5000
ROSTER_HEADER = ["义警编号", "姓名", "身份证号", "手机号", "类别", "状态", "社区", "审核时间"]


def _out(export: ReportExport) -> dict[str, Any]:
    return {
        "id": export.id,
        "kind": export.kind,
        "jurisdiction_id": export.jurisdiction_id,
        "status": export.status,
        "with_pii": export.with_pii,
        "total": export.total,
        "done": export.done,
        "progress": round(export.done / export.total, 4)
        if export.total
        else (1.0 if export.status == "done" else 0.0),
        "error": export.error,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "download_url": f"/api/v1/desk/exports/{export.id}/file"
        if export.status == ExportStatus.DONE
        else None,
    }


def request_export(
    principal: Principal,
    kind: str,
    jurisdiction_id: int | None,
    first: date | None,
    last: date | None,
    actor: Actor,
) -> dict[str, Any]:
    node = reports.authorised_node(principal, jurisdiction_id)
    first, last = reports.period(first, last)
    with_pii = kind == ExportKind.ROSTER and policies.may(principal, Permission.VOLUNTEER_PII, node.path)
    export = ReportExport(
        user_id=principal.user_id,
        kind=kind,
        jurisdiction_id=node.id,
        params={"from": first.isoformat(), "to": last.isoformat()},
        with_pii=with_pii,
        status=ExportStatus.QUEUED,
    )
    db.session.add(export)
    db.session.flush()
    if with_pii:
        audit.record(actor, "volunteer.export_pii", "jurisdiction", node.id, data={"export_id": export.id})
    queues.enqueue_after_commit(
        db.session(),
        queues.JobSpec(
            queue=queues.REPORTS,
            func="workers.reports.build_export",
            args=(export.id,),
            job_id=f"export-{export.id}",
            timeout=3600,
        ),
    )
    db.session.commit()
    return _out(export)


def _mine(principal: Principal, export_id: int) -> ReportExport:
    export = db.session.get(ReportExport, export_id)
    if export is None or export.user_id != principal.user_id:
        raise NotFound("导出任务不存在", code="export_not_found")
    return export


def status(principal: Principal, export_id: int) -> dict[str, Any]:
    return _out(_mine(principal, export_id))


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
                    status,
                    names.get(community_id, ""),
                    decided_at.isoformat() if decided_at and status != "pending" else "",
                ]
            )
        last_id = batch[-1][0]
        export.done += len(batch)
        db.session.commit()


def _coverage_rows(export: ReportExport, node: Jurisdiction, writer: Any) -> None:
    result = reports.coverage_rows(node)
    export.total = len(result["items"])
    writer.writerow(["社区", "有义警队伍", "有联络民警", "有队长", "近30天活跃义警", "达标", "原因"])
    yes = {True: "是", False: "否"}
    for item in result["items"]:
        writer.writerow(
            [
                item["jurisdiction"]["name"],
                yes[item["has_team"]],
                yes[item["has_liaison"]],
                yes[item["has_captain"]],
                item["active_volunteers"],
                yes[item["covered"]],
                "；".join(item["reasons"]),
            ]
        )
    export.done = export.total


SUMMARY_COLUMNS = [
    ("辖区", lambda f: f["jurisdiction"]["name"]),
    ("新批准义警", lambda f: f["volunteers"]["newly_approved"]),
    ("活跃义警", lambda f: f["volunteers"]["active"]),
    ("留存率", lambda f: f["volunteers"]["retention_rate"]),
    ("发布任务", lambda f: f["service"]["published"]),
    ("满员任务", lambda f: f["service"]["filled"]),
    ("完成任务", lambda f: f["service"]["completed"]),
    ("取消任务", lambda f: f["service"]["cancelled"]),
    ("签到人次", lambda f: f["service"]["checkins"]),
    ("缺勤人次", lambda f: f["service"]["no_shows"]),
    ("服务时长（小时）", lambda f: f["service"]["service_hours"]),
    ("上报线索", lambda f: f["clues"]["reported"]),
    ("有效线索", lambda f: f["clues"]["valid"]),
    ("有效占比", lambda f: f["clues"]["valid_share"]),
]


def _summary_rows(export: ReportExport, node: Jurisdiction, writer: Any) -> None:
    first, last = date.fromisoformat(export.params["from"]), date.fromisoformat(export.params["to"])
    own, children = reports.figures_with_children(node, first, last)
    export.total = 1 + len(children)
    writer.writerow([title for title, _ in SUMMARY_COLUMNS])
    for figures in (own, *children):
        writer.writerow(["" if (v := get(figures)) is None else v for _, get in SUMMARY_COLUMNS])
        export.done += 1


def build(export_id: int) -> None:
    export = db.session.get(ReportExport, export_id)
    if export is None or export.status == ExportStatus.DONE:
        return
    node = db.session.get(Jurisdiction, export.jurisdiction_id)
    assert node is not None
    export.status, export.done = ExportStatus.RUNNING, 0
    db.session.commit()
    directory = Path(current_app.config["YIJING"].report_export_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"export-{export.id}-{secrets.token_hex(8)}.csv"
    try:
        with open(path, "w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle)
            {
                ExportKind.ROSTER: _roster_rows,
                ExportKind.COVERAGE: _coverage_rows,
                ExportKind.SUMMARY: _summary_rows,
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
