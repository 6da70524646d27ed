"""sweep: partial indexes of the pending filings and codes instead of indexes keyed on status

Revision ID: sweep
Revises: validity
Create Date: 2026-12-01 11:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "sweep"
down_revision = "validity"
branch_labels = None
depends_on = None

PENDING_FILING = sa.text("status = 'pending_verification'")
PENDING_CODE = sa.text("status = 'pending'")


def upgrade():
    with op.batch_alter_table("filings", schema=None) as batch_op:
        batch_op.drop_index("ix_filings_status_deadline")
        batch_op.create_index(
            "ix_filings_pending_deadline",
            ["deadline"],
            unique=False,
            sqlite_where=PENDING_FILING,
            postgresql_where=PENDING_FILING,
        )
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_verifications_status_noon")
        batch_op.create_index(
            "ix_verifications_pending_noon",
            ["noon_resend_at"],
            unique=False,
            sqlite_where=PENDING_CODE,
            postgresql_where=PENDING_CODE,
        )


def downgrade():
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_verifications_pending_noon")
        batch_op.create_index(
            "ix_verifications_status_noon", ["status", "noon_resend_at"], unique=False
        )
    with op.batch_alter_table("filings", schema=None) as batch_op:
        batch_op.drop_index("ix_filings_pending_deadline")
        batch_op.create_index("ix_filings_status_deadline", ["status", "deadline"], unique=False)
