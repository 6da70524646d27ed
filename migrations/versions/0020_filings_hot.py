"""filings_hot: no index of filings names `status`, `deadline` or `final_at`, fillfactor 85, and
the events lose their foreign keys, so that the expiry's updates of filings are HOT and its
events are not checked again

The contract half of 0019's rolling upgrade: run once no node runs the code before 0019
(docs/deploy.md). It first catches the due lists up with what those nodes did meanwhile: the
filings they decided get their erasure entry, and those they moved out of pending
verification lose their pending one.

Revision ID: filings_hot
Revises: due_lists
Create Date: 2026-12-02 03:40:00

"""

from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "filings_hot"
down_revision = "due_lists"
branch_labels = None
depends_on = None

CATCH_UP = [
    """INSERT INTO erasure_due (filing_id, final_at)
    SELECT id, final_at FROM filings
    WHERE final_at IS NOT NULL AND personal_data_erased_at IS NULL
    AND id NOT IN (SELECT filing_id FROM erasure_due)""",
    """DELETE FROM pending_filings WHERE filing_id IN
    (SELECT id FROM filings WHERE status <> 'pending_verification')""",
]
PENDING_FILING = sa.text("status = 'pending_verification'")
UNERASED = sa.text("personal_data_erased_at IS NULL")
# Each index naming `status` or `final_at`, as 0018 left it: (name, columns, predicate).
STATUS_INDEXES = [
    ("ix_filings_pending_deadline", ["deadline", "id"], PENDING_FILING),
    ("ix_filings_created_id_status", ["created_at", "id", "status"], None),
    (
        "ix_filings_province_created_id_status",
        ["province_slug", "created_at", "id", "status"],
        None,
    ),
    ("ix_filings_status_created_id", ["status", "created_at", "id"], None),
    ("ix_filings_final_unerased", ["final_at"], UNERASED),
]
PLAIN_INDEXES = [
    ("ix_filings_created_id", ["created_at", "id"]),
    ("ix_filings_province_created_id", ["province_slug", "created_at", "id"]),
]
# (PostgreSQL's name, the name the SQLite batch gives the unnamed key, column, table referred).
EVENT_KEYS = [
    ("events_filing_id_fkey", "fk_events_filing_id", "filing_id", "filings"),
    ("events_provider_id_fkey", "fk_events_provider_id", "provider_id", "providers"),
]
SQLITE_KEY_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s"}


def upgrade():
    for statement in CATCH_UP:
        op.execute(statement)
    with op.batch_alter_table("filings", schema=None) as batch_op:
        for name, columns in PLAIN_INDEXES:
            batch_op.create_index(name, columns, unique=False)
        for name, _, _ in STATUS_INDEXES:
            batch_op.drop_index(name)
    if op.get_bind().dialect.name == "postgresql":
        # New pages keep 15 % free for the updated row; pages already full stay so until the
        # table is rewritten (docs/deploy.md).
        op.execute("ALTER TABLE filings SET (fillfactor = 85)")
        for name, _, _, _ in EVENT_KEYS:
            op.drop_constraint(name, "events", type_="foreignkey")
    else:
        with _rebuilt_events(naming_convention=SQLITE_KEY_NAMES) as batch_op:
            for _, name, _, _ in EVENT_KEYS:
                batch_op.drop_constraint(name, type_="foreignkey")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name, _, column, referred in EVENT_KEYS:
            op.create_foreign_key(name, "events", referred, [column], ["id"])
        op.execute("ALTER TABLE filings RESET (fillfactor)")
    else:
        with _rebuilt_events() as batch_op:
            for _, name, column, referred in EVENT_KEYS:
                batch_op.create_foreign_key(name, referred, [column], ["id"])
    with op.batch_alter_table("filings", schema=None) as batch_op:
        for name, columns, predicate in STATUS_INDEXES:
            batch_op.create_index(
                name,
                columns,
                unique=False,
                sqlite_where=predicate,
                postgresql_where=predicate,
            )
        for name, _ in PLAIN_INDEXES:
            batch_op.drop_index(name)


@contextmanager
def _rebuilt_events(**options):
    """SQLite rebuilds `events` to change its keys: the webhook deliveries that refer to it
    must not stop that."""
    op.execute("PRAGMA foreign_keys=OFF")
    with op.batch_alter_table("events", **options) as batch_op:
        yield batch_op
    op.execute("PRAGMA foreign_keys=ON")
