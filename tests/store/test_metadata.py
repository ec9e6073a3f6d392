"""The metadata store on SQLite and PostgreSQL: migrations, decisions, one-transaction registration, aliases."""

import pytest
import sqlalchemy as sa

from loopml.decisions import Decision
from loopml.errors import ArtifactError, ConflictError, StoreError
from loopml.store import Store
from loopml.store.metadata import _MIGRATIONS

from .old_stores import at_revision, head


def _snapshot(store, project="p", key="k"):
    return store.save_snapshot(project, input_key=key, data=b"PAR1 rows", data_hash="d" * 64, rows=10, columns=3,
                               contract={"columns": []}, report={"gate": {"passed": True}})


def _register(store, project="p", data=b'{"format": "loopml.model/1"}', **kw):
    snap = _snapshot(store, project, key=f"k-{data!r}")
    return store.register_model(project, run_id=None, snapshot_id=snap.id, input_key=kw.pop("input_key", "m"),
                                model_bytes=data, spec_hash="s" * 64, family="linear",
                                metrics={"holdout": {"value": 0.8}}, operating_point={"threshold": 0.4},
                                lineage={"packages": {}}, **kw)


def test_schema_is_migrated_to_head(store):
    assert store.schema_version() == head() == max(p.name[:4] for p in (_MIGRATIONS / "versions").glob("0*.py"))


def test_sqlite_store_uses_wal_in_the_project_folder(tmp_path):
    s = Store.open(tmp_path)
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / ".loopml" / "loopml.db").is_file()


def test_loopml_db_selects_postgresql(tmp_path, monkeypatch, postgres_url):
    monkeypatch.setenv("LOOPML_DB", postgres_url)
    s = Store.open(tmp_path)
    assert s.engine.dialect.name == "postgresql"
    assert not (tmp_path / ".loopml" / "loopml.db").exists()


def test_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match=r"cannot open the metadata store at postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/x"):
        Store.open(tmp_path, url="postgresql+psycopg://u:secret@127.0.0.1:1/x?connect_timeout=2")


def test_decisions_round_trip_with_numpy_evidence(store):
    import numpy as np

    run = store.start_run("p", "run", "h" * 64)
    store.record_decision("p", Decision(stage="model", gate="goal", verdict="fail", action="widen", next_stage="model",
                                        summary="recall 0.7 < 0.8", run_id=run,
                                        evidence={"recall": np.float64(0.7), "n": np.int64(976),
                                                  "ci": np.array([0.6, 0.8]), "missing": float("nan")}))
    [d] = store.decisions("p")
    assert (d.stage, d.verdict, d.next_stage, d.run_id) == ("model", "fail", "model", run)
    assert d.evidence == {"recall": 0.7, "n": 976, "ci": [0.6, 0.8], "missing": None}
    assert d.at is not None and d.at.tzinfo is not None


def test_decisions_are_per_project(store):
    for project in ("a", "b"):
        store.record_decision(project, Decision(stage="data", gate="g", verdict="pass", action="x", next_stage=None,
                                                summary=project))
    assert [d.summary for d in store.decisions("a")] == ["a"]


def test_register_model_stores_artifact_lineage_and_decision_together(store):
    decision = Decision(stage="model", gate="goal", verdict="pass", action="register", next_stage="operations",
                        summary="met")
    mv = _register(store, decision=decision)
    assert mv.version == 1
    assert store.read_model(mv) == b'{"format": "loopml.model/1"}'
    assert store.decisions("p")[-1].summary == "met"


def test_failed_registration_leaves_no_version_and_no_file(store):
    bad = Decision(stage="model", gate="goal", verdict="pass", action="register", next_stage=None, summary="x",
                   evidence={"unstorable": object()})
    with pytest.raises(Exception, match="cannot store object as JSON"):
        _register(store, data=b"model that must not remain", decision=bad)
    assert store.model_versions("p") == []
    assert not list((store.artifacts.root / "models").glob("*"))


def test_versions_count_up_per_project(store):
    _register(store, data=b"one")
    _register(store, data=b"two", input_key="m2")
    _register(store, project="other", data=b"three")
    assert [v.version for v in store.model_versions("p")] == [1, 2]
    assert [v.version for v in store.model_versions("other")] == [1]


def test_tampered_artifact_refuses_to_load(store):
    mv = _register(store)
    (store.artifacts.root / mv.artifact_path).write_bytes(b'{"format": "loopml.model/1", "evil": 1}')
    with pytest.raises(ArtifactError, match="fails its SHA-256 check .* refusing to load it"):
        store.read_model(mv)


