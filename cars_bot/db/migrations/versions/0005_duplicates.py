"""one ad, one publication: posts.duplicate_of and the post status `duplicate`; the status `pending`
(manual moderation); the sheet's filter
values (sheet_filters) and each worksheet's last sync (sheet_syncs)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 06:50:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

OLD_STATUSES = ('new', 'processing', 'rejected', 'ready', 'publishing', 'published', 'failed')
NEW_STATUSES = (*OLD_STATUSES, 'duplicate', 'pending')
CHECK_NAME = 'ck_posts_post_status'  # the name 0001 gave the post_status enum's CHECK constraint


def _status_check(statuses: tuple[str, ...]) -> str:
    return 'status IN (' + ', '.join(f"'{s}'" for s in statuses) + ')'


def _recreate_check(statuses: tuple[str, ...]) -> None:
    # SQLite: batch mode copies the table, and its reflection of the copy may or may not carry the
    # old CHECK; drop it by name when it is there, then create the new one. PostgreSQL: drop and add.
    bind = op.get_bind()
    existing = {c['name'] for c in sa.inspect(bind).get_check_constraints('posts')}
    with op.batch_alter_table('posts', schema=None) as batch_op:
        if CHECK_NAME in existing:
            batch_op.drop_constraint(op.f(CHECK_NAME), type_='check')
        batch_op.create_check_constraint(op.f(CHECK_NAME), sa.text(_status_check(statuses)))


def upgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duplicate_of', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(op.f('fk_posts_duplicate_of_posts'), 'posts', ['duplicate_of'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index('ix_posts_duplicate_of', ['duplicate_of'], unique=False)
    _recreate_check(NEW_STATUSES)
    op.create_table(
        'sheet_filters',
        sa.Column('attr', sa.String(length=64), nullable=False),
        sa.Column('value', sa.JSON(), nullable=True),
        sa.Column('raw', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('attr', name=op.f('pk_sheet_filters')),
    )
    op.create_table(
        'sheet_syncs',
        sa.Column('worksheet', sa.String(length=128), nullable=False),
        sa.Column('last_sync_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('worksheet', name=op.f('pk_sheet_syncs')),
    )


def downgrade() -> None:
    op.drop_table('sheet_syncs')
    op.drop_table('sheet_filters')
    op.execute(sa.text("UPDATE posts SET status = 'rejected' WHERE status IN ('duplicate', 'pending')"))
    _recreate_check(OLD_STATUSES)
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_index('ix_posts_duplicate_of')
        batch_op.drop_constraint(op.f('fk_posts_duplicate_of_posts'), type_='foreignkey')
        batch_op.drop_column('duplicate_of')
