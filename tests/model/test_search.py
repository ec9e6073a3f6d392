import math

import numpy as np
import pandas as pd
import pytest

from loopml.data.cleaner import Cleaner
from loopml.errors import ModelError
from loopml.model import SearchPlan, TrainedModel, evaluate, search, split_holdout
from loopml.spec import CleanSpec, CostsSpec, GoalSpec

AUC = GoalSpec(metric="roc_auc", at_least=0.6)
FAST = SearchPlan(n_estimators=100)


def test_split_holdout_is_deterministic_and_stratified(benefits):
    train, holdout = split_holdout(benefits, "ui", "binary", 0.2, seed=3)
    again, _ = split_holdout(benefits, "ui", "binary", 0.2, seed=3)
    other, _ = split_holdout(benefits, "ui", "binary", 0.2, seed=4)
    assert train.index.equals(again.index) and not train.index.equals(other.index)
    assert len(holdout) == pytest.approx(0.2 * len(benefits), abs=1)
    share = (benefits["ui"] == "yes").mean()
    assert (holdout["ui"] == "yes").mean() == pytest.approx(share, abs=0.005)


def test_split_holdout_names_a_single_row_class():
    df = pd.DataFrame({"x": range(10), "y": ["a"] * 9 + ["b"]})
    with pytest.raises(ModelError, match="class 'b' of target 'y' has 1 row"):
        split_holdout(df, "y", "binary", 0.2, seed=0)


def test_operating_point_threshold_meets_the_precision_constraint_out_of_fold(operating_result):
    point = operating_result.operating_point
    assert point["constraint_met"] is True
    assert point["precision"] >= 0.6
    assert point["recall"] == operating_result.cv_score  # the goal metric at that threshold
    assert point["threshold"] == operating_result.model.threshold


def test_a_stricter_constraint_raises_the_threshold(benefits_split):
    train, _ = benefits_split
    plan = SearchPlan(families=("linear",), folds=3)

    def run(precision: float):
        goal = GoalSpec.model_validate({"metric": "recall", "at_least": 0.8, "with": {"precision": precision}})
        return search(train, target="ui", task="binary", goal=goal, positive="yes", plan=plan)

    loose, strict = run(0.6), run(0.75)
    assert strict.operating_point["precision"] >= 0.75
    assert strict.model.threshold > loose.model.threshold


def test_costlier_false_negatives_lower_the_threshold(benefits_split):
    train, _ = benefits_split
    plan = SearchPlan(families=("linear",), folds=3)

    def threshold(fn_cost: float) -> float:
        costs = CostsSpec(false_positive=5, false_negative=fn_cost)
        result = search(train, target="ui", task="binary", goal=AUC, costs=costs, positive="yes", plan=plan)
        return result.model.threshold

    assert threshold(50) < threshold(5)


def test_every_trial_is_reported_and_the_leaderboard_ranks_them(operating_result):
    families = [c.family for c in operating_result.candidates]
    assert families == ["linear", "lightgbm", "random_forest", "extra_trees"]  # the portfolio, simplest first
    assert [t["family"] for t in operating_result.trials] == families
    board = operating_result.leaderboard()
    assert [r["rank"] for r in board] == list(range(1, len(board) + 1))
    scores = [r["score"] for r in board]
    assert scores == sorted(scores, reverse=True)  # roc_auc: greater is better, best first
    assert operating_result.selection_metric == "roc_auc"
    assert {"family", "params", "score", "cv_score", "seconds"} <= set(board[0])
    assert isinstance(operating_result.model, TrainedModel)


def test_the_chosen_model_is_the_best_single_trial_or_a_better_ensemble(operating_result):
    record = operating_result.ensemble
    best_single = max(c.score for c in operating_result.candidates)
    assert record["single_score"] == best_single and "ensemble_score" in record
    if operating_result.model.family == "ensemble":
        assert record["used"] and record["ensemble_score"] > best_single
    else:
        assert not record["used"] and operating_result.model.family == record["single"]["family"]


