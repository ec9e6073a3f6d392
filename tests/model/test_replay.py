"""Reproducibility: a budget in trials gives the same bytes every run; a timed run replays exactly."""

import json

import numpy as np
import pandas as pd
import pytest

from loopml.model import SearchPlan, TrainedModel, search
from loopml.spec import CleanSpec, GoalSpec

GOAL = GoalSpec.model_validate({"metric": "recall", "at_least": 0.7, "with": {"precision": 0.7}})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 360
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    kind = rng.choice(["p", "q", "r"], size=n)
    y = rng.uniform(size=n) < 1 / (1 + np.exp(-(x1 - 0.8 * x2 + (kind == "p"))))
    x1[::17] = np.nan  # a missing indicator and an imputed median in every model
    return pd.DataFrame({"x1": x1, "x2": x2, "kind": kind, "y": np.where(y, "yes", "no")})


def _search(data, **kw):
    return search(data, target="y", task="binary", goal=GOAL, positive="yes", clean=CleanSpec(outliers="clip"), **kw)


def test_a_budget_in_trials_gives_identical_model_bytes(data):
    plan = SearchPlan(folds=3, n_estimators=20, trials=7, seed=3)
    first, second = _search(data, plan=plan), _search(data, plan=plan)
    assert [t["source"] for t in first.trials].count("optuna") == 3  # Optuna's proposals are seeded too
    assert [t["params"] for t in first.trials] == [t["params"] for t in second.trials]
    assert first.model.to_bytes() == second.model.to_bytes()
    assert first.operating_point == second.operating_point


def test_another_seed_gives_another_model(data):
    one = _search(data, plan=SearchPlan(folds=3, n_estimators=20, trials=6, seed=0))
    two = _search(data, plan=SearchPlan(folds=3, n_estimators=20, trials=6, seed=1))
    assert one.model.to_bytes() != two.model.to_bytes()


def test_a_timed_search_replays_to_the_same_model_without_a_clock(data):
    plan = SearchPlan(folds=3, n_estimators=20, tune=3)
    timed = _search(data, plan=plan, budget_s=300)
    assert [t["source"] for t in timed.trials] == ["portfolio"] * 4 + ["optuna"] * 3
    stored = json.loads(json.dumps(timed.trials))  # as a run record keeps it
    again = _search(data, plan=plan, replay=stored, budget_s=0)  # the budget is ignored on replay
    assert again.model.to_bytes() == timed.model.to_bytes()
    assert [t["family"] for t in again.trials] == [t["family"] for t in timed.trials]
    assert again.notes == [] and again.cv_score == timed.cv_score
    loaded = TrainedModel.from_bytes(again.model.to_bytes())
    X = data.drop(columns=["y"])
    assert np.array_equal(loaded.predict_proba(X), timed.model.predict_proba(X))
