"""sweep_tables: the pending filings' index keyed on (deadline, id), read by the expiry in chunks

Revision ID: sweep_tables
Revises: console
Create Date: 2026-12-01 14:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "sweep_tables"
down_revision = "console"
branch_labels = None
depends_on = None

PENDING_FILING = sa.text("status = 'pending_verification'")


def _pending_deadline_index(columns: list[str]) -> None:
    with op.batch_alter_table("filings", schema=None) as batch_op:
        batch_op.drop_index("ix_filings_pending_deadline")
        batch_op.create_index(
            "ix_filings_pending_deadline",
            columns,
            unique=False,
            sqlite_where=PENDING_FILING,
            postgresql_where=PENDING_FILING,
        )


def upgrade():
    _pending_deadline_index(["deadline", "id"])


def downgrade():
    _pending_deadline_index(["deadline"])
