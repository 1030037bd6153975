"""Telegram peers and clock-free publishing: channels keep their input peer (access hash); a publication
records the message-id floor of its channel when its intent was committed and the input peer it went to

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 06:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_hash', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('publications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('probe_floor', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('peer_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('peer_access_hash', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('publications', schema=None) as batch_op:
        batch_op.drop_column('peer_access_hash')
        batch_op.drop_column('peer_id')
        batch_op.drop_column('probe_floor')
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('access_hash')
