"""the monitor's own state per source channel: the resolved peer and the last message seen

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 06:15:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'monitor_channels',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel_id', sa.Integer(), nullable=False),
        sa.Column('ref', sa.String(length=512), nullable=True),
        sa.Column('peer_id', sa.BigInteger(), nullable=True),
        sa.Column('access_hash', sa.BigInteger(), nullable=True),
        sa.Column('last_message_id', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('last_message_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('channel_id', name='uq_monitor_channels_channel'),
    )


def downgrade() -> None:
    op.drop_table('monitor_channels')
