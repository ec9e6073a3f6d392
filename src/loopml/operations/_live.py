"""A window's logged rows read back as training held them, and their data quality against the training data."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.data.contract import ColumnContract, DataContract
from loopml.spec import MonitorSpec

if TYPE_CHECKING:
    from loopml.operations.monitor import _Context


def parse_rows(raw: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The rows whose features are a JSON object (features parsed), and (seq, why) for the others."""
    good, bad = [], []
    for r in raw:
        try:
            features = json.loads(r["features"]) if isinstance(r["features"], str) else r["features"]
        except (TypeError, ValueError) as exc:
            bad.append((r["seq"], f"features are not valid JSON ({exc})"))
            continue
        if not isinstance(features, dict):
            bad.append((r["seq"], f"features are {type(features).__name__}, not a JSON object of column: value"))
            continue
        try:
            prediction = json.loads(r["prediction"]) if isinstance(r["prediction"], str) else r["prediction"]
        except (TypeError, ValueError):
            prediction = None
        good.append({**r, "features": features, "prediction": prediction})
    return good, bad


@dataclass(frozen=True)
class LiveRows:
    """A window's readable rows as training held them, and per column: rows that sent it, wrong-typed values."""

    frame: pd.DataFrame
    present: dict[str, int]
    wrong: dict[str, int]


def typed_frame(records: list[dict[str, Any]], contract: DataContract) -> LiveRows:
    """The contract's columns as training held them (numbers as float, categories as text, missing as NaN).

    A value of the wrong type becomes missing here and is counted apart by the quality check.
    """
    columns: dict[str, Any] = {}
    present: dict[str, int] = {}
    wrong: dict[str, int] = {}
    for c in contract.columns:
        values = [r["features"].get(c.name, _ABSENT) for r in records]
        present[c.name] = sum(v is not _ABSENT for v in values)
        typed = [_typed(c, v) for v in values]
        columns[c.name] = [v for v, _ in typed]
        wrong[c.name] = sum(bad for _, bad in typed)
    frame = pd.DataFrame({c.name: _array(c, columns[c.name]) for c in contract.columns}, index=range(len(records)))
    return LiveRows(frame, present, wrong)


_ABSENT = object()


def _typed(column: ColumnContract, value: Any) -> tuple[Any, bool]:
    """(the value as training held it or None, whether it was of the wrong type)."""
    if value is _ABSENT or value is None or (isinstance(value, float) and math.isnan(value)):
        return None, False
    if column.kind in ("numeric", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            return None, True
        return float(value), False
    if column.kind == "boolean":
        return (value, False) if isinstance(value, bool) else (None, True)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 12.0 from a JSON client means the category "12"
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None, True
    return str(value), False


def _array(column: ColumnContract, values: list) -> Any:
    if column.kind in ("numeric", "integer"):
        return np.array([np.nan if v is None else v for v in values], dtype="float64")
    return pd.Series(values, dtype="object")


def with_columns(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """``frame`` with every contract column (absent ones as missing), as the model expects."""
    missing = [c for c in contract.feature_names if c not in frame.columns]
    return frame.assign(**dict.fromkeys(missing, np.nan)) if missing else frame


# -- data quality --------------------------------------------------------------------------------
def data_quality(live: LiveRows, ctx: _Context, unreadable: int, monitor: MonitorSpec,
                 notes: list[str]) -> dict[str, Any]:
    """Per column: missing (and the reference's), out of range, unknown category, wrong type; limit breaches.

    A value of the wrong type counts against the out-of-range limit (numbers) or the unknown-category
    limit (categories): the contract would refuse it either way.
    """
    limits = monitor.quality
    frame, present = live.frame, live.present
    n = len(frame)
    columns: dict[str, dict[str, Any]] = {}
    breaches: list[dict[str, Any]] = []
    for c in ctx.contract.columns:  # type: ignore[union-attr]
        s = frame[c.name]
        if present[c.name] == 0:
            notes.append(f"column '{c.name}' is missing from the log: none of the {n} readable rows sends it; "
                         "send it with every request (the model fills it in, but drift cannot be measured)")
        ref = ctx.reference[c.name] if ctx.reference is not None and c.name in ctx.reference.columns else None
        row: dict[str, Any] = {
            "missing": float(s.isna().mean()) if n else 0.0,
            "missing_reference": float(ref.isna().mean()) if ref is not None and len(ref) else None,
            "absent_share": 1 - present[c.name] / n if n else 0.0,
        }
        wrong = live.wrong[c.name] / n if n else 0.0
        row["wrong_type"] = wrong
        if c.kind in ("numeric", "integer") and (c.min is not None or c.max is not None):
            values = s.to_numpy(dtype=float)
            outside = (values < (c.min if c.min is not None else -np.inf)) | (values > (c.max if c.max is not None
                                                                                        else np.inf))
            row["out_of_range"] = float(outside.sum() / n) if n else 0.0
            _limit(breaches, c.name, "out_of_range", row["out_of_range"] + wrong, limits.out_of_range)
        elif c.kind == "categorical" and c.categories is not None:
            sent = s.dropna()
            unknown = sent[~sent.isin(c.categories)]
            row["unknown_category"] = float(len(unknown) / n) if n else 0.0
            row["unknown_values"] = sorted(set(unknown))[:10]
            _limit(breaches, c.name, "unknown_category", row["unknown_category"] + wrong, limits.unknown_category)
        rise = row["missing"] - (row["missing_reference"] or 0.0)
        _limit(breaches, c.name, "missing_increase", rise, limits.missing_increase)
        columns[c.name] = row
    return {"rows": n, "unreadable_rows": unreadable, "columns": columns, "breaches": breaches}


def _limit(breaches: list[dict[str, Any]], column: str, measure: str, value: float, limit: float) -> None:
    if value > limit:
        breaches.append({"column": column, "measure": measure, "value": value, "limit": limit})
