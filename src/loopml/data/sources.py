"""Read data sources (CSV, Parquet) and collect them into one frame by joins.

>>> from loopml.data.sources import read_source
>>> frame = read_source(Path("examples/benefits/benefits.csv"))  # doctest: +SKIP
>>> frame.shape                                                   # doctest: +SKIP
(4877, 18)
"""

from __future__ import annotations

import csv
import gzip
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.errors import DataError

if TYPE_CHECKING:
    from loopml.spec import ProjectSpec

__all__ = ["CollectedData", "JoinReport", "SourceReport", "collect", "read_columns", "read_source"]

_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_FORMATS = ("auto", "csv", "parquet")
_SNIFF_BYTES = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class SourceReport:
    """What reading one source gave and cost."""

    name: str
    path: str
    rows: int
    columns: list[str]
    read_seconds: float
    cost_per_1k_rows: float
    cost: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class JoinReport:
    """How one source joined onto the frame collected so far."""

    source: str
    on: list[str]
    how: str
    match_rate: float
    right_key_unique: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CollectedData:
    """The joined frame and a report per source and per join."""

    frame: pd.DataFrame
    sources: list[SourceReport] = field(default_factory=list)
    joins: list[JoinReport] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "rows": int(len(self.frame)),
            "columns": int(self.frame.shape[1]),
            "cost": float(sum(s.cost for s in self.sources)),
            "sources": [s.to_dict() for s in self.sources],
            "joins": [j.to_dict() for j in self.joins],
        }


def _format_of(path: Path, format: str) -> str:
    if format not in _FORMATS:
        raise DataError(f"{path.name}: unknown format '{format}'; set `format:` to one of {', '.join(_FORMATS)}")
    if format != "auto":
        return format
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise DataError(
            f"{path.name}: cannot tell the format from the suffix '{''.join(path.suffixes)}'; "
            f"use a file ending in .csv, .csv.gz, .tsv, .parquet or .pq, or set `format:` to csv or parquet"
        )
    return found


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path.name}: file not found at {path}; check the source's `path:`")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name}: the file is empty (0 bytes); point the source at a file with data")


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _sniff_delimiter(path: Path) -> str:
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as fh:
        sample = fh.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
    if len(sample) == _SNIFF_BYTES:
        # A cut-off last line confuses the sniffer.
        sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    compression = "gzip" if _is_gzip(path) else None
    try:
        return pd.read_csv(path, sep=_sniff_delimiter(path), compression=compression, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: no columns found (the file holds no header); add a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path.name}: not readable as CSV: {exc}; fix the file or set `format:`") from exc


def read_columns(path: Path, format: str = "auto") -> list[str]:
    """The column names of a source, read cheaply (Parquet schema or CSV header).

    >>> read_columns(Path("examples/benefits/benefits.csv"))[:3]  # doctest: +SKIP
    ['stateur', 'statemb', 'state']
    """
    path = Path(path)
    kind = _format_of(path, format)
    _check_file(path)
    if kind == "csv":
        return [str(c) for c in _read_csv(path, nrows=0).columns]
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path.name}: not a readable Parquet file: {exc}; fix the file or set `format:`") from exc
    # pandas stores a named index as an extra column; it is not data.
    return [n for n in names if not n.startswith("__index_level_")]


def read_source(path: Path, format: str = "auto") -> pd.DataFrame:
    """Read a CSV (delimiter sniffed, gzip fine) or Parquet file into a frame.

    >>> read_source(Path("examples/benefits/benefits.csv")).shape  # doctest: +SKIP
    (4877, 18)
    """
    path = Path(path)
    kind = _format_of(path, format)
    _check_file(path)
    if kind == "csv":
        frame = _read_csv(path)
    else:
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path.name}: not a readable Parquet file: {exc}; fix the file or set `format:`") from exc
    if frame.empty:
        raise DataError(
            f"{path.name}: no data rows (found {frame.shape[1]} columns, 0 rows); point the source at a file with data"
        )
    return frame


def _join(left: pd.DataFrame, right: pd.DataFrame, on: list[str], how: str, name: str, first: str):
    for side, frame, label in (("left", left, first), ("right", right, name)):
        absent = [k for k in on if k not in frame.columns]
        if absent:
            raise DataError(
                f"source '{name}': join key {', '.join(map(repr, absent))} is not a column of {label} "
                f"({side} side); set join.on to a column both sides share; columns of {label}: "
                f"{', '.join(map(str, frame.columns))}"
            )
    counts = right.groupby(on, dropna=False).size()
    duplicated = int((counts > 1).sum())
    if duplicated:
        example = counts[counts > 1].index[0]
        raise DataError(
            f"source '{name}': join key {', '.join(map(repr, on))} is not unique: {duplicated:,} key values "
            f"appear more than once (e.g. {example!r} {int(counts.max())} times); dedupe the source so each key "
            f"appears once"
        )
    try:
        merged = left.merge(right, on=on, how="left", suffixes=("", f"_{name}"), indicator="_loopml_join")
    except ValueError as exc:
        types = ", ".join(f"{k}: {left[k].dtype} vs {right[k].dtype}" for k in on)
        raise DataError(
            f"source '{name}': cannot join on {', '.join(map(repr, on))} ({types}): {exc}; "
            "make the key columns the same type"
        ) from exc
    matched = merged.pop("_loopml_join").eq("both")
    match_rate = float(matched.mean()) if len(merged) else 0.0
    if how == "inner":
        merged = merged[matched.to_numpy()].reset_index(drop=True)
    return merged, JoinReport(source=name, on=list(on), how=how, match_rate=match_rate, right_key_unique=True)


def collect(spec: ProjectSpec) -> CollectedData:
    """Read every source of ``spec.data.sources`` and join them onto the first.

    >>> collected = collect(load_spec("examples/benefits/loopml.yaml"))  # doctest: +SKIP
    >>> collected.sources[0].rows                                        # doctest: +SKIP
    4877
    """
    result = CollectedData(frame=pd.DataFrame())
    first = spec.data.sources[0].name
    for i, source in enumerate(spec.data.sources):
        started = time.perf_counter()
        frame = read_source(spec.source_path(source), source.format)
        seconds = time.perf_counter() - started
        rows = int(len(frame))
        result.sources.append(
            SourceReport(
                name=source.name,
                path=source.path,
                rows=rows,
                columns=[str(c) for c in frame.columns],
                read_seconds=round(seconds, 4),
                cost_per_1k_rows=float(source.cost_per_1k_rows),
                cost=rows / 1000 * float(source.cost_per_1k_rows),
            )
        )
        if i == 0:  # the base every later source joins onto (the spec gives each later one a join)
            result.frame = frame
            continue
        on = [source.join.on] if isinstance(source.join.on, str) else list(source.join.on)
        result.frame, report = _join(result.frame, frame, on, source.join.how, source.name, first)
        result.joins.append(report)
    return result
