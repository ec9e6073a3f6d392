"""Dates as numbers: calendar parts and days elapsed since a reference learned from the training rows.

A text column is a date column when one format parses at least 95% of its non-missing values;
that format is stored, so serving parses exactly as training did. Times with a zone are taken in UTC.
The parts are numpy arithmetic on ``datetime64`` (pandas accessors cost milliseconds per served row).

>>> import pandas as pd
>>> col = pd.Series(["2024-01-05", "2024-03-01 12:30:00"])
>>> date_format(col)
'ISO8601'
>>> parts(parse(col, "ISO8601"), "2024-01-01T00:00:00", hour=True).tolist()
[[2024.0, 1.0, 4.0, 0.0, 4.0], [2024.0, 3.0, 4.0, 12.0, 60.520833333333336]]
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

PARTS = ("year", "month", "dayofweek", "hour", "days")
MIN_PARSED = 0.95
_DAY = np.timedelta64(1, "D")
_HOUR = np.timedelta64(1, "h")


def date_format(col: pd.Series) -> str | None:
    """The format that parses ≥ 95% of the column's non-missing strings, or None when it is not dates."""
    values = col.dropna()
    if values.empty or pd.api.types.infer_dtype(values, skipna=True) != "string":
        return None
    guess = guess_datetime_format(str(values.iloc[0]))
    if guess is None:
        return None
    # Numbers written as text ("20240105", "12") are codes or amounts far more often than dates.
    if pd.to_numeric(values, errors="coerce").notna().mean() >= 0.5:
        return None
    for fmt in (guess, "ISO8601"):
        if (~np.isnat(parse(values, fmt))).mean() >= MIN_PARSED:
            return fmt
    return None


def parse(col: pd.Series, fmt: str) -> np.ndarray:
    """Zone-free ``datetime64`` values (UTC where a zone was given); what does not parse is NaT."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        times = pd.DatetimeIndex(col)
    else:
        # Only text and date objects are dates; a number here is garbage, not an epoch.
        values = [v if isinstance(v, (str, dt.date, np.datetime64)) else None for v in col.tolist()]
        times = pd.to_datetime(np.array(values, dtype=object), format=fmt, errors="coerce", utc=True)
    return (times.tz_convert(None) if times.tz is not None else times).to_numpy()


def has_time(times: np.ndarray) -> bool:
    """Whether any timestamp has a time of day other than midnight."""
    valid = times[~np.isnat(times)]
    return bool((valid != valid.astype("datetime64[D]")).any())


def parts(times: np.ndarray, reference: str, *, hour: bool) -> np.ndarray:
    """year, month, day of week (Monday 0), hour (when ``hour``) and days since ``reference``; NaN where NaT."""
    days = times.astype("datetime64[D]")
    months = times.astype("datetime64[M]").astype(np.int64)
    columns = [months // 12 + 1970, months % 12 + 1, (days.astype(np.int64) + 3) % 7]  # 1970-01-01 was a Thursday
    if hour:
        columns.append(np.floor((times - days) / _HOUR))  # true division: NaT gives NaN, not a warning
    out = np.column_stack([*columns, (times - np.datetime64(reference)) / _DAY]).astype(float)
    out[np.isnat(times)] = np.nan
    return out
