"""reports: index volunteers by decision time (the rollup's newly-approved count per day); volunteer
days indexed with the volunteer id, so distinct-active counts read the index alone

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
    with op.batch_alter_table('volunteer_days', schema=None) as batch_op:
        batch_op.drop_index('ix_volunteer_days_community_day')
        batch_op.create_index('ix_volunteer_days_community_day', ['community_id', 'day', 'volunteer_id'], unique=False)


def downgrade():
    with op.batch_alter_table('volunteer_days', schema=None) as batch_op:
        batch_op.drop_index('ix_volunteer_days_community_day')
        batch_op.create_index('ix_volunteer_days_community_day', ['community_id', 'day'], unique=False)
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_index('ix_volunteers_decided')
