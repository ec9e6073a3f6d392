"""Column profiles: missing values, distinct values, range, quartiles, 3·IQR outliers and the top value.

:func:`profile_frame` profiles a frame in memory, exactly. :func:`profile_file` profiles a Parquet or
CSV file of any size with DuckDB, out of core, in three scans: a seeded reservoir sample, one pass of
aggregates (quartiles from a per-column reservoir, distinct values by HyperLogLog, duplicate rows by
a 64-bit row hash) and one pass of exact counts (outliers beyond the fences, the top value's rows).

>>> import pandas as pd
>>> frame = pd.DataFrame({"x": [1.0, 2.0, 2.0, 3.0, 90.0, None], "c": ["a", "b", "b", "b", "b", "b"]})
>>> p = profile_frame(frame)
>>> p.rows, p.duplicate_rows, p.columns["x"].missing, p.columns["x"].outliers, round(p.columns["c"].top_share, 3)
(6, 1, 1, 1, 0.833)
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import DataError

__all__ = ["ColumnProfile", "TableProfile", "profile_file", "profile_frame"]

# Below this many rows every small column looks unique; do not call it an id.
_MIN_ID_ROWS = 20
_TEXT_MEAN_LENGTH = 30
_TEXT_DISTINCT_SHARE = 0.5
# HyperLogLog counts are off by a percent or two, so "unique per row" in a file is "nearly every row".
_ID_DISTINCT_SHARE = 0.97
# Far outliers only: beyond Q1 - 3·IQR or Q3 + 3·IQR (Tukey's "far out"), as cleaning clips them.
_IQR_FENCE = 3.0
# A target with more distinct values than this is a measurement, not a label: no counts per value.
_MAX_TARGET_LEVELS = 1000
# Quartiles come from a reservoir of this many values per column: rank error about 0.2%.
_RESERVOIR = 65_536
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")
_INTEGER_TYPES = _NUMERIC_TYPES[:10]
_FILE_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".txt": "csv"}

Progress = Callable[[str, str], None]


@dataclass
class ColumnProfile:
    """One column's numbers. The numeric fields are None unless ``kind`` is numeric."""

    name: str
    dtype: str
    kind: str
    missing: int
    distinct: int
    top_value: Any
    top_share: float
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    q1: float | None = None
    median: float | None = None
    q3: float | None = None
    low: float | None = None
    high: float | None = None
    outliers: int | None = None


@dataclass
class TableProfile:
    """A table's column profiles, duplicate rows, target counts, and how each number was computed.

    ``sample`` (not part of :meth:`to_dict`) holds up to ``sample_rows`` rows drawn with a seed,
    indexed by their row position in the table, for the checks that need a model.
    """

    source: str
    rows: int
    columns: dict[str, ColumnProfile]
    duplicate_rows: int
    target: str | None = None
    target_counts: dict[str, int] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    sample: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("columns", "sample")}
        return {**data, "columns": {name: asdict(c) for name, c in self.columns.items()}}


# -- column kinds ------------------------------------------------------------------------------------


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


