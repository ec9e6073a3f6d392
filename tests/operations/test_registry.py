"""The model registry as a user meets it: lineage, promote/rollback/archive with who and why, safe artifacts,
and the export to MLflow, on a real store with real models trained on the benefits data."""

from __future__ import annotations

import getpass
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import EXAMPLE

from loopml.data.contract import infer_contract
from loopml.data.snapshot import frame_hash, frame_to_parquet
from loopml.decisions import Decision
from loopml.errors import ArtifactError, ConflictError, ModelError, NotFoundError, SpecError
from loopml.model.artifact import TrainedModel
from loopml.model.search import SearchPlan, search, split_holdout
from loopml.operations import load_served_model
from loopml.operations.registry import (
    archive,
    export_mlflow,
    list_versions,
    promote,
    rollback,
    show_version,
)
from loopml.spec import GoalSpec
from loopml.store import Store
from loopml.store import schema as t
from loopml.store.artifacts import sha256_bytes

PROJECT = "benefits-test"  # the project name of tests/conftest.py's write_spec


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedModel, pd.DataFrame, pd.DataFrame]:
    """A linear model on 1,000 rows of the benefits data, with its training and holdout rows."""
    frame = pd.read_csv(EXAMPLE / "benefits.csv").head(1000)
    train, holdout = split_holdout(frame, "ui", "binary", 0.2, seed=0)
    result = search(train, target="ui", task="binary", goal=GoalSpec(metric="recall", at_least=0.5),
                    positive="yes", plan=SearchPlan(families=("linear",), folds=2))
    return result.model, train, holdout


def register(store: Store, trained, *, project: str = PROJECT, champion: bool = False):
    """Register the model as ``loopml run`` does: snapshot, lineage, metrics with CI, the registering decision."""
    model, train, holdout = trained
    n = len(store.model_versions(project)) + 1
    contract = infer_contract(train, target="ui", task="binary")
    snapshot = store.save_snapshot(project, input_key=f"data-{n}", data=frame_to_parquet(train),
                                   data_hash=frame_hash(train), rows=len(train), columns=train.shape[1],
                                   contract=contract.model_dump(mode="json"), report={})
    run = store.start_run(project, "run", "s" * 64)
    decision = Decision(stage="model", gate="goal", verdict="pass", action="register", next_stage="operations",
                        summary=f"goal met by linear (run {run})", run_id=run)
    mv = store.register_model(
        project, run_id=run, snapshot_id=snapshot.id, input_key=f"model-{n}", model_bytes=model.to_bytes(),
        spec_hash="s" * 64, family=model.family,
        metrics={"holdout": {"metric": "recall", "value": 0.81, "ci_low": 0.77, "ci_high": 0.85, "rows": 200},
                 "cv_score": 0.8},
        operating_point={"threshold": model.threshold},
        lineage={"snapshot_id": snapshot.id, "data_hash": snapshot.data_hash, "sources": {"survey": "f" * 64},
                 "spec_hash": "s" * 64, "train_rows": len(train), "holdout_rows": len(holdout)},
        decision=decision)
    if champion:
        store.set_alias(project, "champion", mv.version, actor="loopml run", reason="pre-deploy gate passed")
    return mv


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path)
    yield s
    s.close()


@pytest.fixture
def two_versions(store, trained) -> Store:
    """v1 and v2 registered; v2 is the champion, having replaced v1."""
    register(store, trained, champion=True)
    register(store, trained, champion=True)
    return store


# -- list and show -------------------------------------------------------------------------------


def test_list_gives_status_aliases_and_the_holdout_ci(two_versions):
    rows = [(v.version, v.status, v.aliases, v.holdout["value"], v.holdout["ci_low"])
            for v in list_versions(two_versions, PROJECT)]
    assert rows == [(1, "registered", (), 0.81, 0.77), (2, "registered", ("champion",), 0.81, 0.77)]


def test_show_gives_the_lineage_the_artifact_and_the_registering_decision(store, trained):
    mv = register(store, trained)
    d = show_version(store, PROJECT, 1)
    model_bytes = trained[0].to_bytes()
    assert (d.lineage["data_hash"], d.lineage["sources"], d.lineage["spec_hash"]) == \
        (frame_hash(trained[1]), {"survey": "f" * 64}, "s" * 64)
    assert (d.lineage["train_rows"], d.lineage["holdout_rows"]) == (len(trained[1]), len(trained[2]))
    assert d.lineage["loopml"] and d.lineage["python"] and d.lineage["git_commit"] is None
    assert d.artifact == {"path": mv.artifact_path, "sha256": sha256_bytes(model_bytes), "size": len(model_bytes)}
    assert d.registered_by.summary == f"goal met by linear (run {mv.run_id})"
    assert d.operating_point == {"threshold": trained[0].threshold}


