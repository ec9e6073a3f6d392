"""A starter ``loopml.yaml`` drafted from a data file: the task and target guessed, and said so.

>>> draft = draft_spec(Path("benefits.csv"))          # doctest: +SKIP
>>> draft.guesses[0]                                  # doctest: +SKIP
"target 'ui' (last column ...)"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from loopml.data import read_source
from loopml.errors import DataError

__all__ = ["DraftSpec", "draft_spec"]

_TARGET_NAMES = re.compile(r"^(target|label|class|y|outcome|churn|default|response|deny|vote|ui)$", re.I)


@dataclass(frozen=True)
class DraftSpec:
    text: str
    task: str
    target: str
    candidates: list[str]
    guesses: list[str]


def _task_of(column: pd.Series) -> tuple[str, str]:
    values = column.dropna()
    distinct = values.nunique()
    if distinct == 2:
        shares = values.astype(str).value_counts(normalize=True).sort_index()
        return "binary", "2 values: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric or (pd.api.types.is_integer_dtype(values) and distinct <= 10):
        return "multiclass", f"{distinct} distinct values"
    return "regression", f"numeric with {distinct:,} distinct values"


def _candidates(frame: pd.DataFrame) -> list[str]:
    named = [c for c in frame.columns if _TARGET_NAMES.match(str(c))]
    usable = [c for c in frame.columns if 2 <= frame[c].nunique() < max(len(frame), 3)]
    ordered = named + [frame.columns[-1]] + [c for c in reversed(usable)]
    return list(dict.fromkeys(c for c in ordered if c in usable))[:5]


def draft_spec(data_path: Path, *, target: str | None = None, spec_dir: Path | None = None) -> DraftSpec:
    """Draft a valid starter spec for ``data_path``; ``target`` overrides the guess."""
    frame = read_source(data_path)
    if frame.empty:
        raise DataError(f"{data_path.name}: the file holds no rows; loopml needs labeled rows to start from")
    candidates = _candidates(frame)
    if target is not None and target not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise DataError(f"--target: column '{target}' is not in {data_path.name}; columns: {columns}")
    if target is None:
        if not candidates:
            raise DataError(f"{data_path.name}: no column looks like a target (every column is constant or unique); "
                            "name it with --target")
        target = str(candidates[0])
    task, why = _task_of(frame[target])
    guesses = [f"target '{target}' ({'given' if target not in candidates[:1] else 'guessed'}; candidates: "
               f"{', '.join(map(str, candidates)) or 'none'})",
               f"task '{task}' ({why})"]
    business: dict = {"problem": f"Predict {target} from the other columns of {data_path.name}.",
                      "task": task, "target": target}
    if task == "binary":
        counts = frame[target].dropna().astype(str).value_counts()
        positive = counts.index[-1]
        business["positive"] = _yaml_scalar(frame[target].dropna(), positive)
        business["goal"] = {"metric": "roc_auc", "at_least": 0.75}
        guesses.append(f"positive class '{positive}' (the rarer of the two)")
    elif task == "multiclass":
        business["goal"] = {"metric": "accuracy", "at_least": 0.6}
    else:
        business["goal"] = {"metric": "r2", "at_least": 0.5}
    guesses.append(f"goal {business['goal']['metric']} >= {business['goal']['at_least']} — a placeholder: "
                   "state the goal your business needs")
    base = spec_dir or data_path.parent
    try:
        rel = data_path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        rel = data_path.resolve().as_posix()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", data_path.name.split(".")[0]).strip("-") or "project"
    doc = {"project": name, "business": business,
           "data": {"sources": [{"name": name, "path": rel}]},
           "model": {"budget": "2m", "seed": 0}}
    return DraftSpec(yaml.safe_dump(doc, sort_keys=False), task, target, [str(c) for c in candidates], guesses)


def _yaml_scalar(values: pd.Series, label: str):
    """The positive label as the data holds it (a bool stays a bool, a number a number)."""
    for value in values.unique():
        if str(value) == label:
            return value.item() if hasattr(value, "item") else value
    return label
