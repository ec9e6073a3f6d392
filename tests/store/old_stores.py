"""Stores at an older schema revision, filled with raw SQL as that revision wrote it: the upgrade tests' start."""

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from loopml.store.metadata import _MIGRATIONS


def at_revision(url: str, revision: str) -> sa.Engine:
    """An engine on a database migrated up to ``revision`` only."""
    engine = sa.create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def head() -> str:
    """The newest revision the package ships."""
    return ScriptDirectory(str(_MIGRATIONS)).get_current_head()


def version_one(at: str) -> tuple[str, ...]:
    """Two artifacts, a snapshot and model version 1 of project 'p', created at ``at``."""
    return (
        f"INSERT INTO artifacts (id, project, kind, path, sha256, size, created_at) VALUES (1, 'p', 'snapshot', "
        f"'s.parquet', '{'a' * 64}', 3, '{at}')",
        f"INSERT INTO artifacts (id, project, kind, path, sha256, size, created_at) VALUES (2, 'p', 'model', "
        f"'m.json', '{'b' * 64}', 2, '{at}')",
        "INSERT INTO snapshots (id, project, input_key, data_hash, artifact_id, rows, columns, contract, report, "
        f"created_at) VALUES (1, 'p', 'k', 'd', 1, 10, 3, '{{}}', '{{}}', '{at}')",
        "INSERT INTO model_versions (id, project, version, input_key, snapshot_id, artifact_id, spec_hash, family, "
        f"metrics, operating_point, lineage, status, created_at) VALUES (1, 'p', 1, 'm', 1, 2, 's', 'linear', "
        f"'{{}}', '{{}}', '{{}}', 'registered', '{at}')",
    )
