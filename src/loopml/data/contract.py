"""The data contract: the columns, types and categories a model was trained on, checked at serving.

>>> import pandas as pd
>>> train = pd.DataFrame({"age": [30, 41], "sex": ["male", "female"], "ui": ["yes", "no"]})
>>> contract = infer_contract(train, target="ui", task="binary")
>>> contract.feature_names
['age', 'sex']
>>> contract.validate_records([{"age": 35, "sex": "female"}]).dtypes.astype(str).to_dict()
{'age': 'float64', 'sex': 'str'}
>>> try:
...     contract.validate_records([{"age": "old", "sex": "other"}])
... except ContractViolation as exc:
...     print(exc)
2 problems in the records; fix them and send again:
  - row 0, column 'age': expected an integer, found str 'old'
  - row 0, column 'sex': unknown category 'other'; known: female, male
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, PrivateAttr

from loopml.data.assess import _column_kind, _require_target
from loopml.errors import DataError

__all__ = ["ColumnContract", "ContractViolation", "DataContract", "FieldError", "infer_contract"]

_LIST_LIMIT = 20
_MESSAGE_LIMIT = 20
_NULL_REASON = "null not allowed: the training data had no missing values here"
_EXPECTED = {
    "numeric": "a numeric value",
    "integer": "an integer",
    "categorical": "a string",
    "boolean": "true or false",
}


@dataclass(frozen=True)
class FieldError:
    """One problem in a request: the record's position (-1 for the whole request), the column, why, and its kind.

    ``kind`` names the check that failed, so that refusals can be counted by column and kind:
    ``missing_column``, ``unknown_column``, ``null`` (null where training had none), ``type``,
    ``not_finite`` (an infinite number), ``unknown_category``, ``not_a_record`` (a record that is not an
    object) or ``request`` (the records as a whole: not a list, or none).
    """

    row: int
    column: str
    reason: str
    kind: str = "type"

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.row < 0:
            return f"request: {self.reason}"
        where = f"row {self.row}" + (f", column '{self.column}'" if self.column else "")
        return f"{where}: {self.reason}"


class ContractViolation(DataError):
    """Records that break the data contract; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        n = len(self.errors)
        lines = [f"  - {e}" for e in self.errors[:_MESSAGE_LIMIT]]
        if n > _MESSAGE_LIMIT:
            lines.append(f"  - ... and {n - _MESSAGE_LIMIT:,} more")
        head = f"{n:,} problem{'s' if n != 1 else ''} in the records; fix them and send again:"
        super().__init__("\n".join([head, *lines]))


def _some(values: list[str]) -> str:
    shown = ", ".join(values[:_LIST_LIMIT])
    return shown + (f", ... ({len(values) - _LIST_LIMIT} more)" if len(values) > _LIST_LIMIT else "")


