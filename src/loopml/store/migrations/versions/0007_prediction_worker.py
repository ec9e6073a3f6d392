"""Several serving workers: which one logged each prediction.

Adds to ``predictions`` the ``worker`` that answered (or shadow-scored) the row, as ``host:pid`` of the
serving process, so the log of ``loopml serve --workers N`` (or of replicas on several hosts) can be
split by worker while monitoring reads it as one. Rows logged before this revision keep a null worker.
A column only: every row stays in place.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both dialects: a batch rebuild of predictions would drop a table feedback points at.
    op.add_column('predictions', sa.Column('worker', sa.String(length=200), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(sa.text('ALTER TABLE predictions DROP COLUMN worker'))
        return
    op.drop_column('predictions', 'worker')
