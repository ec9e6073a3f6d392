"""Class imbalance in the search: weights or resampling of each model's training rows, never of validation rows."""

import importlib

import numpy as np
import pandas as pd
import pytest

from loopml.model import SearchPlan, evaluate, search, split_holdout
from loopml.spec import CleanSpec, GoalSpec

families_module = importlib.import_module("loopml.model._families")

F1 = GoalSpec(metric="f1", at_least=0.3)
LINEAR = SearchPlan(families=("linear",), folds=3)


@pytest.fixture(scope="module")
def rare_split(benefits):
    """Benefits with the 'no' class cut to 10% of its rows: about 4% of rows, like HMDA denials."""
    no = benefits[benefits["ui"] == "no"].sample(frac=0.1, random_state=0)
    rare = pd.concat([benefits[benefits["ui"] == "yes"], no]).sort_index()
    return split_holdout(rare, "ui", "binary", 0.2, seed=0)


def _run(train, imbalance, plan=LINEAR, goal=F1):
    return search(train, target="ui", task="binary", goal=goal, positive="no", plan=plan,
                  clean=CleanSpec(imbalance=imbalance))


def _spy_linear(monkeypatch) -> list[np.ndarray]:
    """Class counts of the rows each linear fit trains on."""
    counts: list[np.ndarray] = []
    fit = families_module._fit_linear

    def spy(setup, Z, y, weights, params):
        counts.append(np.bincount(y, minlength=2))
        assert len(Z) == len(y)
        return fit(setup, Z, y, weights, params)

    monkeypatch.setattr(families_module, "_fit_linear", spy)
    return counts


@pytest.mark.parametrize("how", ["undersample", "oversample"])
def test_resampling_balances_every_fit_but_no_validation_or_holdout_row(rare_split, how, monkeypatch):
    train, holdout = rare_split
    before = holdout.copy()
    counts = _spy_linear(monkeypatch)
    result = _run(train, how)
    real = np.bincount((train["ui"] == "no").astype(int))
    assert all(c[0] == c[1] for c in counts)  # every fold's and the refit's training rows are balanced
    target = min(real) if how == "undersample" else max(real)
    assert result.imbalance["fit_class_counts"] == {"yes": target, "no": target}
    assert result.imbalance["train_class_counts"] == {"yes": int(real[0]), "no": int(real[1])}
    assert counts[3].tolist() == [target, target]  # the refit on all of train (after 3 folds)
    assert len(result.oof_scores) == len(train) and len(result.oof_target) == len(train)
    assert np.bincount(result.oof_target).tolist() == real.tolist()  # scored on the real class balance
    assert result.model.params["imbalance"] == how and result.imbalance["applied"] == how
    ev = evaluate(result.model, holdout, F1)
    assert ev.rows == len(holdout) and holdout.equals(before)


def test_weights_and_none_choose_different_operating_points(rare_split):
    train, _ = rare_split
    none, weights = _run(train, "none"), _run(train, "weights")
    assert none.model.params["class_weight"] is None and weights.model.params["class_weight"] == "balanced"
    assert weights.model.threshold > none.model.threshold  # weighted scores sit higher for the rare class
    assert not np.allclose(weights.oof_scores, none.oof_scores)
    assert (none.imbalance["fit_class_counts"], weights.imbalance["applied"]) == (none.imbalance["train_class_counts"],
                                                                                  "weights")


def test_auto_weights_only_a_rare_class(rare_split, benefits_split):
    rare = _run(rare_split[0], "auto")
    common = _run(benefits_split[0], "auto")
    assert rare.imbalance["minority_share"] < 0.2 and rare.imbalance["applied"] == "weights"
    assert common.imbalance["minority_share"] > 0.2 and common.imbalance["applied"] == "none"
    assert common.model.params["imbalance"] == "none"


def test_regression_ignores_imbalance(diabetes):
    result = search(diabetes, target="target", task="regression", goal=GoalSpec(metric="rmse", at_most=70),
                    plan=LINEAR, clean=CleanSpec(imbalance="undersample"))
    assert result.imbalance == {"policy": "undersample", "applied": "none"}
    assert "imbalance" not in result.model.params and len(result.oof_scores) == len(diabetes)
