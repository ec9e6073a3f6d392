"""Assess data for the goal in numbers: usability (kinds, target, unusable columns) and quality
(missing values, duplicates, outliers, near-constant columns, cardinality, leakage, label noise).

:func:`assess` works on a frame, :func:`assess_file` on a Parquet or CSV file of any size (DuckDB,
out of core), :func:`assess_project` on every source of a spec and their join, adding availability
and cost. The checks that need a model (leakage, label noise) run out of fold on a seeded sample.

>>> import pandas as pd
>>> frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "y": ["a", "b", "a", "a"]})
>>> a = assess(frame, target="y", task="binary")
>>> a.rows, a.column_kinds, a.missing_share, a.minority_count, a.target_ok
(4, {'x': 'numeric'}, {'x': 0.25}, 1, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.data.profile import ColumnProfile, TableProfile, profile_file, profile_frame
from loopml.data.profile import _column_kind as _column_kind  # where contract and clean import it from
from loopml.errors import DataError

if TYPE_CHECKING:
    from loopml.spec import ProjectSpec, QualityLimits

__all__ = [
    "DataAssessment",
    "ProjectAssessment",
    "SourceAssessment",
    "assess",
    "assess_file",
    "assess_project",
]

_NEAR_CONSTANT = 0.98
# A column that alone scores this well out of fold is more likely the answer than a cause of it.
_LEAK_SCORE = 0.98
# Multiclass accuracy must also cut the majority-class error by 5x, or a 98% class would "leak" everywhere.
_LEAK_ERROR_CUT = 0.2
# A label disagrees "with high confidence" when another class gets at least this probability out of
# fold and at least that class's mean self-confidence (confident learning's per-class threshold).
# The floor keeps weak models quiet: on the benefits data (AUC 0.66) the bare per-class thresholds
# flag 30% of clean rows, with the floor 7%; on a predictable target with 10% flipped labels the
# floor keeps three in four flags right.
_CONFIDENT = 0.8
_FOLDS = 3
_MIN_MODEL_ROWS = 50
_MAX_EXAMPLES = 10
_METRICS = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}

Progress = Callable[[str, str], None]


@dataclass
class DataAssessment:
    """Numbers that say whether a table can serve the goal; every field is JSON-safe.

    Shares are in [0, 1] of rows (``missing_cells_share``: of cells); class keys are ``str(label)``.
    ``checked_rows`` is how many labeled rows the model-based checks (leakage, label noise) ran on;
    ``methods`` says which counts are exact and which estimated; ``limits`` are the quality limits
    :func:`~loopml.data.gate.check_data` applies when it is given none.
    """

    target: str | None
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
    duplicate_share: float = 0.0
    outliers: dict[str, dict[str, float | int]] = field(default_factory=dict)
    near_constant_columns: dict[str, float] = field(default_factory=dict)
    cardinality: dict[str, int] = field(default_factory=dict)
    leakage_suspects: list[dict[str, Any]] = field(default_factory=list)
    label_noise: dict[str, Any] | None = None
    unusable_columns: dict[str, str] = field(default_factory=dict)
    target_ok: bool = True
    target_problem: str | None = None
    checked_rows: int = 0
    methods: dict[str, str] = field(default_factory=dict)
    limits: dict[str, float | int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _require_target(df: pd.DataFrame, target: str) -> None:
    if target not in df.columns:
        raise DataError(
            f"target '{target}' is not a column of the data; set business.target to one of: "
            f"{', '.join(map(str, df.columns))}"
        )


def assess(
    df: pd.DataFrame,
    target: str | None,
    task: str,
    *,
    limits: QualityLimits | None = None,
    sample_rows: int = 20_000,
    seed: int = 0,
) -> DataAssessment:
    """Assess ``df`` for predicting ``target`` (task binary, multiclass or regression). Nothing is changed.

    Counts are exact; leakage and label noise are checked out of fold on at most ``sample_rows`` rows
    drawn with ``seed``. ``target=None`` assesses a source that does not hold the target (no target,
    leakage or label-noise numbers).

    >>> frame = pd.DataFrame({"x": range(100), "y": ["a", "b"] * 50})
    >>> frame["copy"] = frame["y"]
    >>> [s["column"] for s in assess(frame, "y", "binary").leakage_suspects]
    ['copy']
    """
    if target is not None:
        _require_target(df, target)
    profile = profile_frame(df, target=target)
    n = min(len(df), max(int(sample_rows), 0))
    positions = np.sort(np.random.default_rng(seed).choice(len(df), n, replace=False))
    profile.sample = df.iloc[positions].set_axis(positions)
    return _judge(profile, target, task, limits, seed)


def assess_file(
    path: str | Path,
    target: str,
    task: str,
    *,
    limits: QualityLimits | None = None,
    sample_rows: int = 20_000,
    seed: int = 0,
    progress: Progress | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
    engine: str = "duckdb",
    client: Any = None,
) -> DataAssessment:
    """Assess a Parquet or CSV file of any size: the whole file profiled by DuckDB out of core
    (:func:`~loopml.data.profile.profile_file`), leakage and label noise on a seeded sample.
    ``engine="dask"`` profiles it with dask.dataframe in partitions instead, on this machine or on
    the workers of ``client`` (a ``distributed.Client``), with exact quartiles.

    >>> a = assess_file("big.parquet", "churned", "binary", progress=print)  # doctest: +SKIP
    >>> a.rows, a.duplicate_rows, a.methods["duplicates"]                    # doctest: +SKIP
    (10000000, 10000, '64-bit row hash')
    """
    if engine not in ("duckdb", "dask"):
        raise DataError(f"engine must be 'duckdb' or 'dask'; got {engine!r}")
    if engine == "dask":
        from loopml.data._profile_dask import profile_dask

        if progress is not None:
            progress("data", f"profiling {Path(path).name} with dask.dataframe in partitions")
        profile = profile_dask(path, target=target, sample_rows=sample_rows, seed=seed, client=client)
    else:
        profile = profile_file(path, target=target, sample_rows=sample_rows, seed=seed, progress=progress,
                               memory_limit=memory_limit, threads=threads)
    if progress is not None:
        progress("data", f"assessing {Path(path).name}: leakage and label noise on a sample of "
                         f"{len(profile.sample):,} rows")
    return _judge(profile, target, task, limits, seed)


# -- judging a profile -------------------------------------------------------------------------------


def _judge(profile: TableProfile, target: str | None, task: str, limits: QualityLimits | None,
           seed: int) -> DataAssessment:
    from loopml.spec import QualityLimits

    cols, rows = profile.columns, profile.rows
    features = [c for c in cols if c != target]
    cells = rows * len(cols)
    constant = [c for c in features if cols[c].distinct + (cols[c].missing > 0) <= 1]
    a = DataAssessment(
        target=target, task=task, rows=rows, columns=len(features),
        column_kinds={c: cols[c].kind for c in features},
        missing_share={c: p.missing / rows for c, p in cols.items() if p.missing},
        missing_cells_share=sum(p.missing for p in cols.values()) / cells if cells else 0.0,
        duplicate_rows=profile.duplicate_rows, duplicate_share=profile.duplicate_rows / rows if rows else 0.0,
        constant_columns=constant, target_missing=cols[target].missing if target is not None else 0,
        outliers={c: {"count": p.outliers, "share": p.outliers / rows, "low": p.low, "high": p.high}
                  for c in features if (p := cols[c]).kind == "numeric" and p.outliers is not None},
        near_constant_columns={c: round(cols[c].top_share, 6) for c in features
                               if c not in constant and cols[c].top_share >= _NEAR_CONSTANT},
        cardinality={c: cols[c].distinct for c in features if cols[c].kind == "categorical"},
        methods=dict(profile.methods), limits=(limits or QualityLimits()).model_dump(),
    )
    if target is not None:
        _judge_target(a, cols[target], profile.target_counts)
        sample = profile.sample
        labeled = sample[sample[target].notna()] if sample is not None else None
        if a.target_ok and labeled is not None and len(labeled) >= _MIN_MODEL_ROWS:
            _model_checks(a, labeled, [c for c in features if c not in constant and cols[c].missing < rows], seed)
    a.unusable_columns = _unusable(a, cols)
    return a


def _judge_target(a: DataAssessment, column: ColumnProfile, counts: dict[str, int]) -> None:
    name, labeled = a.target, a.rows - a.target_missing
    if a.task == "regression":
        numeric = column.kind in ("numeric", "id") and column.mean is not None
        if numeric:
            a.target_summary = {"mean": column.mean, "std": column.std, "min": column.min, "max": column.max}
        if labeled == 0:
            a.target_problem = f"target '{name}' has no values: all {a.rows:,} rows miss it; collect labeled rows"
        elif not numeric:
            a.target_problem = (f"target '{name}' holds {column.dtype} values, but task 'regression' needs numbers; "
                                "set business.task to binary or multiclass, or pick a numeric target")
        elif column.distinct < 2:
            a.target_problem = (f"target '{name}' has a single value ({column.top_value}); there is nothing to "
                                "predict: check business.target")
    else:
        a.target_counts = counts
        a.target_balance = {k: v / labeled for k, v in counts.items()} if labeled else {}
        a.minority_count = min(counts.values(), default=0)
        shown = ", ".join(f"'{k}'" for k in list(counts)[:5]) + (", …" if len(counts) > 5 else "")
        if labeled == 0:
            a.target_problem = f"target '{name}' has no values: all {a.rows:,} rows miss it; collect labeled rows"
        elif not counts:
            a.target_problem = (f"target '{name}' has {column.distinct:,} distinct values, too many classes for "
                                f"task '{a.task}'; use task 'regression' or group the values")
        elif len(counts) < 2:
            a.target_problem = (f"target '{name}' has 1 class ({shown}), need at least 2; collect rows of "
                                "another class or check business.target")
        elif a.task == "binary" and len(counts) > 2:
            a.target_problem = (f"task 'binary' needs 2 classes, but target '{name}' has {len(counts)} ({shown}); "
                                "use task 'multiclass' or map the values to two")
    a.target_ok = a.target_problem is None


def _unusable(a: DataAssessment, cols: dict[str, ColumnProfile]) -> dict[str, str]:
    """Columns that cannot be features, each with a reason starting with its category."""
    leaks = {s["column"]: s for s in a.leakage_suspects}
    unusable: dict[str, str] = {}
    for c in a.column_kinds:
        p = cols[c]
        if p.missing == a.rows:
            unusable[c] = f"all missing ({a.rows:,} rows)"
        elif c in a.constant_columns:
            unusable[c] = f"constant: every row is {p.top_value!r}"
        elif c in leaks:
            unusable[c] = f"leakage suspect: alone it scores {leaks[c]['metric']} {leaks[c]['score']:.3f} out of fold"
        elif p.kind == "id":
            unusable[c] = f"id-like: {p.distinct:,} distinct values in {a.rows:,} rows"
    return unusable


# -- model-based checks ------------------------------------------------------------------------------


def _model_checks(a: DataAssessment, sample: pd.DataFrame, columns: list[str], seed: int) -> None:
    """Leakage suspects and (classification) label noise, out of fold on the labeled sample."""
    labels = sample[a.target]
    a.checked_rows = int(len(sample))
    if a.task == "regression":
        y, k = labels.to_numpy(dtype=float), 0
    else:
        y, classes = pd.factorize(labels.astype(str), sort=True)
        k = len(classes)
    folds = _folds(y, k, seed)
    a.leakage_suspects = _leakage(sample, columns, y, k, a.task, folds)
    if k:
        leaks = {s["column"] for s in a.leakage_suspects}
        usable = [c for c in columns if c not in leaks and a.column_kinds[c] not in ("id", "text")]
        a.label_noise = _label_noise(sample, usable, a.column_kinds, y, k, folds, seed)


def _folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    stratify = k and np.bincount(y, minlength=k).min() >= _FOLDS
    splitter = (StratifiedKFold if stratify else KFold)(_FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y if stratify else None))


def _levels(series: pd.Series) -> np.ndarray:
    """Integer levels of one column: categories as they are, numbers and times in up to 100 quantile bins.

    Bins make a numeric column's one-column model a histogram of the target, which finds any function
    of the column (monotone or not) at the cost of a few array passes, not a tree per column.
    """
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = _epoch_seconds(series)
    elif pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=float, na_value=np.nan)
    else:
        return pd.factorize(series.astype(object), use_na_sentinel=False)[0]
    bins = int(np.clip(len(values) // 50, 10, 100))
    known = ~np.isnan(values)
    distinct = np.unique(values[known])
    if len(distinct) <= bins:
        edges, side = distinct, "left"
    else:
        edges, side = np.unique(np.quantile(values[known], np.linspace(0, 1, bins + 1)[1:-1])), "right"
    codes = np.searchsorted(edges, values, side=side)
    codes[~known] = len(edges) + 1
    return codes


def _leakage(sample: pd.DataFrame, columns: list[str], y: np.ndarray, k: int, task: str,
             folds: list) -> list[dict[str, Any]]:
    from sklearn.metrics import r2_score, roc_auc_score

    majority = np.bincount(y).max() / len(y) if k else 0.0
    suspects = []
    for column in columns:
        codes = _levels(sample[column])
        if codes.min() == codes.max():
            continue
        oof = _level_means(codes, y, k, folds)
        if task == "binary":
            score = roc_auc_score(y, oof[:, 1])
        elif task == "multiclass":
            score = float((oof.argmax(1) == y).mean())
            if 1 - score > _LEAK_ERROR_CUT * (1 - majority):
                continue
        else:
            score = r2_score(y, oof[:, 0])
        if score >= _LEAK_SCORE:
            suspects.append({"column": column, "score": round(float(score), 4), "metric": _METRICS[task]})
    return sorted(suspects, key=lambda s: -s["score"])


def _level_means(codes: np.ndarray, y: np.ndarray, k: int, folds: list) -> np.ndarray:
    """Out-of-fold class shares (k classes) or target mean (k = 0) per level, shrunk by one prior row."""
    levels = int(codes.max()) + 1
    out = np.zeros((len(y), max(k, 1)))
    for train, test in folds:
        if k:
            counts = np.bincount(codes[train] * k + y[train], minlength=levels * k).reshape(levels, k)
            prior = np.bincount(y[train], minlength=k) / len(train)
            out[test] = ((counts + prior) / (counts.sum(1, keepdims=True) + 1))[codes[test]]
        else:
            sums = np.bincount(codes[train], weights=y[train], minlength=levels)
            n = np.bincount(codes[train], minlength=levels)
            out[test, 0] = ((sums + y[train].mean()) / (n + 1))[codes[test]]
    return out


def _label_noise(sample: pd.DataFrame, columns: list[str], kinds: dict[str, str], y: np.ndarray, k: int,
                 folds: list, seed: int) -> dict[str, Any] | None:
    """Confident learning on out-of-fold LightGBM probabilities (Northcutt et al., 2021), floored at 0.8."""
    import lightgbm as lgb

    if not columns:
        return None
    features = _model_frame(sample, columns, kinds)
    proba = np.zeros((len(y), k))
    for train, test in folds:
        if len(np.unique(y[train])) < 2:
            return None
        # One thread: on a sample this small more threads gain little, and on a busy machine LightGBM's
        # OpenMP threads wait for each other (a 0.4 s check took 20-50 s with the CPUs oversubscribed).
        model = lgb.LGBMClassifier(n_estimators=100 if k == 2 else 50, learning_rate=0.1, num_leaves=15,
                                   min_child_samples=20, max_bin=63, random_state=seed, verbose=-1, n_jobs=1)
        model.fit(features.iloc[train], y[train])
        proba[np.ix_(test, model.classes_)] = model.predict_proba(features.iloc[test])
    rows = np.arange(len(y))
    self_confidence = np.array([proba[y == j, j].mean() if (y == j).any() else 1.0 for j in range(k)])
    other = np.where(proba >= np.maximum(self_confidence, _CONFIDENT), proba, -1.0)
    other[rows, y] = -1.0
    flagged = np.flatnonzero(other.max(1) >= 0)
    worst = flagged[np.argsort(proba[flagged, y[flagged]], kind="stable")][:_MAX_EXAMPLES]
    return {
        "share": float(len(flagged) / len(y)),
        "rows": int(len(flagged)),
        "checked_rows": int(len(y)),
        "method": (f"confident learning: another class at >= {_CONFIDENT} and >= its mean self-confidence, "
                   f"{_FOLDS}-fold out-of-fold LightGBM"),
        "examples": [int(p) for p in sample.index.to_numpy()[worst]],
    }


def _model_frame(sample: pd.DataFrame, columns: list[str], kinds: dict[str, str]) -> pd.DataFrame:
    """Numbers as floats, times as seconds, everything else as pandas categories (LightGBM splits them)."""
    out = {}
    for c in columns:
        series = sample[c]
        if kinds[c] == "numeric":
            out[c] = pd.to_numeric(series, errors="coerce").astype(float)
        elif kinds[c] == "datetime":
            out[c] = pd.Series(_epoch_seconds(series), index=series.index)
        else:
            out[c] = series.astype(str).where(series.notna()).astype("category")
    # Plain names: LightGBM refuses some characters (JSON punctuation) in feature names.
    return pd.DataFrame(out, index=sample.index).set_axis([f"f{i}" for i in range(len(out))], axis=1)


def _epoch_seconds(series: pd.Series) -> np.ndarray:
    """Times as seconds since 1970 (naive times taken as UTC), NaN where missing."""
    times = pd.to_datetime(series, utc=True)
    return (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float)


# -- a project's sources -----------------------------------------------------------------------------


@dataclass
class SourceAssessment:
    """One source in four parts: availability, usability, quality and cost, each a dict of numbers."""

    name: str
    kind: str
    description: str
    availability: dict[str, Any]
    usability: dict[str, Any]
    quality: dict[str, Any]
    cost: dict[str, Any]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ProjectAssessment:
    """Every source of a spec assessed on its own, and the joined table as the model would see it.

    ``joined`` is None when the base source cannot be read; ``left_out`` names the sources the joined
    table lacks and why (unreachable, join key absent or not unique).
    """

    project: str
    target: str
    task: str
    sources: list[SourceAssessment]
    joined: DataAssessment | None
    joins: list[dict[str, Any]] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    join_error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("sources", "joined")}
        return {**data, "sources": [s.to_dict() for s in self.sources],
                "joined": self.joined.to_dict() if self.joined is not None else None}


_QUALITY_KEYS = ("rows", "missing_cells_share", "missing_share", "duplicate_rows", "duplicate_share",
                 "constant_columns", "near_constant_columns", "outliers", "cardinality", "target_balance",
                 "leakage_suspects", "label_noise", "checked_rows")


def assess_project(spec: ProjectSpec, *, progress: Progress | None = None) -> ProjectAssessment:
    """Assess each source of ``spec`` (read through its :class:`~loopml.data.sources.Source`) and their join
    (through :func:`~loopml.data.sources.collect`). A source that cannot be read is reported, not raised.

    >>> pa = assess_project(load_spec("examples/benefits-sources/loopml.yaml"))  # doctest: +SKIP
    >>> [(s.name, s.availability["reachable"], s.usability["join"]) for s in pa.sources]  # doctest: +SKIP
    [('survey', True, None), ('regional', True, {'key': ['state'], 'match_rate': 1.0, ...})]
    """
    from loopml.data.sources import collect

    progress = progress or (lambda stage, message: None)
    started = time.perf_counter()
    b = spec.business
    result = ProjectAssessment(project=spec.project, target=b.target, task=b.task, sources=[], joined=None)
    base: pd.DataFrame | None = None
    partitioned: list[str] = []
    for i, source_spec in enumerate(spec.data.sources):
        progress("data", f"assessing source '{source_spec.name}' ({i + 1}/{len(spec.data.sources)})")
        size = _larger_than_memory(spec, source_spec)
        if size is not None:
            partitioned.append(f"'{source_spec.name}' ({size:,} bytes)")
            progress("data", f"source '{source_spec.name}' is larger than compute.memory_limit: dask.dataframe")
            assessed, frame = _assess_in_partitions(spec, source_spec)
        else:
            assessed, frame = _assess_source(spec, source_spec, base)
        result.sources.append(assessed)
        if i == 0:
            base = frame
        elif frame is None:
            result.left_out[source_spec.name] = f"unreachable: {assessed.availability['error']}"
        elif (join := assessed.usability["join"]) and (join.get("error") or not join["key_unique"]):
            result.left_out[source_spec.name] = join.get("error") or (
                f"join key {', '.join(join['key'])} is not unique ({join['duplicate_keys']:,} repeated values)")
    if partitioned:
        result.join_error = (f"source {', '.join(partitioned)} is larger than compute.memory_limit "
                             f"({spec.compute.memory_limit:,} bytes), so the joined table is not read into memory; "
                             "each source was assessed on its own and its joins on a seeded sample")
    elif base is None:
        result.join_error = f"base source '{spec.data.sources[0].name}' cannot be read, so there is no table to join"
    else:
        names = [s.name for s in spec.data.sources[1:] if s.name not in result.left_out]
        try:
            collected = collect(spec, names=names, progress=progress)
        except DataError as exc:
            result.join_error = str(exc)
        else:
            progress("data", f"assessing the joined table ({len(collected.frame):,} rows)")
            result.joins = [j.to_dict() for j in collected.joins]
            result.joined = assess(collected.frame, b.target, b.task, limits=spec.data.limits, seed=spec.model.seed)
    result.seconds = round(time.perf_counter() - started, 4)
    return result


def _assess_source(spec: ProjectSpec, source_spec: Any,
                   base: pd.DataFrame | None) -> tuple[SourceAssessment, pd.DataFrame | None]:
    from loopml.data.sources import open_source

    b, per_1k = spec.business, float(source_spec.cost_per_1k_rows)
    started = time.perf_counter()
    description = getattr(source_spec, "path", None) or source_spec.kind
    try:
        source = open_source(source_spec, spec.root)
        description = source.describe()
        frame = source.read()
        seconds = time.perf_counter() - started
        total, newest = source.count(), source.newest()
    except Exception as exc:  # noqa: BLE001 - whatever stops the read is what availability reports
        seconds = round(time.perf_counter() - started, 4)
        error = " ".join(str(exc).split()) or type(exc).__name__
        return SourceAssessment(
            name=source_spec.name, kind=source_spec.kind, description=description,
            availability={"reachable": False, "error": error, "read_seconds": seconds, "rows": 0,
                          "total_rows": None, "more_rows": None, "newest": None},
            usability={"target_present": None, "columns": {}, "join": None, "unusable": {}},
            quality={}, cost={"cost_per_1k_rows": per_1k, "rows": 0, "cost": 0.0, "read_seconds": seconds},
        ), None
    rows = int(len(frame))
    has_target = b.target in frame.columns
    a = assess(frame, b.target if has_target else None, b.task, limits=spec.data.limits, seed=spec.model.seed)
    quality = {k: v for k, v in a.to_dict().items() if k in _QUALITY_KEYS}
    quality["outliers"] = {c: o for c, o in a.outliers.items() if o["count"]}
    join = None
    if source_spec.join is not None and base is not None:
        join = _join_check(base, frame, source_spec.join.keys, spec.data.sources[0].name)
    return SourceAssessment(
        name=source_spec.name, kind=source_spec.kind, description=description,
        availability={"reachable": True, "error": None, "read_seconds": round(seconds, 4), "rows": rows,
                      "total_rows": total, "more_rows": max(total - rows, 0) if total is not None else None,
                      "newest": None if newest is None else str(newest)},
        usability={"target_present": has_target, "target_ok": a.target_ok if has_target else None,
                   "target_problem": a.target_problem, "columns": a.column_kinds, "join": join,
                   # A lookup table's key is unique per row by design; the join consumes it.
                   "unusable": {c: why for c, why in a.unusable_columns.items()
                                if not (source_spec.join and c in source_spec.join.keys)}},
        quality=quality,
        cost={"cost_per_1k_rows": per_1k, "rows": rows, "cost": rows / 1000 * per_1k,
              "read_seconds": round(seconds, 4),
              "cost_all_rows": total / 1000 * per_1k if total is not None else None},
    ), frame


def _join_check(base: pd.DataFrame, frame: pd.DataFrame, keys: list[str], base_name: str) -> dict[str, Any]:
    """How well ``frame`` joins onto the base by ``keys``: match rate of base rows, key uniqueness."""
    for side, table in ((f"base source '{base_name}'", base), ("this source", frame)):
        absent = [k for k in keys if k not in table.columns]
        if absent:
            return {"key": keys, "error": f"join key {', '.join(map(repr, absent))} is not a column of {side}",
                    "match_rate": 0.0, "matched_rows": 0, "key_unique": None, "duplicate_keys": None}
    right = frame[keys].dropna()
    if len(keys) == 1:
        matched = base[keys[0]].isin(right[keys[0]]).to_numpy()
    else:
        matched = pd.MultiIndex.from_frame(base[keys]).isin(pd.MultiIndex.from_frame(right))
    repeated = int(right.duplicated().sum())
    return {"key": keys, "match_rate": float(matched.mean()) if len(base) else 0.0,
            "matched_rows": int(matched.sum()), "key_unique": repeated == 0, "duplicate_keys": repeated}


def _larger_than_memory(spec: ProjectSpec, source_spec: Any) -> int | None:
    """The file source's size in bytes when it exceeds ``compute.memory_limit``; else None."""
    from loopml.data._profile_dask import file_bytes
    from loopml.spec import FileSourceSpec

    limit = spec.compute.memory_limit
    if limit is None or not isinstance(source_spec, FileSourceSpec):
        return None
    size = file_bytes(spec.source_path(source_spec))
    return size if size > limit else None


