"""SQL sources on a real SQLite file and the real PostgreSQL server: tables, read-only queries, credentials."""

import pandas as pd
import pytest
import sqlalchemy as sa

from loopml.data.sources import SqlSource, open_source
from loopml.errors import DataError
from loopml.spec import SqlSourceSpec

ORDERS = pd.DataFrame({
    "id": [1, 2, 3, 4],
    "at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
    "amount": [5.0, 7.5, 9.0, 1.0],
    "note": ["a;b", "x", "y", "z"],
})


def _sql(root, **options):
    return open_source(SqlSourceSpec(name="db", **options), root)


@pytest.fixture
def sqlite(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    ORDERS.to_sql("orders", engine, index=False)
    engine.dispose()
    return tmp_path


def test_sqlite_table_reads_with_since_limit_columns_and_count(sqlite):
    source = _sql(sqlite, url="sqlite:///shop.db", table="orders", incremental={"column": "at"})
    assert isinstance(source, SqlSource)
    assert source.columns() == ["id", "at", "amount", "note"]
    assert source.read()["amount"].tolist() == [5.0, 7.5, 9.0, 1.0]
    assert source.read(columns=["id"], since="2024-01-02")["id"].tolist() == [3, 4]
    assert source.read(limit=2)["id"].tolist() == [1, 2]
    assert (source.count(), source.newest()) == (4, pd.Timestamp("2024-01-04").to_pydatetime())
    assert source.describe() == "sqlite:///shop.db table orders"


def test_sqlite_query_is_wrapped_for_since_and_limit(sqlite):
    query = "-- big orders\nSELECT id, amount, note FROM orders WHERE note <> 'a;b' /* not the test one */;"
    source = _sql(sqlite, url="sqlite:///shop.db", query=query, incremental={"column": "id"})
    assert source.columns() == ["id", "amount", "note"]
    assert source.read()["id"].tolist() == [2, 3, 4]
    assert source.read(columns=["amount"], since=2, limit=1)["amount"].tolist() == [9.0]
    assert source.count() == 3


def test_sqlite_connection_refuses_writes(sqlite):
    source = _sql(sqlite, url="sqlite:///shop.db", table="orders")
    with source._connect() as conn, pytest.raises(sa.exc.OperationalError, match="readonly"):
        conn.exec_driver_sql("DELETE FROM orders")


@pytest.mark.parametrize("query, message", [
    ("DELETE FROM orders", r"only a read-only query is allowed: one statement starting with SELECT or WITH; "
                           r"found DELETE"),
    ("SELECT 1; DROP TABLE orders", r"the query holds more than one statement \(found DROP after ';'\)"),
])
def test_writing_queries_are_refused_before_running(sqlite, query, message):
    with pytest.raises(DataError, match=r"source 'db': " + message):
        _sql(sqlite, url="sqlite:///shop.db", query=query).read()
    assert _sql(sqlite, url="sqlite:///shop.db", table="orders").count() == 4


def test_unknown_table_lists_the_tables(sqlite):
    with pytest.raises(DataError, match=r"table 'order' not found in sqlite:///shop.db; tables there: orders"):
        _sql(sqlite, url="sqlite:///shop.db", table="order").columns()


def test_missing_sqlite_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"SQLite database file not found: .*nope.db"):
        _sql(tmp_path, url="sqlite:///nope.db", table="t").columns()


def test_empty_table_has_no_rows(sqlite):
    engine = sa.create_engine(f"sqlite:///{sqlite / 'shop.db'}")
    ORDERS.head(0).to_sql("empty", engine, index=False)
    engine.dispose()
    with pytest.raises(DataError, match=r"source 'db' has no rows \(sqlite:///shop.db table empty\)"):
        _sql(sqlite, url="sqlite:///shop.db", table="empty").read()


def test_missing_environment_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOPML_TEST_PW", raising=False)
    source = _sql(tmp_path, url="postgresql+psycopg://app:${LOOPML_TEST_PW}@127.0.0.1/x", table="t")
    with pytest.raises(DataError, match=r"source 'db': environment variable 'LOOPML_TEST_PW' is not set"):
        source.columns()


def test_unreachable_database_redacts_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPML_TEST_PW", "s3cr3t-pw")
    source = _sql(tmp_path, url="postgresql+psycopg://app:${LOOPML_TEST_PW}@127.0.0.1:1/x", table="t")
    with pytest.raises(DataError) as info:
        source.read()
    message = str(info.value)
    assert message.startswith("source 'db': cannot connect to postgresql+psycopg://app:***@127.0.0.1:1/x: ")
    assert "refused" in message
    assert "s3cr3t-pw" not in message + repr(source) + source.describe()


def test_literal_password_is_redacted_in_the_description(tmp_path):
    source = _sql(tmp_path, url="postgresql+psycopg://app:hunter2@db.internal/econ", table="rates",
                  schema="public")
    assert source.describe() == "postgresql+psycopg://app:***@db.internal/econ table public.rates"


@pytest.fixture
def postgres(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA econ")
    ORDERS.to_sql("orders", engine, schema="econ", index=False)
    engine.dispose()
    return postgres_url


def test_postgres_table_in_a_schema_and_a_query(postgres, tmp_path):
    table = _sql(tmp_path, url=postgres, table="orders", schema="econ", incremental={"column": "at"})
    assert table.read(since="2024-01-02")["id"].tolist() == [3, 4]
    assert table.newest() == pd.Timestamp("2024-01-04").to_pydatetime()
    query = _sql(tmp_path, url=postgres, query="WITH big AS (SELECT * FROM econ.orders WHERE amount > 2) "
                                              "SELECT id, at FROM big", incremental={"column": "at"})
    assert query.read(since="2024-01-01", limit=1)["id"].tolist() == [2]
    assert query.count() == 3


def test_postgres_unknown_table_lists_the_schema_tables(postgres, tmp_path):
    with pytest.raises(DataError, match=r"table 'order' not found in schema 'econ' of .*; tables there: orders"):
        _sql(tmp_path, url=postgres, table="order", schema="econ").columns()


def test_postgres_write_inside_with_fails_in_the_read_only_transaction(postgres, tmp_path):
    query = "WITH gone AS (DELETE FROM econ.orders RETURNING *) SELECT * FROM gone"
    with pytest.raises(DataError, match=r"source 'db': reading .* failed: .*read-only transaction"):
        _sql(tmp_path, url=postgres, query=query).read()
    assert _sql(tmp_path, url=postgres, table="orders", schema="econ").count() == 4
