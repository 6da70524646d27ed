"""events_status: an event keeps the status and return reason its change left, not the whole
filing; the webhook body and the API describe the filing when they are read

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

# The payload's status; one without (the portal never wrote one so) takes its filing's.
FROM_PAYLOAD = {
    "postgresql": """UPDATE events SET status = coalesce(payload->>'status',
        (SELECT status FROM filings WHERE id = events.filing_id)),
        return_reason = payload->>'return_reason'""",
    "sqlite": """UPDATE events SET status = coalesce(json_extract(payload, '$.status'),
        (SELECT status FROM filings WHERE id = events.filing_id)),
        return_reason = json_extract(payload, '$.return_reason')""",
}
# Back to a payload: the filing's own fields and the event's status. The verifications and
# the times are not rebuilt (the document's builder in SQL is gone): a webhook the older code
# sends after a downgrade lacks them.
TO_PAYLOAD = {
    "postgresql": """UPDATE events SET payload = json_build_object('id', f.id, 'reference',
        f.reference, 'province', f.province_slug, 'type', f.type, 'status', events.status,
        'return_reason', events.return_reason, 'verifications', '[]'::json)
        FROM filings f WHERE f.id = events.filing_id""",
    "sqlite": """UPDATE events SET payload = (SELECT json_object('id', f.id, 'reference',
        f.reference, 'province', f.province_slug, 'type', f.type, 'status', events.status,
        'return_reason', events.return_reason, 'verifications', json('[]'))
        FROM filings f WHERE f.id = events.filing_id)""",
}


def upgrade():
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("return_reason", sa.String(length=32), nullable=True))
    op.execute(FROM_PAYLOAD[op.get_bind().dialect.name])
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=sa.String(length=32), nullable=False)
        batch_op.drop_column("payload")


def downgrade():
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
    op.execute(TO_PAYLOAD[op.get_bind().dialect.name])
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("payload", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("return_reason")
        batch_op.drop_column("status")
