"""Profiles of Parquet or CSV files larger than memory, with dask.dataframe in partitions.

Used when a file source is larger than ``compute.memory_limit``: the file is never loaded whole;
each partition is read, reduced and dropped, on this machine's threads or on the workers of a Dask
cluster. The numbers are those of :func:`~loopml.data.profile.profile_frame` — rows, missing values,
distinct values, the top value and its share, mean, standard deviation, range and duplicate rows
exact (duplicates by a 64-bit hash of each row). Quartiles are exact too: they are read off each
column's counts per value, which the distinct values need anyway (so memory grows with a column's
distinct values, never with its rows).

>>> profile = profile_dask("big.parquet", target="churned")  # doctest: +SKIP
>>> profile.rows, profile.methods["engine"]                   # doctest: +SKIP
(10000000, 'dask.dataframe, 80 partitions')
"""

from __future__ import annotations

import glob
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.profile import (
    _MAX_TARGET_LEVELS,
    _MIN_ID_ROWS,
    ColumnProfile,
    TableProfile,
    _column_kind,
    _fences,
    _is_id_name,
    _json_value,
    _numeric_dtype,
)
from loopml.errors import DataError

__all__ = ["columns_of", "file_bytes", "profile_dask"]

_BLOCKSIZE = "64MB"  # bytes of CSV per partition; Parquet partitions follow its row groups


def columns_of(path: str | Path) -> list[str]:
    """The column names of a Parquet or CSV file (or glob), from its schema or first rows."""
    return [str(c) for c in _read(Path(path), _BLOCKSIZE).columns]


def file_bytes(path: str | Path) -> int:
    """Bytes on disk of a file, or of every file a glob matches (0 when nothing matches)."""
    return sum(Path(p).stat().st_size for p in glob.glob(str(path)) if Path(p).is_file())


def profile_dask(path: str | Path, *, target: str | None = None, sample_rows: int = 20_000, seed: int = 0,
                 client: Any = None, blocksize: str | int = _BLOCKSIZE) -> TableProfile:
    """Profile a Parquet or CSV file (or glob) in partitions; ``client``: a ``distributed.Client`` to run on.

    Without ``client`` dask's threads on this machine do the work. ``sample`` holds up to
    ``sample_rows`` rows drawn with ``seed``, indexed by their row position in the file.
    """
    started = time.perf_counter()
    frame = _read(Path(path), blocksize)
    if target is not None and target not in frame.columns:
        raise DataError(f"{Path(path).name}: target '{target}' is not a column; columns: "
                        f"{', '.join(map(str, frame.columns))}")
    compute = _computer(client)
    lengths = compute(frame.map_partitions(len, meta=(None, "int64")))[0]
    rows = int(sum(lengths))
    numeric = [c for c in frame.columns if _numeric_dtype(frame[c].dtype)]
    # One pass: counts of every value per column, numeric moments and quantiles, distinct row hashes.
    tasks: list[Any] = [frame[c].value_counts(dropna=True) for c in frame.columns]
    tasks += [frame[c].isna().sum() for c in frame.columns]
    tasks += [frame[numeric].mean(), frame[numeric].std(), frame[numeric].min(), frame[numeric].max()] \
        if numeric else []
    tasks.append(frame.map_partitions(_row_hash, meta=(None, "uint64")).nunique())
    results = compute(*tasks)
    n = len(frame.columns)
    counts, missing = dict(zip(frame.columns, results[:n], strict=True)), dict(zip(frame.columns, results[n:2 * n],
                                                                                     strict=True))
    sample = _sample(frame, lengths, sample_rows, seed, compute)
    columns: dict[str, ColumnProfile] = {}
    for c in frame.columns:
        values, series = counts[c], sample[c]
        kind = _kind(c, frame[c].dtype, series, len(values), rows, int(missing[c]))
        top = values.sort_values(ascending=False, kind="mergesort")
        n_missing = int(missing[c])
        top_value, top_share = None, 0.0
        if len(top) and (not n_missing or int(top.iloc[0]) >= n_missing):
            top_value, top_share = _json_value(top.index[0]), int(top.iloc[0]) / rows
        elif rows:
            top_share = n_missing / rows
        columns[str(c)] = ColumnProfile(name=str(c), dtype=str(frame[c].dtype), kind=kind, missing=n_missing,
                                        distinct=int(len(values)), top_value=top_value, top_share=top_share)
    if numeric:
        mean, std, low, high = results[2 * n:2 * n + 4]
        outliers = []
        for c in numeric:
            p = columns[str(c)]
            if p.missing == rows:
                continue
            p.q1, p.median, p.q3 = _quantiles(counts[c], (0.25, 0.5, 0.75))
            p.low, p.high = _fences(p.q1, p.q3)
            p.mean, p.min, p.max = float(mean[c]), float(low[c]), float(high[c])
            p.std = float(std[c]) if rows - p.missing > 1 else 0.0
            x = frame[c].astype("float64")
            outliers.append(((x < p.low) | (x > p.high)).sum())
        found = compute(*outliers)
        for c, count in zip([c for c in numeric if columns[str(c)].q1 is not None], found, strict=True):
            columns[str(c)].outliers = int(count)
    profile = TableProfile(
        source=Path(path).name, rows=rows, columns=columns, duplicate_rows=rows - int(results[-1]) if rows else 0,
        target=target, sample=sample,
        methods={"engine": f"dask.dataframe, {frame.npartitions} partitions", "duplicates": "64-bit row hash",
                 "distinct": "exact", "quartiles": "exact, from the counts per value"},
    )
    if target is not None and columns[str(target)].distinct <= _MAX_TARGET_LEVELS:
        ordered = counts[target].sort_values(ascending=False, kind="mergesort")
        profile.target_counts = {str(k): int(v) for k, v in ordered.items()}
    profile.seconds = round(time.perf_counter() - started, 4)
    return profile


