"""console at national scale: the indexes the dashboard, the search and the export read

Revision ID: console
Revises: sweep
Create Date: 2026-12-01 11:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "console"
down_revision = "sweep"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("filings", schema=None) as batch_op:
        batch_op.drop_index("ix_filings_province_created")
        batch_op.create_index(
            "ix_filings_province_created_id_status",
            ["province_slug", "created_at", "id", "status"],
            unique=False,
        )
        batch_op.create_index(
            "ix_filings_created_id_status", ["created_at", "id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_filings_status_created_id", ["status", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_filings_reference", ["reference"], unique=False)
        batch_op.create_index(
            "ix_filings_province_provider", ["province_slug", "provider_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("filings", schema=None) as batch_op:
        batch_op.drop_index("ix_filings_province_provider")
        batch_op.drop_index("ix_filings_reference")
        batch_op.drop_index("ix_filings_status_created_id")
        batch_op.drop_index("ix_filings_created_id_status")
        batch_op.drop_index("ix_filings_province_created_id_status")
        batch_op.create_index(
            "ix_filings_province_created", ["province_slug", "created_at"], unique=False
        )
