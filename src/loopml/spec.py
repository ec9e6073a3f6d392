"""The project spec, ``loopml.yaml``: one file that states the goal and drives every stage.

:func:`load_spec` reads and validates it. Every problem becomes one line of a
:class:`~loopml.errors.SpecError` naming the key, what was found and what is
allowed, so a user fixes the whole file in one pass.

>>> from loopml.spec import load_spec
>>> spec = load_spec("examples/benefits/loopml.yaml")  # doctest: +SKIP
>>> spec.business.goal.metric                          # doctest: +SKIP
'recall'
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from loopml.business.metrics import METRICS, metric_names_for
from loopml.errors import SpecError

__all__ = [
    "AcquisitionSpec",
    "BusinessSpec",
    "CleanSpec",
    "CostsSpec",
    "DataSpec",
    "DuckDBSourceSpec",
    "FileSourceSpec",
    "GoalSpec",
    "MaintenanceSpec",
    "ModelSpec",
    "OperationsSpec",
    "ProjectSpec",
    "PythonSourceSpec",
    "QualityLimits",
    "SourceSpec",
    "SqlSourceSpec",
    "load_spec",
    "parse_duration",
    "spec_hash",
]

Task = Literal["binary", "multiclass", "regression"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"`` or ``"1h"``.

    >>> parse_duration("5m")
    300.0
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90, '90s', '5m' or '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", str(value))
        if not match:
            raise ValueError(f"expected a duration such as 90, '90s', '5m' or '1h', found {value!r}")
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, found {value!r}")
    return seconds


class GoalSpec(_Strict):
    """The goal: a metric on the locked holdout, with a threshold, optionally at an operating point."""

    metric: str
    at_least: float | None = None
    at_most: float | None = None
    with_: dict[str, float] = Field(default_factory=dict, alias="with")

    @model_validator(mode="after")
    def _one_bound(self) -> GoalSpec:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of 'at_least' or 'at_most'")
        return self

    @property
    def threshold(self) -> float:
        return self.at_least if self.at_least is not None else self.at_most  # type: ignore[return-value]

    @property
    def greater_is_better(self) -> bool:
        return self.at_least is not None

    def is_met(self, value: float) -> bool:
        """Whether ``value`` of the goal metric meets the goal."""
        return value >= self.threshold if self.greater_is_better else value <= self.threshold

    def describe(self) -> str:
        op = ">=" if self.greater_is_better else "<="
        text = f"{self.metric} {op} {self.threshold:g}"
        if self.with_:
            text += " with " + ", ".join(f"{k} >= {v:g}" for k, v in self.with_.items())
        return text


class CostsSpec(_Strict):
    """Costs of a wrong decision, used to choose the threshold by expected cost."""

    false_positive: float = Field(ge=0)
    false_negative: float = Field(ge=0)


class ConstraintsSpec(_Strict):
    predict_p99_ms: float | None = Field(default=None, gt=0)


class BusinessSpec(_Strict):
    problem: str = Field(min_length=1)
    task: Task
    target: str = Field(min_length=1)
    positive: str | int | bool | None = None
    goal: GoalSpec
    costs: CostsSpec | None = None
    constraints: ConstraintsSpec = ConstraintsSpec()

    @model_validator(mode="after")
    def _goal_fits_task(self) -> BusinessSpec:
        problems = []
        allowed = metric_names_for(self.task)
        if self.goal.metric not in allowed:
            problems.append(
                f"business.goal.metric: found '{self.goal.metric}', which does not fit task '{self.task}'; "
                f"allowed: {', '.join(allowed)}"
            )
        for name in self.goal.with_:
            metric = METRICS.get(name)
            if self.task != "binary":
                problems.append(
                    f"business.goal.with.{name}: an operating-point constraint needs task 'binary', "
                    f"found task '{self.task}'; remove 'with'"
                )
            elif metric is None or not metric.uses_decisions:
                problems.append(
                    f"business.goal.with: found '{name}'; allowed: "
                    + ", ".join(n for n in metric_names_for("binary") if METRICS[n].uses_decisions)
                )
        if self.costs is not None and self.task != "binary":
            problems.append(f"business.costs: costs choose a binary threshold, found task '{self.task}'; remove 'costs'")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class JoinSpec(_Strict):
    on: str | list[str]
    how: Literal["left", "inner"] = "left"

    @property
    def keys(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)


class IncrementalSpec(_Strict):
    """Read only rows newer than the last snapshot, by a time or id column that grows."""

    column: str = Field(min_length=1)


class _SourceBase(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    join: JoinSpec | None = None
    cost_per_1k_rows: float = Field(default=0.0, ge=0)
    incremental: IncrementalSpec | None = None


class FileSourceSpec(_SourceBase):
    """CSV or Parquet files; ``path`` is relative to the spec's folder and may be a glob."""

    kind: Literal["file"] = "file"
    path: str = Field(min_length=1)
    format: Literal["auto", "csv", "parquet"] = "auto"
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    encoding: str | None = None
    header: bool | None = None


