import json
import time
from dataclasses import replace

import pytest

from loopml.errors import ModelError
from loopml.model import SearchPlan, diagnose, evaluate, predict_latency_ms, search, split_holdout
from loopml.spec import GoalSpec


@pytest.fixture(scope="module")
def diabetes_split(diabetes):
    return split_holdout(diabetes, "target", "regression", 0.2, seed=0)


@pytest.fixture(scope="module")
def diabetes_result(diabetes_split):
    train, _ = diabetes_split
    return search(train, target="target", task="regression", goal=GoalSpec(metric="r2", at_least=0.5),
                  plan=SearchPlan(n_estimators=50))


def test_holdout_recall_has_a_confidence_interval_around_it(operating_result, benefits_split, operating_goal):
    _, holdout = benefits_split
    ev = evaluate(operating_result.model, holdout, operating_goal)
    assert ev.metric == "recall" and ev.rows == len(holdout)
    assert ev.ci_low <= ev.value <= ev.ci_high
    assert ev.constraints["precision"]["required"] == 0.6
    assert ev.met == (ev.value >= 0.8 and ev.constraints["precision"]["met"])


def test_evaluation_reports_every_metric_of_the_task(operating_result, benefits_split, operating_goal):
    _, holdout = benefits_split
    ev = evaluate(operating_result.model, holdout, operating_goal, n_boot=100)
    assert set(ev.metrics) >= {"roc_auc", "precision", "recall", "f1", "log_loss", "accuracy"}
    assert json.loads(json.dumps(ev.to_dict()))["metric"] == "recall"


def test_bootstrap_of_a_thousand_rows_takes_under_a_second(operating_result, benefits_split, operating_goal):
    _, holdout = benefits_split
    started = time.perf_counter()
    evaluate(operating_result.model, holdout, operating_goal, n_boot=1000)
    assert time.perf_counter() - started < 1.0


def test_unreachable_goal_is_diagnosed_as_infeasible(benefits, benefits_split):
    train, holdout = benefits_split
    goal = GoalSpec(metric="roc_auc", at_least=0.999)
    plan = SearchPlan(n_estimators=100)
    result = search(train, target="ui", task="binary", goal=goal, positive="yes", plan=plan)
    ev = evaluate(result.model, holdout, goal)
    d = diagnose(result, ev, goal, plan=plan, rows_available=len(benefits))
    assert (d.cause, d.next_stage) == ("infeasible", "business")
    assert d.reachable["best"] < 0.999
    assert "the best roc_auc seen is 0.6" in d.explanation and "revise the goal" in d.explanation
    assert json.loads(json.dumps(d.to_dict()))["cause"] == "infeasible"


def test_small_gap_with_a_flat_curve_goes_back_to_model(diabetes_result, diabetes_split, diabetes):
    _, holdout = diabetes_split
    value = evaluate(diabetes_result.model, holdout, GoalSpec(metric="r2", at_least=0.0)).value
    goal = GoalSpec(metric="r2", at_least=round(value + 0.01, 3))
    ev = evaluate(diabetes_result.model, holdout, goal)
    d = diagnose(diabetes_result, ev, goal, plan=SearchPlan(), rows_available=len(diabetes))
    assert (d.cause, d.next_stage) == ("model_capacity", "model")
    assert d.evidence["gap"] == pytest.approx(goal.at_least - value)


def test_widest_plan_sends_a_small_gap_to_business(diabetes_result, diabetes_split, diabetes):
    _, holdout = diabetes_split
    value = evaluate(diabetes_result.model, holdout, GoalSpec(metric="r2", at_least=0.0)).value
    goal = GoalSpec(metric="r2", at_least=round(value + 0.01, 3))
    ev = evaluate(diabetes_result.model, holdout, goal)
    d = diagnose(diabetes_result, ev, goal, plan=SearchPlan(lgbm_configs=8), rows_available=len(diabetes))
    assert d.cause == "infeasible" and "already at its widest" in d.explanation


@pytest.fixture(scope="module")
def constrained(benefits_split):
    train, holdout = benefits_split
    goal = GoalSpec.model_validate({"metric": "recall", "at_least": 0.8, "with": {"precision": 0.8}})
    plan = SearchPlan(n_estimators=100)
    result = search(train, target="ui", task="binary", goal=goal, positive="yes", plan=plan)
    return result, evaluate(result.model, holdout, goal), goal, plan


def test_rising_curve_that_reaches_the_goal_within_reach_asks_for_more_data(constrained):
    result, ev, goal, plan = constrained
    curve = [{"rows": 1000, "score": 0.40}, {"rows": 2000, "score": 0.55}, {"rows": 4000, "score": 0.70}]
    d = diagnose(replace(result, learning_curve=curve), ev, goal, plan=plan, rows_available=4877)
    assert (d.cause, d.next_stage) == ("more_data", "data")
    assert d.evidence["rows_needed"] == pytest.approx(6350, rel=0.05)
    assert "extrapolated, the goal needs about" in d.explanation


