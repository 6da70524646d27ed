"""pruning: the old verify and webhook attempts are found by their time

Revision ID: pruning
Revises: link
Create Date: 2026-12-01 07:45:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "pruning"
down_revision = "link"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("verify_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_verify_attempts_attempted_at"), ["attempted_at"], unique=False)
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_attempted_at"), ["attempted_at"], unique=False)


def downgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_attempted_at"))
    with op.batch_alter_table("verify_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verify_attempts_attempted_at"))
