"""A trained model compiled for serving: records (dicts) straight to predictions, no DataFrame per request.

:meth:`CompiledModel.from_model` reads a fitted :class:`~loopml.model.artifact.TrainedModel` and the
:class:`~loopml.data.contract.DataContract` once, at load, and keeps only what a request needs: the
contract's checks per column; the cleaner's clip bounds, the medians, means and standard deviations
as numpy arrays; for every categorical column a dict from category to row of a small table (its
code, its one-hot row or its target-encoding means); the text columns' TF-IDF state; the column
order of the encoded matrix; and the estimator's state in the form it predicts from fastest
(LightGBM's booster on a float64 matrix with one thread for small batches, the forests' node
arrays, linear coefficients as arrays). Every step repeats the pipeline's arithmetic in the same
order, so the compiled predictions equal :meth:`TrainedModel.predict_proba` and
:meth:`TrainedModel.predict` on the contract-validated rows.

What is not compiled falls back to the pipeline (``validate_records`` then the model) for the whole
model, with :attr:`CompiledModel.compiled` False and :attr:`CompiledModel.reason` saying why:
date columns (their parsing is pandas'), a user feature hook (it is a function of a DataFrame), a
model attribute this module does not know (a decision rule it would otherwise ignore), a model
column the contract lacks or holds as another kind, and any model whose compiled output differs
from the pipeline's on probe rows built from the contract at load.

>>> import pandas as pd
>>> from loopml.data.contract import infer_contract
>>> from loopml.model.artifact import TrainedModel
>>> from loopml.model.features import Preprocessor
>>> train = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [1.0, 3.0, 5.0]})
>>> model = TrainedModel(task="regression", target="y", family="linear",
...                      preprocessor=Preprocessor().fit(train[["x"]]), state={"coef": [2.0], "intercept": 3.0})
>>> compiled = CompiledModel.from_model(model, infer_contract(train, target="y", task="regression"))
>>> compiled.compiled, compiled.predict_records([{"x": 1.5}]).labels.round(6).tolist()
(True, [4.224745])
>>> model.predict(pd.DataFrame({"x": [1.5]})).round(6).tolist()  # the pipeline: the same number
[4.224745]
>>> [str(e) for e in compiled.validate([{"x": "high"}])]
["row 0, column 'x': expected a numeric value, found str 'high'"]
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.data.contract import ContractViolation, DataContract, FieldError, _check
from loopml.errors import LoopmlError
from loopml.model import _text
from loopml.model._calibration import apply as _calibrate
from loopml.model.artifact import KIND, TrainedModel, raw_scores
from loopml.model.features import _key

__all__ = ["CompiledModel", "CompiledPrediction", "RowPrediction"]
# Batches above this many rows go through the pipeline, whose pandas checks are vectorised.
_PIPELINE_FROM_ROWS = 256

# The TrainedModel attributes this module reproduces; any other one set on a model may change its
# predictions (a decision rule, a feature step), so such a model is served by the pipeline.
_KNOWN_ATTRIBUTES = frozenset({"task", "target", "family", "preprocessor", "state", "classes", "positive",
                               "threshold", "params", "cleaner", "calibration", "class_costs", "feature_hook"})
_PROBE_ROWS = 8
_PROBE_TOLERANCE = 1e-9
_PROBE_TEXT = ("probe text for the compiled model", "", "another probe")


@dataclass(frozen=True)
class RowPrediction:
    """One record's prediction as plain Python values (ready for JSON).

    ``label``: the class at the operating point, or the value (regression); ``probability``: binary
    P(positive), multiclass P(predicted class), regression None; ``probabilities``: multiclass
    P(class) keyed by the class as text, else None.
    """

    label: Any
    probability: float | None
    probabilities: dict[str, float] | None


@dataclass(frozen=True, eq=False)
class CompiledPrediction:
    """Predictions of a batch of records, as numpy arrays in record order.

    ``labels``: n class values at the operating point, or n values (regression). ``probability``:
    binary P(positive), multiclass the largest class probability, None for regression.
    ``probabilities``: multiclass n×k over ``classes``, else None. Index it for one record.

    >>> p = CompiledPrediction(np.array(["no"]), np.array([0.25]), None, ("no", "yes"))
    >>> len(p), p[0]
    (1, RowPrediction(label='no', probability=0.25, probabilities=None))
    """

    labels: np.ndarray
    probability: np.ndarray | None
    probabilities: np.ndarray | None
    classes: tuple[Any, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> RowPrediction:
        label = self.labels[i]
        label = label.item() if isinstance(label, np.generic) else label
        probability = None if self.probability is None else float(self.probability[i])
        probabilities = None
        if self.probabilities is not None:
            probabilities = {str(c): float(p) for c, p in zip(self.classes, self.probabilities[i], strict=True)}
        return RowPrediction(label, probability, probabilities)

    def rows(self) -> list[RowPrediction]:
        """Every record's :class:`RowPrediction`, in order."""
        return [self[i] for i in range(len(self))]


