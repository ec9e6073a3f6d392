"""A Python function, ``module:function``, that returns a DataFrame: the way in for anything else."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.data.sources._base import Source
from loopml.errors import DataError


class PythonSource(Source):
    """Calls ``module:function`` once with no arguments; the spec's folder is importable while it runs.

    >>> spec = PythonSourceSpec(name="crm", callable="crm_export:load")
    >>> PythonSource(spec, Path("project")).columns()  # doctest: +SKIP
    ['customer_id', 'segment', 'spend']
    """

    kind = "python"

    def __init__(self, spec: Any, root: Path):
        super().__init__(spec, root)
        self._frame: pd.DataFrame | None = None

    def describe(self) -> str:
        return f"python {self.spec.callable}"

    def _columns(self) -> list[str]:
        return list(self._result().columns)

    def _read(self, columns: list[str] | None, since: Any, limit: int | None) -> pd.DataFrame:
        return self._select(self._result(), columns, since, limit)

    def _count(self) -> int:
        return len(self._result())

    def _result(self) -> pd.DataFrame:
        if self._frame is None:
            target = self.spec.callable
            module_name, function_name = target.split(":")
            with _importable(self.root):
                try:
                    importlib.invalidate_caches()
                    function = getattr(importlib.import_module(module_name), function_name)
                except Exception as exc:  # importing runs the module's code, which may raise anything
                    raise DataError(f"{self._label}: cannot import {target}: {type(exc).__name__}: {exc}; the "
                                    f"module must be importable from {self.root} or the environment") from exc
                try:
                    result = function()
                except Exception as exc:  # the user's function may raise anything
                    raise DataError(f"{self._label}: {target}() raised {type(exc).__name__}: {exc}") from exc
            if not isinstance(result, pd.DataFrame):
                raise DataError(f"{self._label}: {target}() returned {type(result).__name__}, not a pandas "
                                "DataFrame; make it return a DataFrame")
            self._frame = result
        return self._frame


@contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` while the function is imported and runs (its own imports may be late)."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
