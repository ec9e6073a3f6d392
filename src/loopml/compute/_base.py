"""The compute interface and its in-process implementation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from loopml.errors import ComputeError

__all__ = ["Compute", "Done", "InProcess", "parse_memory"]


@dataclass(frozen=True)
class Done:
    """One finished task: its value, and the worker that ran it (None: this process)."""

    value: Any
    worker: str | None = None


class Compute(Protocol):
    """Runs batches of independent tasks ``fn(shared, *args)``; ``shared`` is shipped once per :meth:`share`."""

    batch: int  # Optuna trials asked at once (1: ask, run, tell, one at a time)
    workers: int  # how many tasks can run at the same time

    def share(self, value: Any) -> Any: ...

    def map(self, fn: Callable[..., Any], items: Sequence[tuple], shared: Any) -> list[Done]: ...

    def close(self) -> None: ...


class InProcess:
    """Every task here, one after another, in order: the default.

    >>> InProcess(batch=4).map(lambda shared, x: x * shared, [(1,), (2,)], 3)[1]
    Done(value=6, worker=None)
    """

    workers = 1

    def __init__(self, *, batch: int = 1):
        self.batch = _check_batch(batch)

    def share(self, value: Any) -> Any:
        return value

    def map(self, fn: Callable[..., Any], items: Sequence[tuple], shared: Any) -> list[Done]:
        return [Done(fn(shared, *args)) for args in items]

    def close(self) -> None:
        return None

    def describe(self) -> str:
        return "in-process" + (f", Optuna in batches of {self.batch}" if self.batch > 1 else "")


def _check_batch(batch: Any) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 64:
        raise ComputeError(f"batch must be a whole number of trials in 1..64; got {batch!r}; "
                           "use e.g. compute: {batch: 4}")
    return batch


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(value: Any) -> int:
    """Bytes from ``2_000_000``, ``"500MB"``, ``"2GB"`` or ``"1.5GiB"`` (decimal KB/MB/GB, binary KiB/MiB/GiB).

    >>> parse_memory("2GB"), parse_memory("1MiB"), parse_memory(1024)
    (2000000000, 1048576, 1024)
    """
    import re

    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '500MB' or '2GB', found {value!r}")
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(value), flags=re.IGNORECASE)
        if not match:
            raise ValueError(f"expected a size such as '500MB' or '2GB', found {value!r}")
        size = float(match.group(1)) * _UNITS[(match.group(2) or "").upper()]
    if size < 1:
        raise ValueError(f"expected a positive size, found {value!r}")
    return int(size)
