"""Duty housekeeping: volunteers who stopped pinging drop out of the on-duty index."""

from __future__ import annotations

from yijing.services import duty


def evict_stale() -> int:
    """Take volunteers whose last ping is older than DUTY_PING_WINDOW_SECONDS off duty
    (and rebuild the index first if Redis lost it). Running it twice is harmless."""
    return duty.evict_stale()
