"""Which threshold-free metric ranks trials: a multiclass AUC goal ranks by its own one-vs-rest AUC."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from loopml.model import SearchPlan, search
from loopml.model._ensemble import SELECTION, greedy, selection_metric, selection_score
from loopml.spec import GoalSpec


@pytest.fixture(scope="module")
def three_classes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300)
    scores = rng.dirichlet(np.ones(3), size=300) + 0.4 * np.eye(3)[y]
    return y, scores / scores.sum(axis=1, keepdims=True)


def test_a_multiclass_auc_goal_ranks_by_its_own_auc_and_others_by_log_loss():
    assert selection_metric("roc_auc_ovr", "multiclass") == "roc_auc_ovr" and SELECTION["roc_auc_ovr"]
    assert selection_metric("accuracy", "multiclass") == "log_loss"


def test_one_vs_rest_auc_is_scikit_learns_macro_average(three_classes):
    y, scores = three_classes
    expected = roc_auc_score(y, scores, multi_class="ovr", average="macro")
    assert selection_score("roc_auc_ovr", y, scores, "multiclass") == pytest.approx(expected, abs=1e-12)


def test_one_vs_rest_auc_averages_the_classes_present_only(three_classes):
    y, scores = three_classes
    present = y != 2
    expected = np.mean([roc_auc_score(y[present] == c, scores[present, c]) for c in (0, 1)])
    assert selection_score("roc_auc_ovr", y[present], scores[present], "multiclass") == pytest.approx(expected)
    assert math.isnan(selection_score("roc_auc_ovr", np.zeros(5, dtype=int), scores[:5], "multiclass"))


def test_greedy_selection_maximises_one_vs_rest_auc(three_classes):
    y, scores = three_classes
    noisy = np.random.default_rng(1).dirichlet(np.ones(3), size=len(y))
    counts, value = greedy([noisy, scores], y, "roc_auc_ovr", task="multiclass", rounds=5)
    assert counts[1] > counts[0] and value >= selection_score("roc_auc_ovr", y, scores, "multiclass")


def test_a_search_for_one_vs_rest_auc_ranks_its_trials_by_it(iris):
    goal = GoalSpec(metric="roc_auc_ovr", at_least=0.9)
    result = search(iris, target="target", task="multiclass", goal=goal,
                    plan=SearchPlan(families=("linear", "lightgbm"), folds=3, n_estimators=20, trials=3))
    assert result.selection_metric == "roc_auc_ovr"
    scores = [row["score"] for row in result.leaderboard()]
    assert scores == sorted(scores, reverse=True) and all(0.5 < s <= 1.0 for s in scores)
