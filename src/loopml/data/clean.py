"""Clean a collected frame as the spec's ``data.clean`` says, recording every action with numbers.

>>> import pandas as pd
>>> from loopml.spec import CleanSpec
>>> frame = pd.DataFrame({"x": [1, 1, 2, 3], "c": ["k"] * 4, "y": ["a", "a", "b", None]})
>>> cleaned = clean(frame, target="y", task="binary", plan=CleanSpec())
>>> cleaned.actions[:3]
['dropped 1 row with a missing target', 'dropped 1 exact duplicate row', "dropped column 'c': constant"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from loopml.data.assess import _require_target, assess

if TYPE_CHECKING:
    from loopml.spec import CleanSpec

__all__ = ["CleanedData", "clean"]

_IQR_FACTOR = 3.0


@dataclass
class CleanedData:
    """The cleaned frame, what was done in words, and the same in numbers."""

    frame: pd.DataFrame
    actions: list[str]
    report: dict

    def to_dict(self) -> dict:
        return {"actions": list(self.actions), "report": self.report}


def _rows(n: int, what: str = "row") -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _clip(series: pd.Series) -> tuple[pd.Series, int]:
    """Clip to [Q1 - 3 IQR, Q3 + 3 IQR]; integer columns keep integer bounds, so their dtype stays."""
    q1, q3 = series.quantile([0.25, 0.75])
    iqr = q3 - q1
    if not iqr > 0:  # also skips an all-missing column (NaN)
        return series, 0
    low, high = q1 - _IQR_FACTOR * iqr, q3 + _IQR_FACTOR * iqr
    if pd.api.types.is_integer_dtype(series.dtype):
        low, high = math.ceil(low), math.floor(high)
    outside = int(((series < low) | (series > high)).sum())
    return (series.clip(low, high) if outside else series), outside


def clean(df: pd.DataFrame, target: str, task: str, plan: CleanSpec) -> CleanedData:
    """Drop rows without a target, duplicates, constant and id columns; handle missing values and outliers.

    ``df`` is not changed. Missing feature values are left for the model to impute unless
    ``plan.missing`` is ``drop_rows``; ``plan.imbalance`` is recorded for the model's class weights.
    """
    _require_target(df, target)
    frame = df.copy()
    rows_in = len(frame)
    actions: list[str] = []

    has_target = frame[target].notna()
    dropped_target = int((~has_target).sum())
    frame = frame[has_target.to_numpy()]
    if dropped_target:
        actions.append(f"dropped {_rows(dropped_target)} with a missing target")

    dropped_duplicates = 0
    if plan.duplicates == "drop":
        duplicated = frame.duplicated()
        dropped_duplicates = int(duplicated.sum())
        frame = frame[~duplicated.to_numpy()]
        if dropped_duplicates:
            actions.append(f"dropped {_rows(dropped_duplicates, 'exact duplicate row')}")
    elif (kept := int(frame.duplicated().sum())):
        actions.append(f"kept {_rows(kept, 'exact duplicate row')} (duplicates: keep)")

    # Columns go before rows: an all-missing constant column would otherwise empty the frame.
    assessment = assess(frame, target, task)
    dropped_columns = {c: "constant" for c in assessment.constant_columns}
    ids = [c for c, kind in assessment.column_kinds.items() if kind == "id" and c not in dropped_columns]
    dropped_columns.update({c: "id-like (unique per row)" for c in ids})
    frame = frame.drop(columns=list(dropped_columns))
    actions += [f"dropped column '{c}': {why}" for c, why in dropped_columns.items()]

    features = [c for c in frame.columns if c != target]
    dropped_missing = 0
    missing_cells = int(frame[features].isna().sum().sum())
    if plan.missing == "drop_rows":
        complete = frame[features].notna().all(axis=1)
        dropped_missing = int((~complete).sum())
        frame = frame[complete.to_numpy()]
        if dropped_missing:
            actions.append(f"dropped {_rows(dropped_missing)} with a missing feature value (missing: drop_rows)")
        missing_cells = 0
    elif missing_cells:
        actions.append(f"left {_rows(missing_cells, 'missing value')} for the model to impute (missing: impute)")

    clipped: dict[str, int] = {}
    if plan.outliers == "clip":
        for column in features:
            if assessment.column_kinds.get(column) != "numeric":
                continue
            frame[column], n = _clip(frame[column])
            if n:
                clipped[column] = n
                actions.append(f"clipped {_rows(n, 'value')} of '{column}' to Q1 - 3 IQR .. Q3 + 3 IQR")

    imbalance: dict = {"policy": plan.imbalance}
    if task != "regression" and len(frame):
        shares = frame[target].value_counts(normalize=True)
        imbalance.update(minority_class=str(shares.index[-1]), minority_share=float(shares.iloc[-1]))
        if plan.imbalance != "none":
            actions.append(
                f"smallest class '{shares.index[-1]}' is {shares.iloc[-1]:.1%} of rows; "
                f"the model uses class weights (imbalance: {plan.imbalance})"
            )

    frame = frame.reset_index(drop=True)
    report = {
        "rows_in": rows_in,
        "rows_out": len(frame),
        "dropped_duplicates": dropped_duplicates,
        "dropped_missing_target": dropped_target,
        "dropped_missing_rows": dropped_missing,
        "missing_values_left": missing_cells,
        "clipped": clipped,
        "dropped_columns": dropped_columns,
        "imbalance": imbalance,
    }
    return CleanedData(frame=frame, actions=actions, report=report)
