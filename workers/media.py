"""Housekeeping for uploaded images."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from yijing.services import media


def purge_orphans() -> int:
    """Delete uploads that no clue or post took within ``MEDIA_ORPHAN_HOURS``."""
    hours = current_app.config["YIJING"].media_orphan_hours
    return media.purge_orphans(timedelta(hours=hours))
