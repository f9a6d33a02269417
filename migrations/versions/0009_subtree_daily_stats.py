"""reports: daily_stats rows become subtree totals (every node's row sums its whole subtree)

The rollups are derived data: the old rows (each node's own figures only) are removed here and
rebuilt by the workers for the last 127 days within the quarter-hour and the day
(``refresh_recent``, ``refresh_quarter``); rebuild older days with ``flask yijing rollup --from``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 07:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("DELETE FROM daily_stats")


def downgrade():
    op.execute("DELETE FROM daily_stats")