def _json_value(value: Any) -> Any:
    """A JSON value for a cell: plain numbers and text, ISO times, None for missing."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    return None if pd.isna(value) is True else str(value)


def _numeric_dtype(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _fences(q1: float, q3: float) -> tuple[float, float]:
    iqr = q3 - q1
    return q1 - _IQR_FENCE * iqr, q3 + _IQR_FENCE * iqr


def _float(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# -- frames ------------------------------------------------------------------------------------------


def profile_frame(df: pd.DataFrame, *, target: str | None = None) -> TableProfile:
    """Profile a frame exactly (pandas); ``target`` adds its counts per value.

    >>> profile_frame(pd.DataFrame({"y": ["a", "b", "a"]}), target="y").target_counts
    {'a': 2, 'b': 1}
    """
    started = time.perf_counter()
    rows = int(len(df))
    columns = {str(c): _profile_series(df[c], rows) for c in df.columns}
    profile = TableProfile(
        source="frame", rows=rows, columns=columns, duplicate_rows=int(df.duplicated().sum()) if rows else 0,
        target=target, methods={"duplicates": "exact", "distinct": "exact", "quartiles": "exact"},
    )
    if target is not None and columns[str(target)].distinct <= _MAX_TARGET_LEVELS:
        profile.target_counts = {str(k): int(v) for k, v in df[target].value_counts().items()}
    profile.seconds = round(time.perf_counter() - started, 4)
    return profile


def _profile_series(series: pd.Series, rows: int) -> ColumnProfile:
    kind = _column_kind(series)
    missing = int(series.isna().sum())
    counts = series.value_counts(dropna=False)
    column = ColumnProfile(
        name=str(series.name), dtype=str(series.dtype), kind=kind, missing=missing,
        distinct=int(series.nunique()), top_value=_json_value(counts.index[0]) if len(counts) else None,
        top_share=float(counts.iloc[0] / rows) if rows else 0.0,
    )
    values = series.dropna()
    if values.empty or not _numeric_dtype(series.dtype):
        return column
    values = values.astype(float).to_numpy()
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    low, high = _fences(q1, q3)
    column.mean, column.std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
    column.min, column.max = float(values.min()), float(values.max())
    column.q1, column.median, column.q3, column.low, column.high = map(float, (q1, median, q3, low, high))
    column.outliers = int(((values < low) | (values > high)).sum())
    return column


# -- files -------------------------------------------------------------------------------------------


def profile_file(
    path: str | Path,
    *,
    target: str | None = None,
    sample_rows: int = 20_000,
    seed: int = 0,
    progress: Progress | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> TableProfile:
    """Profile a Parquet or CSV file (gzip fine; a glob of Parquet files too) with DuckDB, out of core.

    Missing counts, minimum, maximum, mean, standard deviation and outlier counts are exact; distinct
    counts are HyperLogLog estimates; quartiles (and so the 3·IQR fences) come from a reservoir of
    65,536 values per column; duplicate rows are counted by a 64-bit hash of each row (a collision,
    about 1 in 10^5 at 10^7 rows, would count one extra duplicate). The top value is the sample's most
    frequent one, counted exactly over the file, so a column at 98% one value is always found.
    ``progress`` is called as ``progress("data", message)`` before each scan. DuckDB uses at most
    ``memory_limit`` (default: 4 GB or a quarter of the memory, the smaller) and spills beyond it.

    >>> p = profile_file("big.parquet", target="churned")  # doctest: +SKIP
    >>> p.rows, p.duplicate_rows, p.columns["income"].outliers  # doctest: +SKIP
    (10000000, 10000, 1043)
    """
    import duckdb

    path = Path(path)
    progress = progress or (lambda stage, message: None)
    started = time.perf_counter()
    try:
        with _connect(memory_limit, threads) as con:
            steps = _Steps(progress, path.name, 4 if target else 3)
            profile = _profile(con, path, target, sample_rows, seed, steps)
    except duckdb.Error as exc:
        raise DataError(f"{path.name}: DuckDB could not profile the file: {exc}; check that it is a readable "
                        "Parquet or CSV file") from exc
    profile.seconds = round(time.perf_counter() - started, 4)
    return profile


@contextmanager
def _connect(memory_limit: str | None, threads: int | None) -> Iterator[Any]:
    """An in-memory DuckDB that spills to a temporary folder, removed afterwards."""
    import duckdb

    spill = tempfile.mkdtemp(prefix="loopml-duckdb-")
    try:
        con = duckdb.connect(config={"threads": threads or os.cpu_count() or 1, "temp_directory": spill,
                                     "memory_limit": memory_limit or _memory_limit()})
        try:
            # DuckDB's own progress bar would print to stdout; progress goes through ``progress`` instead.
            con.execute("SET enable_progress_bar = false")
            # Parquet min/max statistics leave NaN out, and DuckDB's statistics propagation then folds
            # isnan(x) to false: NaN would count as a value (and an outlier) instead of as missing.
            con.execute("SET disabled_optimizers = 'statistics_propagation'")
            yield con
        finally:
            con.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _profile(con: Any, path: Path, target: str | None, sample_rows: int, seed: int, step: _Steps) -> TableProfile:
    """The three scans (four with a target) of :func:`profile_file` on an open connection."""
    step("reading the schema and a sample")
    types, position = _open(con, path)
    if target is not None and target not in types:
        raise DataError(f"{path.name}: target '{target}' is not a column; columns: {', '.join(types)}")
    sample = _sample(con, types, position, sample_rows, seed)
    step("counting, distinct values, quartiles and duplicate rows")
    rows, stats, duplicates = _aggregates(con, types)
    step("outliers and top values")
    columns = _columns(con, types, stats, sample, rows)
    profile = TableProfile(
        source=path.name, rows=rows, columns=columns, duplicate_rows=duplicates, target=target,
        methods={"duplicates": "64-bit row hash", "distinct": "HyperLogLog estimate",
                 "quartiles": f"reservoir of {_RESERVOIR:,} values per column"},
        sample=sample,
    )
    if target is not None and columns[target].distinct <= _MAX_TARGET_LEVELS:
        step("target counts")
        found = con.execute(f"SELECT {_q(target)}, count(*) FROM data WHERE {_q(target)} IS NOT NULL "
                            "GROUP BY 1 ORDER BY 2 DESC").fetchall()
        profile.target_counts = {_label(v): int(n) for v, n in found}
    return profile


class _Steps:
    def __init__(self, progress: Progress, name: str, total: int):
        self.progress, self.name, self.total, self.done = progress, name, total, 0

    def __call__(self, what: str) -> None:
        self.done += 1
        self.progress("data", f"profiling {self.name}: {what} ({self.done}/{self.total})")


def _memory_limit() -> str:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "4GB"
    return f"{max(min(4 * 2**30, total // 4) // 2**20, 256)}MB"


def _q(name: str) -> str:
    """A quoted SQL identifier: names are data, never SQL."""
    return '"' + str(name).replace('"', '""') + '"'


def _label(value: Any) -> str:
    """A class key as :func:`~loopml.data.assess.assess` writes it (``str`` of the pandas value)."""
    return str(value.item() if isinstance(value, np.generic) else value)


def _open(con: Any, path: Path) -> tuple[dict[str, str], str]:
    """Create view ``data`` (NaN read as missing, as pandas does) and ``source`` (with row positions)."""
    literal = "'" + str(path).replace("'", "''") + "'"
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    kind = _FILE_FORMATS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise DataError(f"{path.name}: cannot tell the format from the suffix; use .parquet, .csv, .csv.gz or .tsv")
    if not any(ch in str(path) for ch in "*?[") and not path.is_file():
        raise DataError(f"{path.name}: file not found at {path}")
    if kind == "parquet":
        con.execute(f"CREATE VIEW source AS SELECT * FROM read_parquet({literal}, file_row_number = true)")
        position = "file_row_number"
    else:
        # CSV is parsed once into DuckDB's own (compressed, spillable) storage, not once per scan.
        # No BOOLEAN guess: DuckDB reads yes/no as true/false, pandas (and so the spec) keeps the words.
        con.execute(f"CREATE TEMP TABLE csv_rows AS SELECT * FROM read_csv({literal}, auto_type_candidates = "
                    "['BIGINT', 'DOUBLE', 'TIME', 'DATE', 'TIMESTAMP', 'VARCHAR'])")
        con.execute("CREATE VIEW source AS SELECT rowid AS file_row_number, * FROM csv_rows")
        position = "file_row_number"
    types = {str(name): str(kind) for name, kind, *_ in con.execute("DESCRIBE source").fetchall()
             if name != position}
    if not types:
        raise DataError(f"{path.name}: no columns found")
    select = ", ".join(
        f"CASE WHEN isnan({_q(c)}) THEN NULL ELSE {_q(c)} END AS {_q(c)}" if t in ("FLOAT", "DOUBLE", "REAL")
        else _q(c) for c, t in types.items()
    )
    con.execute(f"CREATE VIEW data AS SELECT {select} FROM source")
    return types, position


def _sample(con: Any, types: dict[str, str], position: str, rows: int, seed: int) -> pd.DataFrame:
    names = ", ".join(_q(c) for c in types)
    sample = con.execute(
        f"SELECT {position}, {names} FROM source USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE ({int(seed)})"
    ).df()
    sample = sample.set_index(position).sort_index()
    sample.index = sample.index.astype("int64").rename(None)
    for column, kind in types.items():  # NaN is missing, as in the data view
        if kind in ("FLOAT", "DOUBLE", "REAL"):
            sample[column] = sample[column].astype(float)
    return sample


def _numeric(kind: str) -> bool:
    return kind.startswith(_NUMERIC_TYPES)


def _aggregates(con: Any, types: dict[str, str]) -> tuple[int, dict[str, dict], int]:
    """One scan: rows, and per column count, distinct, range, mean, std and quartiles; duplicate rows."""
    parts, keys = ["count(*)"], []
    for column, kind in types.items():
        c = _q(column)
        parts += [f"count({c})", f"approx_count_distinct({c})"]
        keys += [(column, "count"), (column, "distinct")]
        if _numeric(kind):
            d = f"{c}::DOUBLE"
            parts += [f"min({d})", f"max({d})", f"avg({d})", f"stddev_samp({d})",
                      f"reservoir_quantile({d}, [0.25, 0.5, 0.75], {_RESERVOIR})"]
            keys += [(column, k) for k in ("min", "max", "mean", "std", "quartiles")]
    parts.append(f"count(DISTINCT hash({', '.join(_q(c) for c in types)}))")
    values = con.execute(f"SELECT {', '.join(parts)} FROM data").fetchone()
    rows, distinct_rows = int(values[0]), int(values[-1])
    stats: dict[str, dict] = {c: {} for c in types}
    for (column, key), value in zip(keys, values[1:-1], strict=True):
        stats[column][key] = value
    return rows, stats, rows - distinct_rows


def _file_kind(column: str, kind: str, sample: pd.Series, stats: dict, rows: int) -> str:
    """The kind from the file's type, with "unique per row" judged on the whole file, not the sample."""
    nearly_unique = rows >= _MIN_ID_ROWS and stats["count"] == rows and stats["distinct"] >= _ID_DISTINCT_SHARE * rows
    if kind == "BOOLEAN":
        return "boolean"
    if kind.startswith(("DATE", "TIMESTAMP")):
        return "datetime"
    if _numeric(kind):
        return "id" if kind.startswith(_INTEGER_TYPES) and nearly_unique and _is_id_name(column) else "numeric"
    found = _column_kind(sample)
    if found in ("id", "categorical"):
        return "id" if nearly_unique else "categorical"
    return found


