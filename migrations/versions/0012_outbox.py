"""the outbox: the hold of the job attempting a text or event, and the mark of one never queued

Revision ID: outbox
Revises: pacing
Create Date: 2026-12-01 10:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "outbox"
down_revision = "pacing"
branch_labels = None
depends_on = None

TABLES = ("sms_messages", "events")


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("held_until", sa.DateTime(), nullable=True))
            batch_op.add_column(sa.Column("enqueue_failed_at", sa.DateTime(), nullable=True))
            batch_op.create_index(f"ix_{table}_held_until", ["held_until"], unique=False)
            batch_op.create_index(
                f"ix_{table}_enqueue_failed_at", ["enqueue_failed_at"], unique=False
            )


def downgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_enqueue_failed_at")
            batch_op.drop_index(f"ix_{table}_held_until")
            batch_op.drop_column("enqueue_failed_at")
            batch_op.drop_column("held_until")
