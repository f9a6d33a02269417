"""The report histograms in rows of their own (``daily_histograms``), moved out of ``daily_stats``

A histogram (the minutes to a clue's first answer, the seconds from a nearby dispatch's first ring
to its first acceptance or check-in) was one ``daily_stats`` row per node, day and value: a city's
30 days were 277,000 rows, and adding them up value by value for a dashboard's medians took most of
its time. Each node's day of one histogram is now one row holding the distinct values ascending
and how many had each (arrays on PostgreSQL, JSON lists on SQLite), written by the rollup with the
day's other rows (``yijing.services.rollups``). This migration moves the rows already rolled up;
the downgrade moves them back.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 16:30:00

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

HISTOGRAMS = "('clue_answer_min', 'resp_accept_s', 'resp_checkin_s')"

# One row per node, day and histogram from the per-value rows, values ascending.
FILL = {
    "postgresql": f"""
        INSERT INTO daily_histograms (jurisdiction_id, day, metric, bins, counts)
        SELECT jurisdiction_id, day, metric,
               array_agg(CAST(dimension AS INTEGER) ORDER BY CAST(dimension AS INTEGER)),
               array_agg(CAST(value AS INTEGER) ORDER BY CAST(dimension AS INTEGER))
        FROM daily_stats WHERE metric IN {HISTOGRAMS} AND value > 0
        GROUP BY jurisdiction_id, day, metric
    """,
    # SQLite's json_group_array takes its rows in the order the subquery gives them.
    "sqlite": f"""
        INSERT INTO daily_histograms (jurisdiction_id, day, metric, bins, counts)
        SELECT jurisdiction_id, day, metric, json_group_array(v), json_group_array(n)
        FROM (
            SELECT jurisdiction_id, day, metric, CAST(dimension AS INTEGER) AS v, value AS n
            FROM daily_stats WHERE metric IN {HISTOGRAMS} AND value > 0
            ORDER BY jurisdiction_id, day, metric, v
        )
        GROUP BY jurisdiction_id, day, metric
    """,
}

# Back to one daily_stats row per value.
UNFILL = {
    "postgresql": """
        INSERT INTO daily_stats (jurisdiction_id, day, metric, dimension, value)
        SELECT h.jurisdiction_id, h.day, h.metric, CAST(u.v AS VARCHAR), u.n
        FROM daily_histograms h, unnest(h.bins, h.counts) AS u(v, n)
    """,
    "sqlite": """
        INSERT INTO daily_stats (jurisdiction_id, day, metric, dimension, value)
        SELECT h.jurisdiction_id, h.day, h.metric, CAST(v.value AS TEXT), n.value
        FROM daily_histograms h, json_each(h.bins) v, json_each(h.counts) n
        WHERE v.key = n.key
    """,
}


def _int_list():
    return sa.JSON().with_variant(postgresql.ARRAY(sa.Integer()), "postgresql")


def upgrade():
    op.create_table(
        "daily_histograms",
        sa.Column("jurisdiction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("bins", _int_list(), nullable=False),
        sa.Column("counts", _int_list(), nullable=False),
        sa.PrimaryKeyConstraint("jurisdiction_id", "day", "metric", name=op.f("pk_daily_histograms")),
    )
    op.create_index("ix_daily_histograms_day", "daily_histograms", ["day"])
    op.execute(FILL[op.get_bind().dialect.name])
    op.execute(f"DELETE FROM daily_stats WHERE metric IN {HISTOGRAMS}")


def downgrade():
    op.execute(UNFILL[op.get_bind().dialect.name])
    op.drop_index("ix_daily_histograms_day", table_name="daily_histograms")
    op.drop_table("daily_histograms")
