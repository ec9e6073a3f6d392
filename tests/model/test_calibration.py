"""Calibration chosen on out-of-fold scores by cross-fitted log loss; the threshold chosen after it."""

import json

import numpy as np
import pandas as pd
import pytest

from loopml.model import SearchPlan, TrainedModel, search
from loopml.model._calibration import apply, choose, fit, log_loss
from loopml.model._operating import choose_threshold
from loopml.spec import CleanSpec, GoalSpec


def test_miscalibrated_scores_are_calibrated_and_the_choice_is_recorded():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=3000)
    y = (rng.uniform(size=3000) < p**3).astype(int)  # the scores overstate the chance of a positive
    cal, record = choose(y, p, task="binary", seed=0)
    assert record["method"] in ("sigmoid", "isotonic") and cal["method"] == record["method"]
    assert set(record["log_loss"]) == {"none", "sigmoid", "isotonic"}
    assert record["log_loss"][record["method"]] == min(record["log_loss"].values())
    assert log_loss(y, apply(cal, p, "binary"), "binary") < log_loss(y, p, "binary")


def test_calibrated_scores_are_left_alone():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, size=400)
    y = (rng.uniform(size=400) < p).astype(int)
    cal, record = choose(y, p, task="binary", seed=0)
    # Fitting a calibrator on half the rows only adds noise to already calibrated scores.
    assert record["log_loss"]["isotonic"] > record["log_loss"]["none"]
    assert (cal is None) == (record["method"] == "none")


def test_sigmoid_and_isotonic_keep_the_order_of_scores():
    p = np.linspace(0.01, 0.99, 50)
    y = (p > 0.6).astype(int)
    for method in ("sigmoid", "isotonic"):
        out = apply(fit(method, y, p, "binary"), p, "binary")
        assert np.all(np.diff(out) >= 0) and out.min() >= 0 and out.max() <= 1


def test_multiclass_calibration_is_one_class_against_the_rest_renormalised():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(600, 3)) * 3
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row ** 0.3 / (row ** 0.3).sum()) for row in p])  # overconfident scores
    cal, record = choose(y, p, task="multiclass", seed=0)
    assert record["method"] != "none"
    out = apply(cal, p, "multiclass")
    assert np.allclose(out.sum(axis=1), 1.0) and len(cal["a" if cal["method"] == "sigmoid" else "x"]) == 3


@pytest.fixture(scope="module")
def weighted():
    """A rare class fitted with balanced class weights: the scores of the rare class come out too high."""
    rng = np.random.default_rng(3)
    n = 900
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = rng.uniform(size=n) < 1 / (1 + np.exp(-(2 * x1 + x2 - 3)))
    frame = pd.DataFrame({"x1": x1, "x2": x2, "y": np.where(y, "rare", "common")})
    goal = GoalSpec.model_validate({"metric": "recall", "at_least": 0.5, "with": {"precision": 0.5}})
    return search(frame, target="y", task="binary", goal=goal, positive="rare", plan=SearchPlan(families=("linear",)),
                  clean=CleanSpec(imbalance="weights")), frame


def test_search_calibrates_then_chooses_the_threshold_on_calibrated_scores(weighted):
    result, frame = weighted
    point, model = result.operating_point, result.model
    assert point["calibration"]["method"] != "none" and model.calibration["method"] == point["calibration"]["method"]
    threshold, met = choose_threshold(result.oof_target, result.oof_scores, metric="recall",
                                      goal_with={"precision": 0.5})
    assert (threshold, met) == (model.threshold, point["constraint_met"])
    X = frame.drop(columns=["y"])
    raw, calibrated = model._raw_scores(X), model.predict_proba(X)[:, 1]
    assert calibrated.mean() < raw.mean()  # the weighted scores overstated the rare class
    assert abs(calibrated.mean() - (frame["y"] == "rare").mean()) < abs(raw.mean() - (frame["y"] == "rare").mean())


def test_the_calibrator_travels_in_the_model_json(weighted):
    result, frame = weighted
    data = result.model.to_bytes()
    assert json.loads(data)["calibration"]["method"] == result.model.calibration["method"]
    loaded = TrainedModel.from_bytes(data)
    X = frame.drop(columns=["y"])
    assert np.array_equal(loaded.predict_proba(X), result.model.predict_proba(X))
    assert np.array_equal(loaded.predict(X), result.model.predict(X))
