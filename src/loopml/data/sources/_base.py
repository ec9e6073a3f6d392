"""The :class:`Source` interface every kind of source implements, and the helpers the kinds share."""

from __future__ import annotations

import difflib
import math
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from loopml.errors import DataError

if TYPE_CHECKING:
    from loopml.spec import SourceSpec


class Source:
    """One source opened from its spec: its columns, rows, size and freshness.

    Each kind registers under the spec's ``kind`` and implements the private hooks ``_columns`` and
    ``_read`` (and ``_count``, ``_newest`` where it can do better); the public methods check the
    arguments and fail the same way for every kind, with a :class:`DataError` naming the source.

    >>> source = open_source(FileSourceSpec(name="survey", path="benefits.csv"), Path("examples/benefits"))
    ... # doctest: +SKIP
    >>> source.columns()[:2], len(source.read(limit=5))  # doctest: +SKIP
    (['stateur', 'statemb'], 5)
    """

    kind: ClassVar[str]
    _kinds: ClassVar[dict[str, type[Source]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Source._kinds[cls.kind] = cls

    def __init__(self, spec: SourceSpec, root: Path):
        self.spec = spec
        self.root = Path(root)
        self.details: dict[str, Any] = {}  # how it was read (delimiter, encoding, files, dialect), for reports
        self._column_names: list[str] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def _label(self) -> str:
        return f"source '{self.spec.name}'"

    @property
    def _incremental(self) -> str | None:
        return self.spec.incremental.column if self.spec.incremental else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name}': {self.describe()}>"

    def describe(self) -> str:
        """What the source is, in words, with any credentials redacted."""
        raise NotImplementedError

    def columns(self) -> list[str]:
        """The column names, read cheaply (a header, a schema, a query with no rows)."""
        if self._column_names is None:
            self._column_names = [str(c) for c in self._columns()]
        return list(self._column_names)

    def read(self, *, columns: list[str] | None = None, since: Any = None, limit: int | None = None) -> pd.DataFrame:
        """Rows as a frame: only ``columns``, only rows whose incremental column is > ``since``, at most ``limit``.

        With ``limit`` and an incremental column, the oldest rows come first, so a later read
        ``since`` the newest of them continues where this one stopped.
        """
        if since is not None and self._incremental is None:
            raise DataError(f"{self._label}: reading only newer rows (since {since!r}) needs `incremental: "
                            "{column: COLUMN}` in the source's spec, naming a time or id column that grows")
        if limit is not None and limit < 0:
            raise DataError(f"{self._label}: limit must be 0 or more, found {limit}")
        self._check_columns([*(columns or []), *([self._incremental] if self._incremental else [])])
        frame = self._read(list(columns) if columns is not None else None, since, limit)
        if len(frame) == 0 and since is None and limit != 0:
            raise DataError(f"{self._label} has no rows ({self.describe()}); point the source at data with rows")
        return frame.reset_index(drop=True)

    def count(self) -> int | None:
        """How many rows the source holds in all, or None where that is not cheap to know."""
        return self._count()

    def newest(self) -> Any | None:
        """The largest value of the incremental column (the source's freshness); None without ``incremental``."""
        if self._incremental is None:
            return None
        self._check_columns([self._incremental])
        return _scalar(self._newest(self._incremental))

    # -- hooks ---------------------------------------------------------------------------------------

    def _columns(self) -> list[str]:
        raise NotImplementedError

    def _read(self, columns: list[str] | None, since: Any, limit: int | None) -> pd.DataFrame:
        raise NotImplementedError

    def _count(self) -> int | None:
        return None

    def _newest(self, column: str) -> Any:
        values = self._read([column], None, None)[column]
        return values.max() if len(values) else None

    # -- shared --------------------------------------------------------------------------------------

    def _check_columns(self, wanted: list[str]) -> None:
        if not wanted:
            return
        available = self.columns()
        missing = [c for c in dict.fromkeys(wanted) if c not in available]
        if missing:
            close = difflib.get_close_matches(missing[0], available, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise DataError(f"{self._label}: no column {', '.join(map(repr, missing))}; {hint}"
                            f"columns: {', '.join(available)}")

    def _select(self, frame: pd.DataFrame, columns: list[str] | None, since: Any, limit: int | None) -> pd.DataFrame:
        """Apply ``since``, ``limit`` and ``columns`` to a frame read in full (files, Python)."""
        order = self._incremental
        if since is not None:
            values = frame[order]
            bound = coerce_since(since, dtype_kind(values.dtype), self._label, order)
            try:
                frame = frame[(values > bound).to_numpy()]
            except TypeError as exc:
                raise DataError(f"{self._label}: cannot compare since {since!r} with column '{order}' "
                                f"({values.dtype}): {exc}") from exc
        if limit is not None:
            frame = (frame.sort_values(order, kind="stable") if order else frame).head(limit)
        return frame[columns] if columns is not None else frame


def open_source(spec: SourceSpec, root: Path) -> Source:
    """The :class:`Source` for one entry of ``data.sources``; ``root`` is the spec's folder.

    >>> open_source(spec.data.sources[0], spec.root).columns()  # doctest: +SKIP
    ['stateur', 'statemb', 'state', ...]
    """
    return Source._kinds[spec.kind](spec, Path(root))


def dtype_kind(dtype: Any) -> str:
    """The family of a pandas dtype: bool, number, datetime or text (what may be compared or joined)."""
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "text"


def coerce_since(value: Any, kind: str, label: str, column: str) -> Any:
    """``value`` as the Python type of a column of ``kind``, so ``"2024-01-01"`` compares with timestamps."""
    if not isinstance(value, str) or kind not in ("datetime", "date", "number"):
        return value
    try:
        if kind == "datetime":
            return datetime.fromisoformat(value)
        if kind == "date":
            return date.fromisoformat(value[:10])
        return float(value) if re.search(r"[.eE]", value) else int(value)
    except ValueError:
        raise DataError(f"{label}: since {value!r} is not a {kind} like the values of column '{column}'; "
                        "give it in that form (ISO 8601 for times)") from None


def json_safe(value: Any) -> Any:
    """A JSON value for a scalar read from a source: ISO text for times, plain numbers, None for missing."""
    value = _scalar(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return str(value)


def _scalar(value: Any) -> Any:
    """A plain Python scalar for a NumPy or pandas one; None for NaN, NaT and NA."""
    if value is None or (pd.api.types.is_scalar(value) and not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (np.datetime64, pd.Timestamp)):
        return pd.Timestamp(value).to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value


# Comments, quoted strings and identifiers, statement ends, and the plain text between them.
_SQL_TOKENS = re.compile(r"--[^\n]*|/\*.*?(?:\*/|\Z)|'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|;|[^-/;'\"]+|.", re.S)


def read_only_query(sql: str, label: str, first_words: tuple[str, ...] = ("select", "with")) -> str:
    """The query without comments or a final ``;`` if it is one statement starting with ``first_words``.

    >>> read_only_query("-- recent\\nSELECT * FROM t;", "source 'db'")
    'SELECT * FROM t'
    """
    kept: list[str] = []
    ended = False
    for token in _SQL_TOKENS.findall(sql):
        if token.startswith(("--", "/*")):
            kept.append(" ")  # a wrapped query must not end inside a line comment
        elif token == ";":
            ended = True
        elif ended and token.strip():
            found = token.split()[0].upper()
            raise DataError(f"{label}: the query holds more than one statement (found {found} after ';'); "
                            f"give a single {' or '.join(w.upper() for w in first_words)} statement")
        elif not ended:
            kept.append(token)
    query = "".join(kept).strip()
    first = re.match(r"[A-Za-z_]*", query).group().lower()
    if first not in first_words:
        raise DataError(f"{label}: only a read-only query is allowed: one statement starting with "
                        f"{' or '.join(w.upper() for w in first_words)}; found {first.upper() or repr(query[:20])}")
    return query