@dataclass(frozen=True)
class _Lookup:
    """A categorical column for one encoding: its contract position, category → table row, the table."""

    index: int
    rows: dict[str, int]
    default: int  # the row of a category the mapping lacks (rare, or the prior)
    table: np.ndarray  # rows × output columns
    offset: int


@dataclass(frozen=True)
class _Text:
    index: int
    state: _text.Compiled
    mean: np.ndarray
    std: np.ndarray
    offset: int


@dataclass(frozen=True)
class _Encoding:
    """Where each block of one encoding ("tree" or "linear") goes in its matrix."""

    kind: str
    width: int
    texts: tuple[_Text, ...]
    lookups: tuple[_Lookup, ...]


@dataclass(frozen=True)
class _Plan:
    """Everything a request needs, in numpy form, built once from the fitted model."""

    numeric: tuple[int, ...]  # contract positions of the numeric model columns, in the model's order
    low: np.ndarray | None  # clip bounds per numeric column (±inf: none); None when nothing is clipped
    high: np.ndarray | None
    median: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    indicators: np.ndarray  # positions within the numeric block that get a missing indicator
    encodings: dict[str, _Encoding]
    members: tuple[tuple[str, dict[str, Any], float], ...]
    calibration: dict[str, Any] | None


class _NotCompiled(Exception):
    """Why a model cannot be compiled (internal: becomes :attr:`CompiledModel.reason`)."""