def _assess_in_partitions(spec: ProjectSpec, source_spec: Any) -> tuple[SourceAssessment, pd.DataFrame | None]:
    """A file source larger than memory: profiled by dask.dataframe (on the cluster when one is named).

    The frame returned is the profile's seeded sample: a later source's join is checked against it.
    A source joined to the base is not join-checked here (a sample of a lookup table would miss keys).
    """
    from loopml.compute import connect
    from loopml.data._profile_dask import columns_of, file_bytes, profile_dask

    b, per_1k, path = spec.business, float(source_spec.cost_per_1k_rows), spec.source_path(source_spec)
    started = time.perf_counter()
    cluster = connect(spec.compute.dask, root=spec.root) if spec.compute.dask else None
    try:
        has_target = b.target in columns_of(path)
        profile = profile_dask(path, target=b.target if has_target else None, seed=spec.model.seed,
                               client=None if cluster is None else cluster.client)
    except DataError as exc:
        seconds = round(time.perf_counter() - started, 4)
        return SourceAssessment(
            name=source_spec.name, kind=source_spec.kind, description=str(path.name),
            availability={"reachable": False, "error": str(exc), "read_seconds": seconds, "rows": 0,
                          "total_rows": None, "more_rows": None, "newest": None},
            usability={"target_present": None, "columns": {}, "join": None, "unusable": {}},
            quality={}, cost={"cost_per_1k_rows": per_1k, "rows": 0, "cost": 0.0, "read_seconds": seconds},
        ), None
    finally:
        if cluster is not None:
            cluster.close()
    seconds = round(time.perf_counter() - started, 4)
    a = _judge(profile, b.target if has_target else None, b.task, spec.data.limits, spec.model.seed)
    quality = {k: v for k, v in a.to_dict().items() if k in _QUALITY_KEYS}
    quality["outliers"] = {c: o for c, o in a.outliers.items() if o["count"]}
    join = None
    rows = profile.rows
    return SourceAssessment(
        name=source_spec.name, kind=source_spec.kind, description=str(path.name),
        availability={"reachable": True, "error": None, "read_seconds": seconds, "rows": rows, "total_rows": rows,
                      "more_rows": 0, "newest": None, "bytes": file_bytes(path),
                      "engine": profile.methods["engine"]},
        usability={"target_present": has_target, "target_ok": a.target_ok if has_target else None,
                   "target_problem": a.target_problem, "columns": a.column_kinds, "join": join,
                   "unusable": {c: why for c, why in a.unusable_columns.items()
                                if not (source_spec.join and c in source_spec.join.keys)}},
        quality=quality,
        cost={"cost_per_1k_rows": per_1k, "rows": rows, "cost": rows / 1000 * per_1k, "read_seconds": seconds,
              "cost_all_rows": rows / 1000 * per_1k},
    ), profile.sample
