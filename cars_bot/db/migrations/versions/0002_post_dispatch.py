"""posts record their dispatch (task id and time), so a recovery can tell never-sent from lost

`processing_held` marks posts stored with `--no-process`, which recovery leaves alone. Posts already
stored are not held: a `new` post from before this revision is one whose processing was never sent
or was lost (issue 10), and the safety net dispatches it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 06:15:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dispatch_task_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('processing_held', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_column('processing_held')
        batch_op.drop_column('dispatched_at')
        batch_op.drop_column('dispatch_task_id')