class CompiledModel:
    """A model and its data contract prepared once for fast serving; see the module docstring.

    Build it with :meth:`from_model`. After construction it is read-only, so :meth:`validate` and
    :meth:`predict_records` may be called from several threads at once (LightGBM calls are
    serialised by a lock: its shared predictor has a known data race, LightGBM issue 6142).

    >>> compiled = CompiledModel.from_model(model, contract)          # doctest: +SKIP
    >>> compiled.predict_records([{"age": 41, "sex": "female"}])[0]   # doctest: +SKIP
    RowPrediction(label='yes', probability=0.81, probabilities=None)
    """

    def __init__(self, model: TrainedModel, contract: DataContract, plan: _Plan | None, reason: str | None):
        self.model = model
        self.contract = contract
        self._plan = plan
        self._reason = reason
        self._lock = threading.Lock()
        self._rules = [(c.name, c.kind, c.nullable, None if c.categories is None else frozenset(c.categories), c)
                       for c in contract.columns]
        self._names = frozenset(contract.feature_names)
        self._labels = np.asarray(model.classes)
        self._threshold = 0.5 if model.threshold is None else model.threshold
        costs = getattr(model, "class_costs", None)
        self._class_costs = None if costs is None else np.asarray(costs, dtype=float)
        # Whether _decide knows the model's decision rule, so the pipeline need not score twice for labels.
        self._known_rule = not _unknown_attributes(model)
        self._caches: list[dict[str, Any]] = [{} for _ in plan.members] if plan is not None else []

    @classmethod
    def from_model(cls, model: TrainedModel, contract: DataContract) -> CompiledModel:
        """Compile ``model`` for requests checked against ``contract``; falls back to the pipeline when it must.

        Raises :class:`~loopml.errors.LoopmlError` when the two do not belong together (another task).
        """
        if not isinstance(model, TrainedModel):
            raise LoopmlError(f"CompiledModel.from_model needs a TrainedModel; got {type(model).__name__}")
        if not isinstance(contract, DataContract):
            raise LoopmlError(f"CompiledModel.from_model needs a DataContract; got {type(contract).__name__}")
        if contract.task != model.task:
            raise LoopmlError(f"the data contract is for a {contract.task} model but the model is {model.task}; "
                              "load the contract of the snapshot this model was trained on")
        try:
            plan, reason = _plan(model, contract), None
        except _NotCompiled as exc:
            plan, reason = None, str(exc)
        compiled = cls(model, contract, plan, reason)
        if plan is not None:
            compiled._reason = compiled._probe()
            if compiled._reason is not None:
                compiled._plan = None
        return compiled

    # -- what callers read -----------------------------------------------------------------------
    @property
    def compiled(self) -> bool:
        """Whether requests take the compiled path (False: the pipeline serves them; see :attr:`reason`)."""
        return self._plan is not None

    @property
    def reason(self) -> str | None:
        """Why the model is served by the pipeline, or None when it is compiled."""
        return self._reason

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def classes(self) -> list:
        return list(self.model.classes)

    def __repr__(self) -> str:
        how = "compiled" if self.compiled else f"pipeline: {self._reason}"
        return f"CompiledModel(task={self.model.task!r}, family={self.model.family!r}, {how})"

    # -- requests --------------------------------------------------------------------------------
    def validate(self, records: list[dict]) -> list[FieldError]:
        """Every problem :meth:`DataContract.validate_records` would report for ``records``; empty when none.

        The same rows, columns and reasons, in the same order (the contract itself words them).
        """
        if self._values(records) is not None:
            return []
        try:
            self.contract.validate_records(records)
        except ContractViolation as exc:
            return exc.errors
        return []

    def predict_records(self, records: list[dict]) -> CompiledPrediction:
        """Predict a batch of records (dicts of column → JSON value); raises :class:`ContractViolation` like
        :meth:`DataContract.validate_records` when any record breaks the contract.
        """
        plan = self._plan
        if plan is None or (isinstance(records, list) and len(records) > _PIPELINE_FROM_ROWS):
            # Per-record Python checks cost more than pandas' vectorised ones on large batches.
            return self._pipeline(records)
        values = self._values(records)
        if values is None:
            return self._pipeline(records)
        return self._predict(plan, values)

    # -- the compiled path -----------------------------------------------------------------------
    def _values(self, records: Any) -> list[list[Any]] | None:
        """Each record's checked values in contract order, or None when anything is wrong with them."""
        if not isinstance(records, list) or not records:
            return None
        rules, names, width = self._rules, self._names, len(self._rules)
        out = []
        for record in records:
            # The same keys (as many, all known) is the only shape without an error.
            if not isinstance(record, dict) or len(record) != width or not names.issuperset(record):
                return None
            row = []
            for name, kind, nullable, known, column in rules:
                value, reason = _check(kind, nullable, known, record[name], column)
                if reason is not None:
                    return None
                row.append(value)
            out.append(row)
        return out

    def _predict(self, plan: _Plan, values: list[list[Any]]) -> CompiledPrediction:
        encoded = _encode(plan, values)
        out = None
        ensemble = self.model.family == "ensemble"
        for i, (family, state, weight) in enumerate(plan.members):
            s = self._scores(i, family, state, encoded[KIND[family]])
            # Added in member order, as TrainedModel does.
            out = s if not ensemble else (weight * s if out is None else out + weight * s)
        if plan.calibration is not None:
            out = _calibrate(plan.calibration, out, self.model.task)
        return self._decide(out)

    def _scores(self, i: int, family: str, state: dict[str, Any], Z: np.ndarray) -> np.ndarray:
        cache = self._caches[i]
        if family == "lightgbm":
            with self._lock:
                return raw_scores(family, state, Z, self.model.task, cache)
        return raw_scores(family, state, Z, self.model.task, cache)

    def _decide(self, s: np.ndarray) -> CompiledPrediction:
        task = self.model.task
        classes = tuple(self.model.classes)
        if task == "regression":
            return CompiledPrediction(s, None, None, classes)
        if task == "binary":
            return CompiledPrediction(self._labels[(s >= self._threshold).astype(int)], s, None, classes)
        # With per-class costs: the class maximising p_k * c_k, the lowest expected cost (as TrainedModel.predict).
        chosen = s.argmax(axis=1) if self._class_costs is None else (s * self._class_costs).argmax(axis=1)
        return CompiledPrediction(self._labels[chosen], s.max(axis=1), s, classes)

    # -- the pipeline, and the check that the two agree ------------------------------------------
    def _pipeline(self, records: Any, *, model_labels: bool = False) -> CompiledPrediction:
        """The pipeline's prediction; labels from ``model.predict`` when ``model_labels`` or the rule is unknown."""
        X = self.contract.validate_records(records)  # raises ContractViolation with every problem
        model, classes = self.model, tuple(self.model.classes)
        if model.task == "regression":
            return CompiledPrediction(np.asarray(model.predict(X)), None, None, classes)
        P = model.predict_proba(X)
        if self._known_rule and not model_labels:  # the same decision, without scoring the rows twice
            return self._decide(P[:, 1] if model.task == "binary" else P)
        labels = model.predict(X)
        if model.task == "binary":
            return CompiledPrediction(labels, P[:, 1], None, classes)
        return CompiledPrediction(labels, P.max(axis=1), P, classes)

    def _probe(self) -> str | None:
        """None when the compiled path predicts as the pipeline on probe rows; else why it is not used.

        Also warms every cache (the LightGBM booster, the forest arrays) so requests never mutate state.
        """
        records = _probe_records(self.contract)
        values = self._values(records)
        if self._plan is None or values is None:  # a contract no probe row satisfies: nothing to compare on
            return None
        try:
            want = self._pipeline(records, model_labels=True)
        except LoopmlError as exc:
            return f"the pipeline cannot predict the probe rows ({exc}), so it serves as it is"
        got = self._predict(self._plan, values)
        if self.model.task == "regression":
            pairs = [(got.labels, want.labels)]
        else:
            if not np.array_equal(got.labels, want.labels):
                return "the compiled labels differ from the pipeline's on probe rows"
            pairs = [(got.probability, want.probability), (got.probabilities, want.probabilities)]
        for a, b in pairs:
            if a is not None and not np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=_PROBE_TOLERANCE,
                                                 atol=_PROBE_TOLERANCE):
                return "the compiled scores differ from the pipeline's on probe rows"
        return None