def test_rising_curve_that_needs_far_more_rows_is_infeasible(constrained):
    result, ev, goal, plan = constrained
    curve = [{"rows": 1000, "score": 0.20}, {"rows": 2000, "score": 0.30}, {"rows": 4000, "score": 0.45}]
    d = diagnose(replace(result, learning_curve=curve), ev, goal, plan=plan, rows_available=4877)
    assert (d.cause, d.next_stage) == ("infeasible", "business")
    assert d.evidence["rows_needed"] > 4 * d.evidence["rows_used"]
    # What the data allows at the operating point, for the trade-off a user may accept instead.
    assert d.reachable["at_constraints"] < 0.8 and d.reachable["trade_off"]["precision"] < 0.8


def test_a_met_goal_has_nothing_to_diagnose(operating_result, benefits_split, operating_goal):
    _, holdout = benefits_split
    ev = evaluate(operating_result.model, holdout, operating_goal, n_boot=50)
    assert ev.met
    with pytest.raises(ModelError, match="the goal is met on the holdout; there is nothing to diagnose"):
        diagnose(operating_result, ev, operating_goal, plan=SearchPlan(), rows_available=4877)


def test_labels_the_model_never_saw_are_named(iris):
    train = iris[iris["target"] != "virginica"].assign(target=lambda d: d["target"].where(d.index % 3 > 0, "other"))
    goal = GoalSpec(metric="accuracy", at_least=0.5)
    result = search(train, target="target", task="multiclass", goal=goal,
                    plan=SearchPlan(families=("linear",), folds=3))
    with pytest.raises(ModelError, match="label\\(s\\) \\['virginica'\\] the model never saw"):
        evaluate(result.model, iris, goal)


def test_single_row_latency_is_measured(operating_result, benefits_split):
    _, holdout = benefits_split
    latency = predict_latency_ms(operating_result.model, holdout.drop(columns=["ui"]), n=50)
    assert 0 < latency["p50"] <= latency["p99"] < 100


def test_goal_gated_on_the_ci_bound_needs_the_lower_end_to_meet_it(diabetes_result, diabetes_split):
    _, holdout = diabetes_split
    value = evaluate(diabetes_result.model, holdout, GoalSpec(metric="r2", at_least=0.0), n_boot=200).value
    point = evaluate(diabetes_result.model, holdout, GoalSpec(metric="r2", at_least=round(value - 0.01, 3)))
    bound = evaluate(diabetes_result.model, holdout,
                     GoalSpec(metric="r2", at_least=round(value - 0.01, 3), gate_on="ci_bound"))
    assert point.met and point.gate["text"] == f"point estimate {value:.3f} >= {round(value - 0.01, 3):g}"
    assert not bound.met and bound.ci_low < value - 0.01
    assert bound.gate_value == bound.ci_low and bound.gate["text"].startswith(f"lower 95% bound {bound.ci_low:.3f} < ")


def test_an_at_most_goal_gated_on_the_ci_bound_judges_the_upper_end(diabetes_result, diabetes_split):
    _, holdout = diabetes_split
    value = evaluate(diabetes_result.model, holdout, GoalSpec(metric="rmse", at_most=1e6), n_boot=200).value
    goal = GoalSpec(metric="rmse", at_most=round(value + 1, 1), gate_on="ci_bound")
    ev = evaluate(diabetes_result.model, holdout, goal)
    assert not ev.met and ev.value <= goal.at_most < ev.ci_high
    assert ev.gate["text"] == f"upper 95% bound {ev.ci_high:.3f} > {goal.at_most:g}"


def test_operating_point_constraints_keep_their_point_value_under_a_ci_gate(operating_result, benefits_split):
    _, holdout = benefits_split
    goal = GoalSpec.model_validate({"metric": "recall", "at_least": 0.5, "with": {"precision": 0.6},
                                    "gate_on": "ci_bound"})
    ev = evaluate(operating_result.model, holdout, goal, n_boot=200)
    assert ev.gate["value"] == ev.ci_low and ev.constraints["precision"]["met"] == (ev.metrics["precision"] >= 0.6)


def test_a_goal_missed_on_its_bound_is_diagnosed_by_the_bound_s_gap(diabetes_result, diabetes_split, diabetes):
    _, holdout = diabetes_split
    value = evaluate(diabetes_result.model, holdout, GoalSpec(metric="r2", at_least=0.0), n_boot=200).value
    goal = GoalSpec(metric="r2", at_least=round(value - 0.01, 3), gate_on="ci_bound")
    ev = evaluate(diabetes_result.model, holdout, goal)
    d = diagnose(diabetes_result, ev, goal, plan=SearchPlan(), rows_available=len(diabetes))
    assert d.evidence["gap"] == pytest.approx(goal.at_least - ev.ci_low)


def test_an_unknown_gate_is_refused(diabetes_result, diabetes_split):
    _, holdout = diabetes_split
    goal = GoalSpec(metric="r2", at_least=0.1).model_copy(update={"gate_on": "median"})
    with pytest.raises(ModelError, match="goal.gate_on: found 'median'; allowed: 'point', 'ci_bound'"):
        evaluate(diabetes_result.model, holdout, goal, n_boot=50)
