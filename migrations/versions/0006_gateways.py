"""gateways: which gateway took each text, its id there, its receipt, its reroute

Revision ID: gateways
Revises: twofa
"""
from alembic import op
import sqlalchemy as sa


revision = "gateways"
down_revision = "twofa"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("gateway_message_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("delivery", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("receipt_code", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("receipt_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reroute_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("rerouted_from", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_sms_messages_rerouted_from", "sms_messages", ["rerouted_from"], ["id"]
        )
        batch_op.create_index(
            "ix_sms_messages_gateway_message", ["gateway", "gateway_message_id"], unique=False
        )
        batch_op.create_index("ix_sms_messages_sent_at", ["sent_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sms_messages_reroute_at"), ["reroute_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_messages_reroute_at"))
        batch_op.drop_index("ix_sms_messages_sent_at")
        batch_op.drop_index("ix_sms_messages_gateway_message")
        batch_op.drop_constraint("fk_sms_messages_rerouted_from", type_="foreignkey")
        for column in (
            "rerouted_from",
            "reroute_at",
            "receipt_at",
            "receipt_code",
            "delivery",
            "gateway_message_id",
            "gateway",
        ):
            batch_op.drop_column(column)