# -- encoding ------------------------------------------------------------------------------------
def _encode(plan: _Plan, values: list[list[Any]]) -> dict[str, np.ndarray]:
    """The matrix of each encoding the members read, as ``Preprocessor.transform`` builds it from the frame."""
    n = len(values)
    numbers = np.array([[row[i] for i in plan.numeric] for row in values], dtype=float).reshape(
        n, len(plan.numeric))  # None becomes NaN
    if plan.low is not None:
        numbers = np.minimum(np.maximum(numbers, plan.low), plan.high)  # NaN stays NaN, as pandas' clip
    missing = np.isnan(numbers)
    filled = np.where(missing, plan.median, numbers)
    m, k = numbers.shape[1], len(plan.indicators)
    texts: dict[int, np.ndarray] = {}
    keys: dict[int, list[str]] = {}
    out = {}
    for kind, enc in plan.encodings.items():
        Z = np.empty((n, enc.width))
        Z[:, :m] = filled if kind == "tree" else (filled - plan.mean) / plan.std
        Z[:, m : m + k] = missing[:, plan.indicators]
        for t in enc.texts:
            if t.index not in texts:
                docs = ["" if row[t.index] is None else str(row[t.index]) for row in values]
                v = _text.transform_text(docs, t.state)
                texts[t.index] = np.where(np.isnan(v), 0.0, v)
            v = texts[t.index]
            Z[:, t.offset : t.offset + v.shape[1]] = v if kind == "tree" else (v - t.mean) / t.std
        for c in enc.lookups:
            if c.index not in keys:
                keys[c.index] = [_key(row[c.index]) for row in values]
            rows = [c.rows.get(key, c.default) for key in keys[c.index]]
            Z[:, c.offset : c.offset + c.table.shape[1]] = c.table[rows]
        out[kind] = Z
    return out


