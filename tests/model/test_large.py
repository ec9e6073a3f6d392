"""Parquet parts larger than the sample: a search on a sample, then LightGBM on all rows over a real Dask cluster."""
# ruff: noqa: F811 - the cluster fixtures are imported, and tests name them as arguments

import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from compute.conftest import dask_cluster, local_cluster  # noqa: F401 - the real LocalCluster on loopback
from conftest import write_spec

from loopml.compute import fit_lightgbm_dask
from loopml.errors import ModelError, SpecError
from loopml.model import SearchPlan, TrainedModel
from loopml.model._large import sample_rows_for, train_in_partitions
from loopml.process import run_project
from loopml.spec import GoalSpec, load_spec
from loopml.store import Store

ROWS, PARTS = 100_000, 4
LGBM = SearchPlan(families=("lightgbm",), trials=1, folds=3, ensemble=False)


def _features(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "x3": rng.uniform(-2, 2, n),
                         "region": rng.choice(["north", "south", "east", "west", "centre"], size=n)})


def _churn(n: int, seed: int) -> pd.DataFrame:
    """A binary target driven by an interaction, a threshold and a category: learnable, not linear."""
    frame = _features(n, seed)
    lift = frame["region"].map({"north": 1.0, "south": -1.0, "east": 0.5, "west": -0.5, "centre": 0.0})
    logit = 2 * frame["x1"] * frame["x2"] + 2.0 * (frame["x3"] > 0.5) + lift - 0.5
    noise = np.random.default_rng(seed + 1).uniform(size=n)
    return frame.assign(churned=np.where(noise < 1 / (1 + np.exp(-logit)), "yes", "no"))


def _price(n: int, seed: int) -> pd.DataFrame:
    frame = _features(n, seed)
    lift = frame["region"].map({"north": 3.0, "south": -3.0, "east": 1.0, "west": -1.0, "centre": 0.0})
    noise = np.random.default_rng(seed + 1).normal(scale=0.5, size=n)
    return frame.assign(price=3 * np.sin(2 * frame["x1"]) + frame["x2"] ** 2 * frame["x3"] + lift + noise)


def _parts(frame: pd.DataFrame, folder: Path) -> list[Path]:
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), PARTS)):
        paths.append(folder / f"part.{i}.parquet")
        frame.iloc[chunk].to_parquet(paths[-1], index=False)
    return paths


def _train(parts, cluster, *, target, task, goal, plan=LGBM, positive=None, sample_rows=4000):
    return train_in_partitions(parts, target=target, task=task, goal=goal, costs=None, positive=positive, plan=plan,
                               budget_s=None, clean=None, cluster=cluster, seed=0, holdout_fraction=0.2,
                               sample_rows=sample_rows)


def test_the_final_lightgbm_trains_on_every_training_row_and_meets_a_learnable_goal(dask_cluster, tmp_path):
    parts = _parts(_churn(ROWS, seed=1), tmp_path)
    goal = GoalSpec(metric="roc_auc", at_least=0.8)
    training = _train(parts, dask_cluster, target="churned", task="binary", goal=goal, positive="yes")
    assert training.holdout_rows + training.train_rows == ROWS
    assert 0.18 * ROWS < training.holdout_rows < 0.22 * ROWS
    assert training.fit_rows == training.train_rows and training.sample_rows == 4000
    trees = lgb.Booster(model_str=training.model.state["booster"]).dump_model()["tree_info"]
    assert trees[0]["tree_structure"]["internal_count"] == training.train_rows  # the booster's own row count
    assert (training.model.family, training.partitions, training.workers) == ("lightgbm", PARTS, 2)
    assert training.evaluation.met and training.evaluation.value > 0.8
    assert any("random sample of 4,000 of the" in note for note in training.notes)
    assert any("not stratified" in note for note in training.notes)


