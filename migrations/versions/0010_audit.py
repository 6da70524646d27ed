"""the audit log chained by a keyed MAC; generic reasons in the webhook event log

Entries written before the chain are numbered by id up to 0, with an empty mac: the
chain starts at 1 as on a new database, and `flask audit verify` counts the older
entries as unchained until retention prunes them.

Revision ID: audit
Revises: crypto
Create Date: 2026-12-01 07:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "audit"
down_revision = "crypto"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("suite", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))

    entries = sa.table("audit_entries", sa.column("id"), sa.column("seq"))
    unchained = op.get_bind().scalar(sa.text("SELECT count(*) FROM audit_entries"))
    numbered = sa.select(
        entries.c.id,
        (sa.func.row_number().over(order_by=entries.c.id) - unchained).label("n"),
    ).subquery()
    op.execute(
        entries.update()
        .values(seq=sa.select(numbered.c.n).where(numbered.c.id == entries.c.id).scalar_subquery())
    )
    op.execute("UPDATE audit_entries SET suite = '', key_id = '', mac = ''")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        for name in ("seq", "suite", "key_id", "mac"):
            batch_op.alter_column(name, nullable=False)
        batch_op.create_unique_constraint("uq_audit_entries_seq", ["seq"])

    chain = op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("head_seq", sa.Integer(), nullable=False),
        sa.Column("head_mac", sa.String(length=64), nullable=False),
        sa.Column("anchor_seq", sa.Integer(), nullable=False),
        sa.Column("anchor_mac", sa.String(length=64), nullable=False),
        sa.Column("suite", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # No tag yet (a migration holds no key): valid only while nothing is chained.
    op.bulk_insert(
        chain,
        [
            {
                "id": 1,
                "head_seq": 0,
                "head_mac": "",
                "anchor_seq": 1,
                "anchor_mac": "",
                "suite": "",
                "key_id": "",
                "tag": "",
            }
        ],
    )


    # The event log shows generic reasons now: earlier attempts kept the raw error text.
    op.execute(
        "UPDATE webhook_deliveries SET error = CASE WHEN error LIKE '%Timeout%' THEN 'timeout'"
        " ELSE 'connection failed' END WHERE error IS NOT NULL AND error NOT LIKE 'HTTP %'"
    )


def downgrade():
    op.drop_table("audit_chain")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_entries_seq", type_="unique")
        for name in ("mac", "key_id", "suite", "address", "seq"):
            batch_op.drop_column(name)
