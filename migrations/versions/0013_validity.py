"""validity per code: each verification's own expiry (SPEC §4, portal/deadlines.py)

Revision ID: validity
Revises: outbox
Create Date: 2026-12-01 10:30:00

"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "validity"
down_revision = "outbox"
branch_labels = None
depends_on = None

filings = sa.table(
    "filings",
    sa.column("id"), sa.column("status"), sa.column("created_at", sa.DateTime()), sa.column("deadline", sa.DateTime()),
    sa.column("province_slug"),
)
verifications = sa.table(
    "verifications",
    sa.column("id"), sa.column("filing_id"), sa.column("status"), sa.column("expires_at", sa.DateTime()),
)
sms_messages = sa.table("sms_messages", sa.column("verification_id"), sa.column("status"))
provinces = sa.table("provinces", sa.column("slug"), sa.column("code_validity_hours"))


def upgrade():
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
    pending = verifications.c.status == "pending"
    # Until now a filing's deadline ran from its first text: its pending codes expire with it.
    op.execute(
        verifications.update()
        .where(pending)
        .values(
            expires_at=sa.select(filings.c.deadline)
            .where(filings.c.id == verifications.c.filing_id)
            .scalar_subquery()
        )
    )
    _from_acceptance(pending)


def _from_acceptance(pending):
    """Codes none of whose texts could be sent waited forever: they now run from acceptance."""
    connection = op.get_bind()
    texts = sa.select(sms_messages.c.status).where(
        sms_messages.c.verification_id == verifications.c.id
    )
    never_sent = (
        sa.select(verifications.c.id, filings.c.id, filings.c.created_at, provinces.c.code_validity_hours)
        .join(filings, filings.c.id == verifications.c.filing_id)
        .join(provinces, provinces.c.slug == filings.c.province_slug)
        .where(
            pending,
            filings.c.status == "pending_verification",
            verifications.c.expires_at.is_(None),
            texts.where(sms_messages.c.status == "failed").exists(),
            ~texts.where(sms_messages.c.status.in_(["queued", "sent"])).exists(),
        )
    )
    filing_ids = set()
    for verification_id, filing_id, created_at, hours in connection.execute(never_sent).all():
        connection.execute(
            verifications.update()
            .where(verifications.c.id == verification_id)
            .values(expires_at=created_at + timedelta(hours=hours))
        )
        filing_ids.add(filing_id)
    if filing_ids:
        connection.execute(
            filings.update()
            .where(filings.c.id.in_(filing_ids))
            .values(
                deadline=sa.select(sa.func.min(verifications.c.expires_at))
                .where(verifications.c.filing_id == filings.c.id, pending)
                .scalar_subquery()
            )
        )


def downgrade():
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
