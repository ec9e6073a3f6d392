"""The metrics a business goal can be stated in, and which task each one fits.

A metric either scores hard decisions (``recall``, ``precision`` ...: it depends
on the operating point) or scores probabilities / values (``roc_auc``,
``rmse`` ...). :func:`score` computes any of them from one call.

>>> from loopml.business.metrics import METRICS, score
>>> METRICS["recall"].tasks
frozenset({'binary'})
>>> round(score("accuracy", [1, 0, 1], y_pred=[1, 0, 0]), 3)
0.667
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as _skm

__all__ = ["METRICS", "Metric", "metric_names_for", "score"]


@dataclass(frozen=True)
class Metric:
    """One goal metric: the tasks it fits, its direction, what it scores."""

    name: str
    tasks: frozenset[str]
    greater_is_better: bool
    # True: scored on hard predictions (decisions); False: on probabilities or values.
    uses_decisions: bool
    _fn: Callable[..., float]

    def __call__(self, y_true: Any, *, y_pred: Any = None, y_proba: Any = None, labels: Any = None) -> float:
        return float(self._fn(np.asarray(y_true), y_pred, y_proba, labels))


def _binary_proba(y_proba: Any) -> np.ndarray:
    p = np.asarray(y_proba, dtype=float)
    return p[:, 1] if p.ndim == 2 else p


def _roc_auc(y, y_pred, y_proba, labels):
    return _skm.roc_auc_score(y, _binary_proba(y_proba))


def _roc_auc_ovr(y, y_pred, y_proba, labels):
    return _skm.roc_auc_score(y, np.asarray(y_proba), multi_class="ovr", average="macro", labels=labels)


def _log_loss(y, y_pred, y_proba, labels):
    p = np.asarray(y_proba, dtype=float)
    if p.ndim == 1:
        p = np.column_stack([1 - p, p])
    return _skm.log_loss(y, p, labels=labels)


def _binary(fn):
    return lambda y, y_pred, y_proba, _labels: fn(y, np.asarray(y_pred), zero_division=0)


_BIN = frozenset({"binary"})
_CLS = frozenset({"binary", "multiclass"})
_MULTI = frozenset({"multiclass"})
_REG = frozenset({"regression"})

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("roc_auc", _BIN, True, False, _roc_auc),
        Metric("average_precision", _BIN, True, False,
               lambda y, p, pr, _labels: _skm.average_precision_score(y, _binary_proba(pr))),
        Metric("recall", _BIN, True, True, _binary(_skm.recall_score)),
        Metric("precision", _BIN, True, True, _binary(_skm.precision_score)),
        Metric("f1", _BIN, True, True, _binary(_skm.f1_score)),
        Metric("accuracy", _CLS, True, True, lambda y, p, pr, _labels: _skm.accuracy_score(y, p)),
        Metric("balanced_accuracy", _CLS, True, True, lambda y, p, pr, _labels: _skm.balanced_accuracy_score(y, p)),
        Metric("log_loss", _CLS, False, False, _log_loss),
        Metric("f1_macro", _MULTI, True, True,
               lambda y, p, pr, _labels: _skm.f1_score(y, p, average="macro", zero_division=0)),
        Metric("roc_auc_ovr", _MULTI, True, False, _roc_auc_ovr),
        Metric("rmse", _REG, False, True, lambda y, p, pr, _labels: float(np.sqrt(_skm.mean_squared_error(y, p)))),
        Metric("mae", _REG, False, True, lambda y, p, pr, _labels: _skm.mean_absolute_error(y, p)),
        Metric("r2", _REG, True, True, lambda y, p, pr, _labels: _skm.r2_score(y, p)),
    ]
}


def metric_names_for(task: str) -> list[str]:
    """The metric names that fit ``task``, sorted."""
    return sorted(name for name, m in METRICS.items() if task in m.tasks)


def score(name: str, y_true: Any, *, y_pred: Any = None, y_proba: Any = None, labels: Any = None) -> float:
    """Compute metric ``name``; binary decision metrics expect 0/1 (positive = 1)."""
    return METRICS[name](y_true, y_pred=y_pred, y_proba=y_proba, labels=labels)
