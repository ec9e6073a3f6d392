"""DuckDB SQL over files: Parquet or CSV globs queried in place, paths relative to the spec's folder."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from loopml.data.sources._base import Source, coerce_since, read_only_query
from loopml.errors import DataError

_NUMBER_TYPES = re.compile(r"U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|DOUBLE|REAL|DECIMAL")


class DuckDBSource(Source):
    """One read-only DuckDB query (SELECT, WITH or FROM first) in an in-memory database.

    ``since``, ``limit`` and ``columns`` are applied with DuckDB's relational API, so no value is pasted
    into SQL text.

    >>> spec = DuckDBSourceSpec(name="events", duckdb="SELECT * FROM 'events/*.parquet' WHERE kind = 'buy'")
    >>> DuckDBSource(spec, Path("project")).read(limit=10).shape  # doctest: +SKIP
    (10, 7)
    """

    kind = "duckdb"

    def describe(self) -> str:
        text = " ".join(self.spec.duckdb.split())
        return f"duckdb {text if len(text) <= 80 else text[:77] + '...'}"

    def _columns(self) -> list[str]:
        with self._relation() as rel:
            return list(rel.columns)

    def _read(self, columns: list[str] | None, since: Any, limit: int | None) -> pd.DataFrame:
        import duckdb

        order = self._incremental
        with self._relation() as rel:
            if since is not None:
                kind = _type_kind(str(rel.types[rel.columns.index(order)]))
                bound = coerce_since(since, kind, self._label, order)
                rel = rel.filter(duckdb.ColumnExpression(order) > duckdb.ConstantExpression(bound))
            if limit is not None:
                rel = (rel.sort(duckdb.ColumnExpression(order)) if order else rel).limit(limit)
            if columns is not None:
                rel = rel.select(*(duckdb.ColumnExpression(c) for c in columns))
            return rel.df()

    def _count(self) -> int:
        with self._relation() as rel:
            return int(rel.aggregate("count(*)").fetchall()[0][0])

    def _newest(self, column: str) -> Any:
        import duckdb

        with self._relation() as rel:
            expr = duckdb.FunctionExpression("max", duckdb.ColumnExpression(column))
            return rel.aggregate([expr]).fetchall()[0][0]

    @contextmanager
    def _relation(self) -> Iterator[Any]:
        """The query as a DuckDB relation, in a fresh in-memory database that resolves paths from the spec's folder."""
        import duckdb

        query = read_only_query(self.spec.duckdb, self._label, ("select", "with", "from"))
        try:
            with duckdb.connect(":memory:", config={"file_search_path": str(self.root)}) as con:
                yield con.sql(query)
        except duckdb.Error as exc:
            raise DataError(f"{self._label}: DuckDB could not run the query: {' '.join(str(exc).split())}") from exc


def _type_kind(duckdb_type: str) -> str:
    if duckdb_type.startswith("TIMESTAMP"):
        return "datetime"
    if duckdb_type == "DATE":
        return "date"
    return "number" if _NUMBER_TYPES.match(duckdb_type) else "text"
