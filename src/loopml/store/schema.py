"""The metadata store's tables (SQLAlchemy Core). Migrations in ``migrations/`` create them.

Every row carries ``project`` so one PostgreSQL database can serve a team's
projects side by side.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_now = sa.func.now()


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=None if nullable else _now)


artifacts = sa.Table(
    "artifacts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("path", sa.String(500), nullable=False, unique=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    _ts("created_at"),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("input_key", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("outcome", sa.Text),
    _ts("started_at"),
    _ts("finished_at", nullable=True),
)

stage_events = sa.Table(
    "stage_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("detail", sa.JSON),
    _ts("at"),
)

decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), index=True),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("gate", sa.String(64), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("next_stage", sa.String(32)),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    _ts("at"),
)

snapshots = sa.Table(
    "snapshots", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("input_key", sa.String(64), nullable=False),
    sa.Column("data_hash", sa.String(64), nullable=False),
    sa.Column("artifact_id", sa.Integer, sa.ForeignKey("artifacts.id"), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("columns", sa.Integer, nullable=False),
    sa.Column("contract", sa.JSON, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    _ts("created_at"),
    sa.UniqueConstraint("project", "input_key", name="uq_snapshots_project_key"),
)

model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("input_key", sa.String(64), nullable=False),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id")),
    sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=False),
    sa.Column("artifact_id", sa.Integer, sa.ForeignKey("artifacts.id"), nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("family", sa.String(32), nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("operating_point", sa.JSON, nullable=False),
    sa.Column("lineage", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    _ts("created_at"),
    # The decision that registered the version (migration 0002); null for versions registered without one.
    sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id", name="fk_model_versions_decision_id")),
    sa.UniqueConstraint("project", "version", name="uq_model_versions_project_version"),
)

aliases = sa.Table(
    "aliases", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("alias", sa.String(32), primary_key=True),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
    _ts("updated_at"),
)

alias_history = sa.Table(
    "alias_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("alias", sa.String(32), nullable=False),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("previous_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    _ts("at"),
)

deployments = sa.Table(
    "deployments", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("pid", sa.Integer),
    _ts("started_at"),
    _ts("stopped_at", nullable=True),
)

predictions = sa.Table(
    "predictions", metadata,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("project", sa.String(100), nullable=False),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("prediction", sa.JSON, nullable=False),
    sa.Column("probability", sa.Float),
    sa.Column("latency_ms", sa.Float),
    _ts("created_at"),
    sa.Index("ix_predictions_project_seq", "project", "seq"),
    # Migration 0005: who produced the row. "champion" and "canary" rows answered a request; a "shadow" row
    # is the challenger scoring the same record without answering, and shadow_of is the answered row's id.
    sa.Column("role", sa.String(16), nullable=False, server_default="champion"),
    sa.Column("shadow_of", sa.String(32), index=True),
    # Migration 0007: the serving process that logged the row, "host:pid" (null before 0007 or outside serving).
    sa.Column("worker", sa.String(200)),
)

feedback = sa.Table(
    "feedback", metadata,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("prediction_id", sa.String(32), sa.ForeignKey("predictions.id"), nullable=False, unique=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("label", sa.JSON, nullable=False),
    _ts("created_at"),
)

monitor_windows = sa.Table(
    "monitor_windows", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("first_seq", sa.Integer, nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    _ts("created_at"),
    # Migration 0003. kind "labels": `loopml maintain`'s windows, seqs of the feedback table; kind "predictions":
    # `loopml monitor`'s, seqs of the prediction log. window_key makes a window computed once, whoever computes it.
    sa.Column("kind", sa.String(16), nullable=False, server_default="labels"),
    sa.Column("window_key", sa.String(64)),
    sa.Column("starts_at", sa.DateTime(timezone=True)),
    sa.Column("ends_at", sa.DateTime(timezone=True)),
    # The labeled performance, updated as labels arrive; labels_seq: the last feedback seq it has seen.
    sa.Column("labeled", sa.JSON),
    sa.Column("labels_seq", sa.Integer),
    sa.Index("uq_monitor_windows_project_key", "project", "window_key", unique=True),
)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("window_id", sa.Integer, sa.ForeignKey("monitor_windows.id")),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    _ts("created_at"),
    # Migration 0003: how the alert's webhook went (attempts, status, error); null without a webhook.
    sa.Column("delivery", sa.JSON),
)

locks = sa.Table(
    "locks", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    _ts("acquired_at"),
    # Migration 0004: who holds it (a process on a host, in a run) and when it last said it is alive.
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("run_id", sa.Integer),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
)

# Migration 0004: where a repeated job got to (the alerts `loopml maintain` has read), one JSON value per name.
checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    _ts("updated_at"),
)


# Migration 0006: requests POST /predict refused (422), one row per request, column and kind of violation.
rejections = sa.Table(
    "rejections", metadata,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("project", sa.String(100), nullable=False),
    sa.Column("request_id", sa.String(32), nullable=False),
    sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("column_name", sa.String(200)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("rows", sa.Integer),
    sa.Column("request_rows", sa.Integer),
    sa.Column("example", sa.String(300)),
    _ts("created_at"),
    sa.Index("ix_rejections_project_seq", "project", "seq"),
)