def test_missing_artifact_is_named(store):
    mv = _register(store)
    (store.artifacts.root / mv.artifact_path).unlink()
    with pytest.raises(ArtifactError, match=f"artifact '{mv.artifact_path}' is missing"):
        store.read_model(mv)


def test_unknown_version_lists_known_ones(store):
    _register(store)
    with pytest.raises(StoreError, match="project 'p' has no model version 7; known versions: 1"):
        store.model_version("p", 7)


def test_alias_moves_and_remembers_the_previous_target(store):
    _register(store, data=b"one")
    _register(store, data=b"two", input_key="m2")
    assert store.set_alias("p", "champion", 1, actor="t", reason="first") is None
    assert store.set_alias("p", "champion", 2, actor="t", reason="better").version == 1
    assert store.alias("p", "champion").version == 2
    assert store.alias("p", "champion").aliases == ("champion",)
    assert store.previous_alias_target("p", "champion").version == 1


def test_feedback_attaches_to_a_logged_prediction(store):
    mv = _register(store)
    store.log_predictions("p", mv.id, [{"id": "a1", "features": {"age": 30}, "prediction": "yes",
                                        "probability": 0.9, "latency_ms": 0.4}])
    store.record_feedback("p", "a1", "no")
    [row] = store.labeled_predictions("p")
    assert (row["id"], row["label"], row["features"]) == ("a1", "no", {"age": 30})


def test_feedback_for_an_unknown_prediction_is_refused(store):
    with pytest.raises(StoreError, match="unknown prediction_id 'nope'"):
        store.record_feedback("p", "nope", "yes")


def test_feedback_is_recorded_once(store):
    mv = _register(store)
    store.log_predictions("p", mv.id, [{"id": "a1", "features": {}, "prediction": 1, "probability": None,
                                        "latency_ms": 1.0}])
    store.record_feedback("p", "a1", "yes")
    with pytest.raises(StoreError, match="prediction 'a1' already has a label"):
        store.record_feedback("p", "a1", "no")


def test_monitor_windows_move_the_checkpoint(store):
    assert store.last_monitored_seq("p") == 0
    store.add_monitor_window("p", model_version_id=None, first_seq=1, last_seq=40, rows=40, metrics={"recall": 0.8})
    assert store.last_monitored_seq("p") == 40


def test_runs_record_their_outcome(store):
    run = store.start_run("p", "run", "h" * 64, input_key="i")
    store.finish_run(run, "registered", "v1 is the champion")
    assert store.last_finished_run("p", "run", "i")["outcome"] == "v1 is the champion"


def test_reopening_an_existing_store_keeps_its_rows(tmp_path):
    s = Store.open(tmp_path)
    s.record_decision("p", Decision(stage="data", gate="g", verdict="pass", action="x", next_stage=None,
                                    summary="kept"))
    s.close()
    again = Store.open(tmp_path)
    assert [d.summary for d in again.decisions("p")] == ["kept"]
    with again.engine.connect() as conn:
        assert "model_versions" in sa.inspect(conn).get_table_names()


# -- registry: the registering decision, archiving, lineage ------------------------------------------


def _archive(store, version, project="p"):
    return store.archive_model(project, version, decision=Decision(
        stage="operations", gate="registry", verdict="info", action="archive", next_stage=None,
        summary=f"v{version} archived", evidence={"version": version}))


def test_a_version_links_the_decision_that_registered_it(store):
    mv = _register(store, decision=Decision(stage="model", gate="goal", verdict="pass", action="register",
                                            next_stage="operations", summary="met"))
    assert store.registered_by(mv).summary == "met"
    assert store.registered_by(_register(store, data=b'{"v": 2}', input_key="m2")) is None


def test_registration_records_runtime_versions_and_no_git_commit_outside_a_repository(store):
    lineage = _register(store).lineage
    assert lineage["git_commit"] is None
    assert set(lineage["packages"]) >= {"python", "loopml"}


