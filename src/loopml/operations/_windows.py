"""The prediction log cut into windows: ``by: count`` (full windows of consecutive predictions) or ``by: time``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

PREDICTION_WINDOWS = "predictions"  # the store's kind for these windows (``loopml maintain`` keeps kind "labels")


@dataclass(frozen=True)
class WindowPlan:
    """A window to compute: seqs [first_seq, last_seq] (empty when first_seq > last_seq) and its time span."""

    first_seq: int
    last_seq: int
    rows: int
    starts_at: datetime | None
    ends_at: datetime | None

    @property
    def key(self) -> str:
        if self.rows == 0:
            return f"empty:{self.starts_at.isoformat() if self.starts_at else self.first_seq}"
        return f"seq:{self.first_seq}"



def cut_by_count(pending: list[tuple[int, datetime]], size: int) -> list[WindowPlan]:
    """Full windows of ``size`` consecutive predictions; the rest waits."""
    plans = []
    for start in range(0, len(pending) - size + 1, size):
        chunk = pending[start:start + size]
        plans.append(WindowPlan(chunk[0][0], chunk[-1][0], size, None, None))
    return plans


def cut_by_time(pending: list[tuple[int, datetime]], every: float, cursor_end: datetime | None,
                 now: datetime) -> list[WindowPlan]:
    """One window per closed period of ``every`` seconds (aligned to the epoch); empty periods in one window.

    A window holds the predictions up to the last one (by seq) logged before its period ended, so every
    prediction lands in exactly one window; one committed after its period was computed joins the next.
    """
    closed = _floor(now.timestamp(), every)
    start = cursor_end.timestamp() if cursor_end is not None else None
    if not pending:
        return [_empty_plan(start, closed, 0)] if start is not None and closed > start else []
    created = np.array([at.timestamp() for _, at in pending])
    ends = np.array([_floor(x, every) + every for x in created])
    if start is not None:
        ends = np.maximum(ends, _floor(start, every) + every)  # rows late for a computed period join the next
    order = np.argsort(ends, kind="stable")
    reach = np.maximum.accumulate(order)  # the furthest row (by seq) any period up to here needs
    plans: list[WindowPlan] = []
    done = -1  # index of the last row already in a window
    for end in np.unique(ends):
        if end > closed:
            break
        last = int(reach[np.searchsorted(ends[order], end, side="right") - 1])
        if last <= done:  # this period's rows went into an earlier window (logged before its rows, by seq)
            start = end
            continue
        begin = end - every
        if start is not None and begin > start:
            plans.append(_empty_plan(start, begin, pending[done][0] if done >= 0 else pending[0][0] - 1))
        plans.append(WindowPlan(pending[done + 1][0], pending[last][0], last - done, _dt(begin), _dt(end)))
        done, start = last, end
    if start is not None and done == len(pending) - 1 and closed > start:
        plans.append(_empty_plan(start, closed, pending[done][0]))
    elif start is not None and done < len(pending) - 1:
        next_begin = min(closed, _floor(created[done + 1:].min(), every))
        if next_begin > start:
            plans.append(_empty_plan(start, next_begin, pending[done][0] if done >= 0 else pending[0][0] - 1))
    return plans


def _empty_plan(start: float, end: float, after_seq: int) -> WindowPlan:
    return WindowPlan(after_seq + 1, after_seq, 0, _dt(start), _dt(end))


def _floor(seconds: float, every: float) -> float:
    return math.floor(seconds / every) * every


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "?"


def first_at(raw: list[dict]) -> datetime | None:
    return min((r["created_at"] for r in raw if r["created_at"]), default=None)


def last_at(raw: list[dict]) -> datetime | None:
    return max((r["created_at"] for r in raw if r["created_at"]), default=None)
