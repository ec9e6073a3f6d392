"""Shadow and canary releases: who produced each logged prediction.

Adds to ``predictions`` the ``role`` of the model that produced the row (``champion`` or ``canary``: it
answered the request; ``shadow``: the challenger scored the same record without answering) and
``shadow_of``, the id of the answered prediction a shadow row shadows (indexed: feedback on that id labels
the shadow row too). Every existing row answered a request, so it becomes ``champion``. Columns and an
index only: every row stays in place.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_INDEX = 'ix_predictions_shadow_of'


def upgrade() -> None:
    # Plain ADD COLUMN on both dialects: a batch rebuild of predictions would drop a table feedback points at.
    op.add_column('predictions', sa.Column('role', sa.String(length=16), nullable=False, server_default='champion'))
    op.add_column('predictions', sa.Column('shadow_of', sa.String(length=32), nullable=True))
    op.create_index(_INDEX, 'predictions', ['shadow_of'], unique=False)


def downgrade() -> None:
    op.drop_index(_INDEX, table_name='predictions')
    if op.get_bind().dialect.name == 'sqlite':
        for column in ('shadow_of', 'role'):
            op.execute(sa.text(f'ALTER TABLE predictions DROP COLUMN {column}'))
        return
    op.drop_column('predictions', 'shadow_of')
    op.drop_column('predictions', 'role')
