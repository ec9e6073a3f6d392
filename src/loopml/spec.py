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
    "ComputeSpec",
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
    "RolloutSpec",
    "SourceSpec",
    "SqlSourceSpec",
    "duration_or_zero",
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
    # point: the holdout estimate must meet the goal; ci_bound: the pessimistic end of its 95% CI must.
    gate_on: Literal["point", "ci_bound"] = "point"

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
        """The goal in words; ``gate_on: ci_bound`` adds which end of the interval is judged.

        >>> GoalSpec(metric="recall", at_least=0.7, gate_on="ci_bound").describe()
        'recall >= 0.7 (on the lower 95% bound)'
        """
        op = ">=" if self.greater_is_better else "<="
        text = f"{self.metric} {op} {self.threshold:g}"
        if self.gate_on == "ci_bound":
            text += f" (on the {'lower' if self.greater_is_better else 'upper'} 95% bound)"
        if self.with_:
            text += " with " + ", ".join(f"{k} >= {v:g}" for k, v in self.with_.items())
        return text


class CostsSpec(_Strict):
    """Costs of a wrong decision: the model decides for the lowest expected cost.

    Binary: ``false_positive`` and ``false_negative`` choose the threshold. Multiclass: ``per_class``
    maps a class to the cost of misclassifying a row whose true class it is (classes not named cost 1);
    the model predicts the class k maximising p_k * cost_k.

    >>> CostsSpec.model_validate({"per_class": {"A": 10, 2: 3}}).per_class
    {'A': 10.0, '2': 3.0}
    """

    false_positive: float | None = Field(default=None, ge=0)
    false_negative: float | None = Field(default=None, ge=0)
    per_class: dict[str, Annotated[float, Field(gt=0)]] | None = None

    @field_validator("per_class", mode="before")
    @classmethod
    def _class_names_as_text(cls, value: Any) -> Any:
        # YAML reads `2: 5` with an int key; classes are matched by their text, as business.positive is.
        if not isinstance(value, dict):
            return value
        texts = [_label_text(k) for k in value]
        twice = sorted({t for t in texts if texts.count(t) > 1})
        if twice:
            named = ", ".join(map(repr, value))
            raise ValueError(f"class {', '.join(twice)} is named twice (as {named}); name it once")
        return dict(zip(texts, value.values(), strict=True))

    @model_validator(mode="after")
    def _one_kind(self) -> CostsSpec:
        pair = {"false_positive": self.false_positive, "false_negative": self.false_negative}
        given = [name for name, v in pair.items() if v is not None]
        if self.per_class is not None and given:
            raise ValueError(f"found per_class and {', '.join(given)}; give false_positive and false_negative "
                             "(task binary) or per_class (task multiclass), not both")
        if self.per_class is not None and not self.per_class:
            raise ValueError("business.costs.per_class: found an empty mapping; name at least one class and the cost "
                             "of misclassifying its rows, e.g. per_class: {CLASS: 10}")
        if self.per_class is None and len(given) < 2:
            found = f"only {given[0]}" if given else "neither"
            raise ValueError(f"found {found}; give both false_positive and false_negative (task binary) "
                             "or per_class: {CLASS: COST} (task multiclass)")
        return self


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
        if self.costs is not None:
            problems += _costs_fit_task(self.costs, self.task)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _costs_fit_task(costs: CostsSpec, task: str) -> list[str]:
    """Binary costs are false_positive and false_negative, multiclass ones per_class; regression has none."""
    pair = [k for k in ("false_positive", "false_negative") if getattr(costs, k) is not None]
    if task == "regression":
        return ["business.costs: costs weigh wrong class decisions and task 'regression' makes none; remove 'costs'"]
    if task == "binary" and costs.per_class is not None:
        return ["business.costs.per_class: per-class costs need task 'multiclass', found task 'binary'; "
                "use costs: {false_positive: COST, false_negative: COST}"]
    if task == "multiclass" and pair:
        return [f"business.costs.{pair[0]}: {' and '.join(pair)} need task 'binary', found task 'multiclass'; "
                "use costs: {per_class: {CLASS: COST}} (the cost of misclassifying a row of that class; "
                "classes not named cost 1)"]
    return []