def test_an_unknown_version_lists_the_known_ones(two_versions):
    with pytest.raises(NotFoundError, match=f"project '{PROJECT}' has no model version 9; known versions: 1, 2"):
        show_version(two_versions, PROJECT, 9)


# -- promote, rollback, archive --------------------------------------------------------------------


def test_promote_records_who_and_why(two_versions):
    change = promote(two_versions, PROJECT, 1, reason="v2 misses the March recall", actor="ana")
    assert change.summary == "champion: v2 → v1 by ana: v2 misses the March recall"
    assert two_versions.alias(PROJECT, "champion").version == 1
    last = two_versions.decisions(PROJECT)[-1]
    assert (last.gate, last.action, last.actor, last.evidence["reason"]) == \
        ("registry", "promote", "ana", "v2 misses the March recall")


def test_the_actor_defaults_to_the_os_user(two_versions):
    assert promote(two_versions, PROJECT, 1, reason="check").actor == getpass.getuser()


@pytest.mark.parametrize("change", ["promote", "rollback", "archive"])
def test_every_change_needs_a_reason(two_versions, change):
    call = {"promote": lambda: promote(two_versions, PROJECT, 1, reason=" "),
            "rollback": lambda: rollback(two_versions, PROJECT, reason=""),
            "archive": lambda: archive(two_versions, PROJECT, 1, reason=" ")}[change]
    with pytest.raises(SpecError, match=f"{change} needs a reason for the audit log: say why with --reason"):
        call()
    assert [d.gate for d in two_versions.decisions(PROJECT)].count("registry") == 0


def test_promoting_the_champion_again_is_refused(two_versions):
    with pytest.raises(ConflictError, match="model version 2 is already the champion of project 'benefits-test'; "
                                            "nothing changed"):
        promote(two_versions, PROJECT, 2, reason="again")


def test_rollback_returns_to_the_previous_champion(two_versions):
    assert rollback(two_versions, PROJECT, reason="v2 misbehaves", actor="bo").summary == \
        "champion: v2 → v1 by bo: v2 misbehaves"


def test_an_archived_version_cannot_be_promoted(two_versions):
    archive(two_versions, PROJECT, 1, reason="trained on the 2023 survey", actor="ana")
    with pytest.raises(ConflictError, match="model version 1 is archived and cannot be promoted; promote a version "
                                            "that is not archived"):
        promote(two_versions, PROJECT, 1, reason="try")


def test_rollback_never_revives_an_archived_version(two_versions):
    archive(two_versions, PROJECT, 1, reason="retired")
    with pytest.raises(ConflictError, match="model version 1 is archived and cannot be rolled back to"):
        rollback(two_versions, PROJECT, reason="v2 misbehaves")
    assert two_versions.alias(PROJECT, "champion").version == 2


def test_archiving_the_champion_says_to_promote_another_first(two_versions):
    with pytest.raises(ConflictError, match=r"model version 2 is the champion of project 'benefits-test' and cannot "
                                            r"be archived; promote another version first \(`loopml models promote"):
        archive(two_versions, PROJECT, 2, reason="old")


def test_archiving_twice_is_refused(two_versions):
    archive(two_versions, PROJECT, 1, reason="retired")
    with pytest.raises(ConflictError, match="model version 1 of project 'benefits-test' is already archived"):
        archive(two_versions, PROJECT, 1, reason="again")


def test_show_tells_the_history_of_a_version(two_versions):
    promote(two_versions, PROJECT, 1, reason="back to v1", actor="ana")
    promote(two_versions, PROJECT, 2, reason="v2 fixed", actor="bo")
    archive(two_versions, PROJECT, 1, reason="retired", actor="cy")
    history = [(h["event"], h["actor"], h["reason"]) for h in show_version(two_versions, PROJECT, 1).history]
    assert history == [("alias", "loopml run", "pre-deploy gate passed"), ("alias", "ana", "back to v1"),
                       ("archive", "cy", "retired")]
    assert show_version(two_versions, PROJECT, 1).status == "archived"


# -- safe artifacts ----------------------------------------------------------------------------------


