"""collect: the base source joined with the further ones, checked before each join, reported, and read incrementally."""

import json

import pandas as pd
import pytest

from loopml.data import collect
from loopml.errors import DataError
from loopml.spec import ProjectSpec

STATES_JOIN = {"name": "states", "path": "states.csv", "join": {"on": "state"}}


def _spec(root, sources):
    return ProjectSpec.model_validate({
        "project": "t",
        "business": {"problem": "p", "task": "binary", "target": "y", "goal": {"metric": "roc_auc", "at_least": 0.7}},
        "data": {"sources": sources},
        "root": root,
    })


def _people(tmp_path):
    pd.DataFrame({"pid": [1, 2, 3, 4], "state": ["a", "b", "c", "z"], "y": ["yes", "no", "yes", "no"]}).to_csv(
        tmp_path / "people.csv", index=False
    )


def _states(tmp_path, **columns):
    pd.DataFrame(columns).to_csv(tmp_path / "states.csv", index=False)


def test_left_join_reports_match_rate_and_sources(tmp_path):
    _people(tmp_path)
    _states(tmp_path, state=["a", "b", "c"], rate=[0.1, 0.2, 0.3])
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv", "cost_per_1k_rows": 2.0}, STATES_JOIN])
    messages = []
    collected = collect(spec, progress=lambda stage, message: messages.append((stage, message)))
    assert collected.frame.shape == (4, 4)
    assert collected.frame["rate"].isna().sum() == 1
    assert collected.joins[0].to_dict() == {
        "source": "states", "on": ["state"], "how": "left", "left_rows": 4, "matched_rows": 3, "match_rate": 0.75,
        "right_key_unique": True, "new_columns": ["rate"],
    }
    report = collected.sources[0].to_dict()
    assert (report["kind"], report["description"], report["rows"], report["cost"]) == (
        "file", "file people.csv", 4, 0.008)
    assert (report["total_rows"], report["more_rows"], report["newest"]) == (4, 0, None)
    assert report["details"] == {"format": "csv", "files": 1, "delimiter": ",", "header": True, "encoding": "utf-8"}
    assert messages == [("data", "reading source 'people' (1/2)"), ("data", "reading source 'states' (2/2)")]
    json.dumps(collected.to_dict())


def test_inner_join_keeps_only_matched_rows_and_names_pick_sources(tmp_path):
    _people(tmp_path)
    _states(tmp_path, state=["a", "b"], rate=[0.1, 0.2])
    inner = {**STATES_JOIN, "join": {"on": "state", "how": "inner"}}
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, inner])
    collected = collect(spec)
    assert collected.frame["pid"].tolist() == [1, 2]
    assert collected.joins[0].match_rate == 0.5
    assert collect(spec, names=[]).frame.shape == (4, 3)


def test_same_typed_shared_column_is_renamed_after_its_source(tmp_path):
    _people(tmp_path)
    _states(tmp_path, state=["a"], y=["no"])
    collected = collect(_spec(tmp_path, [{"name": "people", "path": "people.csv"}, STATES_JOIN]))
    assert collected.joins[0].new_columns == ["y_states"]


def test_unknown_source_name_lists_the_sources(tmp_path):
    _people(tmp_path)
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}])
    with pytest.raises(DataError, match=r"unknown source 'stats'; sources: people"):
        collect(spec, names=["stats"])


def test_non_unique_join_key_is_refused(tmp_path):
    _people(tmp_path)
    _states(tmp_path, state=["a", "a", "b", "b", "c"], rate=[0.1, 0.2, 0.3, 0.4, 0.5])
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, STATES_JOIN])
    with pytest.raises(DataError, match=r"source 'states': join key 'state' is not unique: 2 key values appear more "
                                        r"than once \(e.g. 'a' 2 times\); dedupe"):
        collect(spec)


def test_join_key_missing_on_one_side_is_refused(tmp_path):
    _people(tmp_path)
    _states(tmp_path, region=["a"], rate=[0.1])
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, STATES_JOIN])
    with pytest.raises(DataError, match=r"join key 'state' is not a column of 'states' \(right side\); set join.on"):
        collect(spec)


def test_join_keys_of_different_types_are_refused(tmp_path):
    _people(tmp_path)
    pd.DataFrame({"pid": ["a1", "a2"], "score": [0.1, 0.2]}).to_csv(tmp_path / "scores.csv", index=False)
    scores = {"name": "scores", "path": "scores.csv", "join": {"on": "pid"}}
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, scores])
    with pytest.raises(DataError, match=r"source 'scores': column 'pid' is int64 in 'people' but str in 'scores'; "
                                        r"make them the same type$"):
        collect(spec)


def test_column_whose_type_changes_between_sources_is_refused(tmp_path):
    _people(tmp_path)
    _states(tmp_path, state=["a", "b"], pid=["x", "y"])
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, STATES_JOIN])
    with pytest.raises(DataError, match=r"column 'pid' is int64 in 'people' but str in 'states'; make them the same "
                                        r"type, or rename one"):
        collect(spec)


def test_incremental_collection_reads_newer_rows_and_keeps_a_watermark(tmp_path):
    pd.DataFrame({"id": [1, 2, 3], "at": ["2024-01-01 10:00", "2024-01-02 10:00", "2024-01-03 10:00"],
                  "y": [0, 1, 0]}).to_csv(tmp_path / "orders.csv", index=False)
    orders = {"name": "orders", "path": "orders.csv", "incremental": {"column": "at"}}
    spec = _spec(tmp_path, [orders])
    first = collect(spec)
    assert first.watermarks == {"orders": "2024-01-03 10:00"}
    assert first.sources[0].newest == "2024-01-03 10:00"

    again = collect(spec, since={"orders": "2024-01-01 10:00"})
    assert again.frame["id"].tolist() == [2, 3]
    assert (again.sources[0].rows, again.sources[0].total_rows, again.sources[0].more_rows) == (2, 3, None)

    nothing_new = collect(spec, since=first.watermarks)
    assert len(nothing_new.frame) == 0 and nothing_new.watermarks == first.watermarks


def test_parquet_timestamps_give_an_iso_watermark(tmp_path):
    pd.DataFrame({"id": [1, 2], "at": pd.to_datetime(["2024-01-01", "2024-02-01"]), "y": [0, 1]}).to_parquet(
        tmp_path / "orders.parquet")
    spec = _spec(tmp_path, [{"name": "orders", "path": "orders.parquet", "incremental": {"column": "at"}}])
    collected = collect(spec, since={"orders": "2024-01-15"})
    assert collected.frame["id"].tolist() == [2]
    assert collected.watermarks == {"orders": "2024-02-01T00:00:00"}
    json.dumps(collected.to_dict())
