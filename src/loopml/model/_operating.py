"""Binary operating points from confusion counts, vectorised (shared by search, evaluate, diagnose)."""

from __future__ import annotations

from typing import Any

import numpy as np

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