def test_registration_records_the_git_commit_of_the_project_folder(tmp_path):
    import subprocess

    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    (tmp_path / "loopml.yaml").write_text("project: p\n")
    for args in (["init", "-q"], ["add", "loopml.yaml"], ["commit", "-q", "-m", "spec"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    s = Store.open(tmp_path)
    assert _register(s).lineage["git_commit"] == head
    s.close()


def test_archived_versions_take_no_alias(store):
    _register(store, data=b'{"v": 1}')
    _register(store, data=b'{"v": 2}', input_key="m2")
    _archive(store, 1)
    assert store.model_version("p", 1).status == "archived"
    with pytest.raises(ConflictError, match="model version 1 of project 'p' is archived and cannot become champion"):
        store.set_alias("p", "champion", 1, actor="t", reason="x")


def test_the_champion_cannot_be_archived(store):
    _register(store)
    store.set_alias("p", "champion", 1, actor="t", reason="first")
    with pytest.raises(ConflictError, match="model version 1 is the champion of project 'p' and cannot be archived; "
                                            "promote another version first"):
        _archive(store, 1)
    assert store.model_version("p", 1).status == "registered"


def test_reuse_by_input_key_skips_archived_versions(store):
    _register(store, input_key="same")
    _archive(store, 1)
    assert store.find_model("p", "same") is None


def test_alias_history_names_versions_actors_and_reasons(store):
    _register(store, data=b'{"v": 1}')
    mv2 = _register(store, data=b'{"v": 2}', input_key="m2")
    store.set_alias("p", "champion", 1, actor="ana", reason="first")
    store.set_alias("p", "champion", 2, actor="bo", reason="better")
    [move] = store.alias_history("p", mv2.id)
    assert (move["alias"], move["version"], move["previous_version"], move["actor"], move["reason"]) == \
        ("champion", 2, 1, "bo", "better")


# -- migrations: an existing 0001 store upgrades in place ---------------------------------------------


def _fill_0001(engine: sa.Engine) -> None:
    """Rows as a 0001 store holds them: a run that registered v1 with its decision, an alias, a prediction."""
    at = "2024-05-01 12:00:00"
    with engine.begin() as conn:
        for sql in (
            "INSERT INTO runs (id, project, kind, spec_hash, status, started_at) VALUES (1, 'p', 'run', 'h', "
            f"'registered', '{at}')",
            "INSERT INTO decisions (id, project, run_id, stage, gate, verdict, action, summary, evidence, actor, at) "
            f"VALUES (1, 'p', 1, 'data', 'enough_data', 'pass', 'model', 'enough', '{{}}', 'loopml', '{at}')",
            "INSERT INTO decisions (id, project, run_id, stage, gate, verdict, action, summary, evidence, actor, at) "
            f"VALUES (2, 'p', 1, 'model', 'goal', 'pass', 'register', 'goal met', '{{}}', 'loopml', '{at}')",
            "INSERT INTO artifacts (id, project, kind, path, sha256, size, created_at) VALUES "
            f"(1, 'p', 'snapshot', 'snapshots/a.parquet', '{'a' * 64}', 3, '{at}')",
            "INSERT INTO artifacts (id, project, kind, path, sha256, size, created_at) VALUES "
            f"(2, 'p', 'model', 'models/b.json', '{'b' * 64}', 2, '{at}')",
            "INSERT INTO snapshots (id, project, input_key, data_hash, artifact_id, rows, columns, contract, report, "
            f"created_at) VALUES (1, 'p', 'k', 'd', 1, 10, 3, '{{}}', '{{}}', '{at}')",
            "INSERT INTO model_versions (id, project, version, input_key, run_id, snapshot_id, artifact_id, spec_hash, "
            "family, metrics, operating_point, lineage, status, created_at) VALUES (1, 'p', 1, 'm', 1, 1, 2, 's', "
            f"'linear', '{{}}', '{{}}', '{{}}', 'registered', '{at}')",
            f"INSERT INTO aliases (project, alias, model_version_id, updated_at) VALUES ('p', 'champion', 1, '{at}')",
            "INSERT INTO predictions (seq, id, project, model_version_id, features, prediction, created_at) VALUES "
            f"(1, 'a1', 'p', 1, '{{}}', '\"yes\"', '{at}')",
        ):
            conn.exec_driver_sql(sql)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_0001_store_upgrades_without_losing_rows(dialect, tmp_path, request):
    url = request.getfixturevalue("postgres_url") if dialect == "postgresql" else \
        f"sqlite:///{tmp_path / 'old.db'}"
    engine = at_revision(url, "0001")
    _fill_0001(engine)
    tables = ("runs", "decisions", "artifacts", "snapshots", "model_versions", "aliases", "predictions")
    with engine.connect() as conn:
        before = {name: conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar() for name in tables}
    engine.dispose()
    s = Store.open(tmp_path, url=url)
    assert s.schema_version() == head()
    with s.engine.connect() as conn:
        assert {name: conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar() for name in tables} == before
    [mv] = s.model_versions("p")
    assert (mv.version, mv.aliases, mv.decision_id) == (1, ("champion",), 2)
    assert s.registered_by(mv).summary == "goal met"
    assert s.prediction_count("p") == 1
    s.close()
