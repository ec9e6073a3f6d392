"""Performance without labels: a classifier's metrics estimated from its calibrated probabilities (CBPE).

When probabilities are calibrated, P(class) is the chance that a row's label is that class, so the
expected confusion matrix of a window follows from the probabilities and the model's decisions alone
(confidence-based performance estimation, as in NannyML). Accuracy, precision, recall, F1 and balanced
accuracy come from that matrix; ROC AUC from the expected ROC curve, each row counting P(positive) as a
positive and 1 - P(positive) as a negative. Multiclass metrics are one-vs-rest, macro averaged.

The interval is the spread of the metric a labeled window could show if its labels were drawn from the
probabilities (a Poisson-binomial sample, simulated): the noise a real labeled score carries. It does not
cover miscalibration: an estimate is only as good as the probabilities under the shift, which is why a
model's calibration is checked on labeled rows whenever they arrive.

>>> est = estimate_performance([0.9, 0.8, 0.3, 0.1], threshold=0.5, metric="accuracy")
>>> round(est.value, 3)
0.825
>>> estimate_performance([0.9, 0.2], threshold=0.5, metric="r2")
Traceback (most recent call last):
...
loopml.errors.DataError: metric 'r2' cannot be estimated for a binary classifier; choose one of: accuracy, \
balanced_accuracy, f1, precision, recall, roc_auc
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from loopml.errors import DataError

__all__ = ["BINARY_METRICS", "MULTICLASS_METRICS", "Estimate", "estimate_performance"]

BINARY_METRICS = ("accuracy", "balanced_accuracy", "f1", "precision", "recall", "roc_auc")
MULTICLASS_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc_ovr")
# Rows of a multiclass probability matrix must sum to 1 within this (calibrators round).
_SUM_TOLERANCE = 1e-3
# Simulated labels are drawn this many values at a time, so memory stays flat for large windows.
_CHUNK = 1 << 22
# Label draws in all for an interval: simulations shrink as windows grow, but never below _MIN_DRAWS.
_DRAW_BUDGET = 10_000_000
_MIN_DRAWS = 30


@dataclass(frozen=True)
class Estimate:
    """An estimated metric and its interval at ``level`` over ``rows`` unlabeled rows."""

    value: float
    ci_low: float
    ci_high: float
    metric: str
    rows: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_performance(
    probabilities: Any,
    *,
    threshold: float | None,
    metric: str,
    level: float = 0.95,
    simulations: int = 200,
    seed: int = 0,
) -> Estimate:
    """Estimate ``metric`` on rows whose labels are not known yet, from calibrated probabilities.

    ``probabilities``: P(positive) per row, or an n x 2 matrix (binary, columns [negative, positive]), or
    an n x k matrix over the classes (multiclass), as :meth:`TrainedModel.predict_proba` returns them.
    ``threshold``: the binary decision threshold (None means 0.5, as :meth:`TrainedModel.predict` uses);
    multiclass decisions are the most probable class, so it must be None there. The interval is
    normal, from ``simulations`` label draws (seeded with ``seed``), clipped to [0, 1].

    >>> est = estimate_performance([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], threshold=None, metric="accuracy")
    >>> round(est.value, 2), est.rows
    (0.75, 2)
    """
    P, multiclass = _probabilities(probabilities)
    allowed = MULTICLASS_METRICS if multiclass else BINARY_METRICS
    if metric not in allowed:
        task = "multiclass" if multiclass else "binary"
        raise DataError(f"metric {metric!r} cannot be estimated for a {task} classifier; "
                        f"choose one of: {', '.join(allowed)}")
    if not (isinstance(level, float) and 0 < level < 1):
        raise DataError(f"level must be a float in (0, 1), such as 0.95; got {level!r}")
    if isinstance(simulations, bool) or not isinstance(simulations, int) or simulations < 2:
        raise DataError(f"simulations must be an integer >= 2; got {simulations!r}")
    decisions = _decisions(P, multiclass, threshold)
    value = _expected(metric, P, decisions)
    draws = _simulate(metric, P, decisions, simulations, np.random.default_rng(seed))
    half = float(stats.norm.ppf(0.5 + level / 2) * np.nanstd(draws, ddof=1)) if np.isfinite(draws).sum() > 1 else 0.0
    return Estimate(value=value, ci_low=max(0.0, value - half), ci_high=min(1.0, value + half), metric=metric,
                    rows=len(P), level=level)


# -- input ---------------------------------------------------------------------------------------
def _probabilities(probabilities: Any) -> tuple[np.ndarray, bool]:
    """An n x k matrix of class probabilities (binary: [1 - p, p]) and whether it is multiclass."""
    try:
        P = np.asarray(probabilities, dtype="float64")
    except (TypeError, ValueError) as exc:
        raise DataError(f"probabilities must be numbers: P(positive) per row or an n x k matrix ({exc})") from None
    if P.ndim == 2 and P.shape[1] == 1:
        P = P[:, 0]
    if P.ndim not in (1, 2):
        raise DataError(f"probabilities must be P(positive) per row or an n x k matrix; got shape {P.shape}")
    if len(P) == 0:
        raise DataError("the window is empty (0 rows): estimate once it holds predictions")
    if not np.isfinite(P).all() or P.min() < 0 or P.max() > 1:
        raise DataError("probabilities must be finite and in [0, 1]: pass the model's calibrated "
                        "predict_proba output, not raw scores or logits")
    if P.ndim == 1:
        return np.column_stack([1 - P, P]), False
    worst = float(np.abs(P.sum(axis=1) - 1).max())
    if worst > _SUM_TOLERANCE:
        raise DataError(f"each row of class probabilities must sum to 1; one is off by {worst:.3g}: pass the "
                        "model's predict_proba output over all its classes")
    return P, P.shape[1] > 2


def _decisions(P: np.ndarray, multiclass: bool, threshold: float | None) -> np.ndarray:
    """The class each row is decided as: P(positive) >= threshold (binary), else the most probable class."""
    if multiclass:
        if threshold is not None:
            raise DataError(f"a multiclass model decides by the most probable class; pass threshold=None, "
                            f"not {threshold!r}")
        return P.argmax(axis=1)
    t = 0.5 if threshold is None else threshold
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
        raise DataError(f"threshold must be a probability in [0, 1] (the model's threshold); got {threshold!r}")
    return (P[:, 1] >= t).astype(int)


# -- the expected metric -------------------------------------------------------------------------
def _expected(metric: str, P: np.ndarray, decisions: np.ndarray) -> float:
    """The metric of the expected confusion matrix (or expected ROC curve): a soft label per row."""
    k = P.shape[1]
    if metric in ("roc_auc", "roc_auc_ovr"):
        classes = [1] if metric == "roc_auc" else range(k)
        aucs = [_Ranking(P[:, c]).auc(P[None, :, c])[0] for c in classes]
        if any(math.isnan(a) for a in aucs):
            raise DataError(f"{metric} is undefined on this window: every row is certain of its class "
                            "(probabilities only 0 or 1 for a class), so there is no positive-negative pair to rank")
        return float(np.mean(aucs))
    confusion = np.stack([P[decisions == c].sum(axis=0) for c in range(k)], axis=1)  # rows: truth, columns: decision
    value = _from_confusion(metric, confusion[None])[0]
    if math.isnan(value):
        raise DataError(_undefined(metric, P, decisions))
    return float(value)


def _undefined(metric: str, P: np.ndarray, decisions: np.ndarray) -> str:
    if metric in ("precision", "f1") and not decisions.any():
        return (f"{metric} is undefined on this window: the model decides no row positive (every P(positive) is "
                "below the threshold); estimate accuracy or recall, or wait for a window with positive decisions")
    if metric in ("recall", "f1", "balanced_accuracy") and P[:, 1].sum() == 0:
        return (f"{metric} is undefined on this window: every P(positive) is 0, so no positive label is "
                "expected; estimate accuracy, or check that the model's probabilities reach this window")
    return (f"{metric} is undefined on this window: every row falls in one class (decided and expected); "
            "estimate accuracy instead")


def _from_confusion(metric: str, C: np.ndarray) -> np.ndarray:
    """``metric`` of each s x k x k confusion matrix (truth x decision); NaN where it is undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        diag = np.diagonal(C, axis1=1, axis2=2)
        truth, decided = C.sum(axis=2), C.sum(axis=1)
        if metric == "accuracy":
            return diag.sum(axis=1) / C.sum(axis=(1, 2))
        recall, precision = diag / truth, diag / decided
        f1 = 2 * diag / (truth + decided)
        if metric == "recall":
            return recall[:, 1]
        if metric == "precision":
            return precision[:, 1]
        if metric == "f1":
            return f1[:, 1]
        if metric == "balanced_accuracy":
            return np.nanmean(recall, axis=1) if C.shape[1] > 2 else recall.mean(axis=1)
        # Macro averages count a class nobody is decided as (or labeled as) as 0, like scikit-learn.
        per_class = {"precision_macro": precision, "recall_macro": recall, "f1_macro": f1}[metric]
        return np.nan_to_num(per_class, nan=0.0).mean(axis=1)