class SqlSourceSpec(_SourceBase):
    """A table or a read-only query in a SQL database; ``${VAR}`` in the URL comes from the environment."""

    kind: Literal["sql"] = "sql"
    url: str = Field(min_length=1)
    table: str | None = None
    db_schema: str | None = Field(default=None, alias="schema")
    query: str | None = None

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        return self


class DuckDBSourceSpec(_SourceBase):
    """DuckDB SQL over files (paths in it are relative to the spec's folder)."""

    kind: Literal["duckdb"] = "duckdb"
    duckdb: str = Field(min_length=1)


class PythonSourceSpec(_SourceBase):
    """A Python function, ``module:function``, that returns a DataFrame."""

    kind: Literal["python"] = "python"
    callable: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


_SOURCE_KEYS = {"path": "file", "url": "sql", "duckdb": "duckdb", "callable": "python"}


def _source_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "kind", None)
    if isinstance(value, dict):
        if "kind" in value:
            return value["kind"]
        found = [kind for key, kind in _SOURCE_KEYS.items() if key in value]
        return found[0] if len(found) == 1 else None
    return None


SourceSpec = Annotated[
    Annotated[FileSourceSpec, Tag("file")]
    | Annotated[SqlSourceSpec, Tag("sql")]
    | Annotated[DuckDBSourceSpec, Tag("duckdb")]
    | Annotated[PythonSourceSpec, Tag("python")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="a source needs exactly one of 'path', 'url', 'duckdb' or 'callable'",
    ),
]


class CleanSpec(_Strict):
    """How the Data stage cleans: each choice is recorded in the decision log."""

    duplicates: Literal["drop", "keep"] = "drop"
    missing: Literal["impute", "drop_rows"] = "impute"
    outliers: Literal["keep", "clip", "drop"] = "keep"
    imbalance: Literal["auto", "none", "weights", "undersample", "oversample"] = "auto"
    leakage: Literal["drop", "keep"] = "drop"
    ids: Literal["drop", "keep"] = "drop"


class QualityLimits(_Strict):
    """The data gate's quality limits, on the joined and cleaned table."""

    max_missing_share: float = Field(default=0.5, ge=0, le=1)
    max_duplicate_share: float = Field(default=0.2, ge=0, le=1)
    max_label_noise: float = Field(default=0.3, ge=0, le=1)
    min_class_rows: int = Field(default=10, ge=1)


class AcquisitionSpec(_Strict):
    """When a further source pays for itself.

    A source is kept when it raises the cross-validated goal metric by at least ``min_gain`` and,
    for a source with a cost, when ``value_per_point`` (the value of +0.01 of the goal metric, in the
    unit of ``cost_per_1k_rows``, per 1,000 rows) times the gain in points covers its cost.
    """

    min_gain: float = Field(default=0.002, ge=0)
    value_per_point: float | None = Field(default=None, ge=0)


class DataSpec(_Strict):
    sources: list[SourceSpec] = Field(min_length=1)
    clean: CleanSpec = CleanSpec()
    limits: QualityLimits = QualityLimits()
    acquisition: AcquisitionSpec = AcquisitionSpec()
    min_rows: int = Field(default=200, ge=10)
    holdout: float = Field(default=0.2, gt=0.05, lt=0.5)

    @field_validator("sources")
    @classmethod
    def _joins_and_names(cls, sources: list) -> list:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, found {', '.join(dupes)} twice")
        for s in sources[1:]:
            if s.join is None:
                raise ValueError(f"source '{s.name}' needs 'join: {{on: COLUMN}}' to be joined to '{sources[0].name}'")
        return sources


