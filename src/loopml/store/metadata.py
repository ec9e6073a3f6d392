"""The metadata store: runs, decisions, snapshots, model versions, aliases, predictions, feedback.

SQLite in the project's ``.loopml/`` folder by default (WAL mode, nothing to
start); PostgreSQL when ``LOOPML_DB`` holds a URL. Alembic migrations bring the
schema to the current version on open. Writes that belong together (an
artifact, its model version and its metrics) share one transaction.

>>> store = Store.open(project_root)                   # doctest: +SKIP
>>> store.alias("benefits-outreach", "champion")       # doctest: +SKIP
ModelVersion(version=1, ...)
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from loopml.decisions import Decision
from loopml.errors import ArtifactError, ConflictError, NotFoundError, StoreError
from loopml.store import schema as t
from loopml.store.artifacts import PICKLE_REFUSED, ArtifactStore, pickle_family

__all__ = ["ANSWERED", "ModelVersion", "ROLES", "SnapshotRecord", "Store", "store_url"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATING = threading.Lock()
_MIGRATION_LOCK_KEY = 0x6C6F6F706D6C  # the PostgreSQL advisory lock migrations hold ("loopml" in hex)
_REGISTER_LOCK_KEY = 0x6C6D  # with the project's hash: the advisory lock that numbers a project's versions
# Who produced a logged prediction: the champion or a canary answered the request; a shadow scored it unseen.
ROLES = ("champion", "canary", "shadow")
ANSWERED = ("champion", "canary")


def store_url(root: Path) -> str:
    """``LOOPML_DB`` if set, else the SQLite file in ``root/.loopml/``."""
    url = os.environ.get("LOOPML_DB", "").strip()
    return url or f"sqlite:///{(Path(root) / '.loopml' / 'loopml.db').resolve()}"


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything loopml writes is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SnapshotRecord:
    id: int
    project: str
    input_key: str
    data_hash: str
    artifact_path: str
    artifact_sha256: str
    rows: int
    columns: int
    contract: dict[str, Any]
    report: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class ModelVersion:
    id: int
    project: str
    version: int
    input_key: str
    run_id: int | None
    snapshot_id: int
    artifact_path: str
    artifact_sha256: str
    spec_hash: str
    family: str
    metrics: dict[str, Any]
    operating_point: dict[str, Any]
    lineage: dict[str, Any]
    status: str
    created_at: datetime
    aliases: tuple[str, ...] = field(default=())
    decision_id: int | None = None  # the decision that registered it, when one did
    artifact_size: int | None = None  # bytes


class Store:
    """The one place loopml's process state lives. Open with :meth:`Store.open`."""

    def __init__(self, engine: Engine, artifacts: ArtifactStore):
        self.engine = engine
        self.artifacts = artifacts
        self._root: Path | None = None

    @property
    def root(self) -> Path | None:
        """The project folder :meth:`open` was given (a model's feature hook is imported from it)."""
        return self._root

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | Path, url: str | None = None) -> Store:
        """Open (and migrate) the store of the project whose folder is ``root``."""
        root = Path(root)
        url = url or store_url(root)
        artifact_root = Path(os.environ.get("LOOPML_ARTIFACTS", "") or root / ".loopml" / "artifacts")
        if url.startswith("sqlite"):
            (root / ".loopml").mkdir(parents=True, exist_ok=True)
        try:
            engine = sa.create_engine(url, json_serializer=_json_dumps)
        except Exception as exc:  # a malformed URL is bad input, not a crash
            raise StoreError(f"LOOPML_DB: cannot use {_redact(url)!r}: {exc}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine, ArtifactStore(artifact_root))
        store._root = root.resolve()
        store._migrate()
        return store

    def _migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        try:
            # Alembic's context is process-global: one upgrade at a time in this process.
            with _MIGRATING, self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Processes opening one database at once: one upgrades, the others wait, then find it done.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"cannot open the metadata store at {_redact(str(self.engine.url))}: {exc.orig}; "
                "check LOOPML_DB or that the server is running"
            ) from None

    def schema_version(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def close(self) -> None:
        self.engine.dispose()

    # -- runs and events -----------------------------------------------------------------------

    def start_run(self, project: str, kind: str, spec_hash: str, input_key: str | None = None) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                t.runs.insert().values(project=project, kind=kind, spec_hash=spec_hash, input_key=input_key,
                                       status="running", started_at=_now())
            ).inserted_primary_key[0]

    def last_finished_run(self, project: str, kind: str, input_key: str) -> dict[str, Any] | None:
        """The latest finished run of ``kind`` on exactly these inputs, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(t.runs.select().where(
                t.runs.c.project == project, t.runs.c.kind == kind, t.runs.c.input_key == input_key,
                t.runs.c.status.in_(("registered", "goal_not_met", "data_insufficient")))
                .order_by(t.runs.c.id.desc()).limit(1)).mappings().first()
        return dict(row) if row else None

    def finish_run(self, run_id: int, status: str, outcome: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.runs.update().where(t.runs.c.id == run_id)
                         .values(status=status, outcome=outcome, finished_at=_now()))

    def runs(self, project: str, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(t.runs.select().where(t.runs.c.project == project)
                                .order_by(t.runs.c.id.desc()).limit(limit)).mappings().all()
        return [{**r, "started_at": _utc(r["started_at"]), "finished_at": _utc(r["finished_at"])} for r in rows]

    def stage_event(self, run_id: int, stage: str, event_name: str, detail: dict | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.stage_events.insert().values(run_id=run_id, stage=stage, event=event_name,
                                                        detail=detail or {}, at=_now()))

    def stage_events(self, run_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(t.stage_events.select().where(t.stage_events.c.run_id == run_id)
                                                  .order_by(t.stage_events.c.id)).mappings()]

    # -- decisions -----------------------------------------------------------------------------

    def record_decision(self, project: str, decision: Decision, conn: Connection | None = None) -> Decision:
        values = dict(project=project, run_id=decision.run_id, stage=decision.stage, gate=decision.gate,
                      verdict=decision.verdict, action=decision.action, next_stage=decision.next_stage,
                      summary=decision.summary, evidence=decision.evidence, actor=decision.actor, at=_now())
        with self._tx(conn) as c:
            new_id = c.execute(t.decisions.insert().values(**values)).inserted_primary_key[0]
        return Decision(**{**decision.__dict__, "id": new_id, "at": values["at"]})

    def decisions(self, project: str, *, run_id: int | None = None, limit: int | None = None) -> list[Decision]:
        """Decisions oldest first; with ``limit``, the latest ``limit`` of them."""
        q = t.decisions.select().where(t.decisions.c.project == project)
        if run_id is not None:
            q = q.where(t.decisions.c.run_id == run_id)
        q = q.order_by(t.decisions.c.id.desc())
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            Decision(stage=r["stage"], gate=r["gate"], verdict=r["verdict"], action=r["action"],
                     next_stage=r["next_stage"], summary=r["summary"], evidence=r["evidence"], actor=r["actor"],
                     run_id=r["run_id"], id=r["id"], at=_utc(r["at"]))
            for r in reversed(rows)
        ]

    # -- snapshots -----------------------------------------------------------------------------

    def find_snapshot(self, project: str, input_key: str) -> SnapshotRecord | None:
        return self._snapshot_where(t.snapshots.c.project == project, t.snapshots.c.input_key == input_key)

    def snapshot(self, snapshot_id: int) -> SnapshotRecord:
        found = self._snapshot_where(t.snapshots.c.id == snapshot_id)
        if found is None:
            raise StoreError(f"no data snapshot with id {snapshot_id}")
        return found

    def save_snapshot(self, project: str, *, input_key: str, data: bytes, data_hash: str, rows: int,
                      columns: int, contract: dict, report: dict) -> SnapshotRecord:
        ref = self.artifacts.put(data, kind="snapshots", suffix=".parquet")
        with self.engine.begin() as conn:
            artifact_id = self._artifact_row(conn, project, "snapshot", ref)
            conn.execute(t.snapshots.insert().values(
                project=project, input_key=input_key, data_hash=data_hash, artifact_id=artifact_id,
                rows=rows, columns=columns, contract=contract, report=report, created_at=_now()))
        return self.find_snapshot(project, input_key)  # type: ignore[return-value]

    def read_snapshot(self, snapshot: SnapshotRecord) -> bytes:
        return self.artifacts.read(snapshot.artifact_path, snapshot.artifact_sha256)

    def save_snapshot_parts(self, project: str, *, input_key: str, parts: list[Path], data_hash: str, rows: int,
                            columns: int, contract: dict, report: dict) -> SnapshotRecord:
        """Store a snapshot made of Parquet part files (the larger-than-memory path).

        Each part is copied into the artifact store; the snapshot's artifact is a JSON manifest listing them.

        >>> store.save_snapshot_parts("p", input_key="k", parts=[Path("part.0.parquet")], data_hash="h",
        ...                           rows=10, columns=3, contract={}, report={})  # doctest: +SKIP
        """
        if not parts:
            raise StoreError("a parts snapshot needs at least one part file; received an empty list of parts")
        entries, refs = [], []
        try:
            for part in map(Path, parts):
                part_rows = _parquet_rows(part)
                ref = self.artifacts.put(part.read_bytes(), kind="snapshots", suffix=".parquet")
                refs.append(ref)
                entries.append({"path": ref.path, "sha256": ref.sha256, "rows": part_rows})
            counted = sum(e["rows"] for e in entries)
            if counted != rows:
                raise StoreError(f"the {len(entries)} snapshot parts hold {counted} rows, but rows={rows} was "
                                 "given; pass the parts' total row count")
            manifest = json.dumps({"layout": "parts", "parts": entries}, sort_keys=True).encode()
            refs.append(ref := self.artifacts.put(manifest, kind="snapshots", suffix=".json"))
            with self.engine.begin() as conn:
                for part_ref in refs[:-1]:
                    self._artifact_row(conn, project, "snapshot_part", part_ref)
                artifact_id = self._artifact_row(conn, project, "snapshot", ref)
                conn.execute(t.snapshots.insert().values(
                    project=project, input_key=input_key, data_hash=data_hash, artifact_id=artifact_id, rows=rows,
                    columns=columns, contract=contract, report={**report, "layout": "parts"}, created_at=_now()))
        except Exception:
            for stored in refs:
                if not self._artifact_referenced(stored.path):
                    self.artifacts.remove(stored.path)
            raise
        return self.find_snapshot(project, input_key)  # type: ignore[return-value]

    def snapshot_parts(self, snapshot: SnapshotRecord) -> list[Path]:
        """The absolute paths of a parts snapshot's Parquet files, each checked to exist with its recorded size.

        >>> [p.name for p in store.snapshot_parts(snapshot)]  # doctest: +SKIP
        ['3f2a….parquet', '9c41….parquet']
        """
        if snapshot.report.get("layout") != "parts":
            raise StoreError(f"data snapshot {snapshot.id} is a single Parquet file, not a parts snapshot; read it "
                             "with Store.read_snapshot")
        manifest = json.loads(self.artifacts.read(snapshot.artifact_path, snapshot.artifact_sha256))
        rels = [entry["path"] for entry in manifest["parts"]]
        with self.engine.connect() as conn:
            sizes = dict(conn.execute(sa.select(t.artifacts.c.path, t.artifacts.c.size)
                                      .where(t.artifacts.c.path.in_(rels))).all())
        paths = []
        for rel in rels:
            path = self.artifacts.root / rel
            if not path.is_file():
                raise ArtifactError(f"snapshot part '{rel}' of data snapshot {snapshot.id} is missing from "
                                    f"{self.artifacts.root}; restore the folder or re-run `loopml run`")
            found = path.stat().st_size
            if found != sizes.get(rel):
                raise ArtifactError(f"snapshot part '{rel}' of data snapshot {snapshot.id} has {found} bytes, "
                                    f"{sizes.get(rel)} were recorded: the file was changed or truncated after it "
                                    "was stored. Restore the folder or re-run `loopml run`")
            paths.append(path)
        return paths

    def _snapshot_where(self, *where) -> SnapshotRecord | None:
        q = (sa.select(t.snapshots, t.artifacts.c.path, t.artifacts.c.sha256)
             .join(t.artifacts, t.artifacts.c.id == t.snapshots.c.artifact_id).where(*where))
        with self.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        if r is None:
            return None
        return SnapshotRecord(id=r["id"], project=r["project"], input_key=r["input_key"], data_hash=r["data_hash"],
                              artifact_path=r["path"], artifact_sha256=r["sha256"], rows=r["rows"],
                              columns=r["columns"], contract=r["contract"], report=r["report"],
                              created_at=_utc(r["created_at"]))

    # -- model versions and aliases ------------------------------------------------------------

    def register_model(self, project: str, *, run_id: int | None, snapshot_id: int, input_key: str,
                       model_bytes: bytes, spec_hash: str, family: str, metrics: dict, operating_point: dict,
                       lineage: dict, decision: Decision | None = None) -> ModelVersion:
        """Store the artifact and its version row (and the decision that registered it) in one transaction.

        The file is written first under its content hash; if the transaction fails, the
        version does not exist and a file no row points to is removed. The lineage gains the
        Python and loopml versions and the git commit of the project folder (null outside a git
        repository) unless it names them already. Pickle-family bytes are refused.
        """
        if (kind := pickle_family(model_bytes)) is not None:
            raise ArtifactError(f"refusing to register {kind}: {PICKLE_REFUSED}")
        lineage = {**lineage, "packages": {**_runtime_versions(), **(lineage.get("packages") or {})}}
        lineage.setdefault("git_commit", _git_commit(self.root))
        ref = self.artifacts.put(model_bytes, kind="models", suffix=".json")
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Two runs of one project registering at once: numbered one after the other, not both max + 1.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(:project))"),
                                 {"key": _REGISTER_LOCK_KEY, "project": project})
                artifact_id = self._artifact_row(conn, project, "model", ref)
                version = (conn.execute(sa.select(sa.func.max(t.model_versions.c.version))
                                        .where(t.model_versions.c.project == project)).scalar() or 0) + 1
                decision_id = self.record_decision(project, decision, conn).id if decision is not None else None
                conn.execute(t.model_versions.insert().values(
                    project=project, version=version, input_key=input_key, run_id=run_id, snapshot_id=snapshot_id,
                    artifact_id=artifact_id, spec_hash=spec_hash, family=family, metrics=metrics,
                    operating_point=operating_point, lineage=lineage, status="registered", created_at=_now(),
                    decision_id=decision_id))
        except Exception:
            if not self._artifact_referenced(ref.path):
                self.artifacts.remove(ref.path)
            raise
        return self.model_version(project, version)

    def find_model(self, project: str, input_key: str) -> ModelVersion | None:
        """The latest version trained on exactly these inputs that is not archived (reuse never revives one)."""
        found = self._versions_where(t.model_versions.c.project == project, t.model_versions.c.input_key == input_key,
                                     t.model_versions.c.status != "archived")
        return found[-1] if found else None

    def model_versions(self, project: str) -> list[ModelVersion]:
        return self._versions_where(t.model_versions.c.project == project)

    def model_version(self, project: str, version: int) -> ModelVersion:
        found = self._versions_where(t.model_versions.c.project == project, t.model_versions.c.version == version)
        if not found:
            known = [v.version for v in self.model_versions(project)]
            raise NotFoundError(f"project '{project}' has no model version {version}; "
                             f"known versions: {', '.join(map(str, known)) or 'none (run `loopml run` first)'}")
        return found[0]

    def read_model(self, mv: ModelVersion) -> bytes:
        """The model's bytes, SHA-256 checked; :class:`ArtifactError` for pickle-family or other non-JSON files."""
        data = self.artifacts.read(mv.artifact_path, mv.artifact_sha256)
        if (kind := pickle_family(data)) is not None:
            raise ArtifactError(f"artifact '{mv.artifact_path}' of model version {mv.version} is {kind}: "
                                f"{PICKLE_REFUSED}. Register the model again with `loopml run`")
        if data[:64].lstrip()[:1] != b"{":
            raise ArtifactError(f"artifact '{mv.artifact_path}' of model version {mv.version} is not a loopml model: "
                                "it is not a JSON object, and loopml stores models as JSON. Register the model again "
                                "with `loopml run`")
        return data

    def registered_by(self, mv: ModelVersion) -> Decision | None:
        """The decision that registered ``mv``, if one was recorded with it."""
        if mv.decision_id is None:
            return None
        with self.engine.connect() as conn:
            r = conn.execute(t.decisions.select().where(t.decisions.c.id == mv.decision_id)).mappings().first()
        return None if r is None else _decision(r)

    def registry_decisions(self, project: str) -> list[Decision]:
        """The registry's own decisions (promote, rollback, archive, export by hand), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(t.decisions.select().where(
                t.decisions.c.project == project, t.decisions.c.stage == "operations",
                t.decisions.c.gate == "registry").order_by(t.decisions.c.id)).mappings().all()
        return [_decision(r) for r in rows]

    def alias_history(self, project: str, model_version_id: int | None = None) -> list[dict[str, Any]]:
        """Every alias move, oldest first (only those onto ``model_version_id`` when given), with version numbers."""
        to, before = t.model_versions.alias("to_version"), t.model_versions.alias("from_version")
        h = t.alias_history
        q = (sa.select(h.c.alias, to.c.version.label("version"), before.c.version.label("previous_version"),
                       h.c.actor, h.c.reason, h.c.at)
             .join(to, to.c.id == h.c.model_version_id).outerjoin(before, before.c.id == h.c.previous_version_id)
             .where(h.c.project == project).order_by(h.c.id))
        if model_version_id is not None:
            q = q.where(h.c.model_version_id == model_version_id)
        with self.engine.connect() as conn:
            return [{**r, "at": _utc(r["at"])} for r in conn.execute(q).mappings()]

    def archive_model(self, project: str, version: int, *, decision: Decision) -> ModelVersion:
        """Mark ``version`` archived (it can no longer take an alias) and record ``decision``. One transaction.

        :class:`ConflictError` when it is the champion or already archived.
        """
        target = self.model_version(project, version)
        with self.engine.begin() as conn:
            status = conn.execute(sa.select(t.model_versions.c.status).where(t.model_versions.c.id == target.id)
                                  .with_for_update()).scalar()
            champion = conn.execute(sa.select(t.aliases.c.model_version_id).where(
                t.aliases.c.project == project, t.aliases.c.alias == "champion").with_for_update()).scalar()
            if status == "archived":
                raise ConflictError(f"model version {version} of project '{project}' is already archived")
            if champion == target.id:
                raise ConflictError(f"model version {version} is the champion of project '{project}' and cannot be "
                                    "archived; promote another version first (`loopml models promote N --reason "
                                    "...`), then archive this one")
            conn.execute(t.model_versions.update().where(t.model_versions.c.id == target.id)
                         .values(status="archived"))
            self.record_decision(project, decision, conn)
        return self.model_version(project, version)

    def alias(self, project: str, alias: str) -> ModelVersion | None:
        with self.engine.connect() as conn:
            mv_id = conn.execute(sa.select(t.aliases.c.model_version_id).where(
                t.aliases.c.project == project, t.aliases.c.alias == alias)).scalar()
        if mv_id is None:
            return None
        return self._versions_where(t.model_versions.c.id == mv_id)[0]

    def set_alias(self, project: str, alias: str, version: int, *, actor: str, reason: str,
                  decision: Decision | None = None,
                  expect: ModelVersion | None | Literal["any"] = "any") -> ModelVersion | None:
        """Point ``alias`` at ``version``; returns the version it pointed at before. One transaction.

        The alias row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL), so concurrent moves queue and
        each history row names the version its move replaced. ``expect``: the version the caller saw the
        alias point at (None: no alias yet); when it moved meanwhile, :class:`ConflictError` and nothing
        changes, so a decision written from what the caller saw never contradicts the history.

        >>> seen = store.alias("shop", "champion")                                           # doctest: +SKIP
        >>> store.set_alias("shop", "champion", 3, actor="ana", reason="beats v2", expect=seen)  # doctest: +SKIP
        ModelVersion(version=2, ...)
        """
        target = self.model_version(project, version)
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    prev_id = self._move_alias(conn, project, alias, target, actor, reason, decision, expect)
                break
            except _AliasTaken:
                # There was no row to lock, and another transaction created the alias first: look again.
                if expect != "any" or attempt:
                    with self.engine.connect() as conn:
                        now_id = conn.execute(sa.select(t.aliases.c.model_version_id).where(
                            t.aliases.c.project == project, t.aliases.c.alias == alias)).scalar()
                        raise self._moved(conn, project, alias, now_id, None if expect == "any" else expect) \
                            from None
        return self._versions_where(t.model_versions.c.id == prev_id)[0] if prev_id else None

    def _move_alias(self, conn: Connection, project: str, alias: str, target: ModelVersion, actor: str,
                    reason: str, decision: Decision | None, expect: ModelVersion | None | str) -> int | None:
        status = conn.execute(sa.select(t.model_versions.c.status).where(t.model_versions.c.id == target.id)
                              .with_for_update()).scalar()
        if status == "archived":
            raise ConflictError(f"model version {target.version} of project '{project}' is archived and cannot "
                                f"become {alias}; promote a version that is not archived, or register a new one with "
                                "`loopml run`")
        prev_id = conn.execute(sa.select(t.aliases.c.model_version_id).where(
            t.aliases.c.project == project, t.aliases.c.alias == alias).with_for_update()).scalar()
        if expect != "any" and prev_id != (expect.id if expect is not None else None):  # type: ignore[union-attr]
            raise self._moved(conn, project, alias, prev_id, expect)  # type: ignore[arg-type]
        if prev_id is None:
            try:
                conn.execute(t.aliases.insert().values(project=project, alias=alias, model_version_id=target.id,
                                                       updated_at=_now()))
            except sa.exc.IntegrityError:
                raise _AliasTaken from None
        else:
            conn.execute(t.aliases.update().where(t.aliases.c.project == project, t.aliases.c.alias == alias)
                         .values(model_version_id=target.id, updated_at=_now()))
        conn.execute(t.alias_history.insert().values(
            project=project, alias=alias, model_version_id=target.id, previous_version_id=prev_id,
            actor=actor, reason=reason, at=_now()))
        if decision is not None:
            self.record_decision(project, decision, conn)
        return prev_id

    @staticmethod
    def _moved(conn: Connection, project: str, alias: str, now_id: int | None,
               expect: ModelVersion | None) -> ConflictError:
        now = conn.execute(sa.select(t.model_versions.c.version).where(t.model_versions.c.id == now_id)).scalar() \
            if now_id is not None else None
        saw = f"v{expect.version}" if expect is not None else "no version"
        return ConflictError(f"the {alias} of project '{project}' moved to {f'v{now}' if now else 'no version'} "
                             f"while this change was made (it expected {saw}); nothing changed. Check "
                             "`loopml models list` and try again")

    def clear_alias(self, project: str, alias: str, *, actor: str, reason: str, decision: Decision | None = None,
                    only_if: int | None = None) -> ModelVersion | None:
        """Remove ``alias`` (and record ``decision``) in one transaction; returns the version it pointed at.

        ``only_if``: remove it only while it points at that model version id (else nothing changes and None
        is returned), so a pass never clears an alias someone moved meanwhile. The champion cannot be cleared.

        >>> store.clear_alias("shop", "challenger", actor="loopml maintain", reason="rolled back")  # doctest: +SKIP
        ModelVersion(version=3, ...)
        """
        if alias == "champion":
            raise ConflictError(f"the champion alias of project '{project}' cannot be removed; promote or roll back "
                                "to another version instead")
        with self.engine.begin() as conn:
            prev_id = conn.execute(sa.select(t.aliases.c.model_version_id).where(
                t.aliases.c.project == project, t.aliases.c.alias == alias).with_for_update()).scalar()
            if prev_id is None or (only_if is not None and prev_id != only_if):
                return None
            conn.execute(t.aliases.delete().where(t.aliases.c.project == project, t.aliases.c.alias == alias))
            conn.execute(t.alias_history.insert().values(
                project=project, alias=alias, model_version_id=None, previous_version_id=prev_id, actor=actor,
                reason=reason, at=_now()))
            if decision is not None:
                self.record_decision(project, decision, conn)
        return self._versions_where(t.model_versions.c.id == prev_id)[0]

    def previous_alias_target(self, project: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` pointed at before its latest change (for rollback)."""
        with self.engine.connect() as conn:
            prev_id = conn.execute(sa.select(t.alias_history.c.previous_version_id).where(
                t.alias_history.c.project == project, t.alias_history.c.alias == alias)
                .order_by(t.alias_history.c.id.desc()).limit(1)).scalar()
        return self._versions_where(t.model_versions.c.id == prev_id)[0] if prev_id else None

    def _versions_where(self, *where) -> list[ModelVersion]:
        q = (sa.select(t.model_versions, t.artifacts.c.path, t.artifacts.c.sha256, t.artifacts.c.size)
             .join(t.artifacts, t.artifacts.c.id == t.model_versions.c.artifact_id)
             .where(*where).order_by(t.model_versions.c.version))
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
            alias_rows = conn.execute(sa.select(t.aliases.c.alias, t.aliases.c.model_version_id).where(
                t.aliases.c.model_version_id.in_([r["id"] for r in rows]))).all() if rows else []
        names: dict[int, list[str]] = {}
        for name, mv_id in alias_rows:
            names.setdefault(mv_id, []).append(name)
        return [
            ModelVersion(id=r["id"], project=r["project"], version=r["version"], input_key=r["input_key"],
                         run_id=r["run_id"], snapshot_id=r["snapshot_id"], artifact_path=r["path"],
                         artifact_sha256=r["sha256"], spec_hash=r["spec_hash"], family=r["family"],
                         metrics=r["metrics"], operating_point=r["operating_point"], lineage=r["lineage"],
                         status=r["status"], created_at=_utc(r["created_at"]),
                         aliases=tuple(sorted(names.get(r["id"], []))), decision_id=r["decision_id"],
                         artifact_size=r["size"])
            for r in rows
        ]

    # -- predictions and feedback --------------------------------------------------------------

    def log_predictions(self, project: str, model_version_id: int, rows: list[dict[str, Any]], *,
                        skip_existing: bool = False) -> None:
        """Append predictions in one transaction, as one batched insert.

        A row holds ``id``, ``features``, ``prediction`` and optionally ``probability`` and ``latency_ms``;
        it may carry its own ``model_version_id`` and ``created_at`` (a group commit mixes requests), and its
        ``role`` (``champion``, the default, or ``canary``: it answered; ``shadow``: the challenger scored the
        record without answering, and ``shadow_of`` names the answered prediction's id), and the ``worker``
        that logged it ("host:pid"; :class:`~loopml.operations.predlog.PredictionLog` stamps its process).
        ``skip_existing`` makes a retried write idempotent: ids already stored are left as they are.

        >>> store.log_predictions("benefits-outreach", mv.id, [{"id": "9f0c", "features": {"age": 41},
        ...                       "prediction": "yes", "probability": 0.81, "latency_ms": 0.4}])  # doctest: +SKIP
        """
        if not rows:
            return
        now = _now()
        values = [_prediction_values(project, model_version_id, now, r) for r in rows]
        insert = _insert_skipping_existing(self.engine.dialect.name) if skip_existing else t.predictions.insert()
        try:
            with self.engine.begin() as conn:
                # One executemany: sqlite3 and psycopg (pipeline mode) each send the batch in one go.
                conn.execute(insert, values)
        except sa.exc.IntegrityError as exc:
            raise ConflictError(
                f"cannot log {len(rows)} predictions for project '{project}': {exc.orig}; every prediction id "
                "must be new and model_version_id must name a registered model version") from None

    def record_feedback(self, project: str, prediction_id: str, label: Any) -> None:
        """Attach the true label to a logged prediction; :class:`StoreError` if unknown or already labeled.

        The label also labels the shadow rows of that prediction (readers join them through ``shadow_of``);
        a shadow row's own id takes no label: it answered nothing.
        """
        with self.engine.begin() as conn:
            known = conn.execute(sa.select(t.predictions.c.role, t.predictions.c.shadow_of).where(
                t.predictions.c.id == prediction_id, t.predictions.c.project == project)).first()
            if known is None:
                raise NotFoundError(f"unknown prediction_id '{prediction_id}': no prediction with this id was logged "
                                    f"for project '{project}'")
            if known.role == "shadow":
                raise ConflictError(f"prediction '{prediction_id}' is a shadow prediction, which answered no "
                                    f"request; send the label for the answered prediction '{known.shadow_of}' "
                                    "(it labels its shadow too)")
            try:
                with conn.begin_nested():
                    conn.execute(t.feedback.insert().values(prediction_id=prediction_id, project=project,
                                                            label=label, created_at=_now()))
            except sa.exc.IntegrityError:
                raise ConflictError(
                    f"prediction '{prediction_id}' already has a label; a label is recorded once") from None

    def labeled_predictions(self, project: str, *, after_feedback_seq: int = 0,
                            roles: tuple[str, ...] = ANSWERED, model_version_id: int | None = None,
                            from_seq: int | None = None) -> list[dict[str, Any]]:
        """Predictions with their labels, in the order the labels arrived; by default the answered ones only.

        ``roles`` picks who produced them (see :data:`ROLES`): a shadow row carries the label of the
        prediction it shadows (``shadow_of``) and ``answered_version_id``, the version that answered it.
        ``model_version_id`` keeps one version's rows, ``from_seq`` the rows logged at that seq or later.

        >>> shadows = store.labeled_predictions("shop", roles=("shadow",))             # doctest: +SKIP
        >>> shadows[0]["label"] == store.labeled_predictions("shop")[0]["label"]       # doctest: +SKIP
        True
        """
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            raise StoreError(f"roles must name some of {', '.join(ROLES)}; got {', '.join(map(repr, roles)) or 'none'}")
        p, f = t.predictions, t.feedback
        mine = [p.c.project == project]
        if model_version_id is not None:
            mine.append(p.c.model_version_id == model_version_id)
        if from_seq is not None:
            mine.append(p.c.seq >= from_seq)
        columns = (f.c.seq.label("feedback_seq"), f.c.label, p.c.id, p.c.seq, p.c.features, p.c.prediction,
                   p.c.probability, p.c.model_version_id, p.c.role, p.c.shadow_of)
        queries = []
        answered = [r for r in roles if r != "shadow"]
        if answered:
            queries.append(sa.select(*columns, p.c.model_version_id.label("answered_version_id"))
                           .join(p, p.c.id == f.c.prediction_id)
                           .where(f.c.project == project, f.c.seq > after_feedback_seq, p.c.role.in_(answered), *mine))
        if "shadow" in roles:
            # The label of a shadow row is the label of the prediction it shadows.
            a = p.alias("answered")
            queries.append(sa.select(*columns, a.c.model_version_id.label("answered_version_id"))
                           .select_from(f).join(a, a.c.id == f.c.prediction_id).join(p, p.c.shadow_of == a.c.id)
                           .where(f.c.project == project, f.c.seq > after_feedback_seq, p.c.role == "shadow", *mine))
        with self.engine.connect() as conn:
            rows = [dict(r) for q in queries for r in conn.execute(q).mappings()]
        return sorted(rows, key=lambda r: (r["feedback_seq"], r["seq"]))

    def prediction_count(self, project: str, *, roles: tuple[str, ...] | None = None) -> int:
        """Rows of the prediction log (only those of ``roles`` when given, e.g. :data:`ANSWERED`)."""
        q = sa.select(sa.func.count()).select_from(t.predictions).where(t.predictions.c.project == project)
        if roles is not None:
            q = q.where(t.predictions.c.role.in_(roles))
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()

    # -- requests refused at serving's door -------------------------------------------------------

    def log_rejections(self, project: str, rows: list[dict[str, Any]], *, skip_existing: bool = False) -> None:
        """Append rejected requests in one transaction: one row per request, column and kind of violation.

        A row holds ``id`` (new per row), ``request_id`` and ``kind``, and optionally ``column`` (None: the
        request as a whole), ``rows`` (the request's rows with this problem), ``request_rows`` (rows it sent;
        None when its body could not be read), ``example`` (one reason, truncated to 300 characters),
        ``model_version_id`` and ``created_at``. ``skip_existing`` makes a retried write idempotent.

        >>> store.log_rejections("benefits-outreach", [{"id": "e1", "request_id": "r1", "column": "age",
        ...                      "kind": "type", "rows": 2, "request_rows": 5}])            # doctest: +SKIP
        """
        if not rows:
            return
        now = _now()
        values = [_rejection_values(project, now, r) for r in rows]
        insert = (_insert_skipping_existing(self.engine.dialect.name, t.rejections) if skip_existing
                  else t.rejections.insert())
        try:
            with self.engine.begin() as conn:
                conn.execute(insert, values)
        except sa.exc.IntegrityError as exc:
            raise ConflictError(
                f"cannot log {len(rows)} rejections for project '{project}': {exc.orig}; every rejection id must be "
                "new and model_version_id must name a registered model version") from None

    def rejections(self, project: str, *, after_seq: int = 0, up_to_seq: int | None = None,
                   limit: int = 1000) -> list[dict[str, Any]]:
        """Rejection rows with seq in (``after_seq``, ``up_to_seq``], oldest first, at most ``limit``.

        A window's bounds are in its metrics (``rejected.after_seq``, ``rejected.last_seq``).
        """
        r = t.rejections
        q = sa.select(r.c.seq, r.c.id, r.c.request_id, r.c.model_version_id, r.c.column_name.label("column"),
                      r.c.kind, r.c.rows, r.c.request_rows, r.c.example, r.c.created_at) \
            .where(r.c.project == project, r.c.seq > after_seq)
        if up_to_seq is not None:
            q = q.where(r.c.seq <= up_to_seq)
        with self.engine.connect() as conn:
            return [{**row, "created_at": _utc(row["created_at"])}
                    for row in conn.execute(q.order_by(r.c.seq).limit(limit)).mappings()]

    def rejection_counts(self, project: str, *, after_seq: int, until: datetime) -> dict[str, Any]:
        """Counts of the rejections after ``after_seq`` up to the last one logged at or before ``until``.

        That is the share of the refused requests a monitoring window owns (seqs ``after_seq`` + 1 to
        ``last_seq``): every rejection is counted by exactly one window, one written late by the next.
        ``requests`` and ``rows`` (summed ``request_rows``; ``unsized`` requests had a body that could not
        be read), and per column and kind: requests, rows with that problem and one example reason.

        >>> store.rejection_counts("benefits-outreach", after_seq=0, until=now)["columns"]   # doctest: +SKIP
        [{'column': 'age', 'kind': 'type', 'requests': 3, 'rows': 4, 'example': "expected a number, ..."}]
        """
        r = t.rejections
        mine = [r.c.project == project, r.c.seq > after_seq]
        with self.engine.connect() as conn:
            last = conn.execute(sa.select(sa.func.max(r.c.seq)).where(*mine, r.c.created_at <= until)).scalar()
            if last is None:
                return {"after_seq": after_seq, "last_seq": after_seq, "requests": 0, "rows": 0, "unsized": 0,
                        "columns": []}
            span = [*mine, r.c.seq <= last]
            per_request = sa.select(r.c.request_id, sa.func.max(r.c.request_rows).label("n")).where(*span) \
                .group_by(r.c.request_id).subquery()
            requests, rows, sized = conn.execute(sa.select(
                sa.func.count(), sa.func.coalesce(sa.func.sum(per_request.c.n), 0),
                sa.func.count(per_request.c.n))).one()
            groups = conn.execute(
                sa.select(r.c.column_name, r.c.kind, sa.func.count(sa.distinct(r.c.request_id)),
                          sa.func.coalesce(sa.func.sum(r.c.rows), 0), sa.func.min(r.c.example))
                .where(*span).group_by(r.c.column_name, r.c.kind)).all()
        columns = [{"column": c, "kind": k, "requests": int(n), "rows": int(m), "example": e}
                   for c, k, n, m, e in groups]
        columns.sort(key=lambda g: (-g["rows"], -g["requests"], g["column"] or "", g["kind"]))
        return {"after_seq": after_seq, "last_seq": int(last), "requests": int(requests), "rows": int(rows),
                "unsized": int(requests - sized), "columns": columns}

    def predictions_per_worker(self, project: str, *, first_seq: int | None = None,
                               last_seq: int | None = None) -> dict[str | None, int]:
        """Answered predictions per serving worker ("host:pid"; None: logged without one), seq range inclusive.

        With several workers each writes its own rows to the one log; monitoring reads them together, so a
        window's rows are the sum of this over its seq range.

        >>> store.predictions_per_worker("benefits-outreach")        # doctest: +SKIP
        {'web-1:4121': 512, 'web-1:4122': 488}
        """
        p = t.predictions
        q = sa.select(p.c.worker, sa.func.count()).where(p.c.project == project, p.c.role != "shadow")
        if first_seq is not None:
            q = q.where(p.c.seq >= first_seq)
        if last_seq is not None:
            q = q.where(p.c.seq <= last_seq)
        with self.engine.connect() as conn:
            return {worker: n for worker, n in conn.execute(q.group_by(p.c.worker))}

    # -- monitoring ----------------------------------------------------------------------------

    def add_monitor_window(self, project: str, *, model_version_id: int | None, first_seq: int, last_seq: int,
                           rows: int, metrics: dict, kind: str = "labels", key: str | None = None,
                           starts_at: datetime | None = None, ends_at: datetime | None = None,
                           labeled: dict | None = None, labels_seq: int | None = None) -> int:
        """Store one monitoring window; returns its id.

        ``kind`` "labels" (``loopml maintain``: ``first_seq``/``last_seq`` are feedback seqs) or "predictions"
        (``loopml monitor``: prediction-log seqs). ``key`` is unique per project: :class:`ConflictError` when a
        window with that key is stored already, so a window two passes computed at once is kept once.
        """
        try:
            with self.engine.begin() as conn:
                return conn.execute(t.monitor_windows.insert().values(
                    project=project, model_version_id=model_version_id, first_seq=first_seq, last_seq=last_seq,
                    rows=rows, metrics=metrics, created_at=_now(), kind=kind, window_key=key, starts_at=starts_at,
                    ends_at=ends_at, labeled=labeled, labels_seq=labels_seq)).inserted_primary_key[0]
        except sa.exc.IntegrityError:
            raise ConflictError(f"monitor window '{key}' of project '{project}' is stored already: another "
                                "monitoring pass computed it") from None

    def last_monitored_seq(self, project: str, kind: str = "labels") -> int:
        """The last seq the windows of ``kind`` cover (0 before the first window)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(t.monitor_windows.c.last_seq)).where(
                t.monitor_windows.c.project == project, t.monitor_windows.c.kind == kind)).scalar() or 0

    def monitor_cursor(self, project: str) -> dict[str, Any]:
        """Where ``loopml monitor`` stopped: the last prediction seq, window end and feedback seq it has seen."""
        w = t.monitor_windows
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sa.func.max(w.c.last_seq), sa.func.max(w.c.ends_at),
                                         sa.func.max(w.c.labels_seq))
                               .where(w.c.project == project, w.c.kind == "predictions")).one()
        return {"last_seq": row[0] or 0, "ends_at": _utc(row[1]), "labels_seq": row[2] or 0}

    def monitor_windows(self, project: str, *, kind: str | None = None, last: int | None = None,
                        ids: list[int] | None = None) -> list[dict[str, Any]]:
        """Windows oldest first; only those of ``kind``, the latest ``last``, or those in ``ids`` when given."""
        q = t.monitor_windows.select().where(t.monitor_windows.c.project == project)
        if kind is not None:
            q = q.where(t.monitor_windows.c.kind == kind)
        if ids is not None:
            q = q.where(t.monitor_windows.c.id.in_(ids))
        q = q.order_by(t.monitor_windows.c.id.desc())
        if last is not None:
            q = q.limit(last)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [{**r, "created_at": _utc(r["created_at"]), "starts_at": _utc(r["starts_at"]),
                 "ends_at": _utc(r["ends_at"])} for r in reversed(rows)]

    def monitor_window_ranges(self, project: str) -> list[tuple[int, int, int]]:
        """(id, first_seq, last_seq) of every non-empty prediction window, in seq order."""
        w = t.monitor_windows
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                sa.select(w.c.id, w.c.first_seq, w.c.last_seq)
                .where(w.c.project == project, w.c.kind == "predictions", w.c.rows > 0).order_by(w.c.first_seq))]

    def set_window_labeled(self, window_id: int, *, labeled: dict, labels_seq: int) -> None:
        """Record a window's labeled performance, computed on the labels up to feedback seq ``labels_seq``."""
        with self.engine.begin() as conn:
            conn.execute(t.monitor_windows.update().where(t.monitor_windows.c.id == window_id)
                         .values(labeled=labeled, labels_seq=labels_seq))

    def logged_times(self, project: str, *, after_seq: int) -> list[tuple[int, datetime]]:
        """(seq, created_at) of every answered prediction logged after ``after_seq``, in seq order (no shadows)."""
        p = t.predictions
        with self.engine.connect() as conn:
            return [(r[0], _utc(r[1])) for r in conn.execute(
                sa.select(p.c.seq, p.c.created_at).where(p.c.project == project, p.c.seq > after_seq,
                                                         p.c.role != "shadow")
                .order_by(p.c.seq))]

    def logged_rows(self, project: str, *, first_seq: int, last_seq: int) -> list[dict[str, Any]]:
        """Answered predictions with seq in [first_seq, last_seq]; ``features`` and ``prediction`` as stored JSON text.

        The text is not parsed here, so one corrupted row cannot make the whole range unreadable. Shadow rows
        answered nothing, so they are not traffic: they are left out (with their ``role``, canary rows are in).
        """
        p = t.predictions
        q = (sa.select(p.c.seq, p.c.id, p.c.model_version_id, sa.cast(p.c.features, sa.Text).label("features"),
                       sa.cast(p.c.prediction, sa.Text).label("prediction"), p.c.probability, p.c.latency_ms,
                       p.c.created_at, p.c.role)
             .where(p.c.project == project, p.c.seq >= first_seq, p.c.seq <= last_seq, p.c.role != "shadow")
             .order_by(p.c.seq))
        with self.engine.connect() as conn:
            return [{**r, "created_at": _utc(r["created_at"])} for r in conn.execute(q).mappings()]

    def window_labels(self, project: str, *, first_seq: int, last_seq: int, up_to_feedback_seq: int) -> dict[int, Any]:
        """Prediction seq → label: answered predictions in [first_seq, last_seq] labeled by ``up_to_feedback_seq``."""
        p, f = t.predictions, t.feedback
        q = (sa.select(p.c.seq, f.c.label).join(f, f.c.prediction_id == p.c.id)
             .where(p.c.project == project, p.c.seq >= first_seq, p.c.seq <= last_seq,
                    f.c.seq <= up_to_feedback_seq, p.c.role != "shadow"))
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(q)}

    def labeled_seqs(self, project: str, *, after_feedback_seq: int, up_to_feedback_seq: int) -> list[int]:
        """Prediction seqs whose label arrived with a feedback seq in (after, up_to]."""
        p, f = t.predictions, t.feedback
        q = (sa.select(p.c.seq).join(f, f.c.prediction_id == p.c.id)
             .where(f.c.project == project, f.c.seq > after_feedback_seq, f.c.seq <= up_to_feedback_seq)
             .order_by(p.c.seq))
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def last_feedback_seq(self, project: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(t.feedback.c.seq))
                                .where(t.feedback.c.project == project)).scalar() or 0

    def add_alert(self, project: str, *, window_id: int | None, kind: str, detail: dict) -> int:
        with self.engine.begin() as conn:
            return conn.execute(t.alerts.insert().values(project=project, window_id=window_id, kind=kind,
                                                         detail=detail, created_at=_now())).inserted_primary_key[0]

    def set_alert_delivery(self, alert_id: int, delivery: dict) -> None:
        """Record how the alert's webhook went (attempts, HTTP status, error)."""
        with self.engine.begin() as conn:
            conn.execute(t.alerts.update().where(t.alerts.c.id == alert_id).values(delivery=delivery))

    def alerts(self, project: str, *, window_id: int | None = None) -> list[dict[str, Any]]:
        """Alerts oldest first (of one window when ``window_id`` is given)."""
        q = t.alerts.select().where(t.alerts.c.project == project)
        if window_id is not None:
            q = q.where(t.alerts.c.window_id == window_id)
        with self.engine.connect() as conn:
            return [{**r, "created_at": _utc(r["created_at"])} for r in conn.execute(q.order_by(t.alerts.c.id))
                    .mappings()]

    def alert_counts(self, project: str) -> dict[str, int]:
        """Alerts raised so far, by kind."""
        with self.engine.connect() as conn:
            return {k: n for k, n in conn.execute(sa.select(t.alerts.c.kind, sa.func.count()).where(
                t.alerts.c.project == project).group_by(t.alerts.c.kind))}

    # -- locks and checkpoints -----------------------------------------------------------------

    def try_lock(self, project: str, name: str, *, owner: str, pid: int, host: str,
                 run_id: int | None = None) -> dict[str, Any] | None:
        """Take lock ``name`` if nobody holds it: None when taken, else the holder (owner, pid, host, heartbeat).

        >>> store.try_lock("benefits-outreach", "maintain", owner="h:41:1f0c", pid=41, host="h")  # doctest: +SKIP
        """
        now = _now()
        try:
            with self.engine.begin() as conn:
                conn.execute(t.locks.insert().values(project=project, name=name, owner=owner, pid=pid, host=host,
                                                     run_id=run_id, acquired_at=now, heartbeat_at=now))
            return None
        except sa.exc.IntegrityError:
            # Released between the insert and this read: an empty holder says "try again".
            return self.lock_holder(project, name) or {}

    def take_over_lock(self, project: str, name: str, *, previous_owner: str, owner: str, pid: int, host: str,
                       run_id: int | None = None) -> bool:
        """Replace ``previous_owner`` by ``owner``; False when the lock changed hands meanwhile (someone else won)."""
        now = _now()
        with self.engine.begin() as conn:
            done = conn.execute(t.locks.update().where(
                t.locks.c.project == project, t.locks.c.name == name, t.locks.c.owner == previous_owner)
                .values(owner=owner, pid=pid, host=host, run_id=run_id, acquired_at=now, heartbeat_at=now))
        return done.rowcount == 1

    def heartbeat_lock(self, project: str, name: str, owner: str, *, run_id: int | None = None) -> bool:
        """Say the holder is alive (and, given, which run it does); False when ``owner`` no longer holds it."""
        values: dict[str, Any] = {"heartbeat_at": _now()}
        if run_id is not None:
            values["run_id"] = run_id
        with self.engine.begin() as conn:
            done = conn.execute(t.locks.update().where(
                t.locks.c.project == project, t.locks.c.name == name, t.locks.c.owner == owner).values(**values))
        return done.rowcount == 1

    def release_lock(self, project: str, name: str, owner: str) -> bool:
        """Give the lock up; False when ``owner`` did not hold it (it was taken over)."""
        with self.engine.begin() as conn:
            done = conn.execute(t.locks.delete().where(
                t.locks.c.project == project, t.locks.c.name == name, t.locks.c.owner == owner))
        return done.rowcount == 1

    def lock_holder(self, project: str, name: str) -> dict[str, Any] | None:
        """Who holds lock ``name``: owner, pid, host, run_id, acquired_at, heartbeat_at; None when free."""
        with self.engine.connect() as conn:
            row = conn.execute(t.locks.select().where(t.locks.c.project == project, t.locks.c.name == name)
                               ).mappings().first()
        if row is None:
            return None
        return {**row, "acquired_at": _utc(row["acquired_at"]), "heartbeat_at": _utc(row["heartbeat_at"])}

    def checkpoint(self, project: str, name: str) -> Any:
        """The value stored under ``name`` by :meth:`set_checkpoint`, or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.checkpoints.c.value).where(
                t.checkpoints.c.project == project, t.checkpoints.c.name == name)).scalar()

    def set_checkpoint(self, project: str, name: str, value: Any) -> None:
        """Store ``value`` (JSON) under ``name``, replacing the one before."""
        with self.engine.begin() as conn:
            done = conn.execute(t.checkpoints.update().where(
                t.checkpoints.c.project == project, t.checkpoints.c.name == name)
                .values(value=value, updated_at=_now()))
            if done.rowcount == 0:
                conn.execute(t.checkpoints.insert().values(project=project, name=name, value=value,
                                                           updated_at=_now()))

    # -- deployments ---------------------------------------------------------------------------

    def start_deployment(self, project: str, model_version_id: int, host: str, port: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(t.deployments.insert().values(
                project=project, model_version_id=model_version_id, host=host, port=port, pid=os.getpid(),
                started_at=_now())).inserted_primary_key[0]

    def stop_deployment(self, deployment_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.deployments.update().where(t.deployments.c.id == deployment_id)
                         .values(stopped_at=_now()))

    # -- helpers -------------------------------------------------------------------------------

    def _tx(self, conn: Connection | None):
        return _Borrowed(conn) if conn is not None else self.engine.begin()

    def _artifact_row(self, conn: Connection, project: str, kind: str, ref) -> int:
        existing = conn.execute(sa.select(t.artifacts.c.id).where(t.artifacts.c.path == ref.path)).scalar()
        if existing is not None:
            return existing
        # Content-addressed: two runs (of any projects) may store the same bytes at once; the first row stays.
        conn.execute(_insert_skipping_existing(conn.dialect.name, t.artifacts, "path").values(
            project=project, kind=kind, path=ref.path, sha256=ref.sha256, size=ref.size, created_at=_now()))
        return conn.execute(sa.select(t.artifacts.c.id).where(t.artifacts.c.path == ref.path)).scalar_one()

    def _artifact_referenced(self, rel: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.artifacts.c.id).where(t.artifacts.c.path == rel)).first() is not None


class _AliasTaken(Exception):
    """The alias did not exist when read, and another transaction inserted it before this one could."""


class _Borrowed:
    """Context manager yielding a connection whose transaction someone else owns."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def __enter__(self) -> Connection:
        return self.conn

    def __exit__(self, *exc) -> None:
        return None


