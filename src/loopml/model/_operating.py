"""Operating points (shared by search, evaluate, diagnose, the model artifact).

Binary: the threshold on P(positive), from confusion counts at every threshold, vectorised.
Multiclass with per-class costs: predict the class k maximising p_k * c_k, where c_k is the cost of
missing a row of class k. The expected cost of predicting k is sum_{j != k} p_j c_j = const - p_k c_k,
so this is the decision with the lowest expected cost on calibrated probabilities.

>>> import numpy as np
>>> decide(np.array([[0.5, 0.3, 0.2]]), [1.0, 1.0, 3.0]).tolist()   # 0.2 * 3 beats 0.5 * 1
[2]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.errors import ModelError

# Decision metrics computable from confusion counts; others fall back to loopml.business.metrics.
COUNT_METRICS = ("accuracy", "balanced_accuracy", "f1", "precision", "recall")


def from_counts(name: str, tp, fp, fn, tn) -> np.ndarray:
    """Metric ``name`` from (arrays of) confusion counts; 0 where undefined, as sklearn's zero_division=0."""
    tp, fp, fn, tn = (np.asarray(a, dtype=float) for a in (tp, fp, fn, tn))
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "recall":
            out = tp / (tp + fn)
        elif name == "precision":
            out = tp / (tp + fp)
        elif name == "f1":
            out = 2 * tp / (2 * tp + fp + fn)
        elif name == "accuracy":
            out = (tp + tn) / (tp + fp + fn + tn)
        elif name == "balanced_accuracy":
            out = (tp / (tp + fn) + tn / (tn + fp)) / 2
        else:
            raise KeyError(name)
    return np.nan_to_num(out, nan=0.0)


def lower_bound(name: str, tp, fp, fn, tn, z: float = 1.0) -> np.ndarray:
    """Wilson lower bound (``z`` standard errors) of a count metric; safe for tiny counts (1 of 1 → 0.5)."""
    tp, fp, fn, tn = (np.asarray(a, dtype=float) for a in (tp, fp, fn, tn))
    n = {"precision": tp + fp, "recall": tp + fn}.get(name, tp + fp + fn + tn)
    p = from_counts(name, tp, fp, fn, tn)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = p + z * z / (2 * n)
        spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        out = (centre - spread) / (1 + z * z / n)
    return np.nan_to_num(out, nan=0.0)


