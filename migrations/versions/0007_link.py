"""the personal link and durable per-phone limits

Revision ID: link
Revises: gateways
Create Date: 2026-12-01 07:40:00

Verifications pending when this runs have no link digest yet: each gets one when its
next text is composed (portal/personal_links.py), which needs DATA_KEY.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'link'
down_revision = "gateways"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('link_digest', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_verifications_link_digest'), ['link_digest'], unique=False)

    op.create_table('phone_counts',
    sa.Column('phone_key', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('phone_key', 'scope')
    )
    with op.batch_alter_table('phone_counts', schema=None) as batch_op:
        batch_op.create_index('ix_phone_counts_window_start', ['window_start'], unique=False)


def downgrade():
    with op.batch_alter_table('phone_counts', schema=None) as batch_op:
        batch_op.drop_index('ix_phone_counts_window_start')

    op.drop_table('phone_counts')
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verifications_link_digest'))
        batch_op.drop_column('link_digest')
