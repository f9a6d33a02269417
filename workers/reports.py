"""Report jobs: keep the rollups fresh; build CSV exports."""

from __future__ import annotations

import logging
from datetime import timedelta

from yijing import jobs
from yijing.config import settings
from yijing.services import exports, rollups

log = logging.getLogger(__name__)


def refresh_recent() -> int:
    """Recompute the last REPORT_ROLLUP_DAYS local days (and today) of the rollups."""
    today = rollups.local_today()
    window = settings().report_rollup_days
    return rollups.rebuild(today - timedelta(days=window), today)


# A clue judged or a task closed long after its day changes that day's figures: once a day the
# quarter before the recent window is recomputed too.
QUARTER_DAYS = 92


def refresh_quarter() -> int:
    """Recompute the local days from QUARTER_DAYS ago up to where ``refresh_recent`` starts."""
    today = rollups.local_today()
    window = settings().report_rollup_days
    first, last = today - timedelta(days=QUARTER_DAYS), today - timedelta(days=window + 1)
    return rollups.rebuild(first, last) if first <= last else 0


def build_export(export_id: int) -> None:
    """Write the CSV of one export (running it again rebuilds it; a finished one is left alone)."""
    exports.build(export_id)


def sweep_exports() -> int:
    """Enqueue exports whose job was lost or whose worker died (periodic)."""
    specs = exports.unfinished_jobs()
    for spec in specs:
        jobs.enqueue(spec)
    if specs:
        log.info("export sweeper enqueued jobs", extra={"count": len(specs)})
    return len(specs)