# -- compiling -----------------------------------------------------------------------------------
def _plan(model: TrainedModel, contract: DataContract) -> _Plan:
    """The compiled form of ``model`` for ``contract``; raises :class:`_NotCompiled` saying why not."""
    hook = getattr(model, "feature_hook", None)
    if hook:
        raise _NotCompiled(f"the model applies the feature hook {hook!r}, a function of a DataFrame")
    unknown = _unknown_attributes(model)
    if unknown:
        raise _NotCompiled(f"the model sets {', '.join(unknown)}, which the compiled path does not apply")
    pre = model.preprocessor
    if pre.dates:
        raise _NotCompiled(f"date column '{pre.dates[0]['name']}' is parsed by pandas")
    position = {c.name: i for i, c in enumerate(contract.columns)}
    kinds = {c.name: c.kind for c in contract.columns}

    def where(name: str, allowed: tuple[str, ...], role: str) -> int:
        if name not in position:
            raise _NotCompiled(f"the model reads column '{name}', which the data contract lacks")
        if kinds[name] not in allowed:
            raise _NotCompiled(f"the model reads '{name}' as {role} but the contract holds it as {kinds[name]}")
        return position[name]

    numeric = [where(c["name"], ("numeric", "integer"), "a number") for c in pre.numeric]
    bounds = model.cleaner.bounds if model.cleaner else {}
    for name in bounds:
        if name in position and kinds[name] not in ("numeric", "integer"):
            raise _NotCompiled(f"the cleaner clips '{name}' but the contract holds it as {kinds[name]}")
    low = np.array([bounds.get(c["name"], {}).get("low", -math.inf) for c in pre.numeric], dtype=float)
    high = np.array([bounds.get(c["name"], {}).get("high", math.inf) for c in pre.numeric], dtype=float)
    clip = any(c["name"] in bounds for c in pre.numeric)
    indicators = np.array([i for i, c in enumerate(pre.numeric) if c["indicator"]], dtype=np.int64)
    texts = [(where(c["name"], ("categorical",), "text"), c) for c in pre.texts]
    labels = [(where(c["name"], ("categorical", "boolean"), "categories"), c) for c in pre.categorical]
    encodings = {}
    for kind in sorted({KIND[family] for family, _, _ in model.members}):
        encodings[kind] = _encoding(kind, len(pre.numeric) + len(indicators), texts, labels)
        if encodings[kind].width != len(pre.feature_names(kind)):  # a layout this module does not know
            raise _NotCompiled(f"the {kind} encoding has {len(pre.feature_names(kind))} columns; "
                               f"the compiled layout {encodings[kind].width}")
    members = tuple((family, _fast_state(family, state), weight) for family, state, weight in model.members)
    return _Plan(
        numeric=tuple(numeric), low=low if clip else None, high=high if clip else None,
        median=np.array([c["median"] for c in pre.numeric], dtype=float),
        mean=np.array([c["mean"] for c in pre.numeric], dtype=float),
        std=np.array([c["std"] for c in pre.numeric], dtype=float),
        indicators=indicators, encodings=encodings, members=members, calibration=_fast_calibration(model.calibration),
    )