def test_learning_curve_covers_a_quarter_half_and_all_rows(operating_result, benefits_split):
    train, _ = benefits_split
    rows = [p["rows"] for p in operating_result.learning_curve]
    assert rows == [round(0.25 * len(train)), round(0.5 * len(train)), len(train)]


def test_multiclass_runs_end_to_end_with_original_labels(iris):
    train, holdout = split_holdout(iris, "target", "multiclass", 0.2, seed=0)
    goal = GoalSpec(metric="accuracy", at_least=0.9)
    result = search(train, target="target", task="multiclass", goal=goal, plan=SearchPlan(folds=3, n_estimators=50))
    assert result.model.classes == ["setosa", "versicolor", "virginica"]
    assert set(result.model.predict(holdout)) <= {"setosa", "versicolor", "virginica"}
    assert result.model.predict_proba(holdout).shape == (len(holdout), 3)
    assert evaluate(result.model, holdout, goal).met


def test_regression_runs_end_to_end(diabetes):
    train, holdout = split_holdout(diabetes, "target", "regression", 0.2, seed=0)
    goal = GoalSpec(metric="rmse", at_most=70)
    result = search(train, target="target", task="regression", goal=goal, plan=SearchPlan(n_estimators=50))
    ev = evaluate(result.model, holdout, goal)
    assert result.model.threshold is None and result.operating_point == {"threshold": None}
    assert result.model.calibration is None
    assert ev.met and ev.ci_low <= ev.value <= ev.ci_high and ev.metrics["r2"] > 0.2


def test_the_refit_on_all_rows_boosts_longer_than_the_folds_did(diabetes):
    # 4 folds fit on 3/4 of the rows each: the refit on all of them boosts sqrt(4/3) as many rounds.
    goal = GoalSpec(metric="rmse", at_most=70)
    result = search(diabetes, target="target", task="regression", goal=goal,
                    plan=SearchPlan(families=("lightgbm",), folds=4, trials=1, ensemble=False))
    folds_rounds = result.candidates[0].params["n_estimators"]
    assert result.model.params["n_estimators"] == round(folds_rounds / math.sqrt(3 / 4))


def test_positive_defaults_to_the_minority_class(benefits_split):
    train, _ = benefits_split
    plan = SearchPlan(families=("linear",), folds=2)
    model = search(train, target="ui", task="binary", goal=AUC, plan=plan).model
    assert model.positive == "no" and model.classes == ["yes", "no"]


def test_positive_matches_labels_as_strings(benefits_split):
    train, _ = benefits_split
    flagged = train.assign(ui=train["ui"] == "yes")  # a bool target, positive given as text
    plan = SearchPlan(families=("linear",), folds=2)
    model = search(flagged, target="ui", task="binary", goal=AUC, positive="True", plan=plan).model
    assert model.classes == [False, True] and model.positive is True
    assert TrainedModel.from_bytes(model.to_bytes()).classes == [False, True]


def test_unknown_positive_is_named(benefits_split):
    train, _ = benefits_split
    with pytest.raises(ModelError, match="positive class 'maybe' is not a value of 'ui'"):
        search(train, target="ui", task="binary", goal=AUC, positive="maybe", plan=SearchPlan())


def test_goal_metric_must_fit_the_task(diabetes):
    with pytest.raises(ModelError, match="goal metric 'roc_auc' does not fit task 'regression'"):
        search(diabetes, target="target", task="regression", goal=AUC, plan=SearchPlan())


def test_same_seed_gives_the_same_model(iris):
    goal = GoalSpec(metric="log_loss", at_most=0.3)
    plan = SearchPlan(families=("lightgbm",), folds=3, n_estimators=30)
    first, second = (search(iris, target="target", task="multiclass", goal=goal, plan=plan) for _ in range(2))
    assert first.model.to_bytes() == second.model.to_bytes()


