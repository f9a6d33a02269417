"""Report jobs: keep the rollups fresh; build CSV exports."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from yijing.services import exports, rollups


def refresh_recent() -> int:
    """Recompute the last REPORT_ROLLUP_DAYS local days (and today) of the rollups."""
    today = rollups.local_today()
    window = current_app.config["YIJING"].report_rollup_days
    return rollups.rebuild(today - timedelta(days=window), today)


def build_export(export_id: int) -> None:
    exports.build(export_id)
