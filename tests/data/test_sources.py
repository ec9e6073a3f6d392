import gzip

import pandas as pd
import pytest

from loopml.data import collect, read_columns, read_source
from loopml.errors import DataError
from loopml.spec import ProjectSpec


def _spec(root, sources):
    return ProjectSpec.model_validate(
        {
            "project": "t",
            "business": {
                "problem": "p",
                "task": "binary",
                "target": "y",
                "goal": {"metric": "roc_auc", "at_least": 0.7},
            },
            "data": {"sources": sources},
            "root": root,
        }
    )


STATES_JOIN = {"name": "states", "path": "states.csv", "join": {"on": "state"}}


def _people(tmp_path):
    pd.DataFrame({"pid": [1, 2, 3, 4], "state": ["a", "b", "c", "z"], "y": ["yes", "no", "yes", "no"]}).to_csv(
        tmp_path / "people.csv", index=False
    )


def test_semicolon_csv_is_sniffed(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("age;city;y\n31;Lyon;yes\n45;Nice;no\n")
    frame = read_source(path)
    assert list(frame.columns) == ["age", "city", "y"]
    assert frame["age"].tolist() == [31, 45]
    assert read_columns(path) == ["age", "city", "y"]


def test_gzip_csv_is_read(tmp_path):
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("a,b\n1,x\n2,y\n")
    assert read_source(path).shape == (2, 2)
    assert read_columns(path) == ["a", "b"]


def test_parquet_is_read(tmp_path):
    path = tmp_path / "data.parquet"
    pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]}).to_parquet(path, index=False)
    assert read_source(path)["a"].tolist() == [1.5, 2.5]
    assert read_columns(path) == ["a", "b"]


def test_explicit_format_overrides_suffix(tmp_path):
    path = tmp_path / "export.dat"
    path.write_text("a,b\n1,2\n")
    assert read_source(path, format="csv").shape == (1, 2)


def test_unknown_suffix_names_the_allowed_formats(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match=r"data.xlsx: cannot tell the format .*\.csv.*\.parquet.*set `format:`"):
        read_columns(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope.csv: file not found .*check the source's `path:`"):
        read_source(tmp_path / "nope.csv")


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty.csv: the file is empty \(0 bytes\)"):
        read_source(path)


def test_header_only_csv_has_no_rows(tmp_path):
    path = tmp_path / "head.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match=r"head.csv: no data rows \(found 2 columns, 0 rows\)"):
        read_source(path)


def test_broken_parquet_is_an_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"bad.parquet: not a readable Parquet file"):
        read_source(path)


def test_collect_joins_and_reports_match_rate(tmp_path):
    _people(tmp_path)
    pd.DataFrame({"state": ["a", "b", "c"], "rate": [0.1, 0.2, 0.3]}).to_csv(tmp_path / "states.csv", index=False)
    spec = _spec(
        tmp_path,
        [
            {"name": "people", "path": "people.csv", "cost_per_1k_rows": 2.0},
            STATES_JOIN,
        ],
    )
    collected = collect(spec)
    assert collected.frame.shape == (4, 4)
    assert collected.frame["rate"].isna().sum() == 1
    assert collected.joins[0].to_dict() == {
        "source": "states", "on": ["state"], "how": "left", "match_rate": 0.75, "right_key_unique": True
    }
    report = collected.sources[0].to_dict()
    assert (report["path"], report["rows"], report["cost"]) == ("people.csv", 4, 0.008)


def test_inner_join_keeps_only_matched_rows(tmp_path):
    _people(tmp_path)
    pd.DataFrame({"state": ["a", "b"], "rate": [0.1, 0.2]}).to_csv(tmp_path / "states.csv", index=False)
    inner = {**STATES_JOIN, "join": {"on": "state", "how": "inner"}}
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, inner])
    collected = collect(spec)
    assert collected.frame["pid"].tolist() == [1, 2]
    assert collected.joins[0].match_rate == 0.5


def test_join_with_duplicate_right_keys_is_refused(tmp_path):
    _people(tmp_path)
    pd.DataFrame({"state": ["a", "a", "b", "b", "c"], "rate": [0.1, 0.2, 0.3, 0.4, 0.5]}).to_csv(
        tmp_path / "states.csv", index=False
    )
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, STATES_JOIN])
    with pytest.raises(DataError, match=r"source 'states': join key 'state' is not unique: 2 key values .* dedupe"):
        collect(spec)


def test_join_key_missing_on_one_side_is_refused(tmp_path):
    _people(tmp_path)
    pd.DataFrame({"region": ["a"], "rate": [0.1]}).to_csv(tmp_path / "states.csv", index=False)
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, STATES_JOIN])
    with pytest.raises(DataError, match=r"join key 'state' is not a column of states \(right side\); set join.on"):
        collect(spec)


def test_join_keys_of_different_types_are_refused(tmp_path):
    _people(tmp_path)
    pd.DataFrame({"pid": ["a1", "a2"], "score": [0.1, 0.2]}).to_csv(tmp_path / "scores.csv", index=False)
    scores = {"name": "scores", "path": "scores.csv", "join": {"on": "pid"}}
    spec = _spec(tmp_path, [{"name": "people", "path": "people.csv"}, scores])
    with pytest.raises(DataError, match=r"cannot join on 'pid' \(pid: int64 vs str\).*make the key columns the same type"):
        collect(spec)
