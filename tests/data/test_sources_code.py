"""DuckDB SQL over files and Python callables: read like any source, and fail with the source named."""

import uuid

import pandas as pd
import pytest

from loopml.data.sources import DuckDBSource, PythonSource, open_source
from loopml.errors import DataError
from loopml.spec import DuckDBSourceSpec, PythonSourceSpec


def _duck(root, sql, **options):
    return open_source(DuckDBSourceSpec(name="events", duckdb=sql, **options), root)


@pytest.fixture
def parquet_parts(tmp_path):
    (tmp_path / "events").mkdir()
    for i in range(3):
        days = pd.to_datetime([f"2024-01-0{2 * i + 1}", f"2024-01-0{2 * i + 2}"])
        pd.DataFrame({"id": [2 * i, 2 * i + 1], "at": days, "kind": ["buy", "view"]}).to_parquet(
            tmp_path / "events" / f"part-{i}.parquet")
    return tmp_path


def test_duckdb_sql_over_a_parquet_glob_relative_to_the_spec_folder(parquet_parts):
    source = _duck(parquet_parts, "SELECT * FROM 'events/*.parquet' ORDER BY id", incremental={"column": "at"})
    assert isinstance(source, DuckDBSource)
    assert source.columns() == ["id", "at", "kind"]
    assert source.read()["id"].tolist() == [0, 1, 2, 3, 4, 5]
    assert source.read(columns=["id"], since="2024-01-04", limit=1)["id"].tolist() == [4]
    assert (source.count(), source.newest()) == (6, pd.Timestamp("2024-01-06").to_pydatetime())


def test_duckdb_error_names_the_source(tmp_path):
    with pytest.raises(DataError, match=r"source 'events': DuckDB could not run the query: .*missing.parquet"):
        _duck(tmp_path, "SELECT * FROM 'missing.parquet'").read()


def test_duckdb_statement_that_writes_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"one statement starting with SELECT or WITH or FROM; found COPY"):
        _duck(tmp_path, "COPY (SELECT 1) TO 'out.csv'").read()
    assert not (tmp_path / "out.csv").exists()


def _module(tmp_path, body):
    name = f"src_{uuid.uuid4().hex[:8]}"  # a fresh name: imported modules stay cached across tests
    (tmp_path / f"{name}.py").write_text("import pandas as pd\n\n" + body)
    return name


def test_python_callable_from_the_spec_folder(tmp_path):
    name = _module(tmp_path, "def load():\n    return pd.DataFrame({'id': [1, 2, 3], 'y': [0, 1, 0]})\n")
    source = open_source(PythonSourceSpec(name="crm", callable=f"{name}:load", incremental={"column": "id"}), tmp_path)
    assert isinstance(source, PythonSource)
    assert source.columns() == ["id", "y"]
    assert source.read(since=1)["id"].tolist() == [2, 3]
    assert (source.count(), source.newest(), source.describe()) == (3, 3, f"python {name}:load")


def test_python_callable_returning_a_list_is_refused(tmp_path):
    name = _module(tmp_path, "def load():\n    return [1, 2]\n")
    with pytest.raises(DataError, match=rf"source 'crm': {name}:load\(\) returned list, not a pandas DataFrame"):
        open_source(PythonSourceSpec(name="crm", callable=f"{name}:load"), tmp_path).read()


def test_python_callable_that_cannot_be_imported_is_named(tmp_path):
    with pytest.raises(DataError, match=r"source 'crm': cannot import no_such_module_x:load: ModuleNotFoundError"):
        open_source(PythonSourceSpec(name="crm", callable="no_such_module_x:load"), tmp_path).columns()
    name = _module(tmp_path, "def other():\n    pass\n")
    with pytest.raises(DataError, match=rf"cannot import {name}:load: AttributeError"):
        open_source(PythonSourceSpec(name="crm", callable=f"{name}:load"), tmp_path).columns()
