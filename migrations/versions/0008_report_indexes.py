"""reports: index volunteers by decision time (the rollup's newly-approved count per day)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 07:10:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.create_index('ix_volunteers_decided', ['decided_at'], unique=False)


def downgrade():
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_index('ix_volunteers_decided')