class _Marker:
    """Unpickling this object creates ``path``: a stand-in for code an attacker's pickle would run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _plant(store: Store, mv, data: bytes) -> None:
    """Swap the version's file for ``data`` and record its true SHA-256, as someone with write access could."""
    (store.artifacts.root / mv.artifact_path).write_bytes(data)
    with store.engine.begin() as conn:
        conn.execute(t.artifacts.update().where(t.artifacts.c.path == mv.artifact_path)
                     .values(sha256=sha256_bytes(data), size=len(data)))


def test_a_crafted_pickle_with_a_correct_hash_is_refused_and_never_runs(store, trained, tmp_path):
    payload = pickle.dumps(_Marker(tmp_path / "proof.txt"))
    # The payload is live: unpickled in another process, it creates its marker.
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=payload, check=True, cwd=tmp_path)
    assert (tmp_path / "proof.txt").exists()
    marker = tmp_path / "ran.txt"
    mv = register(store, trained, champion=True)
    _plant(store, mv, pickle.dumps(_Marker(marker), protocol=4))
    mv = store.model_version(PROJECT, 1)
    refused = "is a pickle \\(protocol 4\\): pickle-family files are refused: they can run code on load; " \
              "loopml stores models as JSON"
    with pytest.raises(ArtifactError, match=refused):
        store.read_model(mv)
    with pytest.raises(ArtifactError, match=refused):
        load_served_model(store, PROJECT)
    with pytest.raises(ModelError, match="pickle-family files can run code on load"):
        TrainedModel.from_bytes((store.artifacts.root / mv.artifact_path).read_bytes())
    assert not marker.exists()


def test_a_joblib_file_in_place_of_a_model_is_refused(store, trained, tmp_path):
    joblib = pytest.importorskip("joblib")
    joblib.dump({"coef": np.ones(3)}, tmp_path / "m.joblib", compress=3)
    mv = register(store, trained)
    _plant(store, mv, (tmp_path / "m.joblib").read_bytes())
    with pytest.raises(ArtifactError, match=r"is a joblib file \(zlib-compressed pickle\): pickle-family files are "
                                            "refused"):
        store.read_model(store.model_version(PROJECT, 1))


def test_registering_pickle_bytes_is_refused(store, trained):
    with pytest.raises(ArtifactError, match=r"refusing to register a pickle \(protocol 5\): pickle-family files are "
                                            "refused"):
        store.register_model(PROJECT, run_id=None, snapshot_id=1, input_key="k", spec_hash="s",
                             model_bytes=pickle.dumps({"coef": [1.0]}, protocol=5), family="linear", metrics={},
                             operating_point={}, lineage={})
    assert store.model_versions(PROJECT) == []


def test_a_model_path_outside_the_artifact_root_is_refused(store, trained, tmp_path):
    mv = register(store, trained)
    outside = tmp_path / "outside.json"
    outside.write_bytes(trained[0].to_bytes())
    with store.engine.begin() as conn:
        conn.execute(t.artifacts.update().where(t.artifacts.c.path == mv.artifact_path)
                     .values(path="../../outside.json"))
    with pytest.raises(ArtifactError, match="artifact path '../../outside.json' points outside the artifact root"):
        store.read_model(store.model_version(PROJECT, 1))