class ModelSpec(_Strict):
    budget: float = 300.0
    # Work units instead of seconds: the same seed and data then give the identical model on any machine.
    trials: int | None = Field(default=None, ge=1, le=10_000)
    seed: int = 0
    folds: int = Field(default=5, ge=2, le=20)
    max_iterations: int = Field(default=4, ge=1, le=20)
    features: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

    @field_validator("budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class ServeSpec(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)


class MonitorSpec(_Strict):
    window: int = Field(default=1000, ge=10)


class OperationsSpec(_Strict):
    serve: ServeSpec = ServeSpec()
    monitor: MonitorSpec = MonitorSpec()


class RetrainSpec(_Strict):
    gate: Literal["beat_champion", "meet_goal"] = "beat_champion"


class MaintenanceSpec(_Strict):
    triggers: list[Literal["goal_breached", "drift"]] = ["goal_breached"]
    min_labeled: int = Field(default=50, ge=10)
    retrain: RetrainSpec = RetrainSpec()


class ProjectSpec(_Strict):
    """The whole ``loopml.yaml``; ``root`` is the folder relative paths start from."""

    project: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    business: BusinessSpec
    data: DataSpec
    model: ModelSpec = ModelSpec()
    operations: OperationsSpec = OperationsSpec()
    maintenance: MaintenanceSpec = MaintenanceSpec()
    root: Path = Field(default=Path("."), exclude=True)

    def source_path(self, source: FileSourceSpec) -> Path:
        """The resolved path (or glob pattern) of a file source."""
        return (self.root / source.path).resolve()


def spec_hash(spec: ProjectSpec) -> str:
    """SHA-256 of the spec's content (key order and comments do not matter)."""
    text = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false are booleans, so ``join: {on: id}`` and ``positive: yes`` mean
    what they say (YAML 1.1 reads ``on``, ``yes``, ``no`` and ``off`` as booleans)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_spec(path: str | Path, *, check_data: bool = True) -> ProjectSpec:
    """Read and validate ``loopml.yaml``; raise :class:`SpecError` listing every problem.

    With ``check_data`` the data files must exist and the first one must hold the target.
    Nothing is written anywhere.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "loopml.yaml"
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file; create one with `loopml init DATAFILE`")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping with keys project, business, data; found {type(raw).__name__}")
    try:
        spec = ProjectSpec.model_validate({**raw, "root": path.parent.resolve()})
    except ValidationError as exc:
        problems = _describe(exc, raw)
        raise SpecError(_render(path, problems), problems) from None
    if check_data:
        problems = _check_data(spec)
        if problems:
            raise SpecError(_render(path, problems), problems)
    return spec


def _render(path: Path, problems: list[str]) -> str:
    head = f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''} in the spec"
    return head + "\n" + "\n".join(f"  - {p}" for p in problems)


_SOURCE_MODELS = {"file": FileSourceSpec, "sql": SqlSourceSpec, "duckdb": DuckDBSourceSpec, "python": PythonSourceSpec}


def _clean_loc(loc: tuple) -> tuple:
    """``loc`` without the union tags pydantic inserts (``sources.0.file.path`` → ``sources.0.path``)."""
    out: list = []
    for part in loc:
        if isinstance(part, str) and (part.startswith("function-") or (out and isinstance(out[-1], int)
                                                                       and part in _SOURCE_MODELS)):
            continue
        out.append(part)
    return tuple(out)


def _model_at(loc: tuple, raw: Any = None) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at ``loc`` (for "did you mean")."""
    model: Any = ProjectSpec
    node = raw
    for part in loc:
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
        if isinstance(part, int):
            if model is DataSpec or model in _SOURCE_MODELS.values():
                model = _SOURCE_MODELS.get(_source_kind(node) or "", FileSourceSpec)
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        if part == "sources":
            model = DataSpec
            continue
        for arg in candidates:
            inner = getattr(arg, "__args__", ())
            for c in (arg, *inner):
                if isinstance(c, type) and issubclass(c, BaseModel):
                    model = c
                    break
            else:
                continue
            break
        else:
            return None
    return model


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(part, int) and 0 <= part < len(node)


def _key_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name != "root"]


