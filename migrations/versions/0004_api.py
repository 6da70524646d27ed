"""a filing keeps a keyed digest of its submitted body (409 reference_conflict, SPEC §6)

Filings taken in before this have none: their content holds masked ID numbers only, so
the digest cannot be made afresh. A resubmission of such a reference is answered with the
filing (200), as before.

Revision ID: api
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "api"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("filings") as batch_op:
        batch_op.add_column(sa.Column("body_digest", sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table("filings") as batch_op:
        batch_op.drop_column("body_digest")