_PREDICTION_FIELDS = ("id", "features", "prediction")


def _prediction_values(project: str, model_version_id: int, now: datetime, row: dict[str, Any]) -> dict[str, Any]:
    # Every row gets every column, so one executemany takes them all.
    missing = [k for k in _PREDICTION_FIELDS if k not in row]
    if missing:
        raise StoreError(f"a prediction to log lacks {', '.join(missing)}; each row needs id, features and "
                         f"prediction (got keys: {', '.join(sorted(row)) or 'none'})")
    role, shadow_of = row_role(row)
    return {"id": row["id"], "project": project, "model_version_id": row.get("model_version_id", model_version_id),
            "features": row["features"], "prediction": row["prediction"], "probability": row.get("probability"),
            "latency_ms": row.get("latency_ms"), "created_at": row.get("created_at") or now, "role": role,
            "shadow_of": shadow_of, "worker": row.get("worker")}


_REJECTION_FIELDS = ("id", "request_id", "kind")


def _rejection_values(project: str, now: datetime, row: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in _REJECTION_FIELDS if not row.get(k)]
    if missing:
        raise StoreError(f"a rejection to log lacks {', '.join(missing)}; each row needs id, request_id and kind "
                         f"(got keys: {', '.join(sorted(row)) or 'none'})")
    column, example = row.get("column"), row.get("example")
    return {"id": row["id"], "project": project, "request_id": row["request_id"],
            "model_version_id": row.get("model_version_id"),
            "column_name": None if column is None else str(column)[:200],
            "kind": str(row["kind"])[:32], "rows": row.get("rows"), "request_rows": row.get("request_rows"),
            "example": None if example is None else str(example)[:300], "created_at": row.get("created_at") or now}


