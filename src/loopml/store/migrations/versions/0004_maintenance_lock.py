"""Maintenance: a lock that names its holder and its heartbeat, and checkpoints for repeated passes.

Adds to ``locks`` the holder's ``pid``, ``host`` and ``run_id`` and its ``heartbeat_at``, so a second
``loopml maintain`` can tell a live holder (it waits) from a dead one (it takes the lock over). Adds
``checkpoints`` (project, name, JSON value): where a repeated job got to, such as the last alert a
maintenance pass has read. Columns and a table only: every row stays in place.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_LOCK_COLUMNS = ('pid', 'host', 'run_id', 'heartbeat_at')


def upgrade() -> None:
    op.add_column('locks', sa.Column('pid', sa.Integer(), nullable=True))
    op.add_column('locks', sa.Column('host', sa.String(length=255), nullable=True))
    op.add_column('locks', sa.Column('run_id', sa.Integer(), nullable=True))
    op.add_column('locks', sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('checkpoints',
    sa.Column('project', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('project', 'name')
    )


def downgrade() -> None:
    op.drop_table('checkpoints')
    if op.get_bind().dialect.name == 'sqlite':
        for column in _LOCK_COLUMNS:
            op.execute(sa.text(f'ALTER TABLE locks DROP COLUMN {column}'))
        return
    for column in _LOCK_COLUMNS:
        op.drop_column('locks', column)
