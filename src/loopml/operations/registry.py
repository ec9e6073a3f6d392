"""The model registry: versions with their lineage, the champion, promotion, rollback, archiving, MLflow export.

Every change is a decision record (``operations · registry``) that names who made it and why; the
alias moves are kept in the store's alias history as well. An archived version can take no alias
again, and the champion cannot be archived until another version is promoted.

>>> [v.version for v in list_versions(store, "benefits-outreach")]                     # doctest: +SKIP
[1, 2]
>>> promote(store, "benefits-outreach", 1, reason="v2 misses the March recall").summary  # doctest: +SKIP
'champion: v2 → v1 by ana: v2 misses the March recall'
>>> show_version(store, "benefits-outreach", 1).lineage["git_commit"]                    # doctest: +SKIP
'3f9c0d5...'

:func:`export_mlflow` copies a version into MLflow as a pyfunc model whose ``predict`` calls loopml;
it needs the optional extra: ``pip install 'loopml[mlflow]'``.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from loopml.decisions import Decision
from loopml.errors import ArtifactError, ConflictError, LoopmlError, ModelError, NotFoundError, SpecError
from loopml.store import ModelVersion, Store
from loopml.store.artifacts import sha256_bytes

__all__ = [
    "MissingExtraError",
    "MlflowExport",
    "RegistryChange",
    "VersionDetail",
    "VersionSummary",
    "archive",
    "export_mlflow",
    "list_versions",
    "mlflow_python_model",
    "promote",
    "rollback",
    "show_version",
]

CHAMPION = "champion"


class MissingExtraError(LoopmlError, ImportError):
    """An optional part of loopml is used without the package it needs; the message names the extra."""

    exit_code = 2


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionSummary:
    """One row of ``loopml models list``."""

    version: int
    family: str
    status: str
    aliases: tuple[str, ...]
    holdout: dict[str, Any]  # metric, value, ci_low, ci_high
    created_at: datetime
    sha256: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "aliases": list(self.aliases)}


@dataclass(frozen=True)
class VersionDetail:
    """Everything the registry knows of one version: ``loopml models show N``."""

    project: str
    version: int
    family: str
    status: str
    aliases: tuple[str, ...]
    created_at: datetime
    holdout: dict[str, Any]
    metrics: dict[str, Any]
    operating_point: dict[str, Any]
    lineage: dict[str, Any]  # snapshot, data hash, sources, spec hash, git commit, versions, rows
    artifact: dict[str, Any]  # path, sha256, size
    run_id: int | None
    registered_by: Decision | None
    history: list[dict[str, Any]] = field(default_factory=list)  # alias moves onto it, archiving

    def to_dict(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        out["aliases"] = list(self.aliases)
        out["registered_by"] = self.registered_by.to_dict() if self.registered_by else None
        return out


@dataclass(frozen=True)
class RegistryChange:
    """A change made by hand: promote, rollback or archive, with the decision that records it."""

    action: str
    version: int
    previous: int | None  # the champion before (promote, rollback); None for archive
    actor: str
    reason: str
    decision: Decision

    @property
    def summary(self) -> str:
        return self.decision.summary

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "version": self.version, "previous": self.previous, "actor": self.actor,
                "reason": self.reason, "summary": self.summary, "decision": self.decision.to_dict()}


@dataclass(frozen=True)
class MlflowExport:
    """Where a version landed in MLflow.

    ``model_uri`` loads it with ``mlflow.pyfunc.load_model`` under this tracking URI; ``artifact_uri``
    (the model's files) loads it without one, and ``mlflow models serve -m`` takes either.
    """

    version: int
    tracking_uri: str
    experiment_id: str
    run_id: str
    model_uri: str
    artifact_uri: str
    registered_name: str | None
    registered_version: int | None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- reading -------------------------------------------------------------------------------------


def list_versions(store: Store, project: str) -> list[VersionSummary]:
    """Every registered version of ``project``, oldest first.

    >>> [(v.version, v.aliases) for v in list_versions(store, "benefits-outreach")]   # doctest: +SKIP
    [(1, ()), (2, ('champion',))]
    """
    return [VersionSummary(version=mv.version, family=mv.family, status=mv.status, aliases=mv.aliases,
                           holdout=_holdout(mv), created_at=mv.created_at, sha256=mv.artifact_sha256,
                           metrics=mv.metrics, lineage=mv.lineage)
            for mv in store.model_versions(project)]


def show_version(store: Store, project: str, version: int) -> VersionDetail:
    """One version with its metrics (95% CI), operating point, aliases, lineage, artifact and history.

    >>> show_version(store, "benefits-outreach", 1).artifact["sha256"][:12]   # doctest: +SKIP
    '5d1c0f9e2b7a'
    """
    mv = store.model_version(project, version)
    history = [{"event": "alias", **h} for h in store.alias_history(project, mv.id)]
    history += [{"event": d.action, "actor": d.actor, "reason": d.evidence.get("reason"), "at": d.at}
                for d in store.registry_decisions(project)
                if d.action in ("archive", "export") and d.evidence.get("version") == version]
    history.sort(key=lambda h: h["at"])
    return VersionDetail(
        project=project, version=mv.version, family=mv.family, status=mv.status, aliases=mv.aliases,
        created_at=mv.created_at, holdout=_holdout(mv), metrics=mv.metrics, operating_point=mv.operating_point,
        lineage=_lineage(store, mv), artifact={"path": mv.artifact_path, "sha256": mv.artifact_sha256,
                                               "size": mv.artifact_size},
        run_id=mv.run_id, registered_by=store.registered_by(mv), history=history)


def _holdout(mv: ModelVersion) -> dict[str, Any]:
    h = mv.metrics.get("holdout") or {}
    return {"metric": h.get("metric"), "value": h.get("value"), "ci_low": h.get("ci_low"),
            "ci_high": h.get("ci_high"), "rows": h.get("rows")}


def _lineage(store: Store, mv: ModelVersion) -> dict[str, Any]:
    lin = mv.lineage
    packages = dict(lin.get("packages") or {})
    try:
        data_hash = lin.get("data_hash") or store.snapshot(mv.snapshot_id).data_hash
    except LoopmlError:
        data_hash = None
    return {
        "snapshot_id": mv.snapshot_id, "data_hash": data_hash, "sources": lin.get("sources"),
        "sources_used": lin.get("sources_used"), "spec_hash": mv.spec_hash, "input_key": mv.input_key,
        "loopml": packages.pop("loopml", None), "git_commit": lin.get("git_commit"),
        "python": packages.pop("python", None), "packages": packages,
        "train_rows": lin.get("train_rows"), "holdout_rows": lin.get("holdout_rows"),
        **{k: lin[k] for k in ("retrained_from", "labeled_rows", "comparison_rows", "plan") if k in lin},
    }


# -- changes -------------------------------------------------------------------------------------


def promote(store: Store, project: str, version: int, *, reason: str, actor: str | None = None) -> RegistryChange:
    """Make ``version`` the champion; refused for an archived version or the current champion.

    >>> promote(store, "benefits-outreach", 2, reason="beats v1 on the March labels").previous   # doctest: +SKIP
    1
    """
    reason, actor = _why(reason, "promote"), _who(actor)
    target = store.model_version(project, version)
    current = store.alias(project, CHAMPION)
    if current is not None and current.id == target.id:
        raise ConflictError(f"model version {version} is already the champion of project '{project}'; "
                            "nothing changed")
    _refuse_archived(target, "promoted")
    return _move_champion(store, project, target.version, current, "promote", reason, actor)


def rollback(store: Store, project: str, *, reason: str, actor: str | None = None) -> RegistryChange:
    """Return the champion to the version it pointed at before its latest change.

    >>> rollback(store, "benefits-outreach", reason="v2 misbehaves").version   # doctest: +SKIP
    1
    """
    reason, actor = _why(reason, "rollback"), _who(actor)
    previous = store.previous_alias_target(project, CHAMPION)
    if previous is None:
        raise NotFoundError(f"project '{project}' has no earlier champion to roll back to")
    _refuse_archived(previous, "rolled back to")
    return _move_champion(store, project, previous.version, store.alias(project, CHAMPION), "rollback", reason,
                          actor)


def archive(store: Store, project: str, version: int, *, reason: str, actor: str | None = None) -> RegistryChange:
    """Retire ``version``: it stays listed with its lineage but can never be promoted again.

    The champion is refused: promote another version first.

    >>> archive(store, "benefits-outreach", 1, reason="trained on the 2023 survey").action   # doctest: +SKIP
    'archive'
    """
    reason, actor = _why(reason, "archive"), _who(actor)
    store.model_version(project, version)  # an unknown version is named before anything is written
    decision = Decision(stage="operations", gate="registry", verdict="info", action="archive", next_stage=None,
                        summary=f"v{version} archived by {actor}: {reason}",
                        evidence={"version": version, "reason": reason, "actor": actor}, actor=actor)
    store.archive_model(project, version, decision=decision)
    return RegistryChange("archive", version, None, actor, reason, decision)


def _move_champion(store: Store, project: str, version: int, current: ModelVersion | None, action: str,
                   reason: str, actor: str) -> RegistryChange:
    before = current.version if current else None
    decision = Decision(stage="operations", gate="registry", verdict="info", action=action, next_stage=None,
                        summary=f"champion: v{before or '-'} → v{version} by {actor}: {reason}",
                        evidence={"from": before, "to": version, "version": version, "reason": reason,
                                  "actor": actor}, actor=actor)
    # expect: the decision names the champion seen above; a concurrent change makes this one fail, not lie.
    store.set_alias(project, CHAMPION, version, actor=actor, reason=reason, decision=decision, expect=current)
    return RegistryChange(action, version, before, actor, reason, decision)


def _refuse_archived(mv: ModelVersion, verb: str) -> None:
    if mv.status == "archived":
        raise ConflictError(f"model version {mv.version} is archived and cannot be {verb}; promote a version that is "
                            "not archived (`loopml models list` shows their status), or register a new one with "
                            "`loopml run`")


def _why(reason: str | None, action: str) -> str:
    if not reason or not reason.strip():
        raise SpecError(f"{action} needs a reason for the audit log: say why with --reason \"...\"")
    return reason.strip()


def _who(actor: str | None) -> str:
    if actor is not None:
        if not actor.strip():
            raise SpecError("--actor is empty: name who makes the change, or leave it out to use your user name")
        return actor.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container: still record something truthful
        return "unknown"


# -- MLflow export -------------------------------------------------------------------------------

# The code MLflow runs to build the model ("models from code"): nothing is pickled, not even the wrapper.
_ENTRY_POINT = '''"""A loopml model in MLflow: predict() runs loopml on the loopml JSON model stored with it."""
import mlflow

from loopml.operations.registry import mlflow_python_model

mlflow.models.set_model(mlflow_python_model())
'''


def export_mlflow(store: Store, project: str, version: int, tracking_uri: str, *, actor: str | None = None,
                  artifact_location: str | None = None) -> MlflowExport:
    """Log ``version`` to MLflow as a pyfunc model whose ``predict`` calls loopml, with its metrics and params.

    The loopml JSON model (SHA-256 checked) and the data contract are stored as MLflow artifacts; the
    pyfunc validates every input row against the contract, exactly as ``loopml serve`` does, and
    returns ``prediction`` (and ``probability`` for classifiers). The run goes into the experiment named
    after the project, and the model is registered under the project's name where the tracking store
    has a model registry. ``artifact_location`` sets where a new experiment keeps its files (default:
    beside a SQLite tracking database; MLflow's default otherwise). Needs ``pip install 'loopml[mlflow]'``.

    >>> done = export_mlflow(store, "benefits-outreach", 1, "sqlite:///mlflow.db")      # doctest: +SKIP
    >>> mlflow.pyfunc.load_model(done.model_uri).predict(rows)["prediction"].tolist()   # doctest: +SKIP
    ['yes', 'no']
    """
    mlflow = _import_mlflow()
    actor = _who(actor)
    if not tracking_uri or not tracking_uri.strip():
        raise SpecError("--mlflow is empty: give an MLflow tracking URI, e.g. sqlite:///mlflow.db or "
                        "file:///path/to/mlruns")
    tracking_uri = tracking_uri.strip()
    mv = store.model_version(project, version)
    data = store.read_model(mv)  # SHA-256 checked; pickle-family files are refused here
    from loopml.model.artifact import TrainedModel

    model = TrainedModel.from_bytes(data, root=store.root)
    hook = getattr(model, "feature_hook", None)
    contract = store.snapshot(mv.snapshot_id).contract
    detail = show_version(store, project, version)
    with tempfile.TemporaryDirectory(prefix="loopml-mlflow-") as tmp, _tracking(mlflow, tracking_uri):
        folder = Path(tmp)
        (folder / "model.json").write_bytes(data)
        (folder / "contract.json").write_text(json.dumps(contract), encoding="utf-8")
        (folder / "loopml_model.py").write_text(_ENTRY_POINT, encoding="utf-8")
        artifacts = {"model": str(folder / "model.json"), "contract": str(folder / "contract.json")}
        if hook:
            artifacts["feature_hook"] = str(_copy_hook(hook, store.root, folder / "feature_hook"))
        experiment_id = _experiment(mlflow, project, tracking_uri, artifact_location)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{project} v{version}") as run:
            mlflow.set_tags({"loopml.project": project, "loopml.version": str(version),
                             "loopml.sha256": mv.artifact_sha256, "loopml.family": mv.family})
            mlflow.log_params(_params(detail, model))
            mlflow.log_metrics(_metrics(detail))
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(folder / "loopml_model.py"), artifacts=artifacts,
                model_config={"sha256": mv.artifact_sha256, "project": project, "version": version},
                pip_requirements=[f"loopml=={detail.lineage.get('loopml') or _loopml_version()}"])
        artifact_uri = mlflow.get_logged_model(info.model_id).artifact_location
        registered_name, registered_version, note = _register(mlflow, info.model_uri, project)
    done = MlflowExport(version=version, tracking_uri=_redact(tracking_uri), experiment_id=str(experiment_id),
                        run_id=run.info.run_id, model_uri=info.model_uri, artifact_uri=artifact_uri,
                        registered_name=registered_name,
                        registered_version=registered_version, note=note)
    store.record_decision(project, Decision(
        stage="operations", gate="registry", verdict="info", action="export", next_stage=None,
        summary=f"v{version} exported to MLflow by {actor}: {info.model_uri}"
                + (f", registered as {registered_name} version {registered_version}" if registered_name else ""),
        evidence={"version": version, "actor": actor, **done.to_dict()}, actor=actor))
    return done


def mlflow_python_model() -> Any:
    """The ``mlflow.pyfunc.PythonModel`` an exported model runs: loopml's JSON model, checked and validated.

    Called by the code file that :func:`export_mlflow` stores with the model; MLflow builds the model
    from that code, so nothing is unpickled when it loads.

    >>> model = mlflow_python_model()   # doctest: +SKIP
    """
    mlflow = _import_mlflow()
    from mlflow.exceptions import MlflowException

    from loopml.data.contract import DataContract
    from loopml.errors import DataError
    from loopml.model.artifact import TrainedModel

    class LoopmlModel(mlflow.pyfunc.PythonModel):
        """Validate rows against the data contract, then predict with loopml."""

        def load_context(self, context: Any) -> None:
            data = Path(context.artifacts["model"]).read_bytes()
            expected = (context.model_config or {}).get("sha256")
            if expected and sha256_bytes(data) != expected:
                raise ArtifactError(f"the loopml model in this MLflow model fails its SHA-256 check (recorded "
                                    f"{expected[:12]}…, found {sha256_bytes(data)[:12]}…); export it again")
            hook = context.artifacts.get("feature_hook")
            self.model = TrainedModel.from_bytes(data, root=hook)
            self.contract = DataContract.from_json(Path(context.artifacts["contract"]).read_bytes())

        # MLflow reads these type hints (resolved in this module's globals) as the model's input type.
        def predict(self, context: Any, model_input: pd.DataFrame,
                    params: dict[str, Any] | None = None) -> pd.DataFrame:
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            records = frame.astype(object).where(frame.notna(), None).to_dict("records")
            try:
                X = self.contract.validate_records(records)
            except DataError as exc:
                raise MlflowException(str(exc), error_code="INVALID_PARAMETER_VALUE") from exc
            return _prediction_frame(self.model, X)

    return LoopmlModel()


def _prediction_frame(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    """``prediction``, and for classifiers ``probability`` (of the positive class; of the chosen class and of
    each class as ``probability_<class>`` for multiclass), one row per input row.

    >>> _prediction_frame(model, rows).columns.tolist()   # doctest: +SKIP
    ['prediction', 'probability']
    """
    out = pd.DataFrame({"prediction": model.predict(X)})
    if model.task == "binary":
        out["probability"] = model.predict_proba(X)[:, 1]
    elif model.task == "multiclass":
        P = model.predict_proba(X)
        out["probability"] = P.max(axis=1)
        for i, label in enumerate(model.classes):
            out[f"probability_{label}"] = P[:, i]
    return out


def _import_mlflow() -> Any:
    try:
        import mlflow
        import mlflow.pyfunc
    except ImportError as exc:
        raise MissingExtraError(f"exporting to MLflow needs the mlflow package, which is not installed ({exc}); "
                                "install it with: pip install 'loopml[mlflow]'") from None
    return mlflow


@contextmanager
def _tracking(mlflow: Any, uri: str) -> Iterator[None]:
    # The MLflow client keeps the tracking URI in a global: set it for this export only.
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    allow_file_store = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if _scheme(uri) == "file" and allow_file_store is None:
        # MLflow 3 keeps its file store in maintenance mode; a file: URI given here is an explicit choice.
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    try:
        yield
    except MlflowException as exc:  # MLflow refusing the URI or its store is about what the user gave
        raise SpecError(f"--mlflow {_redact(uri)}: MLflow refused it: {exc.message[:500]}; give a tracking URI "
                        "MLflow can open, e.g. sqlite:///mlflow.db") from exc
    finally:
        mlflow.set_tracking_uri(previous)
        if allow_file_store is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def _experiment(mlflow: Any, project: str, uri: str, artifact_location: str | None) -> str:
    found = mlflow.get_experiment_by_name(project)
    if found is not None:
        return found.experiment_id
    if artifact_location is None and _scheme(uri) == "sqlite":
        # Without this MLflow writes artifacts to ./mlruns in whatever folder the command ran from.
        database = Path(uri.split(":///", 1)[-1])
        artifact_location = (database.resolve().parent / "mlartifacts").as_uri()
    return mlflow.create_experiment(project, artifact_location=artifact_location)


def _register(mlflow: Any, model_uri: str, name: str) -> tuple[str | None, int | None, str | None]:
    from mlflow.exceptions import MlflowException

    try:
        registered = mlflow.register_model(model_uri, name)
    except MlflowException as exc:  # a tracking store without a model registry
        return None, None, f"not registered: this tracking store has no model registry ({exc.message[:200]})"
    return name, int(registered.version), None


def _params(detail: VersionDetail, model: Any) -> dict[str, str]:
    lin = detail.lineage
    params = {"loopml_version": detail.version, "family": detail.family, "task": model.task,
              "target": model.target, "threshold": model.threshold, "spec_hash": lin.get("spec_hash"),
              "data_hash": lin.get("data_hash"), "snapshot_id": lin.get("snapshot_id"),
              "artifact_sha256": detail.artifact["sha256"], "git_commit": lin.get("git_commit"),
              "train_rows": lin.get("train_rows"), "holdout_rows": lin.get("holdout_rows"),
              "loopml": lin.get("loopml"), "python": lin.get("python")}
    for key, value in (detail.operating_point or {}).items():
        if isinstance(value, (int, float, str, bool)):
            params.setdefault(f"operating_point.{key}", value)
    return {k: str(v)[:500] for k, v in params.items() if v is not None}


def _metrics(detail: VersionDetail) -> dict[str, float]:
    h, metrics = detail.holdout, detail.metrics
    name = h.get("metric") or "goal"
    out = {f"holdout_{name}": h.get("value"), f"holdout_{name}_ci_low": h.get("ci_low"),
           f"holdout_{name}_ci_high": h.get("ci_high"), "cv_score": metrics.get("cv_score")}
    for key, value in ((metrics.get("holdout") or {}).get("metrics") or {}).items():
        out.setdefault(f"holdout_{key}", value)
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _copy_hook(hook: str, root: Path | None, target: Path) -> Path:
    # The hook's top-level module or package travels with the model, so MLflow can import it anywhere.
    top = hook.split(":", 1)[0].split(".", 1)[0]
    folder = Path(root) if root is not None else None
    if folder is not None and (folder / f"{top}.py").is_file():
        target.mkdir()
        shutil.copy2(folder / f"{top}.py", target / f"{top}.py")
    elif folder is not None and (folder / top).is_dir():
        shutil.copytree(folder / top, target / top, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        raise ModelError(f"the model's feature hook '{hook}' is not a module in the project folder {folder}; "
                         "the MLflow export ships the hook's module with the model, so keep it beside loopml.yaml")
    return target


def _loopml_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("loopml")


def _scheme(uri: str) -> str:
    return urlsplit(uri).scheme.split("+", 1)[0] if "://" in uri or uri.startswith("file:") else "file"


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
