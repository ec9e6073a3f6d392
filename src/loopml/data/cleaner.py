"""The cleaning that is learned: fitted on training rows only, saved with the model, applied unchanged at serving.

:func:`~loopml.data.clean.clean` does what needs no learned state (dropping rows and columns);
a :class:`Cleaner` holds what does: with ``outliers: clip`` each numeric column's clip bounds are the
0.1% and 99.9% quantiles of the rows it was fitted on. The model stage fits one on exactly the rows
each model trains on, so neither a validation fold nor the holdout shapes it.

>>> import pandas as pd
>>> from loopml.spec import CleanSpec
>>> cleaner = Cleaner().fit(pd.DataFrame({"x": range(1001)}), CleanSpec(outliers="clip"))
>>> cleaner.transform(pd.DataFrame({"x": [-5, 500, 10**6]}))["x"].tolist()
[1, 500, 999]
>>> Cleaner.from_dict(cleaner.to_dict()).describe()
["clip 'x' to [1, 999] (0.1%-99.9% quantiles of 1,001 training rows; 2 training values outside)"]

With ``label_noise: drop`` the model stage also drops the training rows whose given label
:func:`find_label_issues` finds very likely wrong; the locked holdout keeps every row.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.errors import DataError, ModelError

if TYPE_CHECKING:
    from loopml.spec import CleanSpec

__all__ = ["Cleaner", "find_label_issues", "resolve_imbalance"]

QUANTILES = (0.001, 0.999)
# Under this share of rows the smallest class is "imbalanced" for imbalance: auto (then: class weights).
AUTO_MINORITY_SHARE = 0.2
LABEL_ISSUE_FOLDS = 5
# Confident learning never flags a class below this many rows: a class must survive to be cross-validated.
_MIN_CLASS_ROWS = 10


def resolve_imbalance(policy: str, minority_share: float | None, task: str) -> str:
    """What ``imbalance: <policy>`` does for a target whose smallest class has ``minority_share`` of rows.

    >>> resolve_imbalance("auto", 0.1, "binary"), resolve_imbalance("auto", 0.3, "binary")
    ('weights', 'none')
    """
    if task == "regression" or minority_share is None:
        return "none"
    if policy == "auto":
        return "weights" if minority_share < AUTO_MINORITY_SHARE else "none"
    return policy


def find_label_issues(X: pd.DataFrame, y: Any, *, task: str, seed: int = 0,
                      folds: int = LABEL_ISSUE_FOLDS) -> np.ndarray:
    """Boolean mask of the rows of ``X`` whose given label ``y`` is very likely wrong.

    Confident learning (Northcutt et al., 2021; cleanlab's ``find_label_issues``) on out-of-fold class
    probabilities of a small seeded LightGBM (``folds`` stratified folds, one thread, so one seed gives
    one mask on any machine). Classification only; a class is never cut below 10 rows, and a class
    too small to cross-validate flags nothing.

    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"x": rng.normal(size=600)})
    >>> y = (X["x"] > 0).to_numpy(dtype=int)
    >>> y[:30] = 1 - y[:30]  # 30 labels flipped
    >>> mask = find_label_issues(X, y, task="binary", seed=0)
    >>> int(mask[:30].sum()) >= 25, int(mask[30:].sum()) <= 10
    (True, True)
    """
    if task not in ("binary", "multiclass"):
        raise DataError(f"label-noise cleaning finds wrong class labels, so it needs task 'binary' or 'multiclass'; "
                        f"found task '{task}': set data.clean.label_noise: keep")
    codes, classes = pd.factorize(pd.Series(np.asarray(y, dtype=object)), sort=True)
    if len(codes) != len(X):
        raise DataError(f"find_label_issues got {len(X)} feature rows but {len(codes)} labels; give one label per row")
    if (codes < 0).any():
        raise DataError(f"{int((codes < 0).sum())} label(s) are missing; drop those rows before cleaning labels")
    smallest = int(np.bincount(codes).min()) if len(classes) > 1 else 0
    folds = min(folds, smallest)
    if folds < 2:  # one class, or a class of one row: nothing to judge a label against
        return np.zeros(len(codes), dtype=bool)
    features, categorical = _label_features(X, seed)
    if features is None:
        return np.zeros(len(codes), dtype=bool)
    proba = _out_of_fold_proba(features, categorical, codes, len(classes), folds, seed)
    from cleanlab.filter import find_label_issues as _confident_learning

    # n_jobs=1: cleanlab's worker processes gain nothing at this size and make the result depend on the machine.
    return np.asarray(_confident_learning(codes, proba, min_examples_per_class=_MIN_CLASS_ROWS, n_jobs=1), dtype=bool)


def _label_features(X: pd.DataFrame, seed: int) -> tuple[np.ndarray | None, list[int]]:
    """``X`` encoded as the model stage's tree models see it (labels learn nothing here); None if nothing is usable."""
    from loopml.model.features import Preprocessor  # loopml.model imports this module

    try:
        pre = Preprocessor(seed=seed).fit(X)
        return pre.transform(X, "tree"), pre.categorical_indices("tree")
    except ModelError:  # every column dropped (constant, id-like): no feature to judge a label by
        return None, []


