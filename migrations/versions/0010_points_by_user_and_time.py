"""points: the ledger indexed by user and time, with the amount (balances and the points
leaderboard read the index alone on PostgreSQL)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 08:15:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('points_ledger', schema=None) as batch_op:
        batch_op.create_index(
            'ix_points_ledger_user_created', ['user_id', 'created_at'], unique=False, postgresql_include=['amount']
        )
        batch_op.drop_index('ix_points_ledger_user_id')


def downgrade():
    with op.batch_alter_table('points_ledger', schema=None) as batch_op:
        batch_op.create_index('ix_points_ledger_user_id', ['user_id'], unique=False)
        batch_op.drop_index('ix_points_ledger_user_created')