def _quantiles(counts: pd.Series, qs: tuple[float, ...]) -> tuple[float, ...]:
    """numpy's linear-interpolation quantiles of the values that ``counts`` (value → rows) describe."""
    ordered = counts.sort_index()
    values, ends = ordered.index.to_numpy(dtype=float), np.cumsum(ordered.to_numpy())
    n = int(ends[-1])

    def at(rank: int) -> float:  # the value at 0-based rank in sorted order
        return float(values[np.searchsorted(ends, rank, side="right")])

    out = []
    for q in qs:
        h = (n - 1) * q
        lo = int(np.floor(h))
        out.append(at(lo) + (h - lo) * (at(min(lo + 1, n - 1)) - at(lo)))
    return tuple(out)


def _read(path: Path, blocksize: str | int) -> Any:
    from loopml.compute.dask import require_dask

    require_dask(f"profiling {path.name} in partitions")
    import dask.dataframe as dd

    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if not glob.glob(str(path)):
        raise DataError(f"{path.name}: file not found at {path}")
    try:
        if suffix in (".parquet", ".pq"):
            return dd.read_parquet(str(path), split_row_groups=True)
        if suffix in (".csv", ".tsv", ".txt"):
            compressed = path.name.endswith(".gz")  # a gzip stream cannot be split: one partition per file
            return dd.read_csv(str(path), sep="\t" if suffix == ".tsv" else ",",
                               blocksize=None if compressed else blocksize, sample_rows=10_000,
                               compression="gzip" if compressed else None)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.name}: dask could not read the file: {exc}; check that it is a readable Parquet or "
                        "CSV file") from exc
    raise DataError(f"{path.name}: cannot tell the format from the suffix; use .parquet, .csv, .csv.gz or .tsv")


def _computer(client: Any):
    import dask

    if client is not None:
        return lambda *tasks: client.compute(list(tasks), sync=True)

    def compute(*tasks: Any) -> Any:
        with warnings.catch_warnings():  # an all-missing column's mean is NaN by design; its profile says so
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            return dask.compute(*tasks, scheduler="threads")

    return compute


def _row_hash(part: pd.DataFrame) -> pd.Series:
    return pd.util.hash_pandas_object(part, index=False)


def _kind(name: Any, dtype: Any, sample: pd.Series, distinct: int, rows: int, missing: int) -> str:
    """The kind :func:`~loopml.data.profile.profile_frame` gives, with "unique per row" judged on the whole file."""
    unique_per_row = rows >= _MIN_ID_ROWS and not missing and distinct == rows
    if _numeric_dtype(dtype):
        integer = pd.api.types.is_integer_dtype(dtype)
        return "id" if integer and unique_per_row and _is_id_name(name) else "numeric"
    found = _column_kind(sample)  # boolean, datetime, text, or id / categorical as the sample sees it
    if found in ("id", "categorical") and not isinstance(dtype, pd.CategoricalDtype):
        return "id" if unique_per_row else "categorical"
    return found


def _sample(frame: Any, lengths: list[int], rows: int, seed: int, compute) -> pd.DataFrame:
    """Up to ``rows`` rows drawn with ``seed``, indexed by row position (the partitions are read once more)."""
    import dask

    total = int(sum(lengths))
    n = min(total, max(int(rows), 0))
    positions = np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    parts = []
    for i, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        mine = positions[(positions >= start) & (positions < start + length)]
        if len(mine):
            parts.append(dask.delayed(_take)(frame.get_partition(i), mine - start, start))
    taken = compute(*parts) if parts else []
    if not taken:
        return frame._meta.copy()
    return pd.concat(taken)


def _take(part: pd.DataFrame, offsets: np.ndarray, start: int) -> pd.DataFrame:
    return part.iloc[offsets].set_axis(offsets + start)
