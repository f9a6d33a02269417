"""Baotou's local time, in one place: the zone, "today in Baotou", local days as UTC ranges.

Times are stored in UTC and shown to people in Asia/Shanghai (Baotou keeps China Standard Time,
UTC+8, without daylight saving). Everything that needs the local zone or the local date imports
it from here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(moment: datetime) -> datetime:
    """``moment`` in Baotou's time (a naive value is taken as UTC, as SQLite may return it)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(SHANGHAI)


def local_day(moment: datetime) -> date:
    """The Baotou calendar day ``moment`` falls on."""
    return local(moment).date()


def local_today(now: datetime | None = None) -> date:
    """Today in Baotou (at ``now``, default: this instant)."""
    return local(now or datetime.now(UTC)).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants where Baotou's ``day`` starts and the next one starts."""
    start = datetime.combine(day, time(0), tzinfo=SHANGHAI).astimezone(UTC)
    return start, start + timedelta(days=1)
