"""Data sources: files, SQL databases, DuckDB and Python callables behind one :class:`Source` interface.

:func:`open_source` gives the source for an entry of ``data.sources``; :func:`collect` reads the
first (the base, which holds the target) and joins the further ones onto it by key, with a report per
source (rows, time, cost, freshness, rows left unread) and per join (match rate, new columns).

>>> from loopml.data.sources import collect, open_source, read_source
>>> frame = read_source(Path("examples/benefits/benefits.csv"))  # doctest: +SKIP
>>> frame.shape                                                   # doctest: +SKIP
(4877, 18)
"""

from loopml.data.sources._base import Source, open_source
from loopml.data.sources._collect import CollectedData, JoinReport, SourceReport, collect
from loopml.data.sources._duckdb import DuckDBSource
from loopml.data.sources._files import FileSource, read_columns, read_source
from loopml.data.sources._python import PythonSource
from loopml.data.sources._sql import SqlSource

__all__ = [
    "CollectedData",
    "DuckDBSource",
    "FileSource",
    "JoinReport",
    "PythonSource",
    "Source",
    "SourceReport",
    "SqlSource",
    "collect",
    "open_source",
    "read_columns",
    "read_source",
]
