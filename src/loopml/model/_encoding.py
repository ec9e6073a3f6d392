"""Target encoding with out-of-fold fitting, for high-cardinality categoricals in linear models.

A level is encoded by the smoothed mean of the target over the training rows holding it:
``prior + (sum - count·prior) / (count + m)``, shrunk towards the prior ``m`` rows' worth, so a level
seen once says little and a level never seen says exactly the prior. The training rows themselves
get out-of-fold codes (each fold's rows encoded from the other folds only), so no row's own label
is in its feature; the mapping learned from all training rows is what serving applies.

>>> import numpy as np
>>> Y, outputs = target_matrix(np.array([0, 1, 0, 1, 1, 0]))
>>> state, oof = fit_target(np.array(["a", "a", "a", "b", "b", "b"], dtype=object), Y, outputs, seed=0)
>>> state["prior"], apply_target(np.array(["never seen"], dtype=object), state).tolist()
([0.5], [[0.5]])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

SMOOTHING = 10.0  # the prior weighs as much as this many rows of a level
FOLDS = 5


def target_matrix(y: Any) -> tuple[np.ndarray, list[str]]:
    """What is averaged per level, n×m, and the output-name suffixes.

    Floating-point ``y`` is a regression target (its mean, one column ``""``); anything else is class
    labels: two classes give P(the second, sorted), one column ``""``; more give one column per class
    ``"=<class>"``.
    """
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(float).reshape(-1, 1), [""]
    classes = np.unique(y)
    if len(classes) <= 2:
        return (y == classes[-1]).astype(float).reshape(-1, 1), [""]
    return (y.reshape(-1, 1) == classes.reshape(1, -1)).astype(float), [f"={c}" for c in classes.tolist()]


def fit_target(keys: np.ndarray, Y: np.ndarray, outputs: list[str], *, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON state (prior, per-level means, outputs) from all rows, and the out-of-fold codes, n×m."""
    levels, codes = np.unique(keys.astype(str), return_inverse=True)
    means, prior = _smoothed(codes, len(levels), Y)
    oof = np.tile(prior, (len(Y), 1))  # a single row has no other rows to learn from: the prior
    for fit, val in _folds(Y, seed):
        fold_means, _ = _smoothed(codes[fit], len(levels), Y[fit])
        oof[val] = fold_means[codes[val]]
    state = {"outputs": outputs, "prior": prior.tolist(),
             "means": {str(level): row.tolist() for level, row in zip(levels, means, strict=True)}}
    return state, oof


def apply_target(keys: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """Encode ``keys`` with the stored mapping; a level unseen in training gets the prior."""
    prior, means = state["prior"], state["means"]
    return np.array([means.get(k, prior) for k in keys], dtype=float).reshape(len(keys), len(prior))


def _smoothed(codes: np.ndarray, n_levels: int, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prior = Y.mean(axis=0)
    counts = np.bincount(codes, minlength=n_levels).astype(float)[:, None]
    sums = np.column_stack([np.bincount(codes, weights=Y[:, j], minlength=n_levels) for j in range(Y.shape[1])])
    # Written as prior + correction so that a level absent here is exactly the prior, bit for bit.
    return prior + (sums - counts * prior) / (counts + SMOOTHING), prior


def _folds(Y: np.ndarray, seed: int):
    """Stratified by class where every class has 2+ rows (so each fold's prior is the population's)."""
    if len(Y) < 2:
        return []
    if Y.shape[1] > 1 or np.isin(Y[:, 0], (0.0, 1.0)).all():  # class indicators
        labels = Y.argmax(axis=1) if Y.shape[1] > 1 else Y[:, 0].astype(int)
        counts = np.bincount(labels)
        smallest = int(counts[counts > 0].min())
        if (counts > 0).sum() > 1 and smallest >= 2:
            splitter = StratifiedKFold(n_splits=min(FOLDS, smallest), shuffle=True, random_state=seed)
            return list(splitter.split(labels, labels))
    return list(KFold(n_splits=min(FOLDS, len(Y)), shuffle=True, random_state=seed).split(Y))