def test_the_artifact_round_trips_and_predicts_as_before(dask_cluster, tmp_path):
    parts = _parts(_churn(ROWS, seed=2), tmp_path)
    training = _train(parts, dask_cluster, target="churned", task="binary", positive="yes",
                      goal=GoalSpec(metric="roc_auc", at_least=0.8))
    rows = _churn(500, seed=99).drop(columns=["churned"])
    loaded = TrainedModel.from_bytes(training.model.to_bytes())
    assert np.array_equal(loaded.predict_proba(rows), training.model.predict_proba(rows))
    assert loaded.predict(rows).tolist() == training.model.predict(rows).tolist()
    assert loaded.threshold == training.result.model.threshold  # the sample search's operating point


def test_all_rows_predict_new_rows_better_than_the_sample_model(dask_cluster, tmp_path):
    parts = _parts(_price(ROWS, seed=3), tmp_path)
    training = _train(parts, dask_cluster, target="price", task="regression", goal=GoalSpec(metric="rmse",
                                                                                            at_most=1.0))
    fresh = _price(20_000, seed=77)
    X, y = fresh.drop(columns=["price"]), fresh["price"].to_numpy()

    def rmse(model):
        return float(np.sqrt(np.mean((model.predict(X) - y) ** 2)))

    assert training.fit_rows == training.train_rows
    assert rmse(training.model) < 0.95 * rmse(training.result.model)
    assert any("LightGBM trained on all" in note and "rounds" in note for note in training.notes)


def test_a_chosen_linear_model_gives_way_to_the_best_lightgbm_trial(dask_cluster, tmp_path):
    frame = _features(ROWS, seed=4)
    parts = _parts(frame.assign(price=2 * frame["x1"] - frame["x2"]
                                + np.random.default_rng(5).normal(scale=0.3, size=ROWS)), tmp_path)
    plan = SearchPlan(families=("linear", "lightgbm"), trials=2, folds=3, ensemble=False)
    training = _train(parts, dask_cluster, target="price", task="regression", plan=plan,
                      goal=GoalSpec(metric="rmse", at_most=0.5))
    assert training.model.family == "lightgbm" and training.fit_rows == training.train_rows
    assert any("chose linear" in note and "its best trial #1" in note for note in training.notes)


def test_without_a_lightgbm_trial_the_sample_model_is_kept_and_said(dask_cluster, tmp_path):
    parts = _parts(_price(20_000, seed=6), tmp_path)
    plan = SearchPlan(families=("linear",), trials=1, folds=3, ensemble=False)
    training = _train(parts, dask_cluster, target="price", task="regression", plan=plan,
                      goal=GoalSpec(metric="rmse", at_most=5.0), sample_rows=2000)
    assert training.model is training.result.model and training.fit_rows == 2000
    assert any("is not LightGBM and no LightGBM trial ran" in note for note in training.notes)


def test_a_holdout_larger_than_the_sample_is_evaluated_on_a_sample_of_it(dask_cluster, tmp_path):
    parts = _parts(_price(20_000, seed=8), tmp_path)
    plan = SearchPlan(families=("linear",), trials=1, folds=3, ensemble=False)
    training = _train(parts, dask_cluster, target="price", task="regression", plan=plan,
                      goal=GoalSpec(metric="rmse", at_most=5.0), sample_rows=1000)
    assert training.evaluation.rows == 1000 < training.holdout_rows
    assert any("evaluated on a random sample of 1,000 of its rows" in note for note in training.notes)


def test_a_target_missing_from_the_parts_is_named(dask_cluster, tmp_path):
    parts = _parts(_price(2_000, seed=9), tmp_path)
    with pytest.raises(ModelError, match=r"target column 'cost' is not in snapshot part part.0.parquet; columns: "
                                         r"x1, x2, x3, region, price; check business.target"):
        _train(parts, dask_cluster, target="cost", task="regression", goal=GoalSpec(metric="rmse", at_most=1.0))


def test_an_empty_part_list_and_an_empty_part_are_refused(dask_cluster, tmp_path):
    goal = GoalSpec(metric="rmse", at_most=1.0)
    with pytest.raises(ModelError, match=r"expected a non-empty list of Parquet part files to train on; got \[\]"):
        _train([], dask_cluster, target="price", task="regression", goal=goal)
    empty = tmp_path / "empty.parquet"
    _price(10, seed=0).iloc[:0].to_parquet(empty)
    with pytest.raises(ModelError, match=r"empty.parquet holds no rows; every part needs rows"):
        _train([empty], dask_cluster, target="price", task="regression", goal=goal)


