"""Rollups for the participation review, and the CSV exports built from them.

* :class:`DailyStat` — one figure of one jurisdiction node's whole subtree (the node's own rows
  and all its descendants') on one local (Asia/Shanghai) day: ``metric`` (e.g. ``task_published``)
  and an optional ``dimension`` (task kind, volunteer category, clue category or status; ``""``
  when none). Figures for a jurisdiction and a period are sums over that node's rows for the
  days: never a scan of the raw tables, nor of the subtree, per request.
* :class:`DailyHistogram` — one histogram of one node's whole subtree on one day (the time to a
  clue's first answer in minutes, from a nearby dispatch's first ring to its first acceptance or
  check-in in seconds): the distinct values ascending and how many had each, in one row (packed
  as bytes, :class:`PackedInts`), so a period's medians and percentiles read one row per node,
  day and histogram.
* :class:`VolunteerDay` — one volunteer's completed service on one day (count and minutes), keyed
  to the volunteer's community: distinct active volunteers, retention and the hours leaderboard
  over any period come from it.
* :class:`ActiveCount` — how many volunteers of a node's subtree were active (served) on a day, by
  the day each was last active before: distinct active volunteers and retention over any period
  are sums over a node's rows (see ``yijing.services.rollups``).
* :class:`ReportExport` — a CSV export built by a worker job, with its progress.

The worker job ``workers.reports.refresh_recent`` recomputes whole days (delete + insert in one
transaction), so it can run any number of times; ``flask yijing rollup`` rebuilds any range.
"""

from __future__ import annotations

import struct
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime


class DailyStat(db.Model):
    __tablename__ = "daily_stats"
    __table_args__ = (
        Index("ix_daily_stats_day", "day"),
        # A node's rows of a period by an index-only scan (the reports read nothing else).
        Index("ix_daily_stats_node_day", "jurisdiction_id", "day", "metric", "dimension", "value"),
    )

    jurisdiction_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(32), primary_key=True, default="")
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class PackedInts(TypeDecorator[list[int]]):
    """A list of whole numbers stored as one binary value (``bytea``; a BLOB on SQLite), each a
    4-byte big-endian integer (what PostgreSQL's ``int4send`` writes, so SQL can build it too).

    A city's month of histograms is a quarter of a million numbers: read as integer arrays,
    psycopg parsed them number by number in ~110 ms; as bytes they arrive in ~25 ms and unpack in C.
    """

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: list[int] | None, dialect: Any) -> bytes | None:
        return None if value is None else struct.pack(f">{len(value)}i", *value)

    def process_result_value(self, value: bytes | None, dialect: Any) -> list[int] | None:
        return None if value is None else list(struct.unpack(f">{len(value) // 4}i", value))


class DailyHistogram(db.Model):
    __tablename__ = "daily_histograms"
    # A day's rows are replaced whole by the rollup (the primary key serves the reports' reads).
    __table_args__ = (Index("ix_daily_histograms_day", "day"),)

    jurisdiction_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The distinct values (whole minutes or seconds), ascending, and how many had each.
    bins: Mapped[list[int]] = mapped_column(PackedInts)
    counts: Mapped[list[int]] = mapped_column(PackedInts)


class VolunteerDay(db.Model):
    __tablename__ = "volunteer_days"
    # With the volunteer id: distinct active volunteers of a subtree come from the index alone.
    __table_args__ = (Index("ix_volunteer_days_community_day", "community_id", "day", "volunteer_id"),)

    volunteer_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    community_id: Mapped[int] = mapped_column(BigId)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    service_minutes: Mapped[int] = mapped_column(Integer, default=0)


# An ActiveCount's previous day for a volunteer never active before (sorts before every real day).
NEVER = date(1, 1, 1)


class ActiveCount(db.Model):
    __tablename__ = "active_counts"
    # A node's rows of a period by an index-only scan.
    __table_args__ = (Index("ix_active_counts_node_day", "jurisdiction_id", "day", "prev_day", "volunteers"),)

    jurisdiction_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # The day these volunteers were last active before ``day`` (NEVER: not before).
    prev_day: Mapped[date] = mapped_column(Date, primary_key=True)
    volunteers: Mapped[int] = mapped_column(Integer, default=0)


class ExportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ExportKind(StrEnum):
    SUMMARY = "summary"
    SERIES = "series"
    COVERAGE = "coverage"
    LEADERBOARD = "leaderboard"
    ROSTER = "roster"


class ReportExport(TimestampMixin, db.Model):
    __tablename__ = "report_exports"
    __table_args__ = (Index("ix_report_exports_user", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Whether the roster shows clear personal information (decided and audited at request time).
    with_pii: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=ExportStatus.QUEUED)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    file_path: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
