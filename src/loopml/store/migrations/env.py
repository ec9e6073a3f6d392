"""Alembic environment: runs on the connection the Store hands over (or a URL for the CLI)."""

from alembic import context
from sqlalchemy import create_engine

from loopml.store.schema import metadata

config = context.config


def _run(connection) -> None:
    # Batch mode lets later migrations alter SQLite tables, which lack ALTER COLUMN.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as conn:
        _run(conn)
