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

# No index on either: the relay reads them only among the undelivered rows, which it finds by
# the (status | delivered_at, next_attempt_at) indexes; an index would cost every claim a write.
TABLES = ("sms_messages", "events")


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("held_until", sa.DateTime(), nullable=True))
            batch_op.add_column(sa.Column("enqueue_failed_at", sa.DateTime(), nullable=True))


def downgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("enqueue_failed_at")
            batch_op.drop_column("held_until")
