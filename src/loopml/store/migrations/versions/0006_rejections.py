"""Requests serving refused at its door: counted by column and kind of violation, for monitoring.

Adds ``rejections``: one row per request that ``POST /predict`` answered with 422, per column and kind of
violation it broke (``type``, ``missing_column``, ``unknown_category``, ..., or ``body`` for a body that
could not be read as records). Each row holds the request's id, the model version serving, how many of the
request's rows broke that rule (``rows``) and how many it sent (``request_rows``), and one example reason,
truncated: never the payload itself. A new table only: every existing row stays in place.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_INDEX = 'ix_rejections_project_seq'


def upgrade() -> None:
    op.create_table('rejections',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('project', sa.String(length=100), nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=True),
    sa.Column('column_name', sa.String(length=200), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=True),
    sa.Column('request_rows', sa.Integer(), nullable=True),
    sa.Column('example', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], ),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
    )
    op.create_index(_INDEX, 'rejections', ['project', 'seq'], unique=False)


def downgrade() -> None:
    op.drop_index(_INDEX, table_name='rejections')
    op.drop_table('rejections')