class _Ranking:
    """The tie groups of one score column in ascending order, computed once and reused by every draw."""

    def __init__(self, scores: np.ndarray):
        self.order = np.argsort(scores, kind="stable")
        ranked = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        self.size = np.diff(np.r_[self.starts, len(scores)])

    def auc(self, positives: np.ndarray) -> np.ndarray:
        """ROC AUC for each row of soft or 0/1 labels ``positives`` (s x n); ties count half; NaN if one class."""
        pos = np.add.reduceat(positives[:, self.order], self.starts, axis=1)
        neg = self.size - pos
        below = np.cumsum(neg, axis=1) - neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


# -- the interval --------------------------------------------------------------------------------
def _simulate(metric: str, P: np.ndarray, decisions: np.ndarray, simulations: int,
              rng: np.random.Generator) -> np.ndarray:
    """The metric on up to ``simulations`` windows whose labels are drawn from the probabilities.

    Large windows get fewer draws (at least 30): their interval is narrow, and its width is all we need.
    """
    n, k = P.shape
    simulations = min(simulations, max(_MIN_DRAWS, _DRAW_BUDGET // n))
    cumulative = np.cumsum(P, axis=1)[:, :-1]
    classes = [1] if metric == "roc_auc" else range(k)
    rankings = [_Ranking(P[:, c]) for c in classes] if metric in ("roc_auc", "roc_auc_ovr") else []
    out = []
    per_chunk = max(1, _CHUNK // (n * (k - 1)))
    for start in range(0, simulations, per_chunk):
        s = min(per_chunk, simulations - start)
        u = rng.random((s, n))
        # The class whose band of the cumulative probabilities holds u: drawn with its probability.
        labels = u >= cumulative[:, 0] if k == 2 else (u[:, :, None] >= cumulative[None]).sum(axis=2)
        labels = labels.astype(np.int64)
        if rankings:
            out.append(np.mean([r.auc(labels == c) for r, c in zip(rankings, classes, strict=True)], axis=0))
        else:
            flat = (np.arange(s)[:, None] * k + labels) * k + decisions[None]
            C = np.bincount(flat.ravel(), minlength=s * k * k).reshape(s, k, k).astype(float)
            out.append(_from_confusion(metric, C))
    return np.concatenate(out)
