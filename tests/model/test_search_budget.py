"""Budgets in trials or seconds, Optuna after the portfolio, time-ordered folds, and bad input."""

import importlib

import numpy as np
import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.model import SearchPlan, search
from loopml.spec import GoalSpec

search_module = importlib.import_module("loopml.model.search")  # loopml.model.search is the function

AUC = GoalSpec(metric="roc_auc", at_least=0.6)
QUICK = SearchPlan(folds=3, n_estimators=20)


def synthetic(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A learnable binary task: two informative numbers, an informative category, noise, a day index."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["a", "b", "c", "d"], size=n)
    logit = 1.5 * x1 - x2 + (city == "a") + 0.5 * x1 * x2
    y = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"x1": x1, "x2": x2, "city": city, "noise": rng.normal(size=n), "day": np.arange(n),
                         "y": np.where(y, "yes", "no")})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return synthetic()


def _search(data, **kw):
    kw.setdefault("plan", QUICK)
    return search(data, target="y", task="binary", goal=AUC, positive="yes", **kw)


# -- trials ----------------------------------------------------------------------------------------
def test_a_trial_budget_runs_the_portfolio_then_optuna_on_the_best_family(data):
    result = _search(data, plan=SearchPlan(folds=3, n_estimators=20, trials=6))
    sources = [t["source"] for t in result.trials]
    assert sources == ["portfolio"] * 4 + ["optuna"] * 2
    portfolio = result.trials[:4]
    best = max(portfolio, key=lambda t: t["score"])["family"]
    assert {t["family"] for t in result.trials[4:]} == {best}
    assert result.skipped == 0 and result.notes == []


def test_a_trial_budget_ignores_the_clock(data):
    result = _search(data, plan=SearchPlan(folds=3, n_estimators=20, trials=5), budget_s=0)
    assert len(result.trials) == 5
    assert any("over the 0s time budget" in note for note in result.notes)


def test_fewer_trials_than_the_portfolio_cut_it_short(data):
    result = _search(data, plan=SearchPlan(folds=3, n_estimators=20, trials=2))
    assert [t["family"] for t in result.trials] == ["linear", "lightgbm"]


def test_without_any_budget_only_the_portfolio_runs(data):
    assert [t["source"] for t in _search(data).trials] == ["portfolio"] * 4


# -- seconds ---------------------------------------------------------------------------------------
def test_a_time_budget_tunes_until_its_cap_and_reports_progress(data):
    calls = []
    plan = SearchPlan(families=("linear", "lightgbm"), folds=3, n_estimators=20, tune=3)
    result = _search(data, plan=plan, budget_s=600, progress=lambda *a: calls.append(a))
    assert len(result.trials) == 5 and [t["source"] for t in result.trials][2:] == ["optuna"] * 3
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5]
    assert all(0 < c[2] <= 600 for c in calls)  # seconds left
    best = [c[1] for c in calls]
    assert best == list(np.maximum.accumulate(best))  # the best roc_auc so far never falls
    assert all(t["seconds"] >= 0 for t in result.trials)


def test_a_time_budget_tunes_each_family_in_turn_and_ends_when_none_improves(data, monkeypatch):
    monkeypatch.setattr(search_module, "_PATIENCE_TRIALS", 3)  # a short patience keeps the test quick
    plan = SearchPlan(families=("linear", "lightgbm"), folds=3, n_estimators=20, tune=100)
    result = _search(data, plan=plan, budget_s=600)
    tuned = [t["family"] for t in result.trials[2:]]
    first = max(result.trials[:2], key=lambda t: t["score"])["family"]
    assert tuned[0] == first and set(tuned) == {"linear", "lightgbm"}
    assert tuned == sorted(tuned, key=lambda family: family != first)  # one family, then the other
    assert len(result.trials) < 2 + 100 and result.skipped == 0 and result.notes == []


def test_a_trial_budget_runs_every_trial_after_tuning_stops_improving(data, monkeypatch):
    monkeypatch.setattr(search_module, "_PATIENCE_TRIALS", 2)
    result = _search(data, plan=SearchPlan(families=("linear",), folds=3, trials=12))
    assert len(result.trials) == 12 and result.skipped == 0


