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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopml.business.metrics import METRICS, metric_names_for
from loopml.errors import SpecError

__all__ = [
    "BusinessSpec",
    "CleanSpec",
    "CostsSpec",
    "DataSpec",
    "GoalSpec",
    "MaintenanceSpec",
    "ModelSpec",
    "OperationsSpec",
    "ProjectSpec",
    "SourceSpec",
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


class SourceSpec(_Strict):
    """One data source. ``path`` is relative to the spec file's folder."""

    name: str = Field(min_length=1)
    path: str
    format: Literal["auto", "csv", "parquet"] = "auto"
    join: JoinSpec | None = None
    cost_per_1k_rows: float = Field(default=0.0, ge=0)


class CleanSpec(_Strict):
    """How the Data stage cleans: each choice is recorded in the decision log."""

    duplicates: Literal["drop", "keep"] = "drop"
    missing: Literal["impute", "drop_rows"] = "impute"
    outliers: Literal["keep", "clip"] = "keep"
    imbalance: Literal["auto", "none", "balance"] = "auto"


class DataSpec(_Strict):
    sources: list[SourceSpec] = Field(min_length=1)
    clean: CleanSpec = CleanSpec()
    min_rows: int = Field(default=200, ge=10)
    holdout: float = Field(default=0.2, gt=0.05, lt=0.5)

    @field_validator("sources")
    @classmethod
    def _first_has_no_join(cls, sources: list[SourceSpec]) -> list[SourceSpec]:
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
    seed: int = 0
    folds: int = Field(default=5, ge=2, le=20)
    max_iterations: int = Field(default=4, ge=1, le=20)

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

    def source_path(self, source: SourceSpec) -> Path:
        return (self.root / source.path).resolve()


def spec_hash(spec: ProjectSpec) -> str:
    """SHA-256 of the spec's content (key order and comments do not matter)."""
    text = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
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


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at ``loc`` (for "did you mean")."""
    model: Any = ProjectSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
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


def _key_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name != "root"]


def _describe(exc: ValidationError, raw: dict) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "(top level)"
        kind = err["type"]
        found = err.get("input")
        if kind == "extra_forbidden":
            owner = _model_at(loc[:-1])
            allowed = _key_names(owner) if owner else []
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
    from loopml.data.sources import read_columns, read_source

    problems: list[str] = []
    for i, source in enumerate(spec.data.sources):
        path = spec.source_path(source)
        if not path.is_file():
            problems.append(
                f"data.sources.{i}.path: file '{source.path}' not found (looked in {spec.root.name}/); "
                "give a path relative to the spec file"
            )
    if problems:
        return problems
    target = spec.business.target
    holder = None
    columns: list[str] = []
    for source in spec.data.sources:
        columns = read_columns(spec.source_path(source), source.format)
        if target in columns:
            holder = source
            break
    if holder is None:
        first = spec.data.sources[0]
        columns = read_columns(spec.source_path(first), first.format)
        lowered = {c.lower(): c for c in columns}
        close = difflib.get_close_matches(target.lower(), list(lowered), n=1)
        hint = f"did you mean '{lowered[close[0]]}'? " if close else ""
        return [f"business.target: column '{target}' is not in {first.path}; {hint}columns: {', '.join(columns)}"]
    values = read_source(spec.source_path(holder), holder.format)[target].dropna()
    return _check_target_values(spec.business, values)


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
