"""Probability calibration on out-of-fold scores: none, Platt (sigmoid) or isotonic, chosen by log loss.

The choice is itself cross-validated: the out-of-fold rows are split in two seeded, stratified
halves; each method is fitted on one half and scored on the other, both ways, and the method with
the lowest log loss over all rows wins (ties go to the simpler: none, then sigmoid). The winner is
then fitted on all out-of-fold rows. Multiclass scores are calibrated one class against the rest
and renormalised. A calibrator is plain numbers (JSON): ``{"method": "sigmoid", "a": [..], "b": [..]}``
or ``{"method": "isotonic", "x": [[..]], "y": [[..]]}``, one entry per calibrated column.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(size=2000)
>>> y = (rng.uniform(size=2000) < p ** 3).astype(int)   # p overstates the chance: miscalibrated
>>> cal, record = choose(y, p, task="binary", seed=0)
>>> record["method"] != "none", record["log_loss"]["none"] > record["log_loss"][record["method"]]
(True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loopml.errors import ModelError

__all__ = ["METHODS", "apply", "choose", "fit", "log_loss"]

METHODS = ("none", "sigmoid", "isotonic")
_EPS = 1e-7  # probabilities are clipped this far from 0 and 1 before a logit or a log


def log_loss(y: np.ndarray, scores: np.ndarray, task: str) -> float:
    """Mean negative log likelihood of codes ``y`` under P(positive) (binary) or n×k probabilities."""
    if task == "binary":
        p = np.clip(scores, _EPS, 1 - _EPS)
        return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))
    rows = np.clip(scores[np.arange(len(y)), y], _EPS, 1.0)
    return float(-np.mean(np.log(rows)))


def _columns(y: np.ndarray, scores: np.ndarray, task: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(score column, 0/1 target) per calibrated column: P(positive), or each class against the rest."""
    if task == "binary":
        return [(scores, y)]
    return [(scores[:, c], (y == c).astype(int)) for c in range(scores.shape[1])]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _fit_sigmoid(p: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Platt's a, b for P = 1 / (1 + exp(-(a·logit(p) + b))), with his smoothed targets."""
    from scipy.optimize import minimize

    f = _logit(p)
    pos = int(t.sum())
    hi, lo = (pos + 1.0) / (pos + 2.0), 1.0 / (len(t) - pos + 2.0)
    target = np.where(t == 1, hi, lo)

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * f + ab[1]
        # log(1 + e^z) - target·z, written to stay finite for large |z|
        value = np.sum(np.logaddexp(0.0, z) - target * z)
        g = 1.0 / (1.0 + np.exp(-z)) - target
        return float(value), np.array([np.dot(g, f), g.sum()])

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


def _fit_isotonic(p: np.ndarray, t: np.ndarray) -> tuple[list[float], list[float]]:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, t)
    return iso.X_thresholds_.astype(float).tolist(), iso.y_thresholds_.astype(float).tolist()


def fit(method: str, y: np.ndarray, scores: np.ndarray, task: str) -> dict[str, Any] | None:
    """Calibrator ``method`` fitted on codes ``y`` and raw ``scores``; None for ``"none"``."""
    if method == "none":
        return None
    columns = _columns(y, scores, task)
    if method == "sigmoid":
        ab = [_fit_sigmoid(p, t) for p, t in columns]
        return {"method": "sigmoid", "a": [a for a, _ in ab], "b": [b for _, b in ab]}
    if method == "isotonic":
        xy = [_fit_isotonic(p, t) for p, t in columns]
        return {"method": "isotonic", "x": [x for x, _ in xy], "y": [v for _, v in xy]}
    raise ModelError(f"calibration method must be one of {', '.join(METHODS)}; got {method!r}")


def apply(calibrator: dict[str, Any] | None, scores: np.ndarray, task: str) -> np.ndarray:
    """``scores`` (P(positive) or n×k probabilities) through ``calibrator``; unchanged for None."""
    if calibrator is None:
        return scores
    method = calibrator.get("method")
    cols = [scores] if task == "binary" else [scores[:, c] for c in range(scores.shape[1])]
    try:
        if method == "sigmoid":
            out = [1.0 / (1.0 + np.exp(-(a * _logit(p) + b)))
                   for p, a, b in zip(cols, calibrator["a"], calibrator["b"], strict=True)]
        elif method == "isotonic":
            out = [np.interp(p, np.asarray(x, float), np.asarray(v, float))
                   for p, x, v in zip(cols, calibrator["x"], calibrator["y"], strict=True)]
        else:
            raise ModelError(f"calibration method must be sigmoid or isotonic; got {method!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"calibration state is malformed: {exc}") from exc
    if task == "binary":
        return out[0]
    p = np.column_stack(out)
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])


def _halves(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 0/1 half label per row, balanced within each class."""
    rng = np.random.default_rng(seed)
    half = np.zeros(len(y), dtype=int)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        half[rows[1::2]] = 1
    return half


def choose(y: np.ndarray, scores: np.ndarray, *, task: str, seed: int) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The calibrator with the lowest cross-fitted log loss, fitted on all rows; and the record of the choice."""
    half = _halves(y, seed)
    losses: dict[str, float] = {}
    can_split = all(np.unique(y[half == h]).size == np.unique(y).size for h in (0, 1))
    for method in METHODS:
        if method != "none" and not can_split:
            continue
        crossed = np.array(scores, dtype=float, copy=True)
        for h in (0, 1):
            fit_rows, score_rows = half != h, half == h
            cal = fit(method, y[fit_rows], scores[fit_rows], task)
            crossed[score_rows] = apply(cal, scores[score_rows], task)
        losses[method] = log_loss(y, crossed, task)
    chosen = min(losses, key=lambda m: (losses[m], METHODS.index(m)))
    record = {"method": chosen, "log_loss": losses, "rows": int(len(y)),
              "chosen_by": "log loss, fitted on one half of the out-of-fold rows and scored on the other, both ways"}
    return fit(chosen, y, scores, task), record
