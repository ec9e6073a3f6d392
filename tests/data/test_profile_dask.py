"""Assessing a file larger than compute.memory_limit with dask.dataframe, in partitions, on real data."""

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import write_spec

from loopml.data import assess, assess_file, assess_project
from loopml.data._profile_dask import profile_dask
from loopml.errors import DataError
from loopml.spec import load_spec

BENEFITS = Path(__file__).parents[1] / "bench_data" / "benefits.parquet"
# dask's Parquet reader calls a pandas API that pandas 3.1 deprecates; not this project's to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index")


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The benefits table 8 times over (39,016 rows, about 0.5 MB) in Parquet row groups of 10,000 rows."""
    frame = pd.concat([pd.read_parquet(BENEFITS)] * 8, ignore_index=True)
    path = tmp_path_factory.mktemp("big") / "benefits.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=10_000)
    return path, frame


def test_the_dask_assessment_matches_pandas_numbers(big):
    path, frame = big
    fast, exact = assess_file(path, "ui", "binary", engine="dask"), assess(frame, "ui", "binary")
    assert fast.methods["engine"].startswith("dask.dataframe, 4 partitions")
    for key in ("rows", "duplicate_rows", "missing_share", "column_kinds", "constant_columns", "cardinality",
                "near_constant_columns", "target_balance", "leakage_suspects"):
        assert getattr(fast, key) == pytest.approx(getattr(exact, key)), key
    assert fast.outliers.keys() == exact.outliers.keys()
    for name, found in fast.outliers.items():
        assert found == pytest.approx(exact.outliers[name]), name


def test_every_column_profile_matches_pandas(big):
    path, frame = big
    fast = profile_dask(path, target="ui", sample_rows=500, seed=3)
    exact = assess(frame, "ui", "binary")
    for name, column in fast.columns.items():
        want = pd.read_parquet(BENEFITS)[name]
        assert column.missing == 8 * int(want.isna().sum()) and column.distinct == want.nunique(), name
    assert fast.target_counts == {k: 8 * v for k, v in pd.read_parquet(BENEFITS)["ui"].value_counts().items()}
    assert len(fast.sample) == 500 and fast.sample.index.is_monotonic_increasing
    assert fast.sample.equals(frame.loc[fast.sample.index].astype(fast.sample.dtypes))
    assert exact.rows == fast.rows


def test_a_source_larger_than_the_memory_limit_is_assessed_in_partitions(big, tmp_path):
    path, frame = big
    (tmp_path / "benefits.parquet").write_bytes(path.read_bytes())
    write_spec(tmp_path, compute={"memory_limit": "100KB"})
    doc = yaml.safe_load((tmp_path / "loopml.yaml").read_text())
    doc["data"]["sources"][0]["path"] = "benefits.parquet"
    (tmp_path / "loopml.yaml").write_text(yaml.safe_dump(doc))
    result = assess_project(load_spec(tmp_path))
    [source] = result.sources
    assert source.availability["engine"].startswith("dask.dataframe")
    assert source.availability["bytes"] > 100_000 and source.availability["rows"] == len(frame)
    assert source.quality["duplicate_rows"] == int(frame.duplicated().sum())
    assert result.joined is None and "larger than compute.memory_limit (100,000 bytes)" in result.join_error


def test_a_missing_file_and_an_unknown_engine_are_named(tmp_path, big):
    with pytest.raises(DataError, match=r"nothing.parquet: file not found at"):
        profile_dask(tmp_path / "nothing.parquet")
    with pytest.raises(DataError, match=r"target 'label' is not a column; columns: "):
        profile_dask(big[0], target="label")
    (tmp_path / "rows.json").write_text("[]")
    with pytest.raises(DataError, match=r"rows.json: cannot tell the format from the suffix; use .parquet, .csv"):
        profile_dask(tmp_path / "rows.json")
    with pytest.raises(DataError, match=r"engine must be 'duckdb' or 'dask'; got 'spark'"):
        assess_file(big[0], "ui", "binary", engine="spark")
