"""Housekeeping for uploaded images."""

from __future__ import annotations

from datetime import timedelta

from yijing.config import settings
from yijing.services import media


def purge_orphans() -> int:
    """Delete uploads that no clue or post took within ``MEDIA_ORPHAN_HOURS``."""
    hours = settings().media_orphan_hours
    return media.purge_orphans(timedelta(hours=hours))
