"""due_lists: the filings awaiting codes (with their deadlines) and those due for erasure, in
tables of their own; the first kept by triggers on `filings`

The expand half of a rolling upgrade: nothing is dropped, and the older code runs on as before.
Its status changes leave an entry in `pending_filings` and write none in `erasure_due`; the
contract half (0020, once no node runs the older code) catches both up (docs/deploy.md).

Revision ID: due_lists
Revises: events_status
Create Date: 2026-12-02 03:30:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "due_lists"
down_revision = "events_status"
branch_labels = None
depends_on = None

# Whoever inserts a filing pending verification (intake, an import, a COPY) gives it an entry,
# and whatever writes its deadline (`deadlines.refresh`) writes the entry's. The WHEN clauses
# keep every other insert and update of `filings` from calling anything.
TRIGGERS = {
    "postgresql": [
        """CREATE FUNCTION pending_filing_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO pending_filings (filing_id, deadline) VALUES (NEW.id, NEW.deadline);
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER pending_filing_inserted AFTER INSERT ON filings FOR EACH ROW
        WHEN (NEW.status = 'pending_verification') EXECUTE FUNCTION pending_filing_inserted()""",
        """CREATE FUNCTION pending_filing_deadline() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE pending_filings SET deadline = NEW.deadline WHERE filing_id = NEW.id;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER pending_filing_deadline AFTER UPDATE OF deadline ON filings FOR EACH ROW
        WHEN (NEW.deadline IS DISTINCT FROM OLD.deadline)
        EXECUTE FUNCTION pending_filing_deadline()""",
    ],
    "sqlite": [
        """CREATE TRIGGER pending_filing_inserted AFTER INSERT ON filings
        WHEN NEW.status = 'pending_verification'
        BEGIN
            INSERT INTO pending_filings (filing_id, deadline) VALUES (NEW.id, NEW.deadline);
        END""",
        """CREATE TRIGGER pending_filing_deadline AFTER UPDATE OF deadline ON filings
        WHEN NEW.deadline IS NOT OLD.deadline
        BEGIN
            UPDATE pending_filings SET deadline = NEW.deadline WHERE filing_id = NEW.id;
        END""",
    ],
}
DROP_TRIGGERS = {
    "postgresql": [
        "DROP TRIGGER pending_filing_deadline ON filings",
        "DROP FUNCTION pending_filing_deadline()",
        "DROP TRIGGER pending_filing_inserted ON filings",
        "DROP FUNCTION pending_filing_inserted()",
    ],
    "sqlite": ["DROP TRIGGER pending_filing_deadline", "DROP TRIGGER pending_filing_inserted"],
}

FILL_PENDING = """INSERT INTO pending_filings (filing_id, deadline)
SELECT id, deadline FROM filings WHERE status = 'pending_verification'"""
# Also run by 0020, for the filings the older code decided after this one.
FILL_ERASURE_DUE = """INSERT INTO erasure_due (filing_id, final_at)
SELECT id, final_at FROM filings
WHERE final_at IS NOT NULL AND personal_data_erased_at IS NULL
AND id NOT IN (SELECT filing_id FROM erasure_due)"""


def upgrade():
    op.create_table(
        "pending_filings",
        sa.Column("filing_id", sa.String(length=32), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["filing_id"], ["filings.id"]),
        sa.PrimaryKeyConstraint("filing_id"),
    )
    op.create_index("ix_pending_filings_deadline", "pending_filings", ["deadline", "filing_id"])
    op.create_table(
        "erasure_due",
        sa.Column("final_at", sa.DateTime(), nullable=False),
        sa.Column("filing_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("final_at", "filing_id"),
    )
    op.execute(FILL_PENDING)
    op.execute(FILL_ERASURE_DUE)
    for statement in TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade():
    for statement in DROP_TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_table("erasure_due")
    op.drop_index("ix_pending_filings_deadline", table_name="pending_filings")
    op.drop_table("pending_filings")
