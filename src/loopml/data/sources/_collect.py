"""Collect: read the base source and join the further ones onto it, with a report per source and per join."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from loopml.data.sources._base import Source, dtype_kind, json_safe, open_source
from loopml.errors import DataError

if TYPE_CHECKING:
    from loopml.spec import ProjectSpec


@dataclass
class SourceReport:
    """What reading one source gave and cost: rows, freshness, time, and how many rows were left unread.

    ``more_rows`` is ``total_rows - rows`` for a full read, None for an incremental one or where the
    total is unknown. ``details`` says how it was read (format, files, delimiter, encoding, header).
    """

    name: str
    kind: str
    description: str
    rows: int
    columns: list[str]
    total_rows: int | None
    more_rows: int | None
    newest: str | None
    read_seconds: float
    cost_per_1k_rows: float
    cost: float
    path: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class JoinReport:
    """How one source joined onto the frame collected so far."""

    source: str
    on: list[str]
    how: str
    left_rows: int
    matched_rows: int
    match_rate: float
    right_key_unique: bool
    new_columns: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CollectedData:
    """The joined frame, a report per source and per join, and where each incremental source got to."""

    frame: pd.DataFrame
    sources: list[SourceReport] = field(default_factory=list)
    joins: list[JoinReport] = field(default_factory=list)
    watermarks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "rows": int(len(self.frame)),
            "columns": int(self.frame.shape[1]),
            "cost": float(sum(s.cost for s in self.sources)),
            "sources": [s.to_dict() for s in self.sources],
            "joins": [j.to_dict() for j in self.joins],
            "watermarks": dict(self.watermarks),
        }


def collect(
    spec: ProjectSpec,
    *,
    names: list[str] | None = None,
    since: dict[str, Any] | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> CollectedData:
    """Read the first source (the base, which holds the target) and join the further ones onto it in order.

    ``names`` picks the further sources to join (default: all); ``since`` maps a source to the value its
    incremental column must exceed, such as a watermark from an earlier collection; ``progress`` is
    called as ``progress("data", message)``.

    >>> collected = collect(load_spec("examples/benefits/loopml.yaml"))  # doctest: +SKIP
    >>> collected.sources[0].rows, collected.watermarks                  # doctest: +SKIP
    (4877, {})
    >>> collect(spec, since={"orders": collected.watermarks["orders"]})  # doctest: +SKIP
    """
    progress = progress or (lambda stage, message: None)
    since = since or {}
    base, *further = spec.data.sources
    known = [s.name for s in spec.data.sources]
    unknown = [n for n in [*(names or []), *since] if n not in known]
    if unknown:
        raise DataError(f"unknown source {', '.join(map(repr, dict.fromkeys(unknown)))}; sources: {', '.join(known)}")
    chosen = [base, *(s for s in further if names is None or s.name in names)]
    result = CollectedData(frame=pd.DataFrame())
    origin: dict[str, str] = {}  # column -> the source it came from, to name both sides of a type clash
    for i, source_spec in enumerate(chosen, 1):
        progress("data", f"reading source '{source_spec.name}' ({i}/{len(chosen)})")
        source = open_source(source_spec, spec.root)
        frame, report, watermark = _read(source, since.get(source_spec.name))
        result.sources.append(report)
        if source_spec.incremental is not None:
            result.watermarks[source_spec.name] = watermark
        if i == 1:
            result.frame, origin = frame, dict.fromkeys(map(str, frame.columns), source_spec.name)
            continue
        result.frame, join = _join(result.frame, frame, source_spec, origin)
        result.joins.append(join)
    return result


def _read(source: Source, since: Any) -> tuple[pd.DataFrame, SourceReport, Any]:
    started = time.perf_counter()
    frame = source.read(since=since)
    seconds = time.perf_counter() - started
    rows = int(len(frame))
    total = source.count()
    column = source.spec.incremental.column if source.spec.incremental else None
    # Every row newer than `since` was read, so the newest read is the source's newest; none read: no change.
    watermark = json_safe(frame[column].max()) if column and rows else json_safe(since)
    cost_per_1k = float(source.spec.cost_per_1k_rows)
    report = SourceReport(
        name=source.name,
        kind=source.kind,
        description=source.describe(),
        rows=rows,
        columns=[str(c) for c in frame.columns],
        total_rows=total,
        more_rows=max(total - rows, 0) if total is not None and since is None else None,
        newest=None if watermark is None else str(watermark),
        read_seconds=round(seconds, 4),
        cost_per_1k_rows=cost_per_1k,
        cost=rows / 1000 * cost_per_1k,
        path=getattr(source.spec, "path", None),
        details={k: json_safe(v) for k, v in source.details.items()},
    )
    return frame, report, watermark


def _join(left: pd.DataFrame, right: pd.DataFrame, spec: Any,
          origin: dict[str, str]) -> tuple[pd.DataFrame, JoinReport]:
    """Join ``right`` (source ``spec``) onto ``left`` after checking keys, key uniqueness and shared types."""
    name, on, how = spec.name, spec.join.keys, spec.join.how
    so_far = " + ".join(f"'{n}'" for n in dict.fromkeys(origin.values()))
    for frame, label, side in ((left, so_far, "left"), (right, f"'{name}'", "right")):
        absent = [k for k in on if k not in frame.columns]
        if absent:
            raise DataError(
                f"source '{name}': join key {', '.join(map(repr, absent))} is not a column of {label} ({side} side); "
                f"set join.on to a column both sides share; columns of {label}: {', '.join(map(str, frame.columns))}"
            )
    shared = [*on, *(c for c in right.columns if c in left.columns and c not in on)]
    for column in shared:
        if dtype_kind(left[column].dtype) != dtype_kind(right[column].dtype):
            fix = "make them the same type" + ("" if column in on else ", or rename one")
            raise DataError(f"source '{name}': column '{column}' is {left[column].dtype} in '{origin[column]}' "
                            f"but {right[column].dtype} in '{name}'; {fix}")
    right = right.dropna(subset=on)  # a missing key matches nothing
    counts = right.groupby(on).size()
    if (counts > 1).any():
        repeated = counts[counts > 1]
        raise DataError(
            f"source '{name}': join key {', '.join(map(repr, on))} is not unique: {len(repeated):,} key values "
            f"appear more than once (e.g. {repeated.index[0]!r} {int(repeated.iloc[0])} times); dedupe the source "
            "so each key appears once"
        )
    merged = left.merge(right, on=on, how="left", suffixes=("", f"_{name}"), indicator="_loopml_join")
    matched = merged.pop("_loopml_join").eq("both").to_numpy()
    if how == "inner":
        merged = merged[matched].reset_index(drop=True)
    new_columns = [str(c) for c in merged.columns if c not in left.columns]
    origin.update(dict.fromkeys(new_columns, name))
    report = JoinReport(
        source=name, on=list(on), how=how, left_rows=int(len(left)), matched_rows=int(matched.sum()),
        match_rate=float(matched.mean()) if len(left) else 0.0, right_key_unique=True, new_columns=new_columns,
    )
    return merged, report
