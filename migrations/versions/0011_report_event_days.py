"""reports: each figure on the day its event happened: volunteers' first approval time
(``approved_at``, backfilled from the audit log, else the decision time of approved volunteers);
tasks indexed by close and cancel time, clues by close time, clue events and desk messages by time

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 21:40:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_volunteers_approved', ['approved_at'], unique=False)
    # The first approval recorded in the audit log; volunteers approved before it was kept (or
    # generated without one) fall back to their last decision when they are approved now.
    op.execute(
        """
        UPDATE volunteers SET approved_at = (
            SELECT min(a.created_at) FROM audit_log a
            WHERE a.target_type = 'volunteer' AND a.action = 'volunteer.approve'
              AND a.target_id = CAST(volunteers.id AS VARCHAR(64))
        )
        """
    )
    op.execute(
        "UPDATE volunteers SET approved_at = decided_at "
        "WHERE approved_at IS NULL AND status = 'approved' AND decided_at IS NOT NULL"
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_closed', ['closed_at'], unique=False)
        batch_op.create_index('ix_tasks_cancelled', ['cancelled_at'], unique=False)
    with op.batch_alter_table('clues', schema=None) as batch_op:
        batch_op.create_index('ix_clues_closed', ['closed_at'], unique=False)
    with op.batch_alter_table('clue_events', schema=None) as batch_op:
        batch_op.create_index('ix_clue_events_created', ['created_at'], unique=False)
    with op.batch_alter_table('clue_messages', schema=None) as batch_op:
        batch_op.create_index('ix_clue_messages_created', ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('clue_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_clue_messages_created')
    with op.batch_alter_table('clue_events', schema=None) as batch_op:
        batch_op.drop_index('ix_clue_events_created')
    with op.batch_alter_table('clues', schema=None) as batch_op:
        batch_op.drop_index('ix_clues_closed')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_cancelled')
        batch_op.drop_index('ix_tasks_closed')
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_index('ix_volunteers_approved')
        batch_op.drop_column('approved_at')
