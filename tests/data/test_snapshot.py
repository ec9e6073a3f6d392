import hashlib

import pandas as pd

from loopml.data import file_hash, frame_from_parquet, frame_hash, frame_to_parquet


def _frame():
    return pd.DataFrame({"x": [1, 2, 3], "rate": [0.5, None, 1.5], "city": ["Lyon", "Nice", None]})


def test_parquet_bytes_are_deterministic_and_round_trip():
    data = frame_to_parquet(_frame())
    assert data == frame_to_parquet(_frame())
    pd.testing.assert_frame_equal(frame_from_parquet(data), _frame())


def test_parquet_drops_the_index():
    frame = _frame().set_index(pd.Index([10, 11, 12]))
    assert frame_from_parquet(frame_to_parquet(frame)).index.tolist() == [0, 1, 2]


def test_frame_hash_is_stable_and_ignores_the_index():
    assert frame_hash(_frame()) == frame_hash(_frame())
    assert frame_hash(_frame()) == frame_hash(_frame().set_index(pd.Index([7, 8, 9])))
    assert len(frame_hash(_frame())) == 64


def test_frame_hash_changes_with_a_value_a_name_or_a_dtype():
    base = frame_hash(_frame())
    changed = _frame()
    changed.loc[1, "x"] = 20
    assert frame_hash(changed) != base
    assert frame_hash(_frame().rename(columns={"x": "y"})) != base
    assert frame_hash(_frame().astype({"x": "float64"})) != base


def test_file_hash_matches_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "snap.parquet"
    path.write_bytes(frame_to_parquet(_frame()))
    assert file_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