def sweep(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Confusion counts at every distinct threshold t (predict positive when p >= t), plus "none positive"."""
    y = np.asarray(y, dtype=int)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    ends = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]  # last row of each tie group
    tp = np.r_[0, np.cumsum(ys)[ends]]
    fp = np.r_[0, np.cumsum(1 - ys)[ends]]
    positives, negatives = int(ys.sum()), int(len(ys) - ys.sum())
    thresholds = np.r_[np.nextafter(ps[0], np.inf), ps[ends]]
    return {"threshold": thresholds, "tp": tp, "fp": fp, "fn": positives - tp, "tn": negatives - fp}


def choose_threshold(y: np.ndarray, p: np.ndarray, *, metric: str, goal_with: dict[str, float],
                     costs: Any = None) -> tuple[float, bool | None]:
    """The decision threshold on P(positive) for the goal; returns (threshold, constraint_met).

    Constraints first (maximise the goal metric subject to each ``with`` metric >= its value; if
    none is feasible, maximise the smallest slack), then expected cost, then the goal metric
    itself when it scores decisions, else 0.5. Ties go to the higher F1.
    """
    s = sweep(y, p)
    counts = (s["tp"], s["fp"], s["fn"], s["tn"])
    f1 = from_counts("f1", *counts)
    goal = from_counts(metric, *counts) if metric in COUNT_METRICS else np.zeros_like(f1)
    if goal_with:
        # Constraints must hold at the lower confidence bound, not just the point estimate: a threshold
        # chosen exactly at the edge misses the constraint on about half of all fresh samples.
        slack = np.min([lower_bound(name, *counts) - need for name, need in goal_with.items()], axis=0)
        feasible = slack >= 0
        if feasible.any():
            best = np.lexsort((f1, np.where(feasible, goal, -np.inf)))[-1]
            return float(s["threshold"][best]), True
        return float(s["threshold"][np.lexsort((goal, slack))[-1]]), False
    if costs is not None:
        cost = s["fp"] * costs.false_positive + s["fn"] * costs.false_negative
        return float(s["threshold"][np.lexsort((-f1, cost))[0]]), None
    if metric in COUNT_METRICS:
        return float(s["threshold"][np.lexsort((f1, goal))[-1]]), None
    return 0.5, None


def best_under(y: np.ndarray, p: np.ndarray, *, maximise: str, subject_to: dict[str, float]) -> float | None:
    """Best value of ``maximise`` over thresholds where every ``subject_to`` metric >= its value."""
    s = sweep(y, p)
    counts = (s["tp"], s["fp"], s["fn"], s["tn"])
    ok = np.ones(len(s["tp"]), dtype=bool)
    for name, need in subject_to.items():
        ok &= from_counts(name, *counts) >= need
    return float(from_counts(maximise, *counts)[ok].max()) if ok.any() else None


# -- costs ---------------------------------------------------------------------------------------
def check_costs(task: str, costs: Any) -> None:
    """Raise :class:`ModelError` unless ``costs`` fit ``task``: fp and fn (binary), per_class (multiclass).

    >>> from loopml.spec import CostsSpec
    >>> try:
    ...     check_costs("multiclass", CostsSpec(false_positive=1, false_negative=5))
    ... except ModelError as exc:
    ...     print(exc)
    costs for task 'multiclass' need per_class ({CLASS: COST}); found false_positive, false_negative
    """
    if costs is None:
        return
    per_class = getattr(costs, "per_class", None)
    pair = [name for name in ("false_positive", "false_negative") if getattr(costs, name, None) is not None]
    if task == "regression":
        raise ModelError("costs weigh wrong class decisions; a regression task has none: pass costs=None")
    if task == "multiclass" and (per_class is None or pair):
        raise ModelError(f"costs for task 'multiclass' need per_class ({{CLASS: COST}}); found {', '.join(pair)}")
    if task == "binary" and (per_class is not None or len(pair) < 2):
        raise ModelError("costs for task 'binary' need false_positive and false_negative; found "
                         + (", ".join(pair + (["per_class"] if per_class is not None else [])) or "neither"))


def class_costs(classes: Sequence[Any], per_class: Mapping[Any, float]) -> list[float]:
    """The cost of missing a row of each class, in the order of ``classes``; classes not named cost 1.

    Names match by their text, so the YAML key ``2`` names the class 2 (or 2.0).

    >>> class_costs(["a", "b", "c"], {"b": 5})
    [1.0, 5.0, 1.0]
    """
    from loopml.model.features import _key

    by_key = {_key(name): float(cost) for name, cost in per_class.items()}
    known = {_key(c) for c in classes}
    unknown = [str(name) for name in per_class if _key(name) not in known]
    if unknown:
        raise ModelError(f"per-class costs name class(es) {', '.join(unknown)} that the target does not hold; "
                         f"classes: {', '.join(map(str, classes))}")
    bad = {name: cost for name, cost in by_key.items() if not (np.isfinite(cost) and cost > 0)}
    if bad:
        raise ModelError(f"per-class costs must be positive numbers; found {bad}")
    return [by_key.get(_key(c), 1.0) for c in classes]


def decide(proba: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Class index per row of n×k probabilities: argmax of p_k * c_k (plain argmax without ``weights``)."""
    proba = np.asarray(proba, dtype=float)
    if weights is None:
        return proba.argmax(axis=1)
    return (proba * np.asarray(weights, dtype=float)).argmax(axis=1)


def miss_cost(y: np.ndarray, pred: np.ndarray, weights: Sequence[float]) -> float:
    """Mean cost per row of multiclass decisions ``pred`` against codes ``y``: c_y for each miss, else 0.

    >>> miss_cost(np.array([0, 1, 2]), np.array([0, 0, 0]), [1.0, 2.0, 4.0])
    2.0
    """
    y, pred = np.asarray(y, dtype=int), np.asarray(pred, dtype=int)
    return float(np.mean(np.asarray(weights, dtype=float)[y] * (pred != y))) if len(y) else 0.0
