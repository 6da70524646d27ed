"""pacing per phone: when a text waited for it, and the index it counts a phone's texts by

Revision ID: pacing
Revises: audit
Create Date: 2026-12-01 09:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "pacing"
down_revision = "audit"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paced_until", sa.DateTime(), nullable=True))
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index("ix_verifications_phone_digest", ["phone_digest"], unique=False)


def downgrade():
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_verifications_phone_digest")
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_column("paced_until")