def _out_of_fold_proba(features: np.ndarray, categorical: list[int], codes: np.ndarray, k: int, folds: int,
                       seed: int) -> np.ndarray:
    import lightgbm as lgb
    from sklearn.model_selection import StratifiedKFold

    proba = np.zeros((len(codes), k))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit, held in splitter.split(features, codes):
        model = lgb.LGBMClassifier(n_estimators=100, learning_rate=0.1, num_leaves=15, min_child_samples=20,
                                   max_bin=63, random_state=seed, n_jobs=1, verbose=-1)
        model.fit(features[fit], codes[fit], categorical_feature=categorical or "auto")
        proba[np.ix_(held, model.classes_)] = model.predict_proba(features[held])
    return proba


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _floats(col: pd.Series) -> np.ndarray:
    # na_value costs a NaN scan (a third of single-row serving time); only nullable dtypes need it.
    if isinstance(col.dtype, np.dtype):
        return col.to_numpy(dtype=float)
    return col.to_numpy(dtype=float, na_value=np.nan)


def _number(value: float, integer: bool) -> float | int:
    return int(value) if integer else float(value)


class Cleaner:
    """Per-column clip bounds learned from training rows (``outliers: clip``); empty otherwise.

    >>> import pandas as pd
    >>> from loopml.spec import CleanSpec
    >>> Cleaner().fit(pd.DataFrame({"x": [1.0, 2.0]}), CleanSpec()).bounds
    {}
    """

    def __init__(self) -> None:
        self.outliers = "keep"
        self.rows = 0
        self.bounds: dict[str, dict[str, Any]] = {}  # name -> {low, high, integer, clipped}

    def __bool__(self) -> bool:
        """Whether transforming changes anything at all."""
        return bool(self.bounds)

    def fit(self, X: pd.DataFrame, plan: CleanSpec | None = None) -> Cleaner:
        """Learn the clip bounds of every numeric column of the training features ``X``."""
        self.outliers = "keep" if plan is None else plan.outliers
        self.rows = len(X)
        self.bounds = {}
        if self.outliers != "clip":
            return self
        for name in X.columns:
            col = X[name]
            if not _is_numeric(col):
                continue
            values = _floats(col)
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            low, high = np.quantile(values, QUANTILES)
            integer = bool(np.all(values == np.round(values)))
            if integer:  # round outwards: bounds stay whole numbers inside the training range
                low, high = math.floor(low), math.ceil(high)
            clipped = int(((values < low) | (values > high)).sum())
            self.bounds[str(name)] = {"low": _number(low, integer), "high": _number(high, integer),
                                      "integer": integer, "clipped": clipped}
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` with values outside the bounds clipped; ``X`` itself when nothing is outside (never changed).

        Columns without bounds, and columns holding something other than numbers, are left as they are
        (the model's preprocessor names a value that is not a number).
        """
        out = X
        for name in X.columns:
            b = self.bounds.get(str(name))
            if b is None:
                continue
            col = X[name]
            converted = not _is_numeric(col)
            if converted:  # at serving numbers may arrive as text (JSON, CSV)
                col = pd.to_numeric(col, errors="coerce")
                if (col.isna() & X[name].notna()).any():
                    continue
            values = _floats(col)
            with np.errstate(invalid="ignore"):
                outside = (values < b["low"]) | (values > b["high"])
            if not outside.any() and not converted:
                continue
            if out is X:
                out = X.copy()  # copy once, and only when something changes
            out[name] = col.clip(b["low"], b["high"])
        return out

    def describe(self) -> list[str]:
        """One sentence per column it clips."""
        lo, hi = (f"{q * 100:g}%" for q in QUANTILES)
        return [f"clip '{name}' to [{b['low']:g}, {b['high']:g}] ({lo}-{hi} quantiles of {self.rows:,} training "
                f"rows; {b['clipped']:,} training value{'' if b['clipped'] == 1 else 's'} outside)"
                for name, b in self.bounds.items()]

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; :meth:`from_dict` restores it exactly."""
        return {"outliers": self.outliers, "quantiles": list(QUANTILES), "rows": self.rows,
                "bounds": {name: dict(b) for name, b in self.bounds.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cleaner:
        """Rebuild a fitted cleaner from :meth:`to_dict` output."""
        try:
            cleaner = cls()
            cleaner.outliers = str(d["outliers"])
            cleaner.rows = int(d["rows"])
            for name, b in d["bounds"].items():
                integer = bool(b["integer"])
                cleaner.bounds[str(name)] = {"low": _number(b["low"], integer), "high": _number(b["high"], integer),
                                             "integer": integer, "clipped": int(b["clipped"])}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"cleaner state is malformed: {exc!r}") from exc
        return cleaner
