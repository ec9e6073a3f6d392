"""Registry: link each model version to the decision that registered it.

Adds ``model_versions.decision_id`` (nullable, references ``decisions.id``) and fills it for the
versions already stored: a version registered by ``loopml run`` was recorded in the same run as its
``model · goal · register`` decision. Versions registered without a decision keep null. Archiving
uses the existing ``status`` column (``registered`` or ``archived``), so it needs no schema change.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_FK = 'fk_model_versions_decision_id'


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        # ADD COLUMN ... REFERENCES keeps every row in place; a batch rebuild of model_versions would have to
        # drop a table that aliases, predictions and deployments point at.
        op.execute(sa.text('ALTER TABLE model_versions ADD COLUMN decision_id INTEGER '
                           f'CONSTRAINT {_FK} REFERENCES decisions (id)'))
    else:
        op.add_column('model_versions', sa.Column('decision_id', sa.Integer(), nullable=True))
        op.create_foreign_key(_FK, 'model_versions', 'decisions', ['decision_id'], ['id'])
    _link_registering_decisions(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(sa.text('ALTER TABLE model_versions DROP COLUMN decision_id'))
    else:
        op.drop_constraint(_FK, 'model_versions', type_='foreignkey')
        op.drop_column('model_versions', 'decision_id')


def _link_registering_decisions(bind) -> None:
    versions = sa.table('model_versions', sa.column('id'), sa.column('project'), sa.column('run_id'),
                        sa.column('decision_id'))
    decisions = sa.table('decisions', sa.column('id'), sa.column('project'), sa.column('run_id'),
                         sa.column('stage'), sa.column('gate'), sa.column('action'))
    registering = (sa.select(sa.func.min(decisions.c.id))
                   .where(decisions.c.project == versions.c.project, decisions.c.run_id == versions.c.run_id,
                          decisions.c.stage == 'model', decisions.c.gate == 'goal', decisions.c.action == 'register')
                   .scalar_subquery())
    bind.execute(versions.update().where(versions.c.run_id.is_not(None), versions.c.decision_id.is_(None))
                 .values(decision_id=registering))
