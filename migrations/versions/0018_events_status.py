"""events_status: an event keeps the status and return reason its change left, not the whole
filing; the webhook body and the API describe the filing when they are built

Additive and without a table rewrite: the events written before keep their payload and no
status (portal/models.py `Event.changed_to` reads it from the payload), and the nodes of the
older code go on writing theirs during a rolling upgrade (docs/deploy.md).

Revision ID: events_status
Revises: verifications_hot
Create Date: 2026-12-02 01:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "events_status"
down_revision = "verifications_hot"
branch_labels = None
depends_on = None

# Back to a payload where there is none: the filing's own fields and the event's status. The
# verifications and the times are not rebuilt (the document's builder in SQL is gone): a
# webhook the older code sends of such an event lacks them.
TO_PAYLOAD = {
    "postgresql": """UPDATE events SET payload = json_build_object('id', f.id, 'reference',
        f.reference, 'province', f.province_slug, 'type', f.type, 'status', events.status,
        'return_reason', events.return_reason, 'verifications', '[]'::json)
        FROM filings f WHERE f.id = events.filing_id AND events.payload IS NULL""",
    "sqlite": """UPDATE events SET payload = (SELECT json_object('id', f.id, 'reference',
        f.reference, 'province', f.province_slug, 'type', f.type, 'status', events.status,
        'return_reason', events.return_reason, 'verifications', json('[]'))
        FROM filings f WHERE f.id = events.filing_id) WHERE payload IS NULL""",
}


def upgrade():
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("return_reason", sa.String(length=32), nullable=True))
        batch_op.alter_column("payload", existing_type=sa.JSON(), nullable=True)


def downgrade():
    op.execute(TO_PAYLOAD[op.get_bind().dialect.name])
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("payload", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("return_reason")
        batch_op.drop_column("status")
