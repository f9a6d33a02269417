"""personal information: account cancellation, sealed (anonymous) notifications, volunteer
corrections, and the bookkeeping of the retention schedule

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 21:30:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cancel_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_users_cancel_due_at", ["cancel_due_at"], unique=False)

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("volunteers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pii_erased_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "sealed_envelopes",
        sa.Column("id", BigId, nullable=False),
        sa.Column("release_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_enc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sealed_envelopes", schema=None) as batch_op:
        batch_op.create_index("ix_sealed_envelopes_release_after", ["release_after"], unique=False)

    op.create_table(
        "volunteer_corrections",
        sa.Column("id", BigId, nullable=False),
        sa.Column("volunteer_id", BigId, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("real_name_enc", sa.String(length=255), nullable=True),
        sa.Column("name_masked", sa.String(length=64), nullable=True),
        sa.Column("id_number_enc", sa.String(length=255), nullable=True),
        sa.Column("id_number_hash", sa.String(length=64), nullable=True),
        sa.Column("id_number_masked", sa.String(length=32), nullable=True),
        sa.Column("phone_enc", sa.String(length=255), nullable=True),
        sa.Column("phone_hash", sa.String(length=64), nullable=True),
        sa.Column("phone_masked", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", BigId, nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["volunteer_id"], ["volunteers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["decided_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("volunteer_corrections", schema=None) as batch_op:
        batch_op.create_index("ix_volunteer_corrections_volunteer_id", ["volunteer_id"], unique=False)
        batch_op.create_index("ix_volunteer_corrections_status", ["status", "id"], unique=False)


def downgrade():
    op.drop_table("volunteer_corrections")
    op.drop_table("sealed_envelopes")
    with op.batch_alter_table("volunteers", schema=None) as batch_op:
        batch_op.drop_column("pii_erased_at")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("sealed")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_cancel_due_at")
        batch_op.drop_column("cancelled_at")
        batch_op.drop_column("cancel_due_at")
        batch_op.drop_column("cancel_requested_at")