# -- MLflow export -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained):
    """v1 exported to a local MLflow file store; yields (store, export result, tracking URI)."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow-export")
    s = Store.open(root)
    register(s, trained, champion=True)
    uri = (root / "mlruns").as_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        done = export_mlflow(s, PROJECT, 1, uri, actor="ana")
    yield s, done, uri
    s.close()


def test_the_exported_model_predicts_exactly_like_loopml(exported, trained):
    import mlflow.pyfunc

    model, _, holdout = trained
    rows = holdout.drop(columns=["ui"]).head(50)
    got = mlflow.pyfunc.load_model(exported[1].artifact_uri).predict(rows)
    assert got["prediction"].tolist() == model.predict(rows).tolist()
    np.testing.assert_array_equal(got["probability"].to_numpy(), model.predict_proba(rows)[:, 1])


def test_the_exported_model_checks_rows_against_the_data_contract(exported, trained):
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    rows = trained[2].drop(columns=["ui", "sex"]).head(1)
    with pytest.raises(MlflowException, match="row 0, column 'sex': missing column"):
        mlflow.pyfunc.load_model(exported[1].artifact_uri).predict(rows)


def test_the_export_logs_metrics_params_and_registers_under_the_project(exported):
    import mlflow

    _, done, uri = exported
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        run = mlflow.MlflowClient(uri).get_run(done.run_id)
    assert run.data.metrics["holdout_recall"] == 0.81 and run.data.metrics["holdout_recall_ci_low"] == 0.77
    assert run.data.params["family"] == "linear" and run.data.params["loopml_version"] == "1"
    assert (done.registered_name, done.registered_version) == (PROJECT, 1)


def test_the_export_is_a_decision_with_who(exported):
    store, done, _ = exported
    last = store.decisions(PROJECT)[-1]
    assert (last.action, last.actor, last.evidence["model_uri"]) == ("export", "ana", done.model_uri)


def test_a_feature_hook_travels_with_the_exported_model(tmp_path, trained):
    pytest.importorskip("mlflow")
    import mlflow.pyfunc

    module = "hook_" + tmp_path.name.replace("-", "_")  # a name of its own: imported modules are cached
    (tmp_path / f"{module}.py").write_text("def add(df):\n    df['age_sq'] = df['age'] ** 2\n    return df\n")
    _, train, holdout = trained
    model = search(train, target="ui", task="binary", goal=GoalSpec(metric="recall", at_least=0.5),
                   positive="yes", plan=SearchPlan(families=("linear",), folds=2), feature_hook=f"{module}:add",
                   hook_root=tmp_path).model
    s = Store.open(tmp_path)
    register(s, (model, train, holdout))
    done = export_mlflow(s, PROJECT, 1, (tmp_path / "mlruns").as_uri())
    s.close()
    (tmp_path / f"{module}.py").unlink()  # the export must not need the project folder any more
    rows = holdout.drop(columns=["ui"]).head(20)
    got = mlflow.pyfunc.load_model(done.artifact_uri).predict(rows)
    assert got["prediction"].tolist() == model.predict(rows).tolist()


def test_a_tracking_uri_mlflow_refuses_is_bad_input(store, trained):
    pytest.importorskip("mlflow")
    register(store, trained)
    with pytest.raises(SpecError, match="--mlflow nosuch://where: MLflow refused it"):
        export_mlflow(store, PROJECT, 1, "nosuch://where")


# -- the command line --------------------------------------------------------------------------------


def loopml(*args: str, cwd: Path, code: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in its own process; ``code`` runs first in that process (to hide a package, say)."""
    prelude = (code or "") + "\nimport sys; from loopml.cli import main; sys.argv = ['loopml', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", prelude, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(cwd),
                                            "MLFLOW_DISABLE_TELEMETRY": "true"})


@pytest.fixture
def project(project_dir, trained) -> Path:
    """The conftest project folder with v1 and v2 registered, v2 the champion."""
    s = Store.open(project_dir)
    register(s, trained, champion=True)
    register(s, trained, champion=True)
    s.close()
    return project_dir


def test_cli_show_json_has_the_lineage(project):
    done = loopml("models", "show", "1", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["lineage"]["sources"] == {"survey": "f" * 64} and shown["artifact"]["size"] > 0
    assert shown["registered_by"]["action"] == "register"


def test_cli_archive_then_list_shows_the_status(project):
    done = loopml("models", "archive", "1", "--reason", "retired", "--actor", "ana", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "v1 archived by ana: retired" in done.stdout
    listed = json.loads(loopml("models", "list", "--json", cwd=project).stdout)
    assert [(v["version"], v["status"]) for v in listed] == [(1, "archived"), (2, "registered")]


def test_cli_archiving_the_champion_exits_2(project):
    done = loopml("models", "archive", "2", "--reason", "old", cwd=project)
    assert done.returncode == 2
    assert "promote another version first" in done.stderr


def test_cli_promote_without_a_reason_exits_2(project):
    done = loopml("models", "promote", "1", cwd=project)
    assert done.returncode == 2
    assert "Missing option '--reason'" in done.stderr


def test_cli_export_without_mlflow_says_how_to_install_it(project):
    done = loopml("models", "export", "1", "--mlflow", (project / "mlruns").as_uri(), cwd=project,
                  code="import sys; sys.modules['mlflow'] = None")
    assert done.returncode == 2
    assert "exporting to MLflow needs the mlflow package" in done.stderr
    assert "pip install 'loopml[mlflow]'" in done.stderr
    s = Store.open(project)
    assert [d for d in s.registry_decisions(PROJECT) if d.action == "export"] == []
    s.close()