def _describe(exc: ValidationError, raw: dict) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        loc = _clean_loc(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        kind = err["type"]
        found = err.get("input")
        if kind == "source_kind":
            keys = sorted(found) if isinstance(found, dict) else []
            close = [m for k in keys for m in difflib.get_close_matches(k, list(_SOURCE_KEYS), n=1)
                     if k not in _SOURCE_KEYS]
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"{key}: a source needs exactly one of 'path' (files), 'url' (SQL), 'duckdb' or "
                            f"'callable'; found keys: {', '.join(keys) or type(found).__name__}{hint}")
        elif kind == "extra_forbidden":
            owner = _model_at(loc[:-1], raw)
            allowed = [k for k in _key_names(owner) if k != "kind"] if owner else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"{key}: unknown key{hint} allowed keys here: {', '.join(allowed)}")
        elif kind == "missing":
            problems.append(f"{key}: required key is missing")
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            problems.append(f"{key}: found {found!r}; allowed: {expected}")
        elif kind == "value_error":
            message = str(err.get("ctx", {}).get("error", err["msg"]))
            for line in message.split("\n"):
                problems.append(line if ":" in line.split(" ")[0] else f"{key}: {line}")
        else:
            problems.append(f"{key}: found {found!r} ({type(found).__name__}); {err['msg'].lower()}")
    return problems


def _check_data(spec: ProjectSpec) -> list[str]:
    """Every file source exists, and some source holds the target with values that fit the task."""
    from loopml.data.sources import open_source

    problems: list[str] = []
    for i, source in enumerate(spec.data.sources):
        if isinstance(source, FileSourceSpec) and not _file_source_exists(spec, source):
            problems.append(
                f"data.sources.{i}.path: file '{source.path}' not found (looked in {spec.root.name}/); "
                "give a path relative to the spec file"
            )
    if problems:
        return problems
    target = spec.business.target
    first_columns: list[str] = []
    for source in spec.data.sources:
        opened = open_source(source, spec.root)
        columns = opened.columns()
        first_columns = first_columns or columns
        if target in columns:
            values = opened.read(columns=[target])[target].dropna()
            return _check_target_values(spec.business, values)
    lowered = {c.lower(): c for c in first_columns}
    close = difflib.get_close_matches(target.lower(), list(lowered), n=1)
    hint = f"did you mean '{lowered[close[0]]}'? " if close else ""
    where = getattr(spec.data.sources[0], "path", spec.data.sources[0].name)
    return [f"business.target: column '{target}' is not in {where}; {hint}columns: {', '.join(first_columns)}"]


def _file_source_exists(spec: ProjectSpec, source: FileSourceSpec) -> bool:
    if any(ch in source.path for ch in "*?["):
        return any(spec.root.glob(source.path))
    return spec.source_path(source).is_file()


def _check_target_values(business: BusinessSpec, values) -> list[str]:
    """The task and positive class must fit the values the target actually holds."""
    import pandas as pd

    distinct = sorted(str(v) for v in values.unique())
    shown = ", ".join(distinct[:10]) + (", …" if len(distinct) > 10 else "")
    target = business.target
    if business.task == "binary":
        if len(distinct) != 2:
            return [f"business.task: 'binary' needs a target with 2 values; '{target}' has {len(distinct)} "
                    f"({shown}); use task 'multiclass' or 'regression', or another target"]
        if business.positive is not None and str(business.positive) not in distinct:
            return [f"business.positive: '{business.positive}' is not a value of target '{target}'; values: {shown}"]
    elif business.task == "multiclass" and len(distinct) < 3:
        return [f"business.task: 'multiclass' needs at least 3 target values; '{target}' has {len(distinct)} "
                f"({shown}); use task 'binary'"]
    elif business.task == "regression" and not (pd.api.types.is_numeric_dtype(values)
                                                 and not pd.api.types.is_bool_dtype(values)):
        return [f"business.task: 'regression' needs a numeric target; '{target}' holds {values.dtype} "
                f"values such as {shown}; use task 'binary' or 'multiclass'"]
    return []