def _found(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


class ColumnContract(BaseModel):
    """One feature column: its kind, whether nulls are allowed, the observed range or categories.

    ``categories`` is None for strings that cannot be enumerated (text, ids, dates): any string passes.
    """

    name: str
    kind: Literal["numeric", "integer", "categorical", "boolean"]
    nullable: bool
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


class DataContract(BaseModel):
    """What a model expects of each record; ``validate_records`` turns requests into a training-like frame."""

    target: str
    task: Literal["binary", "multiclass", "regression"]
    columns: list[ColumnContract]
    target_classes: list[str] | None = None

    # One (name, kind, nullable, known categories, column) per column, built once: a request then
    # costs only set lookups and type checks, which matters because serving validates every request.
    _rules: list[tuple[str, str, bool, frozenset[str] | None, ColumnContract]] = PrivateAttr(default_factory=list)
    _names: frozenset[str] = PrivateAttr(default=frozenset())

    def model_post_init(self, context: Any, /) -> None:
        self._names = frozenset(self.feature_names)
        self._rules = [
            (c.name, c.kind, c.nullable, None if c.categories is None else frozenset(c.categories), c)
            for c in self.columns
        ]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> DataContract:
        return cls.model_validate_json(text)

    def validate_records(self, records: list[dict]) -> pd.DataFrame:
        """Check every record; return a frame with exactly the contract's columns, in order.

        Numeric and integer columns come back as float64, categorical as str, boolean as bool
        (object when a null is present). Out-of-range numbers are accepted. Raises
        :class:`ContractViolation` listing every problem in every record.
        """
        if not isinstance(records, list):
            raise ContractViolation([FieldError(-1, "", f"expected a list of records, found {type(records).__name__}",
                                                "request")])
        if not records:
            raise ContractViolation([FieldError(-1, "", "expected at least one record", "request")])
        rules, names = self._rules, self._names
        errors: list[FieldError] = []
        values: dict[str, list] = {name: [] for name in names}
        for row, record in enumerate(records):
            if not isinstance(record, dict):
                errors.append(FieldError(
                    row, "", f"expected a JSON object of column: value, found {type(record).__name__}", "not_a_record"))
                continue
            if len(record) != len(names) or not names.issuperset(record):
                errors += [FieldError(row, str(k), self._unknown(str(k), record), "unknown_column")
                           for k in record if k not in names]
            for name, kind, nullable, known, column in rules:
                if name not in record:
                    errors.append(FieldError(row, name, _missing(column), "missing_column"))
                    continue
                value, reason = _check(kind, nullable, known, record[name], column)
                if reason is None:
                    values[name].append(value)
                else:
                    errors.append(FieldError(row, name, reason, _refused(kind, record[name])))
        if errors:
            raise ContractViolation(errors)
        return pd.DataFrame({name: _array(kind, values[name]) for name, kind, *_ in rules})

    def _unknown(self, key: str, record: dict) -> str:
        if key == self.target:
            return "this is the target; leave it out of prediction requests"
        absent = [n for n in self.feature_names if n not in record]
        close = difflib.get_close_matches(key, absent, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown column; {hint}the model expects: {_some(self.feature_names)}"


def _missing(column: ColumnContract) -> str:
    expected = _EXPECTED[column.kind]
    if column.categories is not None:
        expected = f"one of: {_some(column.categories)}"
    return f"missing column; expected {expected}" + (" or null" if column.nullable else "")


def _check(
    kind: str, nullable: bool, known: frozenset[str] | None, value: Any, column: ColumnContract
) -> tuple[Any, str | None]:
    """The value as training saw it, or why it is not acceptable."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, (None if nullable else _NULL_REASON)
    if kind == "categorical":
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 12.0 from a JSON client means the category "12"
        if not isinstance(value, (str, int, float, np.number)):
            return None, f"expected a string, found {_found(value)}"
        text = str(value)
        if known is not None and text not in known:
            return None, f"unknown category {text!r}; known: {_some(column.categories or [])}"
        return text, None
    if kind == "boolean":
        if isinstance(value, (bool, np.bool_)):
            return bool(value), None
        return None, f"expected true or false, found {_found(value)}"
    # bool is an int in Python, but true is not a number a client meant to send.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None, f"expected {_EXPECTED[kind]}, found {_found(value)}"
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if math.isnan(number):
        return None, (None if nullable else _NULL_REASON)
    if math.isinf(number):
        return None, f"{value!r} not allowed; send a finite number" + (" or null" if nullable else "")
    if kind == "integer" and not number.is_integer():
        return None, f"expected an integer, found {_found(value)}"
    return number, None


def _refused(kind: str, value: Any) -> str:
    """The kind of a value :func:`_check` refused (only called on that path, so it costs valid requests nothing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if kind == "categorical":
        return "unknown_category" if isinstance(value, (str, int, float, np.number)) else "type"
    if kind in ("numeric", "integer") and isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, (bool, np.bool_)):
        try:
            number = float(value)
        except OverflowError:
            return "not_finite"
        if math.isnan(number):
            return "null"
        return "not_finite" if math.isinf(number) else "type"
    return "type"


def _array(kind: str, values: list) -> Any:
    if kind in ("numeric", "integer"):
        return np.array(values, dtype="float64")  # None becomes NaN
    if kind == "categorical":
        return pd.array(values, dtype="str")
    if None in values:
        return np.array([np.nan if v is None else v for v in values], dtype=object)
    return np.array(values, dtype=bool)


def _column_contract(series: pd.Series) -> ColumnContract:
    kind = _column_kind(series)
    nullable = bool(series.isna().any())
    name = str(series.name)
    values = series.dropna()
    if kind == "boolean":
        return ColumnContract(name=name, kind="boolean", nullable=nullable)
    if pd.api.types.is_numeric_dtype(series.dtype):
        integer = pd.api.types.is_integer_dtype(series.dtype)
        low, high = (float(values.min()), float(values.max())) if len(values) else (None, None)
        return ColumnContract(name=name, kind="integer" if integer else "numeric", nullable=nullable, min=low, max=high)
    # Free text, ids and dates cannot be enumerated; any string is accepted for them.
    categories = sorted({str(v) for v in values}) if kind == "categorical" else None
    return ColumnContract(name=name, kind="categorical", nullable=nullable, categories=categories)


def infer_contract(df: pd.DataFrame, target: str, task: str) -> DataContract:
    """The contract of a cleaned training frame: every column but ``target``.

    Categories are sorted strings; ``nullable`` says whether training saw a missing value.
    """
    _require_target(df, target)
    columns = [_column_contract(df[c]) for c in df.columns if c != target]
    classes = None
    if task != "regression":
        classes = sorted({str(v) for v in df[target].dropna()})
    return DataContract(target=target, task=task, columns=columns, target_classes=classes)