def test_a_missing_part_a_bad_fraction_and_a_bad_sample_size_are_refused(dask_cluster, tmp_path):
    parts = _parts(_price(2_000, seed=9), tmp_path)
    goal = GoalSpec(metric="rmse", at_most=1.0)
    with pytest.raises(ModelError, match=r"snapshot part .*gone.parquet does not exist; re-run the Data stage"):
        _train([*parts, tmp_path / "gone.parquet"], dask_cluster, target="price", task="regression", goal=goal)
    with pytest.raises(ModelError, match=r"holdout_fraction must be between 0 and 1; got 1.5"):
        train_in_partitions(parts, target="price", task="regression", goal=goal, costs=None, positive=None, plan=LGBM,
                            budget_s=None, clean=None, cluster=dask_cluster, seed=0, holdout_fraction=1.5,
                            sample_rows=100)
    with pytest.raises(ModelError, match=r"sample_rows must be a whole number of at least 2 rows; got 0.5"):
        _train(parts, dask_cluster, target="price", task="regression", goal=goal, sample_rows=0.5)


def test_the_dask_fit_takes_row_weights_and_category_codes_and_names_bad_ones(dask_cluster):
    rng = np.random.default_rng(14)
    frame = pd.DataFrame({"x": rng.normal(size=4000), "code": rng.integers(0, 5, 4000).astype(float)})
    frame["y"] = (frame["x"] + 0.5 * frame["code"] + rng.normal(size=4000) > 2.5).astype(int)
    frame["w"] = np.where(frame["y"] == 1, 10.0, 1.0)
    params = {"n_estimators": 30}
    plain = fit_lightgbm_dask(dask_cluster, frame.drop(columns=["w"]), target="y", task="binary", params=params)
    weighted = fit_lightgbm_dask(dask_cluster, frame, target="y", task="binary", params=params, weight="w",
                                 categorical=["code"])
    X = frame[["x", "code"]].astype("float32")
    assert weighted.features == ["x", "code"]
    assert weighted.model.predict_proba(X)[:, 1].mean() > plain.model.predict_proba(X)[:, 1].mean() + 0.1
    assert "[categorical_feature: 1]" in weighted.model.booster_.model_to_string()
    with pytest.raises(ModelError, match=r"weight column 'weights' is not in the data; columns: x, code, y, w"):
        fit_lightgbm_dask(dask_cluster, frame, target="y", task="binary", weight="weights")
    with pytest.raises(ModelError, match=r"categorical column\(s\) colour are not feature columns of the data; "
                                         r"features: x, code$"):
        fit_lightgbm_dask(dask_cluster, frame, target="y", task="binary", weight="w", categorical=["colour"])


def test_the_sample_size_follows_the_memory_limit(tmp_path):
    parts = _parts(_price(2_000, seed=10), tmp_path)
    per_row = pd.read_parquet(parts[0]).memory_usage(deep=True).sum() / 500
    assert sample_rows_for(parts, 40_000_000) == int(40_000_000 / (per_row * 4))
    assert sample_rows_for(parts, 1000) == 1000  # never fewer rows than a search needs


def _churn_project(folder: Path, address: str | None, goal: float = 0.75) -> Path:
    write_spec(folder, business={"problem": "Who churns?", "task": "binary", "target": "churned", "positive": "yes",
                                 "goal": {"metric": "roc_auc", "at_least": goal}},
               data={"sources": [{"name": "accounts", "path": "churn.csv"}], "min_rows": 200},
               model={"budget": "2m", "seed": 0, "folds": 3, "trials": 2},
               compute={"dask": address, "memory_limit": 500_000} if address else {"memory_limit": 500_000})
    return folder


