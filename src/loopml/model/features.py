"""Feature engineering: one :class:`Preprocessor`, fit on training rows, applied unchanged at serving.

Numeric columns get median imputation (plus a ``<col>__missing`` indicator where training had
gaps); categorical columns keep levels seen at least ``min_count`` times and fold the rest, and any
level unseen in training, into ``"__rare__"``. Two encodings share that state: ``"tree"`` (integer
codes that LightGBM treats as categorical) and ``"linear"`` (standardised numbers, one-hot levels).

>>> import pandas as pd
>>> X = pd.DataFrame({"age": [30, 40, None, 50, 60], "sex": ["f", "m", "f", "m", "f"]})
>>> pre = Preprocessor(min_count=2).fit(X)
>>> pre.feature_names("linear")
['age', 'age__missing', 'sex=f', 'sex=m', 'sex=__rare__']
>>> pre.transform(pd.DataFrame({"age": [None], "sex": ["x"]}), "tree").tolist()
[[45.0, 1.0, 2.0]]
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopml.errors import ModelError

__all__ = ["Preprocessor"]

RARE = "__rare__"
MISSING = "__missing__"
Kind = Literal["tree", "linear"]


def _key(value: Any) -> str:
    """A categorical value as the string it is compared by (so 12, 12.0 and "12" are one level)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _keys(col: pd.Series) -> np.ndarray:
    """:func:`_key` of every value, computed once per distinct value on long columns."""
    if len(col) <= 64:  # serving-sized input: factorize costs more than it saves
        return np.array([_key(v) for v in col.tolist()], dtype=object)
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return np.array([_key(u) for u in uniques] + [MISSING], dtype=object)[codes]


def _is_categorical(dtype: Any) -> bool:
    return (
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


class Preprocessor:
    """Imputes, groups rare levels and encodes features for a ``"tree"`` or ``"linear"`` model.

    >>> import pandas as pd
    >>> pre = Preprocessor().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    >>> pre.transform(pd.DataFrame({"x": [2.0]}), "linear").tolist()
    [[0.0]]
    """

    def __init__(self, *, min_count: int = 5):
        self.min_count = min_count
        self.numeric: list[dict[str, Any]] = []  # {name, median, mean, std, indicator}
        self.categorical: list[dict[str, Any]] = []  # {name, levels}

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame) -> Preprocessor:
        """Learn medians, scales and kept levels from the training features ``X``."""
        if X.shape[1] == 0:
            raise ModelError("there are no feature columns to train on; the data holds only the target")
        self.numeric, self.categorical = [], []
        for name in X.columns:
            col = X[name]
            if _is_categorical(col.dtype):
                counts = pd.Series(_keys(col)).value_counts()
                levels = sorted(str(k) for k, c in counts.items() if c >= self.min_count and k != RARE)
                self.categorical.append({"name": str(name), "levels": levels})
            elif pd.api.types.is_numeric_dtype(col.dtype):
                values = col.to_numpy(dtype=float, na_value=np.nan)
                missing = np.isnan(values)
                median = float(np.median(values[~missing])) if (~missing).any() else 0.0
                filled = np.where(missing, median, values)
                std = float(filled.std())
                self.numeric.append({
                    "name": str(name), "median": median, "mean": float(filled.mean()),
                    "std": std if std > 0 else 1.0, "indicator": bool(missing.any()),
                })
            else:
                raise ModelError(
                    f"column '{name}' has dtype {col.dtype}, which the model cannot use; "
                    "turn it into numbers or text in the Data stage, or drop it"
                )
        return self

    # -- applying ------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The input columns the preprocessor needs, in training order."""
        return [c["name"] for c in self.numeric] + [c["name"] for c in self.categorical]

    def feature_names(self, kind: Kind) -> list[str]:
        """Names of the output columns of :meth:`transform` for ``kind``."""
        _check_kind(kind)
        names = [c["name"] for c in self.numeric]
        names += [f"{c['name']}__missing" for c in self.numeric if c["indicator"]]
        for c in self.categorical:
            if kind == "tree":
                names.append(c["name"])
            else:
                names += [f"{c['name']}={level}" for level in [*c["levels"], RARE]]
        return names

    def categorical_indices(self, kind: Kind) -> list[int]:
        """Output columns holding categorical codes (``"tree"`` only; one-hot needs none)."""
        _check_kind(kind)
        if kind == "linear":
            return []
        start = len(self.numeric) + sum(c["indicator"] for c in self.numeric)
        return list(range(start, start + len(self.categorical)))

    def transform(self, X: pd.DataFrame, kind: Kind) -> np.ndarray:
        """Encode ``X`` as a float64 matrix; extra columns are ignored, missing ones are an error."""
        _check_kind(kind)
        if not self.numeric and not self.categorical:
            raise ModelError("the preprocessor is not fitted; call fit(X) on the training features first")
        by_name = {str(c): c for c in X.columns}  # names are stored as text (JSON); frames may use ints
        absent = [c for c in self.columns if c not in by_name]
        if absent:
            raise ModelError(f"input lacks the feature column(s) {', '.join(absent)} the model was trained on")
        blocks: list[np.ndarray] = []
        indicators: list[np.ndarray] = []
        for c in self.numeric:
            values = self._numeric(X[by_name[c["name"]]], c["name"])
            missing = np.isnan(values)
            filled = np.where(missing, c["median"], values)
            blocks.append((filled - c["mean"]) / c["std"] if kind == "linear" else filled)
            if c["indicator"]:
                indicators.append(missing.astype(float))
        blocks += indicators
        for c in self.categorical:
            position = {level: i for i, level in enumerate(c["levels"])}
            rare = len(c["levels"])
            codes = np.array([position.get(k, rare) for k in _keys(X[by_name[c["name"]]])], dtype=np.int64)
            if kind == "tree":
                blocks.append(codes.astype(float))
            else:
                blocks.extend((codes == i).astype(float) for i in range(rare + 1))
        return np.column_stack(blocks) if blocks else np.empty((len(X), 0))

    @staticmethod
    def _numeric(col: pd.Series, name: str) -> np.ndarray:
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            return col.to_numpy(dtype=float, na_value=np.nan)
        # At serving numbers may arrive as text (JSON, CSV); accept them, refuse what is not a number.
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = np.isnan(values) & col.notna().to_numpy()
        if bad.any():
            example = col[bad].iloc[0]
            raise ModelError(f"column '{name}' must be numeric; found {example!r} ({type(example).__name__})")
        return values

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; :meth:`from_dict` restores it exactly."""
        return {"min_count": self.min_count, "numeric": self.numeric, "categorical": self.categorical}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output."""
        try:
            pre = cls(min_count=int(d["min_count"]))
            pre.numeric = [
                {"name": str(c["name"]), "median": float(c["median"]), "mean": float(c["mean"]),
                 "std": float(c["std"]), "indicator": bool(c["indicator"])}
                for c in d["numeric"]
            ]
            pre.categorical = [{"name": str(c["name"]), "levels": [str(v) for v in c["levels"]]}
                               for c in d["categorical"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"preprocessor state is malformed: {exc!r}") from exc
        return pre


def _check_kind(kind: str) -> None:
    if kind not in ("tree", "linear"):
        raise ModelError(f"kind must be 'tree' or 'linear'; got {kind!r} instead")
