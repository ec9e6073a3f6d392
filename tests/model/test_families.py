"""The families' search spaces and warm starts: where tuning starts, and what it may change."""

import optuna
import pytest

from loopml.model import SearchPlan, search
from loopml.model._families import FAMILIES, Setup, _space, as_prior, default_params, suggest, warm_starts
from loopml.spec import GoalSpec

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