def _unknown_attributes(model: TrainedModel) -> list[str]:
    """Public attributes set on ``model`` (not None, False or empty) that this module does not reproduce."""
    return sorted(name for name, value in vars(model).items()
                  if not name.startswith("_") and name not in _KNOWN_ATTRIBUTES and value is not None
                  and value is not False and not (hasattr(value, "__len__") and len(value) == 0))


def _encoding(kind: str, offset: int, texts: list[tuple[int, dict]], labels: list[tuple[int, dict]]) -> _Encoding:
    compiled_texts = []
    for index, c in texts:
        state = _text.compile_text(c)
        compiled_texts.append(_Text(index, state, np.asarray(c["mean"], dtype=float), np.asarray(c["std"], dtype=float),
                                    offset))
        offset += len(c["components"])
    lookups = []
    for index, c in labels:
        levels = c["levels"]
        rows = {level: i for i, level in enumerate(levels)}
        rare = len(levels)
        if kind == "tree":
            table = np.arange(rare + 1, dtype=float).reshape(-1, 1)  # the integer codes LightGBM reads
        elif "target" in c:
            means = c["target"]["means"]
            rows = {level: i for i, level in enumerate(means)}
            rare = len(means)  # a level unseen in training gets the prior
            table = np.array([*means.values(), c["target"]["prior"]], dtype=float).reshape(rare + 1, -1)
        else:
            table = np.eye(rare + 1)  # one-hot over the levels, then RARE
        lookups.append(_Lookup(index, rows, rare, table, offset))
        offset += table.shape[1]
    return _Encoding(kind, offset, tuple(compiled_texts), tuple(lookups))


def _fast_state(family: str, state: dict[str, Any]) -> dict[str, Any]:
    """Linear coefficients as arrays once (``raw_scores`` converts lists on every call); others as they are."""
    if family != "linear":
        return state
    return {**state, "coef": np.asarray(state["coef"], dtype=float), "intercept": np.asarray(state["intercept"],
                                                                                              dtype=float)}


def _fast_calibration(calibration: dict[str, Any] | None) -> dict[str, Any] | None:
    """Isotonic knots as arrays once; the same numbers, so the same interpolation."""
    if calibration is None or calibration.get("method") != "isotonic":
        return calibration
    return {**calibration, "x": [np.asarray(x, dtype=float) for x in calibration["x"]],
            "y": [np.asarray(y, dtype=float) for y in calibration["y"]]}


def _probe_records(contract: DataContract) -> list[dict[str, Any]]:
    """A few records every contract accepts, spanning each column: its range (and past it), its categories, null."""
    records = []
    for r in range(_PROBE_ROWS):
        record: dict[str, Any] = {}
        for c in contract.columns:
            if c.nullable and r % 4 == 3:
                record[c.name] = None
            elif c.kind == "boolean":
                record[c.name] = r % 2 == 0
            elif c.kind == "categorical":
                choices = _PROBE_TEXT if c.categories is None else c.categories
                record[c.name] = choices[r % len(choices)] if choices else None
            else:
                low, high = (c.min or 0.0), (c.max if c.max is not None else 1.0)
                span = high - low
                value = (low, high, (low + high) / 2, low - span, high + span, low + span / 3, high - span / 7,
                         low)[r]
                record[c.name] = float(round(value)) if c.kind == "integer" else float(value)
        records.append(record)
    return records