@pytest.fixture(scope="module")
def large_run(local_cluster, tmp_path_factory):
    """A project whose CSV is larger than compute.memory_limit, run once on the cluster."""
    folder = tmp_path_factory.mktemp("churn")
    _churn(20_000, seed=11).to_csv(folder / "churn.csv", index=False)
    store = Store.open(_churn_project(folder, local_cluster.scheduler_address))
    return folder, store, run_project(load_spec(folder), store)


def test_a_run_on_a_file_larger_than_memory_registers_the_all_rows_model(large_run):
    _, store, result = large_run
    assert result.outcome == "registered", result.explanation
    [gate] = [d for d in result.decisions if d.stage == "model" and d.gate == "goal"]
    large = gate.evidence["large"]
    assert large["fit_rows"] == large["train_rows"] == gate.evidence["train_rows"] > large["sample_rows"] >= 1000
    assert large["workers"] == 2 and large["partitions"] >= 2
    assert any(f"random sample of {large['sample_rows']:,} of the" in note for note in large["notes"])
    model = TrainedModel.from_bytes(store.read_model(result.model_version))
    assert model.family == "lightgbm" and model.predict(_churn(10, seed=12).drop(columns=["churned"])).shape == (10,)


def test_a_second_run_reuses_the_model_without_training(large_run):
    folder, store, first = large_run
    again = run_project(load_spec(folder), store)
    [gate] = [d for d in again.decisions if d.stage == "model" and d.gate == "goal"]
    assert (gate.action, again.model_version.version) == ("reuse", first.model_version.version)


def test_training_a_parts_snapshot_without_a_cluster_says_how_to_fix_it(large_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(large_run[0], folder)
    _churn_project(folder, None, goal=0.7)  # a new goal trains again; the snapshot in parts is reused
    with pytest.raises(SpecError, match=r"data snapshot \d+ is stored in parts \(larger than compute.memory_limit\) "
                                        r"and trains only on a Dask cluster; set compute.dask in the spec"):
        run_project(load_spec(folder), Store.open(folder))


def test_a_class_missing_from_the_sample_is_named(dask_cluster, tmp_path):
    frame = _features(20_000, seed=13)
    frame["kind"] = np.select([frame["x1"] > 0.7, frame["x2"] > 0.5], ["a", "b"], "c")
    frame.loc[[19_990, 19_995], "kind"] = "d"  # a fourth class in the last part: one row held out, one to train
    parts = _parts(frame, tmp_path)
    with pytest.raises(ModelError, match=r"1 training row\(s\) hold a class of 'kind' the sample of 1,000 rows never "
                                         r"held \(classes seen: \['a', 'b', 'c'\]\); raise compute.memory_limit"):
        _train(parts, dask_cluster, target="kind", task="multiclass", goal=GoalSpec(metric="accuracy", at_least=0.9),
               sample_rows=1000)


def test_the_stage_report_of_a_run_in_partitions_draws_its_holdout_charts_from_the_parts(large_run):
    from loopml import project_report

    folder, store, result = large_run
    page = project_report(store, "benefits-test", spec=load_spec(folder), run=result.run_id)
    for problem in ("cannot be read", "cannot be rebuilt", "the rebuilt holdout has", "are left out"):
        assert problem not in page
    assert 'aria-label="Precision and recall on the locked holdout"' in page
    assert 'aria-label="Calibration: predicted against observed"' in page


def test_a_retrain_of_a_champion_trained_in_partitions_says_how_to_retrain(large_run):
    from loopml.maintenance._record import Recorder
    from loopml.maintenance.policy import read_policy
    from loopml.maintenance.retrain import Retrainer

    folder, store, result = large_run
    spec = load_spec(folder)
    recorder = Recorder(store, spec.project, store.start_run(spec.project, "maintain", "test"))
    outcome = Retrainer(spec, store, result.model_version, read_policy(spec), recorder).run("retrain")
    assert not outcome.ok
    assert "cleaned in partitions (larger than compute.memory_limit)" in outcome.reason
    assert "add the fresh rows to the source file and run `loopml run`" in outcome.reason
