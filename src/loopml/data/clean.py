"""Clean a collected frame as the spec's ``data.clean`` says, recording every step with numbers.

:func:`clean` does the steps that need no learned state: it drops rows (missing target, duplicates,
missing values, far outliers) and columns (leakage suspects, id-like, unusable, constant). What is
learned from data (clip bounds, imputation, class rebalancing) happens in the Model stage on each
model's training rows only, and travels with the model (:class:`~loopml.data.cleaner.Cleaner`).

>>> import pandas as pd
>>> from loopml.spec import CleanSpec
>>> frame = pd.DataFrame({"x": [1, 1, 2, 3], "c": ["k"] * 4, "y": ["a", "a", "b", None]})
>>> cleaned = clean(frame, target="y", task="binary", plan=CleanSpec())
>>> cleaned.actions[:3]
['dropped 1 row with a missing target', 'dropped 1 exact duplicate row', "dropped column 'c': constant"]
>>> [(s["step"], s["rows_dropped"]) for s in cleaned.report["steps"]][:2]
[('missing_target', 1), ('duplicates', 1)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.data.assess import _column_kind, _require_target
from loopml.data.cleaner import AUTO_MINORITY_SHARE, QUANTILES, resolve_imbalance

if TYPE_CHECKING:
    from loopml.data.assess import DataAssessment
    from loopml.spec import CleanSpec

__all__ = ["CleanedData", "clean"]

# A value this many robust standard deviations (1.4826 x MAD) from the median is an error, not a tail:
# on normal data 8 SDs is a one-in-10^15 event, so almost only broken values are dropped.
_MAD_FACTOR = 8.0
_MAD_TO_SD = 1.4826


@dataclass
class CleanedData:
    """The cleaned frame, what was done in words, and the same in numbers."""

    frame: pd.DataFrame
    actions: list[str]
    report: dict

    def to_dict(self) -> dict:
        return {"actions": list(self.actions), "report": self.report}


def _n(n: int, what: str = "row") -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


class _Log:
    """Collects the sentence and the structured entry of each step."""

    def __init__(self) -> None:
        self.actions: list[str] = []
        self.steps: list[dict[str, Any]] = []
        self.dropped_columns: dict[str, str] = {}

    def step(self, step: str, *, rows: int = 0, columns: dict[str, str] | None = None,
             detail: dict | None = None, sentences: list[str] | str = ()) -> None:
        columns = columns or {}
        self.dropped_columns.update(columns)
        self.actions += [sentences] if isinstance(sentences, str) else list(sentences)
        self.steps.append({"step": step, "rows_dropped": int(rows), "columns_dropped": list(columns),
                           "detail": detail or {}})


def clean(df: pd.DataFrame, target: str, task: str, plan: CleanSpec, *,
          assessment: DataAssessment | None = None) -> CleanedData:
    """Drop rows and columns as ``plan`` says; ``df`` is not changed and the target column is always kept.

    ``assessment`` (of ``df``, by :func:`~loopml.data.assess.assess`) supplies the leakage suspects and
    the columns unusable at prediction time; without it those steps find nothing.
    """
    _require_target(df, target)
    log = _Log()
    rows_in = len(df)

    has_target = df[target].notna().to_numpy()
    frame = df[has_target]
    missing_target = int((~has_target).sum())
    log.step("missing_target", rows=missing_target,
             sentences=[f"dropped {_n(missing_target)} with a missing target"] if missing_target else [])

    duplicated = frame.duplicated().to_numpy()
    duplicates = int(duplicated.sum())
    if plan.duplicates == "drop":
        frame = frame[~duplicated]
        log.step("duplicates", rows=duplicates, detail={"policy": "drop"},
                 sentences=[f"dropped {_n(duplicates, 'exact duplicate row')}"] if duplicates else [])
    else:
        log.step("duplicates", detail={"policy": "keep", "kept": duplicates},
                 sentences=[f"kept {_n(duplicates, 'exact duplicate row')} (duplicates: keep)"] if duplicates else [])

    # Columns go before rows: an all-missing column would otherwise make missing: drop_rows empty the frame.
    frame = _drop_columns(frame, target, plan, assessment, log)
    frame, dropped_missing, missing_left = _missing(frame, target, plan, log)
    frame, dropped_outliers = _outliers(frame, target, plan, log)
    imbalance = _imbalance(frame, target, task, plan, log)

    frame = frame.reset_index(drop=True)
    report = {
        "rows_in": rows_in,
        "rows_out": len(frame),
        "steps": log.steps,
        "dropped_missing_target": missing_target,
        "dropped_duplicates": duplicates if plan.duplicates == "drop" else 0,
        "dropped_missing_rows": dropped_missing,
        "dropped_outlier_rows": dropped_outliers,
        "missing_values_left": missing_left,
        "dropped_columns": log.dropped_columns,
        "imbalance": imbalance,
    }
    return CleanedData(frame=frame, actions=log.actions, report=report)


def _drop_columns(frame: pd.DataFrame, target: str, plan: CleanSpec, assessment: Any, log: _Log) -> pd.DataFrame:
    """Leakage suspects, id-like, unusable and constant columns, each step with its reasons."""
    raw_kinds = getattr(assessment, "column_kinds", None) or {}
    column_steps([c for c in frame.columns if c != target], plan, assessment, log,
                 is_id=lambda c: raw_kinds.get(str(c)) == "id" or _column_kind(frame[c]) == "id",
                 is_constant=lambda c: frame[c].nunique(dropna=False) <= 1)
    return frame.drop(columns=list(log.dropped_columns))


def column_steps(features: list[str], plan: CleanSpec, assessment: Any, log: _Log, *,
                 is_id: Callable[[str], bool], is_constant: Callable[[str], bool]) -> list[str]:
    """Log the leakage, ids, unusable and constant steps over ``features``; the features left after them.

    ``is_id`` and ``is_constant`` judge a column on the rows at hand (a frame, or every partition of a file).
    """
    leaks: dict[str, str] = {}
    for suspect in getattr(assessment, "leakage_suspects", None) or []:
        column = suspect.get("column")
        if column in features:
            score = suspect.get("score")
            leaks[column] = "leakage suspect" + (f" ({suspect.get('metric', 'score')} {score:.3f} alone)"
                                                 if isinstance(score, (int, float)) else "")
    if plan.leakage == "drop":
        log.step("leakage", columns=leaks, detail={"policy": "drop", "suspects": list(leaks)},
                 sentences=[f"dropped column '{c}': {why}" for c, why in leaks.items()])
    else:
        log.step("leakage", detail={"policy": "keep", "suspects": list(leaks)},
                 sentences=[f"kept column '{c}': {why} (leakage: keep)" for c, why in leaks.items()])
        leaks = {}
    features = [c for c in features if c not in leaks]

    ids = {c: "id-like (unique per row)" for c in features if is_id(c)}
    if plan.ids == "drop":
        log.step("ids", columns=ids, detail={"policy": "drop"},
                 sentences=[f"dropped column '{c}': {why}" for c, why in ids.items()])
    else:
        log.step("ids", detail={"policy": "keep", "kept": list(ids)},
                 sentences=[f"kept column '{c}': {why} (ids: keep)" for c, why in ids.items()])
    features = [c for c in features if c not in ids]

    # A column the assessment calls unusable at prediction time cannot be a feature; "keep" for ids and
    # leakage suspects is the user's explicit word and wins.
    kept = {s["column"] for s in getattr(assessment, "leakage_suspects", None) or []} if plan.leakage == "keep" \
        else set()
    unusable = {c: str(why) for c, why in (getattr(assessment, "unusable_columns", None) or {}).items()
                if c in features and c not in kept and not (plan.ids == "keep" and str(why).startswith("id-like"))}
    log.step("unusable", columns=unusable, sentences=[f"dropped column '{c}': {why}" for c, why in unusable.items()])
    features = [c for c in features if c not in unusable]

    constant = {c: "constant" for c in features if is_constant(c)}
    log.step("constant", columns=constant, sentences=[f"dropped column '{c}': {why}" for c, why in constant.items()])
    return [c for c in features if c not in constant]


def _missing(frame: pd.DataFrame, target: str, plan: CleanSpec, log: _Log) -> tuple[pd.DataFrame, int, int]:
    features = [c for c in frame.columns if c != target]
    per_column = frame[features].isna().sum()
    per_column = {str(c): int(n) for c, n in per_column.items() if n}
    cells = sum(per_column.values())
    if plan.missing == "drop_rows":
        complete = frame[features].notna().all(axis=1).to_numpy()
        dropped = int((~complete).sum())
        sentence = f"dropped {_n(dropped)} with a missing feature value (missing: drop_rows)"
        log.step("missing", rows=dropped, detail={"policy": "drop_rows", "missing_by_column": per_column},
                 sentences=[sentence] if dropped else [])
        return frame[complete], dropped, 0
    log.step("missing", detail={"policy": "impute", "missing_by_column": per_column}, sentences=[
        f"left {_n(cells, 'missing value')} in {_n(len(per_column), 'column')} for the model to impute, "
        "learned on training rows: median plus a missing indicator for numbers, a 'missing' level for categories "
        "(missing: impute)"] if cells else [])
    return frame, 0, cells


def _outliers(frame: pd.DataFrame, target: str, plan: CleanSpec, log: _Log) -> tuple[pd.DataFrame, int]:
    if plan.outliers == "clip":
        lo, hi = (f"{q * 100:g}%" for q in QUANTILES)
        log.step("outliers", detail={"policy": "clip", "quantiles": list(QUANTILES)}, sentences=(
            f"outliers: clip: each numeric column is clipped to its {lo}-{hi} quantiles, learned on each "
            "model's training rows and applied unchanged at serving"))
        return frame, 0
    if plan.outliers != "drop":
        log.step("outliers", detail={"policy": "keep"})
        return frame, 0
    far = np.zeros(len(frame), dtype=bool)
    by_column: dict[str, int] = {}
    for column in frame.columns:
        if column == target or _column_kind(frame[column]) != "numeric":
            continue
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        median = np.nanmedian(values) if np.isfinite(values).any() else np.nan
        mad = np.nanmedian(np.abs(values - median)) if np.isfinite(median) else np.nan
        if not mad > 0:  # a column that is mostly one value has no robust scale to judge by
            continue
        with np.errstate(invalid="ignore"):
            out = np.abs(values - median) > _MAD_FACTOR * _MAD_TO_SD * mad
        if out.any():
            by_column[str(column)] = int(out.sum())
            far |= out
    dropped = int(far.sum())
    where = ", ".join(f"'{c}' ({n:,})" for c, n in by_column.items())
    rule = f"|x - median| > {_MAD_FACTOR:g} x 1.4826 x MAD"
    log.step("outliers", rows=dropped, detail={"policy": "drop", "rule": rule, "by_column": by_column},
             sentences=[f"dropped {_n(dropped)} with a value more than {_MAD_FACTOR:g} robust standard deviations "
                        f"(1.4826 x MAD) from the median, in {where} (outliers: drop)"] if dropped else [])
    return frame[~far], dropped


def _imbalance(frame: pd.DataFrame, target: str, task: str, plan: CleanSpec, log: _Log) -> dict[str, Any]:
    """Record the class balance and what the Model stage will do about it (it rebalances training rows only)."""
    if task == "regression" or not len(frame):
        return {"policy": plan.imbalance}
    shares = frame[target].value_counts(normalize=True)
    return imbalance_step(str(shares.index[-1]), float(shares.iloc[-1]), task, plan, log)


def imbalance_step(smallest: str, share: float, task: str, plan: CleanSpec, log: _Log) -> dict[str, Any]:
    """Log the smallest class's share and the rebalancing the Model stage will apply; the step's detail."""
    applied = resolve_imbalance(plan.imbalance, share, task)
    imbalance: dict[str, Any] = {"policy": plan.imbalance, "minority_class": smallest, "minority_share": share,
                                 "applied": applied}
    does = {
        "weights": "the model uses balanced class weights",
        "undersample": "each model's training rows are undersampled to balance the classes",
        "oversample": "each model's training rows are oversampled to balance the classes",
        "none": "classes are not rebalanced",
    }[applied]
    why = f"imbalance: {plan.imbalance}"
    if plan.imbalance == "auto":
        why += f"; class weights when the smallest class is under {AUTO_MINORITY_SHARE:.0%}"
    log.step("imbalance", detail=imbalance,
             sentences=f"smallest class '{smallest}' is {share:.1%} of rows; {does} ({why})")
    return imbalance
