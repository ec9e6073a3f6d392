"""Clean a CSV or Parquet file larger than memory in partitions, with dask.dataframe, into Parquet parts.

The steps and their report are those of :func:`~loopml.data.clean.clean`, done without reading the
file whole: rows with a missing target go partition by partition; exact duplicates are found across
the whole file by a 64-bit hash of each row (the first row of each group is kept, as pandas keeps it);
constant columns are judged on every labeled row; far outliers (``outliers: drop``) are judged by the
median and MAD of a seeded sample. Each partition is cleaned where it lies (a worker of the cluster, or
this machine's threads) and written as one Parquet part; only counts come back. The cleaned parts are
profiled again for the Data gate, and the contract is inferred on a sample of them with the exact
ranges, missing values and categories of all rows.

>>> large = clean_in_partitions("big.csv", "churned", "binary", CleanSpec(), client=client, seed=0,
...                             limits=None, memory_limit=2 * 1024**3, out_dir=folder)  # doctest: +SKIP
>>> large.rows, len(large.parts), large.report["gate"]["passed"]                       # doctest: +SKIP
(9998000, 128, True)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.data._profile_dask import _computer, _read, profile_dask
from loopml.data.assess import _column_kind, _judge
from loopml.data.clean import _MAD_FACTOR, _MAD_TO_SD, _Log, _n, column_steps, imbalance_step
from loopml.data.cleaner import QUANTILES
from loopml.data.contract import infer_contract
from loopml.data.gate import check_data
from loopml.data.snapshot import frame_hash, frame_to_parquet
from loopml.errors import DataError

if TYPE_CHECKING:
    from loopml.data.assess import DataAssessment
    from loopml.data.profile import TableProfile
    from loopml.spec import CleanSpec, QualityLimits

__all__ = ["LargeSnapshot", "clean_in_partitions"]

# A partition holds a few times its CSV bytes once parsed: a quarter of the memory limit leaves room for that.
_MEMORY_SHARE = 4
_MIN_BLOCK = 64 * 1024
_MAX_BLOCK = 64 * 1024 * 1024
_SAMPLE_ROWS = 20_000
_MISSING = "\x00missing"  # stands for a missing value among a column's distinct values


@dataclass
class LargeSnapshot:
    """The cleaned Parquet parts and what a snapshot records about them.

    ``report`` holds the pandas path's keys (but ``sources_used``, which the caller knows) plus
    ``layout: parts``; ``actions`` are the cleaning steps in words.
    """

    parts: list[Path]
    rows: int
    columns: int
    data_hash: str
    contract: dict[str, Any]
    report: dict[str, Any]
    partitions: int = 0
    actions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Rules:
    """What each partition task needs to clean its rows the same way as every other partition."""

    target: str
    drop_duplicates: bool
    repeated: np.ndarray  # row hashes (uint64) seen more than once among labeled rows
    keep: dict[int, np.ndarray]  # partition -> positions of the rows that stay of each duplicate group
    drop_columns: tuple[str, ...]
    drop_incomplete: bool
    outlier_bounds: dict[str, tuple[float, float]]  # column -> (median, largest distance kept)


def clean_in_partitions(path: str | Path, target: str, task: str, plan: CleanSpec, *, client: Any, seed: int,
                        limits: QualityLimits | None, memory_limit: int, out_dir: str | Path,
                        min_rows: int = 1) -> LargeSnapshot:
    """Assess, clean and snapshot the file at ``path`` in partitions; the parts are written to ``out_dir``.

    ``client``: a ``distributed.Client`` (None: this machine's threads). ``memory_limit`` (bytes) sizes
    the CSV partitions; Parquet partitions follow the file's row groups. ``min_rows`` is the Data
    gate's ``data.min_rows``. ``out_dir`` must be reachable by the workers.
    """
    path, out_dir = Path(path), Path(out_dir)
    if any(out_dir.glob("part-*.parquet")):
        raise DataError(f"{out_dir} already holds Parquet parts; pass an empty folder as out_dir, so that no part of "
                        "an earlier snapshot is taken for this one")
    blocksize = _blocksize(memory_limit)
    compute = _computer(client)
    raw = profile_dask(path, target=target, sample_rows=_SAMPLE_ROWS, seed=seed, client=client, blocksize=blocksize)
    before = _judge(raw, target, task, limits, seed)
    frame = _read(path, blocksize)
    log = _Log()

    missing_target = raw.columns[target].missing
    log.step("missing_target", rows=missing_target,
             sentences=[f"dropped {_n(missing_target)} with a missing target"] if missing_target else [])
    repeated, constant = _scan(frame, target, compute)
    duplicates = int(repeated.sum() - len(repeated))
    drop_duplicates = plan.duplicates == "drop"
    hashes = np.sort(repeated.index.to_numpy(dtype="uint64"))
    keep = _first_rows(frame, target, hashes, compute) if drop_duplicates and len(hashes) else {}
    how = "found by a 64-bit hash of each row across all partitions"
    if drop_duplicates:
        log.step("duplicates", rows=duplicates, detail={"policy": "drop", "method": how},
                 sentences=[f"dropped {_n(duplicates, 'exact duplicate row')} ({how})"] if duplicates else [])
    else:
        log.step("duplicates", detail={"policy": "keep", "kept": duplicates, "method": how},
                 sentences=[f"kept {_n(duplicates, 'exact duplicate row')} (duplicates: keep)"] if duplicates else [])

    features = [str(c) for c in frame.columns if c != target]
    dropped = _column_drops(features, plan, before, constant, log)
    kept = [c for c in features if c not in dropped]
    learned = _learning_sample(raw.sample, target, dropped, plan)
    bounds = _outlier_bounds(learned, kept) if plan.outliers == "drop" else {}
    rules = _Rules(target=target, drop_duplicates=drop_duplicates, repeated=hashes, keep=keep,
                   drop_columns=tuple(dropped), drop_incomplete=plan.missing == "drop_rows", outlier_bounds=bounds)

    out_dir.mkdir(parents=True, exist_ok=True)
    counts = _clean_and_write(frame, rules, out_dir, compute)
    written = [c for c in counts if c["file"] is not None]
    if not written:
        raise _no_rows_left(path, raw.rows)
    missing_by_column = _sum_counts(c["missing_by_column"] for c in counts)
    dropped_missing, missing_left = _missing_step(missing_by_column, counts, plan, log)
    dropped_outliers = _outlier_step(counts, plan, learned, log)

    parts = [Path(c["file"]) for c in written]
    cleaned = profile_dask(out_dir / "part-*.parquet", target=target, sample_rows=_SAMPLE_ROWS, seed=seed,
                           client=client)
    after = _judge(cleaned, target, task, limits, seed)
    imbalance = _imbalance_step(cleaned.target_counts, task, plan, log)
    rows = sum(c["rows_out"] for c in written)
    cleaning = {
        "rows_in": raw.rows, "rows_out": rows, "steps": log.steps, "dropped_missing_target": missing_target,
        "dropped_duplicates": duplicates if drop_duplicates else 0, "dropped_missing_rows": dropped_missing,
        "dropped_outlier_rows": dropped_outliers, "missing_values_left": missing_left,
        "dropped_columns": log.dropped_columns, "imbalance": imbalance, "partitions": frame.npartitions,
        "parts": len(parts), "learned_on_rows": len(learned),
    }
    check = check_data(after, min_rows=min_rows, task=task, limits=limits)
    contract = _contract(cleaned, parts, target, task, compute)
    report = {"assessment_raw": before.to_dict(), "assessment": after.to_dict(), "cleaning": cleaning,
              "gate": {"passed": check.passed, "evidence": check.evidence, "reasons": check.reasons},
              "clean_plan": plan.model_dump(), "layout": "parts", "sample_rows": len(cleaned.sample)}
    data_hash = hashlib.sha256(json.dumps([c["hash"] for c in written]).encode()).hexdigest()
    return LargeSnapshot(parts=parts, rows=rows, columns=len(contract["columns"]), data_hash=data_hash,
                         contract=contract, report=report, partitions=frame.npartitions, actions=log.actions)


def _blocksize(memory_limit: int) -> int:
    return int(min(max(int(memory_limit) // _MEMORY_SHARE, _MIN_BLOCK), _MAX_BLOCK))


def _no_rows_left(path: Path, rows: int) -> DataError:
    return DataError(f"{path.name}: cleaning left no rows of {rows:,}; every row lacks the target or was dropped. "
                     "Check business.target, or set data.clean.missing: impute and data.clean.outliers: keep")


# -- passes over the partitions ----------------------------------------------------------------------


def _labeled(part: pd.DataFrame, target: str) -> pd.DataFrame:
    return part[part[target].notna().to_numpy()]


def _row_hashes(part: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(part, index=False).to_numpy()


def _labeled_hashes(part: pd.DataFrame, target: str) -> pd.Series:
    return pd.Series(_row_hashes(_labeled(part, target)), dtype="uint64")


def _few_values(part: pd.DataFrame, target: str) -> pd.DataFrame:
    """Up to two distinct values per column of the labeled rows (a missing value counts as one)."""
    labeled = _labeled(part, target)
    rows = []
    for column in labeled.columns:
        series = labeled[column]
        values = [repr(v) for v in series.dropna().drop_duplicates().head(2).tolist()]
        if series.isna().any():
            values.append(_MISSING)
        rows += [(str(column), v) for v in values[:2]]
    return pd.DataFrame(rows, columns=["column", "value"], dtype=object)


def _scan(frame: Any, target: str, compute) -> tuple[pd.Series, set[str]]:
    """The labeled rows' hashes seen more than once (hash -> rows) and the constant columns, in one pass."""
    hashes = frame.map_partitions(_labeled_hashes, target, meta=(None, "uint64"))
    counts = hashes.value_counts()
    meta = pd.DataFrame({"column": pd.Series(dtype=object), "value": pd.Series(dtype=object)})
    repeated, few = compute(counts[counts > 1], frame.map_partitions(_few_values, target, meta=meta))
    distinct = few.groupby("column")["value"].nunique()
    constant = {str(c) for c in frame.columns if c != target and distinct.get(str(c), 0) <= 1}
    return repeated, constant


def _repeated_rows(part: pd.DataFrame, target: str, repeated: np.ndarray) -> np.ndarray:
    """Which rows of the partition are labeled and have a hash in ``repeated``."""
    labeled = part[target].notna().to_numpy()
    found = np.zeros(len(part), dtype=bool)
    found[labeled] = np.isin(_row_hashes(part[labeled]), repeated)
    return found


def _first_positions(part: pd.DataFrame, target: str, repeated: np.ndarray) -> pd.Series:
    """Each repeated hash's first row position in the partition (hash -> position)."""
    positions = np.flatnonzero(_repeated_rows(part, target, repeated))
    hashes, first = np.unique(_row_hashes(part.iloc[positions]), return_index=True)
    return pd.Series(positions[first], index=hashes)


def _first_rows(frame: Any, target: str, repeated: np.ndarray, compute) -> dict[int, np.ndarray]:
    """Where the row that stays of each duplicate group is (its first occurrence in file order), per partition."""
    import dask

    shared = dask.delayed(repeated, pure=True)
    found = compute(*[dask.delayed(_first_positions)(part, target, shared) for part in frame.to_delayed()])
    seen = np.empty(0, dtype="uint64")
    keep: dict[int, np.ndarray] = {}
    for number, first in enumerate(found):
        new = ~np.isin(first.index.to_numpy(dtype="uint64"), seen)
        if new.any():
            keep[number] = first.to_numpy()[new]
            seen = np.concatenate([seen, first.index.to_numpy(dtype="uint64")[new]])
    return keep


def _clean_part(part: pd.DataFrame, number: int, rules: _Rules, out_dir: str) -> dict[str, Any]:
    """Clean one partition as :func:`~loopml.data.clean.clean` would, write it as a Parquet part, count what went."""
    labeled = part[rules.target].notna().to_numpy()
    if rules.drop_duplicates and len(rules.repeated):
        later = _repeated_rows(part, rules.target, rules.repeated)
        later[rules.keep.get(number, np.empty(0, dtype=int))] = False
        labeled = labeled & ~later
    frame = part[labeled].drop(columns=list(rules.drop_columns))
    features = [c for c in frame.columns if c != rules.target]
    missing = {str(c): int(n) for c, n in frame[features].isna().sum().items() if n}
    rows_complete = len(frame)
    if rules.drop_incomplete:
        frame = frame[frame[features].notna().all(axis=1).to_numpy()]
    far, outliers = np.zeros(len(frame), dtype=bool), {}
    for column, (median, distance) in rules.outlier_bounds.items():
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            out = np.abs(values - median) > distance
        if out.any():
            outliers[column] = int(out.sum())
            far |= out
    rows_kept = len(frame)
    frame = frame[~far].reset_index(drop=True)
    file = None
    if len(frame):
        file = str(Path(out_dir) / f"part-{number:05d}.parquet")
        # Write then rename: a failed task never leaves a half-written part under its final name.
        temporary = f"{file}.writing"
        Path(temporary).write_bytes(frame_to_parquet(frame))
        os.replace(temporary, file)
    return {"file": file, "rows_out": len(frame), "hash": frame_hash(frame) if len(frame) else None,
            "missing_by_column": missing, "dropped_missing": rows_complete - rows_kept,
            "outliers_by_column": outliers, "dropped_outliers": int(far.sum())}


def _clean_and_write(frame: Any, rules: _Rules, out_dir: Path, compute) -> list[dict[str, Any]]:
    import dask

    shared = dask.delayed(rules, pure=True)
    return list(compute(*[dask.delayed(_clean_part)(part, number, shared, str(out_dir))
                          for number, part in enumerate(frame.to_delayed())]))


def _sum_counts(dicts) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for key, n in d.items():
            total[key] = total.get(key, 0) + int(n)
    return total


# -- the steps of clean(), judged on the whole file -------------------------------------------------


def _column_drops(features: list[str], plan: CleanSpec, before: DataAssessment, constant: set[str],
                  log: _Log) -> list[str]:
    """Leakage suspects, id-like, unusable and constant columns, as :func:`~loopml.data.clean.clean` drops them.

    Whether a column is unique per row, or constant, is judged on every row of the file.
    """
    column_steps(features, plan, before, log, is_id=lambda c: before.column_kinds.get(c) == "id",
                 is_constant=lambda c: c in constant)
    return list(log.dropped_columns)


def _learning_sample(sample: pd.DataFrame, target: str, dropped: list[str], plan: CleanSpec) -> pd.DataFrame:
    """The profile's seeded sample, cleaned by the row steps that came before the one learned on it."""
    frame = sample[sample[target].notna()]
    if plan.duplicates == "drop":
        frame = frame[~frame.duplicated()]
    frame = frame.drop(columns=dropped)
    if plan.missing == "drop_rows":
        frame = frame[frame.drop(columns=[target]).notna().all(axis=1)]
    return frame


def _outlier_bounds(sample: pd.DataFrame, columns: list[str]) -> dict[str, tuple[float, float]]:
    """Median and the farthest distance kept (8 robust SDs), per numeric column, from ``sample``."""
    bounds = {}
    for column in columns:
        if _column_kind(sample[column]) != "numeric":
            continue
        values = sample[column].to_numpy(dtype=float, na_value=np.nan)
        median = np.nanmedian(values) if np.isfinite(values).any() else np.nan
        mad = np.nanmedian(np.abs(values - median)) if np.isfinite(median) else np.nan
        if mad > 0:  # a column that is mostly one value has no robust scale to judge by
            bounds[column] = (float(median), float(_MAD_FACTOR * _MAD_TO_SD * mad))
    return bounds


def _missing_step(per_column: dict[str, int], counts: list[dict], plan: CleanSpec, log: _Log) -> tuple[int, int]:
    cells = sum(per_column.values())
    if plan.missing == "drop_rows":
        dropped = sum(c["dropped_missing"] for c in counts)
        sentence = f"dropped {_n(dropped)} with a missing feature value (missing: drop_rows)"
        log.step("missing", rows=dropped, detail={"policy": "drop_rows", "missing_by_column": per_column},
                 sentences=[sentence] if dropped else [])
        return dropped, 0
    log.step("missing", detail={"policy": "impute", "missing_by_column": per_column}, sentences=[
        f"left {_n(cells, 'missing value')} in {_n(len(per_column), 'column')} for the model to impute, "
        "learned on training rows: median plus a missing indicator for numbers, a 'missing' level for categories "
        "(missing: impute)"] if cells else [])
    return 0, cells


def _outlier_step(counts: list[dict], plan: CleanSpec, learned: pd.DataFrame, log: _Log) -> int:
    if plan.outliers == "clip":
        lo, hi = (f"{q * 100:g}%" for q in QUANTILES)
        log.step("outliers", detail={"policy": "clip", "quantiles": list(QUANTILES)}, sentences=(
            f"outliers: clip: each numeric column is clipped to its {lo}-{hi} quantiles, learned on each "
            "model's training rows and applied unchanged at serving"))
        return 0
    if plan.outliers != "drop":
        log.step("outliers", detail={"policy": "keep"})
        return 0
    by_column = _sum_counts(c["outliers_by_column"] for c in counts)
    dropped = sum(c["dropped_outliers"] for c in counts)
    where = ", ".join(f"'{c}' ({n:,})" for c, n in by_column.items())
    rule = f"|x - median| > {_MAD_FACTOR:g} x 1.4826 x MAD"
    log.step("outliers", rows=dropped, detail={"policy": "drop", "rule": rule, "by_column": by_column,
                                               "learned_on_rows": len(learned)},
             sentences=[f"dropped {_n(dropped)} with a value more than {_MAD_FACTOR:g} robust standard deviations "
                        f"(1.4826 x MAD) from the median, in {where} (outliers: drop; median and MAD of a seeded "
                        f"sample of {_n(len(learned))})"] if dropped else [])
    return dropped


def _imbalance_step(target_counts: dict[str, int], task: str, plan: CleanSpec, log: _Log) -> dict[str, Any]:
    """The class balance of all cleaned rows, and what the Model stage will do about it."""
    total = sum(target_counts.values())
    if task == "regression" or not total:
        return {"policy": plan.imbalance}
    smallest, count = min(target_counts.items(), key=lambda item: item[1])
    return imbalance_step(smallest, count / total, task, plan, log)


def _contract(cleaned: TableProfile, parts: list[Path], target: str, task: str, compute) -> dict[str, Any]:
    """The contract inferred on the cleaned sample, with the ranges, nulls and categories of every cleaned row."""
    contract = infer_contract(cleaned.sample, target, task)
    enumerated = [c.name for c in contract.columns if c.categories is not None]
    categories = dict(zip(enumerated, _categories(parts, enumerated, compute), strict=True))
    columns = []
    for column in contract.columns:
        profile = cleaned.columns[column.name]
        update: dict[str, Any] = {"nullable": profile.missing > 0}
        if column.kind in ("numeric", "integer") and profile.min is not None:
            update.update(min=float(profile.min), max=float(profile.max))
        if column.name in categories:
            update["categories"] = categories[column.name]
        columns.append(column.model_copy(update=update))
    classes = sorted(cleaned.target_counts) if task != "regression" else None
    return contract.model_copy(update={"columns": columns, "target_classes": classes}).model_dump(mode="json")


def _distinct_strings(part: pd.DataFrame, columns: list[str]) -> dict[str, set[str]]:
    return {c: {str(v) for v in part[c].dropna().unique()} for c in columns}


def _categories(parts: list[Path], columns: list[str], compute) -> list[list[str]]:
    """Every category of ``columns`` over all parts, each part read by the task that handles it."""
    import dask

    if not columns:
        return []
    found = compute(*[dask.delayed(_part_categories)(str(p), columns) for p in parts])
    return [sorted(set().union(*(f[c] for f in found))) for c in columns]


def _part_categories(path: str, columns: list[str]) -> dict[str, set[str]]:
    return _distinct_strings(pd.read_parquet(path, columns=columns), columns)
