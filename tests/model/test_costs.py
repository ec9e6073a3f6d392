"""Per-class costs for multiclass: the model predicts the class maximising p_k * cost_k.

The data is the 1988 Chilean plebiscite poll (pydataset's car/Chile, as in the benchmark suite): vote
A (abstain, 7% of rows), N, U or Y. Without costs the model never predicts the rare A; when missing
an A costs 8 times as much as missing any other vote, it finds A and the cost per row falls.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.model import SearchPlan, evaluate, search, split_holdout
from loopml.model._operating import class_costs, decide, miss_cost
from loopml.spec import CostsSpec, GoalSpec

CHILE = Path(__file__).parent / "chile.parquet"
GOAL = GoalSpec(metric="accuracy", at_least=0.4)
COSTS = CostsSpec(per_class={"A": 8})
PLAN = SearchPlan(families=("linear",), folds=3)


@pytest.fixture(scope="module")
def chile_split():
    return split_holdout(pd.read_parquet(CHILE), "vote", "multiclass", 0.25, seed=0)


@pytest.fixture(scope="module")
def plain(chile_split):
    return search(chile_split[0], target="vote", task="multiclass", goal=GOAL, plan=PLAN)


@pytest.fixture(scope="module")
def costed(chile_split):
    return search(chile_split[0], target="vote", task="multiclass", goal=GOAL, costs=COSTS, plan=PLAN)


def _recall(model, holdout: pd.DataFrame, label: str) -> float:
    predicted = model.predict(holdout.drop(columns=["vote"]))
    return float(np.mean(predicted[holdout["vote"].to_numpy() == label] == label))


def test_an_expensive_class_is_found_more_often_and_the_cost_per_row_falls(chile_split, plain, costed):
    _, holdout = chile_split
    assert _recall(costed.model, holdout, "A") > _recall(plain.model, holdout, "A") + 0.3
    with_costs = evaluate(costed.model, holdout, GOAL, costs=COSTS, n_boot=100).expected_cost
    without = evaluate(plain.model, holdout, GOAL, costs=COSTS, n_boot=100).expected_cost
    assert with_costs < 0.9 * without


def test_the_model_predicts_the_class_maximising_probability_times_cost(chile_split, costed):
    _, holdout = chile_split
    X = holdout.drop(columns=["vote"])
    P = costed.model.predict_proba(X)
    weights = np.array([8.0 if c == "A" else 1.0 for c in costed.model.classes])
    assert costed.model.class_costs == weights.tolist()
    assert np.array_equal(costed.model.predict(X), np.asarray(costed.model.classes)[(P * weights).argmax(axis=1)])


def test_the_holdout_evaluation_scores_the_decisions_the_model_serves(chile_split, costed):
    _, holdout = chile_split
    served = costed.model.predict(holdout.drop(columns=["vote"]))
    evaluation = evaluate(costed.model, holdout, GOAL, n_boot=100)
    assert evaluation.value == pytest.approx(float(np.mean(served == holdout["vote"].to_numpy())))
    costs = np.where(holdout["vote"].to_numpy() == "A", 8.0, 1.0)
    assert evaluation.expected_cost == pytest.approx(float(np.mean(costs * (served != holdout["vote"].to_numpy()))))


def test_the_operating_point_records_the_costs_and_the_out_of_fold_cost_per_row(costed):
    point = costed.operating_point
    assert point["class_costs"] == {"A": 8.0, "N": 1.0, "U": 1.0, "Y": 1.0}
    assert point["expected_cost_per_row"] < point["expected_cost_per_row_without_costs"]
    assert point["recall"]["A"] > 0.3


def test_a_model_without_costs_has_no_cost_to_report(chile_split, plain):
    assert plain.model.class_costs is None and "class_costs" not in plain.operating_point
    assert evaluate(plain.model, chile_split[1], GOAL, n_boot=100).expected_cost is None


def test_a_class_the_target_does_not_hold_is_a_model_error(chile_split):
    with pytest.raises(ModelError, match="per-class costs name class\\(es\\) Z that the target does not hold; "
                                         "classes: A, N, U, Y"):
        search(chile_split[0], target="vote", task="multiclass", goal=GOAL, plan=PLAN,
               costs=CostsSpec(per_class={"Z": 3}))


def test_binary_costs_for_a_multiclass_search_are_refused(chile_split):
    with pytest.raises(ModelError, match="costs for task 'multiclass' need per_class \\(\\{CLASS: COST\\}\\); "
                                         "found false_positive, false_negative"):
        search(chile_split[0], target="vote", task="multiclass", goal=GOAL, plan=PLAN,
               costs=CostsSpec(false_positive=1, false_negative=5))


def test_per_class_costs_for_a_binary_search_are_refused(benefits_split):
    with pytest.raises(ModelError, match="costs for task 'binary' need false_positive and false_negative; "
                                         "found per_class"):
        search(benefits_split[0], target="ui", task="binary", goal=GoalSpec(metric="roc_auc", at_least=0.5),
               plan=PLAN, costs=CostsSpec(per_class={"yes": 3}))


def test_numeric_class_names_match_their_number():
    assert class_costs([0, 1, 2.0], {"2": 5, 1.0: 3}) == [1.0, 3.0, 5.0]


def test_ties_and_zero_rows_decide_plainly():
    assert decide(np.array([[0.4, 0.4, 0.2]]), [1.0, 1.0, 1.0]).tolist() == [0]
    assert miss_cost(np.array([], dtype=int), np.array([], dtype=int), [1.0, 2.0]) == 0.0


def test_binary_costs_give_the_expected_cost_of_the_threshold_decisions(benefits_split):
    train, holdout = benefits_split
    costs = CostsSpec(false_positive=5, false_negative=120)
    model = search(train, target="ui", task="binary", goal=GoalSpec(metric="roc_auc", at_least=0.5), costs=costs,
                   positive="yes", plan=PLAN).model
    predicted = model.predict(holdout.drop(columns=["ui"]))
    truth = holdout["ui"].to_numpy()
    fp, fn = np.sum((predicted == "yes") & (truth == "no")), np.sum((predicted == "no") & (truth == "yes"))
    evaluation = evaluate(model, holdout, GoalSpec(metric="roc_auc", at_least=0.5), costs=costs, n_boot=100)
    assert evaluation.expected_cost == pytest.approx((5 * fp + 120 * fn) / len(holdout))