def row_role(row: dict[str, Any]) -> tuple[str, str | None]:
    """A prediction row's ``role`` and ``shadow_of``, checked: a shadow row names the answered id, no other does.

    >>> row_role({"id": "b2", "role": "shadow", "shadow_of": "a1"})
    ('shadow', 'a1')
    """
    role, shadow_of = row.get("role") or "champion", row.get("shadow_of")
    if role not in ROLES:
        raise StoreError(f"prediction {row.get('id')!r}: role {role!r} is not one of {', '.join(ROLES)}")
    if role == "shadow" and not shadow_of:
        raise StoreError(f"prediction {row.get('id')!r} is a shadow row without shadow_of; name the id of the "
                         "answered prediction it shadows")
    if role != "shadow" and shadow_of is not None:
        raise StoreError(f"prediction {row.get('id')!r} has role {role!r} and shadow_of {shadow_of!r}; only a "
                         "shadow row shadows another: set role 'shadow' or drop shadow_of")
    return role, shadow_of


def _insert_skipping_existing(dialect: str, table: sa.Table = t.predictions, key: str = "id"):
    # INSERT ... ON CONFLICT (key) DO NOTHING: a write retried after an ambiguous commit adds nothing twice.
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise StoreError(f"skip_existing needs PostgreSQL or SQLite; this store runs on {dialect}")
    return insert(table).on_conflict_do_nothing(index_elements=[key])


