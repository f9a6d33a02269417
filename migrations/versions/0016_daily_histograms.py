"""The report histograms in rows of their own (``daily_histograms``), moved out of ``daily_stats``

A histogram (the minutes to a clue's first answer, the seconds from a nearby dispatch's first ring
to its first acceptance or check-in) was one ``daily_stats`` row per node, day and value: a city's
30 days were 277,000 rows, and adding them up value by value for a dashboard's medians took most of
its time. Each node's day of one histogram is now one row holding the distinct values ascending
and how many had each, each list packed as 4-byte big-endian integers (``PackedInts`` in
``yijing.models.report``), written by the rollup with the day's other rows. This migration moves
the rows already rolled up (in SQL on PostgreSQL: the city's year, 7.4 M rows, took 36 s; row by
row on SQLite); the downgrade moves them back.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 16:30:00

"""

import struct
from itertools import groupby

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

HISTOGRAMS = "('clue_answer_min', 'resp_accept_s', 'resp_checkin_s')"

# PostgreSQL: one row per node, day and histogram, values ascending, packed by int4send.
FILL = f"""
    INSERT INTO daily_histograms (jurisdiction_id, day, metric, bins, counts)
    SELECT jurisdiction_id, day, metric,
           string_agg(int4send(CAST(dimension AS INTEGER)), '' ORDER BY CAST(dimension AS INTEGER)),
           string_agg(int4send(CAST(value AS INTEGER)), '' ORDER BY CAST(dimension AS INTEGER))
    FROM daily_stats WHERE metric IN {HISTOGRAMS} AND value > 0
    GROUP BY jurisdiction_id, day, metric
"""

# PostgreSQL: back to one daily_stats row per value (the i-th 4-byte integer of each list).
UNFILL = """
    INSERT INTO daily_stats (jurisdiction_id, day, metric, dimension, value)
    SELECT h.jurisdiction_id, h.day, h.metric,
           CAST((get_byte(h.bins, 4 * i) << 24) | (get_byte(h.bins, 4 * i + 1) << 16)
                | (get_byte(h.bins, 4 * i + 2) << 8) | get_byte(h.bins, 4 * i + 3) AS VARCHAR),
           (get_byte(h.counts, 4 * i) << 24) | (get_byte(h.counts, 4 * i + 1) << 16)
                | (get_byte(h.counts, 4 * i + 2) << 8) | get_byte(h.counts, 4 * i + 3)
    FROM daily_histograms h, generate_series(0, length(h.bins) / 4 - 1) AS i
"""


def _pack(values):
    return struct.pack(f">{len(values)}i", *values)


def _unpack(data):
    return struct.unpack(f">{len(data) // 4}i", data)


def _fill_row_by_row(conn):
    """SQLite (no int4send): the same rows, grouped here."""
    rows = conn.execute(
        sa.text(
            "SELECT jurisdiction_id, day, metric, CAST(dimension AS INTEGER) AS v, value FROM daily_stats "
            f"WHERE metric IN {HISTOGRAMS} AND value > 0 ORDER BY jurisdiction_id, day, metric, v"
        )
    )
    moved = []
    for (jid, day, metric), group in groupby(rows, key=lambda row: tuple(row[:3])):
        pairs = [(row[3], row[4]) for row in group]
        moved.append(
            {
                "j": jid,
                "d": day,
                "m": metric,
                "b": _pack([v for v, _ in pairs]),
                "c": _pack([n for _, n in pairs]),
            }
        )
    if moved:
        conn.execute(
            sa.text(
                "INSERT INTO daily_histograms (jurisdiction_id, day, metric, bins, counts) "
                "VALUES (:j, :d, :m, :b, :c)"
            ),
            moved,
        )


def _unfill_row_by_row(conn):
    rows = conn.execute(
        sa.text("SELECT jurisdiction_id, day, metric, bins, counts FROM daily_histograms")
    ).all()
    back = [
        {"j": jid, "d": day, "m": metric, "dim": str(v), "n": n}
        for jid, day, metric, bins, counts in rows
        for v, n in zip(_unpack(bins), _unpack(counts), strict=True)
    ]
    if back:
        conn.execute(
            sa.text(
                "INSERT INTO daily_stats (jurisdiction_id, day, metric, dimension, value) "
                "VALUES (:j, :d, :m, :dim, :n)"
            ),
            back,
        )


def upgrade():
    op.create_table(
        "daily_histograms",
        sa.Column("jurisdiction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("bins", sa.LargeBinary(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("jurisdiction_id", "day", "metric", name=op.f("pk_daily_histograms")),
    )
    op.create_index("ix_daily_histograms_day", "daily_histograms", ["day"])
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute(FILL)
    else:
        _fill_row_by_row(conn)
    op.execute(f"DELETE FROM daily_stats WHERE metric IN {HISTOGRAMS}")


def downgrade():
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute(UNFILL)
    else:
        _unfill_row_by_row(conn)
    op.drop_index("ix_daily_histograms_day", table_name="daily_histograms")
    op.drop_table("daily_histograms")
