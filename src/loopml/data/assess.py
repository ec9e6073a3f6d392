"""Assess a frame's usability and quality: column kinds, missing values, duplicates, the target.

>>> import pandas as pd
>>> frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "y": ["a", "b", "a", "a"]})
>>> a = assess(frame, target="y", task="binary")
>>> a.rows, a.column_kinds, a.missing_share, a.minority_count
(4, {'x': 'numeric'}, {'x': 0.25}, 1)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import pandas as pd

from loopml.errors import DataError

__all__ = ["DataAssessment", "assess"]

# Below this many rows every small column looks unique; do not call it an id.
_MIN_ID_ROWS = 20
_TEXT_MEAN_LENGTH = 30
_TEXT_DISTINCT_SHARE = 0.5


@dataclass
class DataAssessment:
    """Numbers that say whether a frame can serve the goal."""

    target: str
    task: str
    rows: int
    columns: int
    column_kinds: dict[str, str]
    missing_share: dict[str, float]
    missing_cells_share: float
    duplicate_rows: int
    constant_columns: list[str]
    target_missing: int
    target_balance: dict[str, float] = field(default_factory=dict)
    target_counts: dict[str, int] = field(default_factory=dict)
    minority_count: int | None = None
    target_summary: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _is_id_name(name: str) -> bool:
    tokens = re.split(r"[^a-z0-9]+", str(name).lower())
    return "id" in tokens or str(name).endswith(("Id", "ID"))


def _column_kind(series: pd.Series) -> str:
    """One of numeric, categorical, boolean, datetime, text, id."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    unique_per_row = len(series) >= _MIN_ID_ROWS and series.notna().all() and series.is_unique
    if pd.api.types.is_numeric_dtype(dtype):
        integer = pd.api.types.is_integer_dtype(dtype)
        return "id" if integer and unique_per_row and _is_id_name(series.name) else "numeric"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    values = series.dropna()
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred == "boolean":
        return "boolean"
    if inferred in ("datetime", "datetime64", "date"):
        return "datetime"
    if inferred != "string" or values.empty:
        return "categorical"  # mixed values are labels, not measurements
    distinct_share = values.nunique() / len(values)
    if values.str.len().mean() > _TEXT_MEAN_LENGTH and distinct_share > _TEXT_DISTINCT_SHARE:
        return "text"
    return "id" if unique_per_row else "categorical"


def _require_target(df: pd.DataFrame, target: str) -> None:
    if target not in df.columns:
        raise DataError(
            f"target '{target}' is not a column of the data; set business.target to one of: "
            f"{', '.join(map(str, df.columns))}"
        )


def _summary(values: pd.Series) -> dict[str, float | None]:
    if values.empty:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {
        "mean": float(values.mean()),
        "std": float(values.std()) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def assess(df: pd.DataFrame, target: str, task: str) -> DataAssessment:
    """Assess ``df`` for predicting ``target`` (task binary, multiclass or regression).

    Shares are in [0, 1]; class keys are ``str(label)``. Nothing is changed.
    """
    _require_target(df, target)
    features = [c for c in df.columns if c != target]
    missing = df.isna().sum()
    rows = int(len(df))
    cells = rows * df.shape[1]
    labels = df[target].dropna()
    result = DataAssessment(
        target=target,
        task=task,
        rows=rows,
        columns=len(features),
        column_kinds={str(c): _column_kind(df[c]) for c in features},
        missing_share={str(c): float(n / rows) for c, n in missing.items() if n > 0},
        missing_cells_share=float(missing.sum() / cells) if cells else 0.0,
        duplicate_rows=int(df.duplicated().sum()),
        constant_columns=[str(c) for c in features if df[c].nunique(dropna=False) <= 1],
        target_missing=int(missing[target]),
    )
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(labels.dtype) or pd.api.types.is_bool_dtype(labels.dtype):
            raise DataError(
                f"target '{target}' holds {labels.dtype} values, but task 'regression' needs numbers; "
                "set business.task to binary or multiclass, or pick a numeric target"
            )
        result.target_summary = _summary(labels.astype(float))
    else:
        counts = labels.value_counts()
        result.target_counts = {str(k): int(v) for k, v in counts.items()}
        result.target_balance = {str(k): float(v / len(labels)) for k, v in counts.items()}
        result.minority_count = int(counts.min()) if len(counts) else 0
    return result