def _label_text(value: Any) -> str:
    """A class label as text: ``2``, ``2.0`` and ``"2"`` are one class (as pandas may read it either way)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value.item() if hasattr(value, "item") else value)


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
    # drop: the model stage drops training rows whose label is likely wrong (classification; never the holdout).
    label_noise: Literal["keep", "drop"] = "keep"


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


class ComputeSpec(_Strict):
    """Where work runs: ``dask`` is a scheduler (``tcp://host:8786``) or a scheduler file; none: in-process.

    ``batch``: Optuna trials asked at once (default 4 on Dask, 1 in-process); the batch, not where the
    trials run, decides the model. ``memory_limit``: a file source larger than this (``"2GB"``) is
    assessed with dask.dataframe in partitions instead of being read into pandas.
    """

    dask: str | None = None
    batch: int | None = Field(default=None, ge=1, le=64)
    memory_limit: int | None = None

    @field_validator("dask")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        from loopml.compute.dask import looks_like_address

        if value is not None and not looks_like_address(value.strip()):
            raise ValueError(f"expected a scheduler address like tcp://host:8786 or a scheduler file (.json), "
                             f"found {value!r}")
        return None if value is None else value.strip()

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _bytes(cls, value: Any) -> int | None:
        from loopml.compute import parse_memory

        return None if value is None else parse_memory(value)


class ModelSpec(_Strict):
    budget: float = 300.0
    # Work units instead of seconds: the same seed and data then give the identical model on any machine.
    trials: int | None = Field(default=None, ge=1, le=10_000)
    seed: int = 0
    folds: int = Field(default=5, ge=2, le=20)
    max_iterations: int = Field(default=4, ge=1, le=20)
    # "module:function" in the spec's folder: it gets the feature columns and returns them with new ones,
    # at training and again at serving; the data contract still checks the columns it is given.
    features: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

    @field_validator("budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class ServeSpec(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)


class DriftSpec(_Strict):
    """When a monitored column drifts: a large change and a corrected p-value at most ``alpha``.

    Large: PSI above ``psi``, or the Wasserstein distance (numbers, in the reference's spreads) above
    ``wasserstein`` by more than chance allows (its lower bound at ``alpha``, so heavy tails of a small
    window do not alarm), or the Jensen–Shannon distance (categories) above ``jensen_shannon``. A drifted column
    raises the drift alert when its share of the model's importance is at least ``min_importance``
    (0: any drifted column alerts).
    """

    psi: float = Field(default=0.2, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    wasserstein: float = Field(default=0.1, gt=0)
    jensen_shannon: float = Field(default=0.1, gt=0)
    min_importance: float = Field(default=0.02, ge=0, le=1)


class QualitySpec(_Strict):
    """Data-quality limits per column and window, as shares of the window's rows.

    ``missing_increase``: the missing share may exceed the reference's by this much; ``out_of_range``:
    numbers outside the training range; ``unknown_category``: categories training never saw;
    ``rejected``: rows serving refused (422: they broke the data contract, or the body could not be read)
    as a share of all rows sent in the window, refused and answered (a body that could not be read
    counts as one row).

    >>> QualitySpec.model_validate({"rejected": 0.01}).rejected
    0.01
    """

    missing_increase: float = Field(default=0.1, ge=0, le=1)
    out_of_range: float = Field(default=0.05, ge=0, le=1)
    unknown_category: float = Field(default=0.05, ge=0, le=1)
    rejected: float = Field(default=0.05, ge=0, le=1)


class MonitorSpec(_Strict):
    """How ``loopml monitor`` cuts the prediction log into windows, and when it alerts.

    ``by: count`` (default) cuts windows of ``window`` predictions; ``by: time`` cuts one window per
    ``every`` (``every: 1h`` alone implies it). ``min_labeled`` labels make a window's labeled performance.

    >>> MonitorSpec.model_validate({"every": "1h"}).by
    'time'
    """

    by: Literal["count", "time"] = "count"
    window: int = Field(default=1000, ge=10)
    every: float | None = None
    min_labeled: int = Field(default=30, ge=2)
    drift: DriftSpec = DriftSpec()
    quality: QualitySpec = QualitySpec()
    webhook: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _every_means_time(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("every") is not None and "by" not in value:
            return {**value, "by": "time"}
        return value

    @field_validator("every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+\S*", value):
            raise ValueError(f"expected an http:// or https:// URL such as https://hooks.example.com/loopml, "
                             f"found {value!r}")
        return value

    @model_validator(mode="after")
    def _by_fits_every(self) -> MonitorSpec:
        if self.by == "time" and self.every is None:
            raise ValueError("by 'time' cuts one window per period and needs every: DURATION, such as every: 1h")
        if self.by == "count" and self.every is not None:
            raise ValueError("every applies to by: 'time'; with by: 'count' a window holds `window` predictions: "
                             "remove every, or set by: time")
        if self.by == "time" and "window" in self.model_fields_set:
            raise ValueError("window counts predictions and applies to by: 'count'; with by: 'time' a window "
                             "lasts `every`: remove window, or set by: count")
        return self


class OperationsSpec(_Strict):
    serve: ServeSpec = ServeSpec()
    monitor: MonitorSpec = MonitorSpec()


# The alerts the maintenance policy acts on (the kinds `loopml monitor` raises), and what it can do about each.
TRIGGERS = ("goal_breached", "goal_breach_estimated", "drift", "data_quality")
ACTIONS = ("retrain", "collect_then_retrain", "alert")


def duration_or_zero(value: Any) -> float:
    """Seconds like :func:`parse_duration`, where 0 means none; a negative duration names the fix.

    >>> duration_or_zero("0"), duration_or_zero("6h")
    (0.0, 21600.0)
    """
    text = str(value).strip()
    if not isinstance(value, bool) and re.fullmatch(r"-\s*\d+(?:\.\d+)?\s*[smh]?", text):
        raise ValueError(f"found {value!r}, a negative duration; give 0 (none) or a positive duration such as "
                         "'30m' or '6h'")
    if not isinstance(value, bool) and re.fullmatch(r"0+(?:\.0+)?\s*[smh]?", text):
        return 0.0
    return parse_duration(value)


def _known(kind: str, name: Any, allowed: tuple[str, ...]) -> str:
    """``name`` if allowed, else a message with a did-you-mean and the allowed names."""
    if name in allowed:
        return name
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ValueError(f"unknown {kind} '{name}'; {hint}{kind}s: {', '.join(allowed)}")


class RetrainSpec(_Strict):
    """How a retrain runs: its promotion gate, its time budget, its trials and its training window.

    ``gate: beat_champion`` promotes a challenger that meets the goal and beats the champion by more than
    the noise; ``meet_goal`` one that meets the goal and is not worse than the champion beyond the noise.
    ``window``: ``all`` the champion's data plus every new row, ``recent`` the new rows only,
    ``weighted`` the new rows plus as many older rows drawn at random, ``auto`` trains each and keeps the
    one that scores best on the most recent labeled rows.
    """

    gate: Literal["beat_champion", "meet_goal"] = "beat_champion"
    budget: float = 600.0
    trials: int | None = Field(default=None, ge=1, le=10_000)
    window: Literal["auto", "all", "recent", "weighted"] = "auto"

    @field_validator("budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class CompareSpec(_Strict):
    """Champion against challenger on the newest labeled rows, held out of training.

    ``share`` of the new labeled rows (the most recent) is held out; ``confidence`` and ``resamples`` set
    the paired bootstrap of the difference between the two models on those rows.
    """

    share: float = Field(default=0.5, gt=0, lt=1)
    confidence: float = Field(default=0.95, ge=0.5, lt=1)
    resamples: int = Field(default=1000, ge=100, le=100_000)


class RetrySpec(_Strict):
    """Reading a source that does not answer: ``attempts`` tries, waiting ``backoff``, then twice that, ..."""

    attempts: int = Field(default=3, ge=1, le=10)
    backoff: float = 2.0

    @field_validator("backoff", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return duration_or_zero(value)


class LockSpec(_Strict):
    """One maintenance pass at a time: a second one waits up to ``wait`` (0: not at all), then gives up.

    A holder whose heartbeat is older than ``stale_after``, or whose process on this host is gone, is
    taken over.
    """

    wait: float = 600.0
    stale_after: float = 120.0

    @field_validator("wait", mode="before")
    @classmethod
    def _wait(cls, value: Any) -> float:
        return duration_or_zero(value)

    @field_validator("stale_after", mode="before")
    @classmethod
    def _stale(cls, value: Any) -> float:
        return parse_duration(value)


class RolloutSpec(_Strict):
    """How a challenger that passes the offline comparison reaches the traffic.

    ``direct``: it is promoted at once. ``shadow``: the challenger alias points at it, and the server
    has it score every request without answering (its predictions logged beside the champion's);
    ``canary``: it answers ``canary_share`` of the requests. Once ``min_labeled`` of its live predictions
    are labeled, a pass promotes it if it meets the goal and is not worse than the champion beyond the
    noise on live traffic, and otherwise ends the rollout (a bad canary is rolled back).

    >>> RolloutSpec.model_validate({"mode": "canary", "canary_share": 0.2}).canary_share
    0.2
    """

    mode: Literal["direct", "shadow", "canary"] = "direct"
    canary_share: float = 0.1
    min_labeled: int = 100

    @field_validator("canary_share", mode="before")
    @classmethod
    def _share(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"found {value!r}; expected the share of requests the canary answers, a number "
                             "between 0 and 1 exclusive (0.1: one request in ten)")
        return float(value)

    @field_validator("min_labeled", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 10:
            raise ValueError(f"found {value!r}; expected the labeled live predictions of the challenger needed "
                             "before it is judged, a whole number of at least 10")
        return value


class MaintenanceSpec(_Strict):
    """The maintenance policy: which alert triggers what, when a retrain may run, who promotes.

    ``on`` maps an alert to an action (``retrain``, ``collect_then_retrain`` or ``alert``; alerts not
    named only alert); ``triggers`` is the short form: the alerts that retrain. ``cooldown``: the least
    time between two retrains (0: none). ``min_labeled``: new labeled predictions needed before the goal
    is judged on them, and new labeled rows needed before a retrain is compared. ``act_on_estimate``:
    an estimated breach (no labels yet) may retrain. ``approval: human`` registers the challenger and
    leaves the promotion to ``loopml models promote``. ``rollout``: promote at once, or after a shadow or
    canary release on live traffic (:class:`RolloutSpec`).

    >>> MaintenanceSpec.model_validate({"on": {"drift": "collect_then_retrain"}}).actions["drift"]
    'collect_then_retrain'
    """

    on: dict[str, str] | None = None
    triggers: list[str] | None = None
    min_labeled: int = Field(default=50, ge=10)
    act_on_estimate: bool = False
    cooldown: float = 0.0
    approval: Literal["auto", "human"] = "auto"
    retrain: RetrainSpec = RetrainSpec()
    compare: CompareSpec = CompareSpec()
    sources: RetrySpec = RetrySpec()
    lock: LockSpec = LockSpec()
    rollout: RolloutSpec = RolloutSpec()

    @field_validator("on", mode="before")
    @classmethod
    def _alerts_to_actions(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        problems = []
        for alert, action in value.items():
            for kind, name, allowed in (("alert", alert, TRIGGERS), ("action", action, ACTIONS)):
                try:
                    _known(kind, name, allowed)
                except ValueError as exc:
                    problems.append(f"maintenance.on.{alert}: {exc}")
                    break
        if problems:
            raise ValueError("\n".join(problems))
        return value

    @field_validator("triggers", mode="before")
    @classmethod
    def _trigger_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            for name in value:
                _known("alert", name, TRIGGERS)
        return value

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value: Any) -> float:
        return duration_or_zero(value)

    @model_validator(mode="after")
    def _on_or_triggers(self) -> MaintenanceSpec:
        if self.on is not None and self.triggers is not None:
            raise ValueError("give 'on' (alert: action) or its short form 'triggers' (the alerts that retrain), "
                             "not both")
        return self

    @property
    def actions(self) -> dict[str, str]:
        """The action for every alert: the ones ``on`` or ``triggers`` name, ``alert`` for the rest."""
        if self.on is not None:
            return {t: self.on.get(t, "alert") for t in TRIGGERS}
        retrain = ["goal_breached"] if self.triggers is None else self.triggers
        return {t: "retrain" if t in retrain else "alert" for t in TRIGGERS}


class ProjectSpec(_Strict):
    """The whole ``loopml.yaml``; ``root`` is the folder relative paths start from."""

    project: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    business: BusinessSpec
    data: DataSpec
    model: ModelSpec = ModelSpec()
    operations: OperationsSpec = OperationsSpec()
    maintenance: MaintenanceSpec = MaintenanceSpec()
    compute: ComputeSpec = ComputeSpec()
    root: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _label_noise_needs_classes(self) -> ProjectSpec:
        if self.business.task == "regression" and self.data.clean.label_noise == "drop":
            raise ValueError("data.clean.label_noise: 'drop' needs a classification task (binary or multiclass); "
                             "a regression target has no label to be wrong; use 'keep' or remove the key")
        return self

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
    problems += _check_feature_hook(spec)
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


def _check_feature_hook(spec: ProjectSpec) -> list[str]:
    """model.features names a module in the spec's folder (or an installed one); it is not imported here."""
    import importlib.util

    if spec.model.features is None:
        return []
    module = spec.model.features.split(":")[0]
    parts = module.split(".")
    if (spec.root.joinpath(*parts[:-1], parts[-1] + ".py").is_file()
            or spec.root.joinpath(*parts, "__init__.py").is_file()):
        return []
    try:
        installed = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        installed = False
    if installed:
        return []
    return [f"model.features: module '{module}' not found: no {'/'.join(parts)}.py in {spec.root.name}/ and no "
            f"installed module of that name; put the file beside loopml.yaml"]


def _file_source_exists(spec: ProjectSpec, source: FileSourceSpec) -> bool:
    if any(ch in source.path for ch in "*?["):
        return any(spec.root.glob(source.path))
    return spec.source_path(source).is_file()


def _unknown_classes(business: BusinessSpec, values, shown: str) -> list[str]:
    """business.costs.per_class may name only classes the target holds; a near miss gets a suggestion."""
    classes = {_label_text(v) for v in values.unique()}
    problems = []
    for name in business.costs.per_class:  # type: ignore[union-attr]
        if name in classes:
            continue
        lowered = {c.lower(): c for c in classes}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
        hint = f"did you mean '{lowered[close[0]]}'? " if close else ""
        problems.append(f"business.costs.per_class.{name}: '{name}' is not a class of target '{business.target}'; "
                        f"{hint}classes: {shown}")
    return problems


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
    elif business.task == "multiclass" and business.costs is not None and business.costs.per_class:
        return _unknown_classes(business, values, shown)
    elif business.task == "regression" and not (pd.api.types.is_numeric_dtype(values)
                                                 and not pd.api.types.is_bool_dtype(values)):
        return [f"business.task: 'regression' needs a numeric target; '{target}' holds {values.dtype} "
                f"values such as {shown}; use task 'binary' or 'multiclass'"]
    return []
