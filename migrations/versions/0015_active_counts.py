"""Active volunteers by their previous active day (``active_counts``), filled from ``volunteer_days``

A dashboard's distinct active volunteers (and those of the period before, and those in both) were a
distinct count over every ``volunteer_days`` row of the node's subtree for two periods: a city's
30 days read half a million rows. Each row here counts the volunteers of a node's subtree active on
a day by the day each was last active before (``0001-01-01``: not before), so those figures are sums
over the node's own rows for the two periods. The rollup rebuild writes each day's rows with the
day's other rollups (``yijing.services.rollups``); this migration fills every day already rolled up,
with the same rows: a volunteer counts under their home and each of its ancestors, and their
previous active day is the one before in ``volunteer_days``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 06:30:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The rows of every day in volunteer_days (PostgreSQL and SQLite): each volunteer-day with the
# volunteer's previous day, counted per home, day and previous day, then added up for each node
# whose path the home's path starts with (the home and its ancestors).
FILL = """
INSERT INTO active_counts (jurisdiction_id, day, prev_day, volunteers)
SELECT up.node_id, counted.day, counted.prev_day, SUM(counted.n)
FROM (
    SELECT v.jurisdiction_id AS home_id, d.day AS day, COALESCE(d.prev_day, '0001-01-01') AS prev_day,
           COUNT(*) AS n
    FROM (
        SELECT volunteer_id, day, LAG(day) OVER (PARTITION BY volunteer_id ORDER BY day) AS prev_day
        FROM volunteer_days
    ) d
    JOIN volunteers v ON v.id = d.volunteer_id
    GROUP BY v.jurisdiction_id, d.day, COALESCE(d.prev_day, '0001-01-01')
) counted
JOIN (
    SELECT home.id AS home_id, node.id AS node_id
    FROM jurisdictions home JOIN jurisdictions node ON home.path LIKE node.path || '%'
) up ON up.home_id = counted.home_id
GROUP BY up.node_id, counted.day, counted.prev_day
"""


def upgrade():
    op.create_table(
        "active_counts",
        sa.Column("jurisdiction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("prev_day", sa.Date(), nullable=False),
        sa.Column("volunteers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("jurisdiction_id", "day", "prev_day", name=op.f("pk_active_counts")),
    )
    op.create_index(
        "ix_active_counts_node_day", "active_counts", ["jurisdiction_id", "day", "prev_day", "volunteers"]
    )
    op.execute(FILL)


def downgrade():
    op.drop_index("ix_active_counts_node_day", table_name="active_counts")
    op.drop_table("active_counts")
