"""Monitoring: windows over the prediction log, their labeled performance, and webhook delivery of alerts.

Adds to ``monitor_windows``: ``kind`` (``labels`` for the windows ``loopml maintain`` cuts over feedback
seqs, which every existing row is; ``predictions`` for ``loopml monitor``'s windows over prediction seqs),
``window_key`` (unique per project, so a window is stored once even when two passes race), ``starts_at``
and ``ends_at``, ``labeled`` (the labeled performance, updated as labels arrive) and ``labels_seq``.
Adds ``alerts.delivery`` (how the webhook went). Columns only: every row stays in place.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_KEY = 'uq_monitor_windows_project_key'
_WINDOW_COLUMNS = ('kind', 'window_key', 'starts_at', 'ends_at', 'labeled', 'labels_seq')


def upgrade() -> None:
    # Plain ADD COLUMN on both dialects: a batch rebuild of monitor_windows would drop a table alerts point at.
    op.add_column('monitor_windows', sa.Column('kind', sa.String(length=16), nullable=False,
                                               server_default='labels'))
    op.add_column('monitor_windows', sa.Column('window_key', sa.String(length=64), nullable=True))
    op.add_column('monitor_windows', sa.Column('starts_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('monitor_windows', sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('monitor_windows', sa.Column('labeled', sa.JSON(), nullable=True))
    op.add_column('monitor_windows', sa.Column('labels_seq', sa.Integer(), nullable=True))
    op.create_index(_KEY, 'monitor_windows', ['project', 'window_key'], unique=True)
    op.add_column('alerts', sa.Column('delivery', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_index(_KEY, table_name='monitor_windows')
    if op.get_bind().dialect.name == 'sqlite':
        for column in _WINDOW_COLUMNS:
            op.execute(sa.text(f'ALTER TABLE monitor_windows DROP COLUMN {column}'))
        op.execute(sa.text('ALTER TABLE alerts DROP COLUMN delivery'))
        return
    for column in _WINDOW_COLUMNS:
        op.drop_column('monitor_windows', column)
    op.drop_column('alerts', 'delivery')