def _columns(con: Any, types: dict[str, str], stats: dict[str, dict], sample: pd.DataFrame,
             rows: int) -> dict[str, ColumnProfile]:
    """Second scan: exact counts of outliers beyond the fences and of each column's top value."""
    columns: dict[str, ColumnProfile] = {}
    parts, params, keys = [], [], []
    for column, kind in types.items():
        s = stats[column]
        profile = ColumnProfile(name=column, dtype=kind, kind=_file_kind(column, kind, sample[column], s, rows),
                                missing=rows - int(s["count"]), distinct=int(s["distinct"]),
                                top_value=None, top_share=(rows - int(s["count"])) / rows if rows else 0.0)
        columns[column] = profile
        top = sample[column].value_counts(dropna=False)
        if len(top) and not pd.isna(top.index[0]):
            profile.top_value = _json_value(top.index[0])
            parts.append(f"sum(({_q(column)} = ${len(params) + 1})::BIGINT)")
            params.append(_param(top.index[0]))
            keys.append((column, "top"))
        if _numeric(kind) and s.get("quartiles"):
            q1, median, q3 = map(float, s["quartiles"])
            low, high = _fences(q1, q3)
            profile.q1, profile.median, profile.q3, profile.low, profile.high = q1, median, q3, low, high
            profile.min, profile.max = _float(s["min"]), _float(s["max"])
            profile.mean, profile.std = _float(s["mean"]), _float(s["std"]) if s["count"] > 1 else 0.0
            parts.append(f"sum(({_q(column)}::DOUBLE < {low!r} OR {_q(column)}::DOUBLE > {high!r})::BIGINT)")
            keys.append((column, "outliers"))
    if parts:
        values = con.execute(f"SELECT {', '.join(parts)} FROM data", params).fetchone()
        for (column, key), value in zip(keys, values, strict=True):
            if key == "top":
                columns[column].top_share = int(value or 0) / rows
            else:
                columns[column].outliers = int(value or 0)
    return columns


def _param(value: Any) -> Any:
    """A sample cell as a Python value DuckDB can bind."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value