def _parquet_rows(part: Path) -> int:
    # The row count is in the Parquet footer: nothing is read into memory to count.
    import pyarrow.parquet as pq

    if not part.is_file():
        raise StoreError(f"snapshot part {part} does not exist; pass the Parquet part files that were written")
    rows = pq.ParquetFile(part).metadata.num_rows
    if rows == 0:
        raise StoreError(f"snapshot part {part} holds no rows; every part of a snapshot must hold rows, drop "
                         "empty parts before storing")
    return rows


def _decision(r) -> Decision:
    return Decision(stage=r["stage"], gate=r["gate"], verdict=r["verdict"], action=r["action"],
                    next_stage=r["next_stage"], summary=r["summary"], evidence=r["evidence"], actor=r["actor"],
                    run_id=r["run_id"], id=r["id"], at=_utc(r["at"]))


def _runtime_versions() -> dict[str, str]:
    try:
        loopml_version = importlib.metadata.version("loopml")
    except importlib.metadata.PackageNotFoundError:
        loopml_version = "unknown"
    return {"python": platform.python_version(), "loopml": loopml_version}


def _git_commit(folder: Path | None) -> str | None:
    """The commit checked out in ``folder``'s git repository; None outside one or without git."""
    if folder is None:
        return None
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--verify", "--quiet", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) in (40, 64) else None


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the server log predictions while `loopml maintain` reads; busy_timeout waits out writers.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _json_default(value: Any) -> Any:
    # Evidence is computed with numpy; its scalars and arrays are stored as plain JSON.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (datetime, Path)):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _finite(value: Any) -> Any:
    # PostgreSQL's json type has no NaN or Infinity: a missing or unbounded number is stored as null.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value


def _json_dumps(value: Any) -> str:
    return json.dumps(_finite(value), default=_json_default, allow_nan=False)


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"