def test_plan_widens_families_configurations_and_trials():
    plan = SearchPlan(families=("linear", "lightgbm"), tune=4)
    wider = plan.widen()
    assert wider.families == ("linear", "lightgbm", "random_forest", "extra_trees")
    assert [plan.lgbm_configs, wider.lgbm_configs, wider.widen().lgbm_configs] == [1, 4, 8]
    assert wider.tune > plan.tune and SearchPlan(trials=6).widen().trials == 12
    assert plan.can_widen and wider.can_widen and not wider.widen().can_widen


def test_plan_describes_itself_in_one_line():
    assert SearchPlan().describe() == ("linear, LightGBM, random forest, extra trees + up to 200 Optuna trials in the "
                                       "time budget, greedy ensemble, 5-fold cross-validation, seed 0")
    assert SearchPlan(families=("linear",), trials=1, ensemble=False, n_estimators=20).describe() == (
        "1 trial: linear, then Optuna, 5-fold cross-validation, at most 20 trees, seed 0")
    assert "\n" not in SearchPlan(lgbm_configs=8, trials=40).describe()


def test_plan_refuses_unknown_families():
    with pytest.raises(ModelError, match="families must be a non-empty subset"):
        SearchPlan(families=("xgboost",))
    with pytest.raises(ModelError, match="trials must be a positive number"):
        SearchPlan(trials=0)


def test_search_result_is_json_ready(operating_result):
    import json

    d = json.loads(json.dumps(operating_result.to_dict()))
    assert d["metric"] == "recall" and len(d["candidates"]) == len(d["trials"]) == 4
    assert np.isfinite(d["cv_score"]) and d["leaderboard"][0]["rank"] == 1
    assert d["operating_point"]["calibration"]["method"] in ("none", "sigmoid", "isotonic")


def test_an_unreachable_constraint_is_recorded_as_not_met(benefits_split):
    train, _ = benefits_split
    goal = GoalSpec.model_validate({"metric": "f1", "at_least": 0.9, "with": {"precision": 0.95, "recall": 0.95}})
    result = search(train, target="ui", task="binary", goal=goal, positive="yes",
                    plan=SearchPlan(families=("linear",), folds=3))
    assert result.operating_point["constraint_met"] is False
    assert result.candidates[0].constraint_met is False
    point = result.operating_point  # the closest the data gets: the smaller shortfall of the two
    assert point["precision"] < 0.95 or point["recall"] < 0.95


def test_the_cleaner_learns_from_each_models_training_rows_only(benefits_split, monkeypatch):
    train, holdout = benefits_split
    seen: list[pd.Index] = []
    fit = Cleaner.fit

    def spy(self, X, plan=None):
        seen.append(X.index)
        return fit(self, X, plan)

    monkeypatch.setattr(Cleaner, "fit", spy)
    result = search(train, target="ui", task="binary", goal=AUC, positive="yes",
                    plan=SearchPlan(families=("linear",), folds=3), clean=CleanSpec(outliers="clip"))
    assert not any(rows.isin(holdout.index).any() for rows in seen)
    folds, refit = seen[:3], seen[3]  # 3 cross-validation fits, then the refit (learning curve after)
    held_out = [train.index.difference(rows) for rows in folds]
    assert sum(len(v) for v in held_out) == len(train) and held_out[0].intersection(held_out[1]).empty
    assert refit.equals(train.index) and result.model.cleaner.rows == len(train)
    assert len(result.oof_scores) == len(train)
    assert result.model.params["imbalance"] == "none"
    assert result.to_dict()["cleaning"] == result.model.cleaner.describe()


def test_without_a_clean_spec_nothing_is_clipped(benefits_split):
    train, _ = benefits_split
    result = search(train, target="ui", task="binary", goal=AUC, positive="yes",
                    plan=SearchPlan(families=("linear",), folds=3))
    assert result.model.cleaner is None and result.imbalance["policy"] == "auto"
