"""Optuna's studies on the store's PostgreSQL (schema loopml_optuna), in memory beside a SQLite store."""

import sqlite3
import uuid
from pathlib import Path

import optuna
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
from conftest import write_spec

from loopml.errors import ModelError, StoreError
from loopml.model import SearchPlan, search
from loopml.process import run_project
from loopml.spec import GoalSpec, load_spec
from loopml.store import ArtifactStore, Store
from loopml.store._optuna import SCHEMA, optuna_storage, study_name

BENCH = Path(__file__).resolve().parents[1] / "bench_data"
GOAL = GoalSpec(metric="roc_auc", at_least=0.5)
# 4 portfolio trials, then 3 Optuna trials of the best family (warm starts, then TPE samples).
MODEL = {"budget": "2m", "seed": 0, "folds": 3, "trials": 7, "max_iterations": 1}
BUSINESS = {"problem": "Who applies?", "task": "binary", "target": "ui", "positive": "yes",
            "goal": {"metric": "roc_auc", "at_least": 0.5}}


def _goal_evidence(store: Store, project: str, run_id: int) -> dict:
    return next(d.evidence for d in store.decisions(project, run_id=run_id) if (d.stage, d.gate) == ("model", "goal"))


@pytest.fixture
def pg_store(tmp_path, postgres_url):
    store = Store.open(tmp_path, url=postgres_url)
    yield store
    store.close()


@pytest.mark.postgres
def test_a_run_on_postgresql_leaves_studies_that_optuna_loads_with_every_tuning_trial(project_dir, pg_store):
    write_spec(project_dir, model=MODEL, business=BUSINESS)
    result = run_project(load_spec(project_dir), pg_store)
    evidence = _goal_evidence(pg_store, "benefits-test", result.run_id)
    prefix = f"benefits-test/run-{result.run_id}/model-1"
    assert evidence["optuna_study"] == prefix

    storage = optuna_storage(pg_store)
    names = optuna.get_all_study_names(storage)
    assert names and all(name.startswith(prefix + "/") for name in names)
    studies = [optuna.load_study(study_name=name, storage=storage) for name in names]
    tuned = {t["family"] for t in evidence["trials"] if t["source"] == "optuna"}
    # Each study holds its family's earlier trials as priors, then one trial per Optuna trial the run recorded.
    expected = [i for i, t in enumerate(evidence["trials"]) if t["family"] in tuned and t["score"] is not None]
    assert sorted(t.user_attrs["loopml_trial"] for s in studies for t in s.trials) == expected
    assert sum(t["source"] == "optuna" for t in evidence["trials"]) == 3
    assert {t.state for s in studies for t in s.trials} == {optuna.trial.TrialState.COMPLETE}
    with pg_store.engine.connect() as conn:
        schemas = conn.execute(sa.text("SELECT table_schema FROM information_schema.tables "
                                       "WHERE table_name = 'alembic_version' ORDER BY 1")).scalars().all()
    assert schemas == [SCHEMA, "public"]  # Optuna's migrations and the store's, apart


@pytest.mark.postgres
def test_the_same_search_gives_the_same_model_bytes_in_memory_and_on_postgresql(pg_store):
    sales = pd.read_parquet(BENCH / "computers.parquet")
    train = sales[sales["trend"] <= 12].sample(n=1800, random_state=0)
    # 4 portfolio trials, then LightGBM tuned: its 3 warm starts, then 2 TPE samples.
    plan, goal = SearchPlan(trials=9, folds=3, n_estimators=100), GoalSpec(metric="mae", at_most=200)
    here = search(train, target="price", task="regression", goal=goal, plan=plan)
    stored = search(train, target="price", task="regression", goal=goal, plan=plan,
                    study_storage=optuna_storage(pg_store), study_name="shop/run-1/model-1")
    assert [t["family"] for t in here.trials if t["source"] == "optuna"] == ["lightgbm"] * 5
    assert [(t["family"], t["params"], t["score"]) for t in stored.trials] == \
        [(t["family"], t["params"], t["score"]) for t in here.trials]
    assert stored.model.to_bytes() == here.model.to_bytes()


def test_a_run_on_sqlite_keeps_the_study_in_memory(project_dir):
    write_spec(project_dir, model=MODEL, business=BUSINESS)
    store = Store.open(project_dir)
    try:
        result = run_project(load_spec(project_dir), store)
        evidence = _goal_evidence(store, "benefits-test", result.run_id)
        assert optuna_storage(store) is None
    finally:
        store.close()
    assert sum(t["source"] == "optuna" for t in evidence["trials"]) == 3 and "optuna_study" not in evidence
    with sqlite3.connect(project_dir / ".loopml" / "loopml.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "runs" in tables and not tables & {"studies", "trials", "trial_params"}


@pytest.mark.postgres
def test_a_study_name_left_by_an_emptied_store_is_not_reused(pg_store):
    storage = optuna_storage(pg_store)
    optuna.create_study(study_name="shop/run-3/model-1/lightgbm", storage=storage)
    assert study_name(pg_store, "shop", 3, "model-1") == "shop/run-3/model-1~2"
    assert study_name(pg_store, "shop", 3, "model-2") == "shop/run-3/model-2"


def test_a_study_storage_without_a_study_name_is_refused(benefits_csv):
    train = pd.read_csv(benefits_csv).head(200)
    with pytest.raises(ModelError, match=r"^study_storage needs study_name, the name the search's Optuna studies "
                                         r"start with \(e\.g\. 'project/run-3'\); got none$"):
        search(train, target="ui", task="binary", goal=GOAL, positive="yes", plan=SearchPlan(trials=1, folds=3),
               study_storage="sqlite:///studies.db")


@pytest.fixture
def restricted_role(postgres_url):
    """A login role with no privilege to create schemas in the test database; dropped afterwards."""
    role = f"loopml_ro_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    yield role, postgres_url.replace("://", f"://{role}@", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}" CASCADE')
        conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.postgres
def test_a_user_who_cannot_create_the_schema_is_told_the_privilege_and_the_fix(tmp_path, postgres_url,
                                                                               restricted_role):
    role, url = restricted_role
    Store.open(tmp_path, url=postgres_url).close()  # the store's tables, made by their owner
    store = Store(sa.create_engine(url), ArtifactStore(tmp_path / "artifacts"))
    database = postgres_url.rsplit("/", 1)[1]
    try:
        with pytest.raises(StoreError) as error:
            optuna_storage(store)
        assert str(error.value) == (
            f"cannot create the schema 'loopml_optuna' for Optuna's studies in {url}: the user '{role}' needs the "
            f"CREATE privilege on database '{database}' (permission denied for database {database}); ask an "
            f"administrator to run `CREATE SCHEMA loopml_optuna AUTHORIZATION \"{role}\"`")
        with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA loopml_optuna AUTHORIZATION "{role}"')  # the fix the message names
        storage = optuna_storage(store)
        assert optuna.create_study(study_name="p/run-1/model-1/linear", storage=storage).study_name.endswith("linear")
    finally:
        store.close()
