"""Covering indexes for the participation review: a node's rollup rows and the volunteers'
counts by status and category are read by index-only scans

A city's summary read the ``daily_stats`` rows of ten nodes through the day index, fetching and
discarding every other node's rows of the period (80 % of what it read); the volunteers' snapshot
read every volunteer's row of the subtree from the heap.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 03:50:00

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_daily_stats_node_day", "daily_stats", ["jurisdiction_id", "day", "metric", "dimension", "value"]
    )
    op.create_index("ix_volunteers_community_status", "volunteers", ["community_id", "status", "category"])


def downgrade():
    op.drop_index("ix_volunteers_community_status", table_name="volunteers")
    op.drop_index("ix_daily_stats_node_day", table_name="daily_stats")
