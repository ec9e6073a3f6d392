"""The families' search spaces and warm starts, and LightGBM boosted on all folds at once."""

import importlib
from dataclasses import replace

import lightgbm
import numpy as np
import optuna
import pytest
from sklearn.model_selection import StratifiedKFold

from loopml.model import SearchPlan, search
from loopml.model._ensemble import selection_score
from loopml.model._families import (
    FAMILIES,
    Setup,
    _space,
    as_prior,
    cross_fit_lgbm,
    default_params,
    encode,
    fit_estimator,
    prepare,
    suggest,
    warm_starts,
)
from loopml.spec import GoalSpec

families_module = importlib.import_module("loopml.model._families")

AUC = GoalSpec(metric="roc_auc", at_least=0.6)
SETUP = Setup(task="binary", k=2, seed=0, goal=AUC, costs=None, classes=["no", "yes"], positive="yes", target="ui",
              imbalance="none")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_warm_start_lies_inside_its_family_search_space(family):
    space = _space(SETUP, family)
    for values in warm_starts(family):
        assert set(values) == set(space)
        assert all(space[name].low <= value <= space[name].high for name, value in values.items())


def test_warm_starts_are_copies_a_caller_cannot_change():
    warm_starts("lightgbm")[0]["num_leaves"] = 999
    assert warm_starts("lightgbm")[0]["num_leaves"] == 7


def test_forest_tuning_sizes_the_trees_and_keeps_the_defaults_it_does_not_tune():
    trial = optuna.trial.FixedTrial({"max_features": 0.3, "min_samples_leaf": 5, "max_leaf_nodes": 64})
    params = suggest(SETUP, "random_forest", trial)
    assert params == {**default_params(SETUP, "random_forest"), "max_features": 0.3, "min_samples_leaf": 5,
                      "max_leaf_nodes": 64}
    assert as_prior(SETUP, "random_forest", params) == {"max_features": 0.3, "min_samples_leaf": 5,
                                                        "max_leaf_nodes": 64}


def test_tuning_tries_the_warm_start_before_sampling(benefits):
    sample = benefits.sample(600, random_state=0)
    result = search(sample, target="ui", task="binary", goal=AUC, positive="yes",
                    plan=SearchPlan(families=("random_forest",), folds=3, n_estimators=20, trials=3, ensemble=False))
    assert [t["source"] for t in result.trials] == ["portfolio", "optuna", "optuna"]
    first = result.trials[1]["params"]
    assert {k: first[k] for k in warm_starts("random_forest")[0]} == warm_starts("random_forest")[0]
    assert result.trials[2]["params"] != first  # then TPE samples


def test_small_trees_beat_the_default_forest_on_a_weak_signal(benefits):
    """The benefits survey (AUC about 0.66): the forest warm start ranks better out of fold than fully grown trees."""
    default = default_params(SETUP, "random_forest")
    small = {**default, **warm_starts("random_forest")[0]}
    result = search(benefits, target="ui", task="binary", goal=AUC, positive="yes",
                    plan=SearchPlan(folds=3, ensemble=False),
                    replay=[{"family": "random_forest", "params": default},
                            {"family": "random_forest", "params": small}])
    grown, pruned = (t["score"] for t in result.trials)
    assert pruned > grown + 0.005


# -- LightGBM boosted on all folds at once -------------------------------------------------------------
def _folds(frame, setup, n_folds=3):
    y = (frame["ui"] == "yes").to_numpy().astype(int)
    X = frame.drop(columns=["ui"])
    out = []
    for fit, val in StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=0).split(X, y):
        prepared = prepare(setup, X.iloc[fit], y[fit])
        out.append((prepared, encode(prepared, X.iloc[val])["tree"], y[val]))
    return out


def test_boosting_stops_where_the_pooled_out_of_fold_auc_is_best(benefits):
    folds = _folds(benefits.sample(900, random_state=1), SETUP)
    params = {"learning_rate": 0.3, "num_leaves": 63, "min_data_in_leaf": 5, "n_estimators": 40}  # overfits fast
    scores, best = cross_fit_lgbm(SETUP, params, folds, "roc_auc")
    assert 5 <= best < 40
    boosters = [lightgbm.Booster(model_str=fit_estimator(SETUP, "lightgbm", params, prepared, early_stop=False)[0]
                                 ["booster"]) for prepared, _, _ in folds]
    y = np.concatenate([y_val for _, _, y_val in folds])

    def pooled(rounds):
        return selection_score("roc_auc", y, np.concatenate([b.predict(Z, num_iteration=rounds)
                                                             for b, (_, Z, _) in zip(boosters, folds, strict=True)]),
                               "binary")

    checked = list(range(5, 41, 5))
    assert best == checked[int(np.argmax([pooled(r) for r in checked]))]
    for b, (_, Z, _), part in zip(boosters, folds, scores, strict=True):
        assert np.allclose(part, b.predict(Z, num_iteration=best))


def test_boosting_fits_resampled_rows_and_stops_on_real_ones(benefits, monkeypatch):
    setup = replace(SETUP, imbalance="undersample")
    fitted: list[np.ndarray] = []
    real = families_module._lgb_train_set

    def spy(setup, prepared):
        dataset = real(setup, prepared)
        fitted.append(np.bincount(np.asarray(dataset.get_label(), dtype=int)))
        return dataset

    monkeypatch.setattr(families_module, "_lgb_train_set", spy)
    folds = _folds(benefits.sample(900, random_state=1), setup)
    cross_fit_lgbm(setup, {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20, "n_estimators": 20},
                   folds, "roc_auc")
    assert len(fitted) == 3 and all(counts[0] == counts[1] for counts in fitted)
    assert all(np.bincount(y_val)[1] > 1.5 * np.bincount(y_val)[0] for _, _, y_val in folds)  # 68% 'yes'
