"""two-factor sign-in, console sessions on the server, sign-in throttles without a lock

Existing accounts keep their password and enrol a second factor at their next sign-in.

Revision ID: twofa
Revises: api
Create Date: 2026-12-01 07:26:25.269691

"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'twofa'
down_revision = "api"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('signin_throttles',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('next_try_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('signin_throttles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signin_throttles_next_try_at'), ['next_try_at'], unique=False)

    op.create_table('admin_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('admin_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['admin_id'], ['admins.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_digest')
    )
    with op.batch_alter_table('admin_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_sessions_admin_id'), ['admin_id'], unique=False)

    op.create_table('previous_passwords',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('admin_id', sa.Integer(), nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('replaced_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['admin_id'], ['admins.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('previous_passwords', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_previous_passwords_admin_id'), ['admin_id'], unique=False)

    op.create_table('recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('admin_id', sa.Integer(), nullable=False),
    sa.Column('code_digest', sa.String(length=64), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['admin_id'], ['admins.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('admin_id', 'code_digest')
    )
    with op.batch_alter_table('signin_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_signin_failures_address_at')

    op.drop_table('signin_failures')
    # SQLite rebuilds `admins` to drop columns: rows that refer to it must not stop that.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("PRAGMA foreign_keys=OFF")
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('totp_enrolled_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))
        batch_op.drop_column('failed_signins')
        batch_op.drop_column('locked_until')
        batch_op.drop_column('session_token')
    if sqlite:
        op.execute("PRAGMA foreign_keys=ON")


def downgrade():
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_token', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('failed_signins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_enrolled_at')
        batch_op.drop_column('totp_secret')
    admins = sa.table('admins', sa.column('id', sa.Integer), sa.column('session_token', sa.String))
    connection = op.get_bind()
    for (admin_id,) in connection.execute(sa.select(admins.c.id)).all():
        connection.execute(
            admins.update().where(admins.c.id == admin_id).values(session_token=secrets.token_urlsafe(32))
        )
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.alter_column('session_token', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('failed_signins', existing_type=sa.Integer(), server_default=None)
        batch_op.create_unique_constraint('admins_session_token_key', ['session_token'])

    op.create_table('signin_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('failed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signin_failures', schema=None) as batch_op:
        batch_op.create_index('ix_signin_failures_address_at', ['address', 'failed_at'], unique=False)

    op.drop_table('recovery_codes')
    with op.batch_alter_table('previous_passwords', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_previous_passwords_admin_id'))

    op.drop_table('previous_passwords')
    with op.batch_alter_table('admin_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_sessions_admin_id'))

    op.drop_table('admin_sessions')
    with op.batch_alter_table('signin_throttles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signin_throttles_next_try_at'))

    op.drop_table('signin_throttles')
