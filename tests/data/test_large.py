"""A file larger than compute.memory_limit, cleaned in partitions on a real Dask cluster into Parquet parts."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from compute.conftest import local_cluster  # noqa: F401 - the real LocalCluster on loopback
from conftest import write_spec

from loopml.data import assess, clean, infer_contract
from loopml.data._large import clean_in_partitions
from loopml.errors import DataError
from loopml.process import run_project
from loopml.spec import CleanSpec, load_spec
from loopml.store import Store

# dask's Parquet reader calls a pandas API that pandas 3.1 deprecates; not this project's to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index")
MEMORY_LIMIT = 600_000  # bytes: about a third of the CSV, so it is read in partitions of about 150 KB


def _table(rows: int = 60_000, seed: int = 0) -> pd.DataFrame:
    """A binary target with missing labels, a numeric column with gaps, far outliers, a constant and duplicates."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, rows),
        "income": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(50, 10, rows).round(1)),
        "region": rng.choice(["north", "south", "east", "west"], rows),
        "constant": "same",
        "x": x.round(3),
        "y": np.where(x + rng.normal(size=rows) > 0.5, "yes", "no"),
    })
    frame.loc[rng.choice(rows, 200, replace=False), "y"] = None
    frame.loc[5:300, "x"] = 1e6
    # Copies of early rows at the end of the file: their first rows are in other partitions.
    return pd.concat([frame, frame.sample(500, random_state=1)], ignore_index=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("large")
    frame = _table()
    frame.to_csv(folder / "big.csv", index=False)
    frame.to_parquet(folder / "big.parquet", index=False, row_group_size=8_000)
    return folder / "big.csv", folder / "big.parquet"


def _in_partitions(path, plan, client, out_dir):
    return clean_in_partitions(path, "y", "binary", plan, client=client, seed=0, limits=None,
                               memory_limit=MEMORY_LIMIT, out_dir=out_dir)


def _in_pandas(frame, plan):
    return clean(frame, "y", "binary", plan, assessment=assess(frame, "y", "binary"))


def _project(folder: Path, files, address: str, *, min_rows: int = 200) -> Path:
    (folder / "big.csv").write_bytes(files[0].read_bytes())
    write_spec(folder, business={"problem": "Who says yes?", "task": "binary", "target": "y", "positive": "yes",
                                 "goal": {"metric": "roc_auc", "at_least": 0.5}},
               data={"sources": [{"name": "survey", "path": "big.csv"}], "min_rows": min_rows},
               compute={"dask": address, "memory_limit": MEMORY_LIMIT})
    return folder


@pytest.fixture(scope="module")
def loop(files, local_cluster, tmp_path_factory):  # noqa: F811
    """`loopml run` on the CSV, larger than memory, on the cluster; more rows asked for than exist, so it stops
    after the Data stage."""
    folder = _project(tmp_path_factory.mktemp("project"), files, local_cluster.scheduler_address,
                      min_rows=10_000_000)
    store = Store.open(folder)
    result = run_project(load_spec(folder), store)
    [gate] = [d for d in result.decisions if d.gate == "enough_data"]
    yield result, store, store.snapshot(gate.evidence["snapshot_id"])
    store.close()


@pytest.fixture(scope="module")
def in_pandas(files):
    return _in_pandas(pd.read_csv(files[0]), CleanSpec())


def _parts(paths) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def test_the_snapshot_parts_hold_the_rows_pandas_keeps_in_its_order(loop, in_pandas):
    _, store, snapshot = loop
    parts = store.snapshot_parts(snapshot)
    assert len(parts) > 1 and snapshot.rows == len(in_pandas.frame) == 60_500 - 202 - 516
    assert _parts(parts).astype(in_pandas.frame.dtypes).equals(in_pandas.frame)


def test_cleaning_across_partitions_counts_as_pandas_does(loop, in_pandas):
    cleaning = loop[2].report["cleaning"]
    for key in ("dropped_missing_target", "dropped_duplicates", "dropped_columns", "missing_values_left", "rows_out"):
        assert cleaning[key] == in_pandas.report[key], key
    assert cleaning["dropped_columns"] == {"constant": "constant: every row is 'same'"}


def test_the_decisions_say_where_the_data_was_cleaned(loop, local_cluster):  # noqa: F811
    result, _, snapshot = loop
    collected, cleaned = (next(d for d in result.decisions if d.gate == gate) for gate in ("collect", "clean"))
    on = f"in {snapshot.report['cleaning']['partitions']} partitions on Dask at {local_cluster.scheduler_address} "
    assert collected.summary.startswith(f"survey: 60,500 rows {on}(2 workers)")
    assert re.search(r"\(\d[\d,]+ bytes, larger than compute.memory_limit 600,000\)", collected.summary)
    assert "dropped 516 exact duplicate rows (found by a 64-bit hash of each row across all partitions)" \
        in cleaned.summary and f"({on}(2 workers)" in cleaned.summary
    assert result.outcome == "data_insufficient"


def test_the_file_is_never_read_whole(loop):
    report = loop[2].report
    assert report["cleaning"]["partitions"] > 5
    for assessment in ("assessment_raw", "assessment"):
        assert report[assessment]["methods"]["engine"].startswith("dask.dataframe, ")
    assert report["sample_rows"] == 20_000 < loop[2].rows


def test_the_contract_is_the_pandas_contract(loop, in_pandas):
    assert loop[2].contract == infer_contract(in_pandas.frame, "y", "binary").model_dump(mode="json")
    assert loop[2].columns == 4


def test_the_report_has_the_pandas_keys(loop):
    report = loop[2].report
    assert set(report) == {"assessment_raw", "assessment", "cleaning", "gate", "clean_plan", "sources_used", "layout",
                           "sample_rows"}
    assert (report["layout"], report["sources_used"]) == ("parts", ["survey"])
    assert report["assessment"]["duplicate_rows"] == 0
    assert report["gate"]["reasons"] == ["59,782 rows after cleaning, need at least 10,000,000 (data.min_rows); "
                                         "collect more rows or lower data.min_rows"]


# -- on this machine's threads -------------------------------------------------------------------------------

_DROPPING = CleanSpec(missing="drop_rows", outliers="drop")


@pytest.fixture(scope="module")
def from_parquet(files, tmp_path_factory):
    return _in_partitions(files[1], _DROPPING, None, tmp_path_factory.mktemp("parquet-parts"))


def test_parquet_rows_and_far_outliers_are_dropped_as_pandas_drops_them(files, from_parquet):
    expected = _in_pandas(pd.read_parquet(files[1]), _DROPPING)
    assert from_parquet.partitions == 8 and from_parquet.rows == len(expected.frame)
    for key in ("dropped_outlier_rows", "dropped_missing_rows"):
        assert from_parquet.report["cleaning"][key] == expected.report[key], key
    assert _parts(from_parquet.parts).astype(expected.frame.dtypes).equals(expected.frame)
    assert from_parquet.contract == infer_contract(expected.frame, "y", "binary").model_dump(mode="json")
    assert from_parquet.report["gate"]["passed"]


def test_the_data_hash_is_the_same_for_the_same_file_and_plan(files, from_parquet, tmp_path):
    again = _in_partitions(files[1], _DROPPING, None, tmp_path / "again")
    assert again.data_hash == from_parquet.data_hash


def test_another_plan_gives_another_data_hash(files, from_parquet, tmp_path):
    keeping = _in_partitions(files[1], _DROPPING.model_copy(update={"duplicates": "keep"}), None, tmp_path / "keep")
    assert keeping.data_hash != from_parquet.data_hash
    assert keeping.rows - from_parquet.rows == keeping.report["assessment"]["duplicate_rows"] > 0


def test_a_folder_holding_parts_already_is_refused(files, tmp_path):
    (tmp_path / "part-00000.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"already holds Parquet parts; pass an empty folder as out_dir, so that no "
                                        "part of an earlier snapshot is taken for this one"):
        _in_partitions(files[1], CleanSpec(), None, tmp_path)


def test_a_missing_target_column_is_named(files, tmp_path):
    with pytest.raises(DataError, match=r"big.parquet: target 'churned' is not a column; columns: age, income"):
        clean_in_partitions(files[1], "churned", "binary", CleanSpec(), client=None, seed=0, limits=None,
                            memory_limit=MEMORY_LIMIT, out_dir=tmp_path)


def test_a_file_without_a_labeled_row_is_refused(tmp_path):
    pd.DataFrame({"x": range(100), "y": [None] * 100}).to_csv(tmp_path / "unlabeled.csv", index=False)
    with pytest.raises(DataError, match=r"unlabeled.csv: cleaning left no rows of 100; every row lacks the target or "
                                        "was dropped. Check business.target, or set data.clean.missing: impute and "
                                        "data.clean.outliers: keep"):
        clean_in_partitions(tmp_path / "unlabeled.csv", "y", "binary", CleanSpec(), client=None, seed=0, limits=None,
                            memory_limit=MEMORY_LIMIT, out_dir=tmp_path / "parts")


# -- in the loop ---------------------------------------------------------------------------------------------


def test_a_large_base_with_a_further_source_is_refused_with_the_fix(files, local_cluster, tmp_path):  # noqa: F811
    folder = _project(tmp_path, files, local_cluster.scheduler_address)
    pd.DataFrame({"region": ["north", "south"], "rain": [1.0, 2.0]}).to_csv(folder / "regions.csv", index=False)
    doc = yaml.safe_load((folder / "loopml.yaml").read_text())
    doc["data"]["sources"].append({"name": "regions", "path": "regions.csv", "join": {"on": ["region"]}})
    (folder / "loopml.yaml").write_text(yaml.safe_dump(doc))
    store = Store.open(folder)
    with pytest.raises(DataError, match=r"base source 'survey' is [\d,]+ bytes, larger than compute.memory_limit "
                                        r"\(600,000 bytes\), so it is cleaned in partitions on the cluster, where "
                                        r"joining further sources \('regions'\) is not supported yet. Pre-join the "
                                        r"files into one CSV or Parquet file and list only it under data.sources, or "
                                        r"raise compute.memory_limit above [\d,]+ bytes to join in memory"):
        run_project(load_spec(folder), store)
    [refused] = [d for d in store.decisions("benefits-test") if d.gate == "collect"]
    assert (refused.verdict, refused.evidence["further_sources"]) == ("fail", ["regions"])


def test_reading_options_the_partitioned_read_cannot_honour_are_refused(files, local_cluster, tmp_path):  # noqa: F811
    folder = _project(tmp_path, files, local_cluster.scheduler_address)
    doc = yaml.safe_load((folder / "loopml.yaml").read_text())
    doc["data"]["sources"][0].update(delimiter=",", encoding="latin-1")
    (folder / "loopml.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DataError, match=r"source 'survey': encoding: 'latin-1' cannot be honoured "
                                        r"when the file is read in partitions \(it is [\d,]+ bytes, larger than "
                                        r"compute.memory_limit\); convert it to Parquet or to a comma-separated UTF-8 "
                                        r"CSV with a header, or raise compute.memory_limit above [\d,]+ bytes"):
        run_project(load_spec(folder), Store.open(folder))
