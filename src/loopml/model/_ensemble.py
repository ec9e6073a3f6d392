"""Greedy ensemble selection (Caruana et al., 2004, as AutoGluon does) on out-of-fold predictions.

Starting from nothing, each round adds — with replacement — the model whose inclusion makes the
plain average of the chosen predictions score best; a model picked twice weighs twice. The best
prefix of the rounds is kept, so the ensemble is never worse on out-of-fold rows than its first
pick, the best single model. Scored by a threshold-free metric (:data:`SELECTION`).

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 1])
>>> a, b = np.array([.1, .6, .4, .9, .2, .8]), np.array([.5, .1, .6, .3, .2, .7])  # each ranks one pair wrong
>>> counts, value = greedy([a, b], y, "roc_auc", task="binary", rounds=4)
>>> counts, round(value, 3)
([1, 1], 1.0)
"""

from __future__ import annotations

import numpy as np

from loopml.model._calibration import log_loss

__all__ = ["SELECTION", "better", "combine", "greedy", "selection_metric", "selection_score"]

# The threshold-free metrics the search ranks trials and ensembles by; True: greater is better.
SELECTION = {"roc_auc": True, "roc_auc_ovr": True, "log_loss": False, "rmse": False, "mae": False}


def selection_metric(goal_metric: str, task: str) -> str:
    """The goal metric's threshold-free counterpart: roc_auc (binary), log_loss (multiclass), rmse or mae.

    A multiclass goal of ``roc_auc_ovr`` is threshold-free already and ranks by itself: log loss
    rewards calibration, which a ranking goal does not ask for.

    >>> [selection_metric(m, t) for m, t in [("recall", "binary"), ("accuracy", "multiclass"), ("r2", "regression")]]
    ['roc_auc', 'log_loss', 'rmse']
    >>> selection_metric("roc_auc_ovr", "multiclass")
    'roc_auc_ovr'
    """
    if task == "regression":
        return "mae" if goal_metric == "mae" else "rmse"
    if task == "multiclass" and goal_metric == "roc_auc_ovr":
        return "roc_auc_ovr"
    if goal_metric == "log_loss" or task == "multiclass":
        return "log_loss"
    return "roc_auc"


def selection_score(metric: str, y: np.ndarray, scores: np.ndarray, task: str) -> float:
    """``metric`` of codes/values ``y`` and model scores, fast enough to call hundreds of times."""
    if metric == "roc_auc":
        return _auc(y, scores)
    if metric == "roc_auc_ovr":  # the unweighted mean of each class's AUC against the rest (classes present)
        aucs = [a for c in range(scores.shape[1]) if (a := _auc((y == c).astype(int), scores[:, c])) == a]
        return float(np.mean(aucs)) if aucs else float("nan")
    if metric == "log_loss":
        return log_loss(y, scores, task)
    if metric == "rmse":
        return float(np.sqrt(np.mean((scores - y) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(scores - y)))
    raise KeyError(metric)


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of 0/1 codes by the rank-sum formula (ties share their mean rank); NaN with one class only."""
    from scipy.stats import rankdata

    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def better(metric: str, a: float, b: float) -> bool:
    """Whether score ``a`` is strictly better than ``b`` (NaN is never better)."""
    if np.isnan(a):
        return False
    if np.isnan(b):
        return True
    return a > b if SELECTION[metric] else a < b


def combine(preds: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The weighted average of ``preds``, added in order (the same arithmetic the served model uses)."""
    out = weights[0] * preds[0]
    for p, w in zip(preds[1:], weights[1:], strict=True):
        out = out + w * p
    return out


def greedy(preds: list[np.ndarray], y: np.ndarray, metric: str, *, task: str,
           rounds: int = 25) -> tuple[list[int], float]:
    """How many times each of ``preds`` is picked in the best ensemble, and that ensemble's score."""
    counts = np.zeros(len(preds), dtype=int)
    total = np.zeros_like(preds[0], dtype=float)
    best_counts, best_value = counts.copy(), float("nan")
    for r in range(1, rounds + 1):
        values = [selection_score(metric, y, (total + p) / r, task) for p in preds]
        pick = 0
        for j in range(1, len(values)):  # the first of equals: a stable, seed-free choice
            if better(metric, values[j], values[pick]):
                pick = j
        counts[pick] += 1
        total = total + preds[pick]
        if better(metric, values[pick], best_value):
            best_counts, best_value = counts.copy(), values[pick]
    return best_counts.tolist(), best_value
