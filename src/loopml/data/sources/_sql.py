"""A table or a read-only query in a SQL database, through a SQLAlchemy URL."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from loopml.data.sources._base import Source, coerce_since, read_only_query
from loopml.errors import DataError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONNECT_TIMEOUT_S = 5


class SqlSource(Source):
    """A ``table`` (reflected, names quoted by SQLAlchemy) or a ``query`` (one SELECT or WITH statement).

    Every read runs in a read-only transaction on PostgreSQL and with ``PRAGMA query_only`` on SQLite;
    ``since``, ``limit`` and ``columns`` wrap a query as a subquery with bound parameters. ``${VAR}`` in the
    URL comes from the environment when connecting, and the expanded URL is never shown: messages and
    reports use :meth:`describe`. A relative SQLite path starts at the spec's folder.

    >>> spec = SqlSourceSpec(name="rates", url="postgresql+psycopg://app:${PGPASSWORD}@db/econ", table="rates")
    >>> SqlSource(spec, Path(".")).describe()  # doctest: +SKIP
    'postgresql+psycopg://app:***@db/econ table rates'
    """

    kind = "sql"

    def __init__(self, spec: Any, root: Path):
        super().__init__(spec, root)
        self._engine_: sa.Engine | None = None
        self._secrets: list[str] = []
        self._from_clause: sa.FromClause | None = None

    def describe(self) -> str:
        what = f"table {'.'.join(filter(None, [self.spec.db_schema, self.spec.table]))}" if self.spec.table else "query"
        return f"{_redact(self.spec.url)} {what}"

    # -- hooks ---------------------------------------------------------------------------------------

    def _columns(self) -> list[str]:
        with self._connect() as conn:
            return list(self._source(conn).c.keys())

    def _read(self, columns: list[str] | None, since: Any, limit: int | None) -> pd.DataFrame:
        with self._connect() as conn:
            if self.spec.query and columns is None and since is None and limit is None:
                # At the top level, so the read-only transaction (not a parse rule) refuses any write in it.
                return _frame(conn, sa.text(self._query()))
            source = self._source(conn)
            stmt = sa.select(*(source.c[c] for c in columns)) if columns is not None else sa.select(source)
            order = self._incremental
            if since is not None:
                column = source.c[order]
                bound = coerce_since(since, _type_kind(column.type), self._label, order)
                stmt = stmt.where(column > sa.bindparam("since", bound, type_=column.type))
            if limit is not None:
                stmt = (stmt.order_by(source.c[order]) if order else stmt).limit(limit)
            return _frame(conn, stmt)

    def _count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self._source(conn))).scalar_one())

    def _newest(self, column: str) -> Any:
        with self._connect() as conn:
            return conn.execute(sa.select(sa.func.max(self._source(conn).c[column]))).scalar_one()

    # -- database ------------------------------------------------------------------------------------

    def _query(self) -> str:
        return read_only_query(self.spec.query, self._label)

    def _source(self, conn: sa.Connection) -> sa.FromClause:
        """The reflected table, or the query as a subquery with its result's column names."""
        if self._from_clause is not None:
            return self._from_clause
        if self.spec.table:
            try:
                self._from_clause = sa.Table(self.spec.table, sa.MetaData(), schema=self.spec.db_schema,
                                             autoload_with=conn)
            except sa.exc.NoSuchTableError:
                inspector = sa.inspect(conn)
                names = sorted([*inspector.get_table_names(schema=self.spec.db_schema),
                                *inspector.get_view_names(schema=self.spec.db_schema)])
                where = f"schema '{self.spec.db_schema}' of " if self.spec.db_schema else ""
                raise DataError(f"{self._label}: table '{self.spec.table}' not found in {where}"
                                f"{_redact(self.spec.url)}; tables there: {', '.join(names) or 'none'}") from None
        else:
            query = self._query()
            probe = sa.select(sa.text("*")).select_from(sa.text(query).columns().subquery("q")).limit(0)
            names = list(conn.execute(probe).keys())
            self._from_clause = sa.text(query).columns(*(sa.column(n) for n in names)).subquery("q")
        return self._from_clause

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        """A connection whose transaction cannot write; driver errors become DataErrors without secrets."""
        engine = self._engine()
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            # `from None`: the driver's own exception may carry the expanded URL.
            raise DataError(f"{self._label}: cannot connect to {_redact(self.spec.url)}: {self._reason(exc)}; "
                            "check that the server runs and that the url and its credentials are right") from None
        try:
            with conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                elif conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("PRAGMA query_only = ON")
                yield conn
        except sa.exc.DBAPIError as exc:
            raise DataError(f"{self._label}: reading {self.describe()} failed: {self._reason(exc)}") from None

    def _engine(self) -> sa.Engine:
        if self._engine_ is None:
            url = self._url()
            options: dict[str, Any] = {"poolclass": NullPool}  # no connection outlives a read
            if url.get_backend_name() == "postgresql":
                options["connect_args"] = {"connect_timeout": _CONNECT_TIMEOUT_S}
            try:
                self._engine_ = sa.create_engine(url, **options)
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
                raise DataError(f"{self._label}: cannot use {_redact(self.spec.url)}: {self._reason(exc)}; "
                                "install the driver it names, or use postgresql+psycopg:// or sqlite://") from None
        return self._engine_

    def _url(self) -> URL:
        """The URL with ``${VAR}`` filled from the environment, part by part where it parses.

        Filling each part of a parsed URL lets a password hold '@' or '/' without escaping.
        """
        url = _parse(self.spec.url)
        if url is None:  # e.g. the whole URL in one variable
            url = _parse(self._expand(self.spec.url))
            if url is None:
                raise DataError(f"{self._label}: {_redact(self.spec.url)} is not a SQLAlchemy URL; give one such as "
                                "postgresql+psycopg://user:${PGPASSWORD}@host/db or sqlite:///data/app.db")
        else:
            url = url.set(username=self._expand(url.username), password=self._expand(url.password),
                          host=self._expand(url.host), database=self._expand(url.database),
                          query={k: self._expand(v) if isinstance(v, str) else [self._expand(x) for x in v]
                                 for k, v in url.query.items()})
        if url.password:
            self._secrets.append(str(url.password))
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
                and not url.database.startswith("file:"):
            path = self.root / url.database
            if not path.is_file():
                raise DataError(f"{self._label}: SQLite database file not found: {path}; check the source's `url:`")
            url = url.set(database=str(path))
        return url

    def _expand(self, text: str | None) -> str | None:
        def value(match: re.Match) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise DataError(f"{self._label}: environment variable '{name}' is not set; the source's url "
                                f"uses ${{{name}}}: export it before running loopml")
            self._secrets.append(os.environ[name])
            return os.environ[name]

        return None if text is None else _VAR.sub(value, text)

    def _reason(self, exc: BaseException) -> str:
        """The driver's message on one line, with every secret of the URL replaced by ***."""
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        for secret in self._secrets:
            if len(secret) >= 3:  # a very short value would mask ordinary words
                reason = reason.replace(secret, "***")
        return reason


def _parse(url: str) -> URL | None:
    try:
        return make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None


def _redact(url: str) -> str:
    """The URL as written in the spec, with a literal password shown as ***."""
    parsed = _parse(url)
    return parsed.render_as_string(hide_password=True) if parsed else re.sub(r"(://[^/:@]*:)[^@]*@", r"\1***@", url)


def _frame(conn: sa.Connection, stmt: sa.Executable) -> pd.DataFrame:
    # Not pd.read_sql: it rewraps driver errors as its own, with the SQL and without the reason first.
    result = conn.execute(stmt)
    return pd.DataFrame.from_records(result.fetchall(), columns=list(result.keys()), coerce_float=True)


def _type_kind(sql_type: sa.types.TypeEngine) -> str:
    if isinstance(sql_type, sa.DateTime):
        return "datetime"
    if isinstance(sql_type, sa.Date):
        return "date"
    if isinstance(sql_type, (sa.Integer, sa.Numeric)):
        return "number"
    return "text"