def test_a_spent_time_budget_stops_starting_trials(data, monkeypatch):
    ticks = iter(np.arange(0.0, 1000.0, 4.0))  # every clock reading is 4 s after the last
    monkeypatch.setattr(search_module.time, "perf_counter", lambda: float(next(ticks)))
    result = _search(data, plan=SearchPlan(folds=3, n_estimators=20, tune=5), budget_s=20)
    assert 1 <= len(result.trials) < 9 and result.skipped == 9 - len(result.trials)
    assert any("allowed" in note and "planned trials" in note for note in result.notes)


def test_a_budget_too_small_for_any_search_trains_the_linear_baseline(data):
    result = _search(data, plan=SearchPlan(families=("lightgbm", "random_forest"), folds=3), budget_s=0)
    assert result.model.family == "linear" and [t["family"] for t in result.trials] == ["linear"]
    assert "too small for any search" in result.notes[0] and "linear" in result.notes[0]
    assert np.isfinite(result.cv_score)


# -- time-ordered folds ------------------------------------------------------------------------------
def test_time_column_validates_each_fold_on_later_rows_only(data, monkeypatch):
    shuffled = data.sample(frac=1.0, random_state=1)  # time order is not row order
    fitted, validated = [], []
    prepare, encode = search_module.prepare, search_module.encode

    def spy_prepare(setup, X, y):
        fitted.append(X["day"].max())
        return prepare(setup, X, y)

    def spy_encode(prepared, X):
        validated.append(X["day"].min())
        return encode(prepared, X)

    monkeypatch.setattr(search_module, "prepare", spy_prepare)
    monkeypatch.setattr(search_module, "encode", spy_encode)
    result = _search(shuffled, plan=SearchPlan(families=("linear",), folds=3), time_column="day")
    assert all(last < first for last, first in zip(fitted[:3], validated[:3], strict=True))
    assert len(result.oof_target) == len(data) - len(data) // 4  # the first window is never validated
    assert np.isfinite(result.cv_score)


def test_time_column_must_be_a_column_without_gaps(data):
    with pytest.raises(ModelError, match="time_column 'when' is not a feature column"):
        _search(data, time_column="when")
    with pytest.raises(ModelError, match="time_column 'day' has 1 missing value"):
        _search(data.assign(day=data["day"].where(data.index != 5)), time_column="day")


# -- bad input -------------------------------------------------------------------------------------
def test_a_class_smaller_than_the_folds_reduces_them_and_says_so(data):
    small = pd.concat([data[data["y"] == "no"], data[data["y"] == "yes"].head(3)])
    result = _search(small, plan=SearchPlan(families=("linear",), folds=5))
    assert result.folds == 3
    assert result.notes == ["class 'yes' has only 3 training rows, so cross-validation uses 3 folds instead of 5"]


def test_a_class_of_one_row_is_named(data):
    tiny = pd.concat([data[data["y"] == "no"], data[data["y"] == "yes"].head(1)])
    with pytest.raises(ModelError, match="class 'yes' of target 'y' has 1 training row\\(s\\); cross-validation "
                                         "needs at least 2"):
        _search(tiny, plan=SearchPlan(families=("linear",), folds=3))


def test_only_missing_or_constant_features_are_refused(data):
    useless = pd.DataFrame({"empty": [None] * len(data), "same": 7, "y": data["y"]})
    with pytest.raises(ModelError, match="no usable feature: every column is missing or constant: "
                                         "'empty' \\(all missing\\), 'same' \\(constant 7\\)"):
        _search(useless)
    with pytest.raises(ModelError, match="no usable feature: the data holds only the target 'y'"):
        _search(data[["y"]])


def test_a_malformed_replay_is_refused(data):
    with pytest.raises(ModelError, match="replay trial 0 needs a family"):
        _search(data, replay=[{"family": "svm", "params": {}}])
    with pytest.raises(ModelError, match="replay must be the non-empty list"):
        _search(data, replay=[])
