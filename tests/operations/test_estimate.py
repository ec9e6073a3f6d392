"""Label-free performance estimation: real calibrated models estimate their own held-out metrics, see the
drop on a harder population, the arithmetic is the expected confusion matrix, and bad windows are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from loopml.errors import DataError
from loopml.model.search import SearchPlan, search, split_holdout
from loopml.operations.estimate import BINARY_METRICS, MULTICLASS_METRICS, estimate_performance
from loopml.spec import GoalSpec

_BENCH = Path(__file__).resolve().parents[1] / "bench_data"  # real tables, copied into the repo
# An estimate and the labeled value may differ by label noise (a few hundred rows) and calibration error.
_TOLERANCE = 0.03


def _dataset(name: str) -> pd.DataFrame:
    path = _BENCH / f"{name}.parquet"
    return pd.read_parquet(path)


def _trained(name: str, target: str, task: str, positive=None, plan: SearchPlan | None = None):
    """A calibrated LightGBM model searched on 60% of a real dataset; the other 40% kept unseen."""
    train, held = split_holdout(_dataset(name), target, task, 0.4, seed=0)
    goal = GoalSpec(metric="accuracy", at_least=0.1)
    result = search(train, target=target, task=task, goal=goal, positive=positive,
                    plan=plan or SearchPlan(trials=2, families=("lightgbm",)))
    return result.model, held.drop(columns=[target]), held[target].astype(str).to_numpy()


@pytest.fixture(scope="module")
def benefits():
    return _trained("benefits", "ui", "binary", positive="yes")


@pytest.fixture(scope="module")
def hdma():
    return _trained("hdma", "deny", "binary", positive="yes")


@pytest.fixture(scope="module")
def verbagg():
    """Three answer classes (no / perhaps / yes); one small trial keeps the multiclass search quick."""
    plan = SearchPlan(trials=1, folds=3, families=("lightgbm",), n_estimators=100)
    return _trained("verbagg", "resp", "multiclass", plan=plan)


def _binary_truth(model, X: pd.DataFrame, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = model.predict_proba(X)[:, 1]
    y = (labels == str(model.classes[1])).astype(int)
    return p, y, (p >= model.threshold).astype(int)


# -- real models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["accuracy", "recall"])
def test_the_estimate_on_unlabeled_rows_is_close_to_the_labeled_value(benefits, metric):
    p, y, decided = _binary_truth(*benefits)
    labeled = {"accuracy": skm.accuracy_score, "recall": skm.recall_score}[metric](y, decided)
    estimate = estimate_performance(p, threshold=benefits[0].threshold, metric=metric)
    assert estimate.value == pytest.approx(labeled, abs=_TOLERANCE)
    assert estimate.ci_low < estimate.value < estimate.ci_high


def test_a_harder_population_drops_the_estimate_as_it_drops_the_labeled_accuracy(hdma):
    model, X, labels = hdma
    p, y, decided = _binary_truth(model, X, labels)
    # Applicants in the worst quarter of consumer credit scores: more denials, less certain decisions.
    harder = (X["ccs"] >= X["ccs"].quantile(0.75)).to_numpy()
    overall = estimate_performance(p, threshold=model.threshold, metric="accuracy")
    shifted = estimate_performance(p[harder], threshold=model.threshold, metric="accuracy")
    labeled_drop = (decided == y).mean() - (decided[harder] == y[harder]).mean()
    assert labeled_drop > 0.05
    assert overall.value - shifted.value > 0.05
    assert shifted.ci_high < overall.ci_low
    assert shifted.value == pytest.approx((decided[harder] == y[harder]).mean(), abs=_TOLERANCE)


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro", "roc_auc_ovr"])
def test_a_multiclass_estimate_is_close_to_the_labeled_value(verbagg, metric):
    model, X, labels = verbagg
    P = model.predict_proba(X)
    classes = [str(c) for c in model.classes]
    decided = np.asarray(classes)[P.argmax(axis=1)]
    labeled = {
        "accuracy": lambda: skm.accuracy_score(labels, decided),
        "f1_macro": lambda: skm.f1_score(labels, decided, average="macro"),
        "roc_auc_ovr": lambda: skm.roc_auc_score(labels, P, multi_class="ovr", labels=classes),
    }[metric]()
    assert estimate_performance(P, threshold=None, metric=metric).value == pytest.approx(labeled, abs=_TOLERANCE)


# -- the arithmetic ------------------------------------------------------------------------------
def test_accuracy_is_the_mean_probability_of_the_decided_class():
    # Decided positive: 0.9, 0.6 (correct with those chances); negative: 0.2 (correct with 0.8).
    estimate = estimate_performance([0.9, 0.2, 0.6], threshold=0.5, metric="accuracy")
    assert estimate.value == pytest.approx((0.9 + 0.8 + 0.6) / 3)


def test_precision_and_recall_come_from_the_expected_confusion_matrix():
    p = np.array([0.9, 0.2, 0.6, 0.4])
    tp, fp, fn = 0.9 + 0.6, 0.1 + 0.4, 0.2 + 0.4
    assert estimate_performance(p, threshold=0.5, metric="precision").value == pytest.approx(tp / (tp + fp))
    assert estimate_performance(p, threshold=0.5, metric="recall").value == pytest.approx(tp / (tp + fn))
    assert estimate_performance(p, threshold=0.5, metric="f1").value == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_roc_auc_counts_each_row_as_positive_with_its_probability():
    p = np.random.default_rng(0).beta(2, 3, 400).round(2)  # rounded: ties count half
    weighted = skm.roc_auc_score(np.r_[np.ones(400), np.zeros(400)], np.r_[p, p], sample_weight=np.r_[p, 1 - p])
    assert estimate_performance(p, threshold=0.5, metric="roc_auc").value == pytest.approx(weighted)


@pytest.mark.parametrize("metric", BINARY_METRICS)
def test_labels_drawn_from_calibrated_probabilities_land_inside_the_interval(metric):
    rng = np.random.default_rng(1)
    p = rng.beta(2, 3, 20_000)
    y = (rng.random(len(p)) < p).astype(int)
    decided = (p >= 0.4).astype(int)
    labeled = {
        "accuracy": lambda: skm.accuracy_score(y, decided),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y, decided),
        "precision": lambda: skm.precision_score(y, decided),
        "recall": lambda: skm.recall_score(y, decided),
        "f1": lambda: skm.f1_score(y, decided),
        "roc_auc": lambda: skm.roc_auc_score(y, p),
    }[metric]()
    estimate = estimate_performance(p, threshold=0.4, metric=metric)
    assert estimate.ci_low <= labeled <= estimate.ci_high
    assert estimate.ci_high - estimate.ci_low < 0.04


@pytest.mark.parametrize("metric", MULTICLASS_METRICS)
def test_multiclass_labels_drawn_from_the_probabilities_land_inside_the_interval(metric):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(20_000, 4)) * 1.5
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = (rng.random((len(P), 1)) >= np.cumsum(P, axis=1)[:, :-1]).sum(axis=1)
    decided = P.argmax(axis=1)
    labeled = {
        "accuracy": lambda: skm.accuracy_score(y, decided),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y, decided),
        "f1_macro": lambda: skm.f1_score(y, decided, average="macro"),
        "precision_macro": lambda: skm.precision_score(y, decided, average="macro"),
        "recall_macro": lambda: skm.recall_score(y, decided, average="macro"),
        "roc_auc_ovr": lambda: skm.roc_auc_score(y, P, multi_class="ovr"),
    }[metric]()
    estimate = estimate_performance(P, threshold=None, metric=metric)
    assert estimate.ci_low <= labeled <= estimate.ci_high


def test_a_two_column_matrix_is_read_as_negative_and_positive():
    p = np.array([0.9, 0.2, 0.6])
    a = estimate_performance(np.column_stack([1 - p, p]), threshold=0.5, metric="recall")
    assert a == estimate_performance(p, threshold=0.5, metric="recall")


def test_the_estimate_is_json_safe():
    assert estimate_performance([0.9, 0.2, 0.7], threshold=None, metric="f1").to_dict()["metric"] == "f1"


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("probabilities", "kwargs", "message"), [
    ([], {"metric": "accuracy"}, "the window is empty (0 rows): estimate once it holds predictions"),
    ([0.2, np.nan], {"metric": "accuracy"},
     "probabilities must be finite and in [0, 1]: pass the model's calibrated predict_proba output, "
     "not raw scores or logits"),
    ([1.7, 0.2], {"metric": "accuracy"},
     "probabilities must be finite and in [0, 1]: pass the model's calibrated predict_proba output, "
     "not raw scores or logits"),
    ([[0.5, 0.3, 0.1]], {"metric": "accuracy"},
     "each row of class probabilities must sum to 1; one is off by 0.1: pass the model's predict_proba output "
     "over all its classes"),
    ([0.9, 0.2], {"metric": "rmse"},
     "metric 'rmse' cannot be estimated for a binary classifier; choose one of: accuracy, balanced_accuracy, "
     "f1, precision, recall, roc_auc"),
    ([[0.7, 0.2, 0.1]], {"metric": "recall"},
     "metric 'recall' cannot be estimated for a multiclass classifier; choose one of: accuracy, "
     "balanced_accuracy, f1_macro, precision_macro, recall_macro, roc_auc_ovr"),
    ([[0.7, 0.2, 0.1]], {"metric": "accuracy", "threshold": 0.5},
     "a multiclass model decides by the most probable class; pass threshold=None, not 0.5"),
    ([0.9, 0.2], {"metric": "accuracy", "threshold": 2},
     "threshold must be a probability in [0, 1] (the model's threshold); got 2"),
    ([0.9, 0.2], {"metric": "accuracy", "level": 95},
     "level must be a float in (0, 1), such as 0.95; got 95"),
])
def test_bad_input_is_rejected_with_the_fix(probabilities, kwargs, message):
    kwargs = {"threshold": None, **kwargs}
    with pytest.raises(DataError) as exc:
        estimate_performance(probabilities, **kwargs)
    assert str(exc.value) == message


def test_a_window_decided_all_negative_has_no_precision():
    with pytest.raises(DataError) as exc:
        estimate_performance([0.1, 0.2, 0.3], threshold=0.5, metric="precision")
    assert str(exc.value) == (
        "precision is undefined on this window: the model decides no row positive (every P(positive) is below "
        "the threshold); estimate accuracy or recall, or wait for a window with positive decisions")


def test_a_window_certain_of_one_class_has_no_recall_or_auc():
    with pytest.raises(DataError, match="recall is undefined on this window: every P\\(positive\\) is 0"):
        estimate_performance([0.0, 0.0, 0.0], threshold=0.5, metric="recall")
    with pytest.raises(DataError, match="roc_auc is undefined on this window: every row is certain of its class"):
        estimate_performance([0.0, 0.0, 0.0], threshold=0.5, metric="roc_auc")


def test_a_window_of_one_decided_class_still_has_an_accuracy():
    estimate = estimate_performance([0.1, 0.2, 0.3], threshold=0.5, metric="accuracy")
    assert estimate.value == pytest.approx(0.8)
