"""Optuna's study storage beside a PostgreSQL store: the same database, a schema of its own.

Optuna's RDB storage keeps its own ``alembic_version`` table, which would clash with the store's
migrations in the same schema, so its tables live in the schema :data:`SCHEMA`. A team opens a
run's studies with ``optuna.load_study`` (or optuna-dashboard) on the URL :func:`optuna_storage`
returns; the search names each study ``<project>/run-<id>/<step>/<family>``.

>>> url = optuna_storage(store)                                    # doctest: +SKIP
>>> optuna.load_study(study_name="shop/run-3/model-1/lightgbm", storage=url)   # doctest: +SKIP
"""

from __future__ import annotations

import sqlalchemy as sa

from loopml.errors import StoreError
from loopml.store.metadata import _MIGRATION_LOCK_KEY, Store, _redact

__all__ = ["SCHEMA", "optuna_storage", "study_name"]

SCHEMA = "loopml_optuna"


def optuna_storage(store: Store) -> str | None:
    """The Optuna storage URL for ``store`` (its schema created, tables ready), or None off PostgreSQL.

    >>> optuna_storage(Store.open(root))                          # doctest: +SKIP
    'postgresql+psycopg://127.0.0.1:5432/team?options=-csearch_path%3Dloopml_optuna'
    """
    # SQLite keeps the in-memory study: Optuna's tables in the store's file would fight its Alembic version table.
    if store.engine.dialect.name != "postgresql":
        return None
    url = store.engine.url
    options = " ".join(filter(None, [url.query.get("options", ""), f"-csearch_path={SCHEMA}"]))
    storage = url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        user = conn.execute(sa.text("SELECT current_user")).scalar()
        database = conn.execute(sa.text("SELECT current_database()")).scalar()
        # The lock migrations take: two runs starting at once race neither the schema nor Optuna's tables.
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        try:
            _create_schema(conn, user, database, url)
            _create_tables(storage, user, url)
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    return storage


def study_name(store: Store, project: str, run_id: int, step: str) -> str:
    """The name the studies of one search start with (the search adds ``/<family>``), unused so far.

    A database whose store was emptied while its studies stayed may hold the name already: ``~2`` and
    on are added then, so a new search never adds trials to an old study.

    >>> study_name(store, "shop", 3, "model-1")                       # doctest: +SKIP
    'shop/run-3/model-1'
    """
    base = f"{project}/run-{run_id}/{step}"
    with store.engine.connect() as conn:
        taken = set(conn.execute(sa.text(f"SELECT study_name FROM {SCHEMA}.studies WHERE study_name LIKE :pattern"),
                                 {"pattern": _like(base) + "%"}).scalars())
    prefixes = {name.rsplit("/", 1)[0] for name in taken}
    return next(name for name in (base, *(f"{base}~{k}" for k in range(2, len(taken) + 3))) if name not in prefixes)


def _create_schema(conn: sa.Connection, user: str, database: str, url: sa.engine.URL) -> None:
    if conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": SCHEMA}).scalar():
        return  # made by an administrator, perhaps: the user then needs no CREATE privilege on the database
    try:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    except sa.exc.ProgrammingError as exc:
        raise StoreError(
            f"cannot create the schema '{SCHEMA}' for Optuna's studies in {_redact(str(url))}: the user "
            f"'{user}' needs the CREATE privilege on database '{database}' ({_reason(exc)}); ask an "
            f"administrator to run `CREATE SCHEMA {SCHEMA} AUTHORIZATION \"{user}\"`") from None


def _create_tables(storage: str, user: str, url: sa.engine.URL) -> None:
    """Optuna's tables in :data:`SCHEMA` (a no-op once there), created while the caller holds the lock."""
    import optuna

    try:
        rdb = optuna.storages.RDBStorage(storage)
    except sa.exc.ProgrammingError as exc:
        raise StoreError(
            f"cannot create Optuna's tables in the schema '{SCHEMA}' of {_redact(str(url))}: the user '{user}' "
            f"needs the USAGE and CREATE privileges on it ({_reason(exc)}); ask an administrator to run "
            f"`GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO \"{user}\"`") from None
    rdb.remove_session()
    rdb.engine.dispose()


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _reason(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0]
