"""Snapshots stored as Parquet part files (the larger-than-memory path), on SQLite and PostgreSQL."""

import json

import pandas as pd
import pytest

from loopml.errors import ArtifactError, StoreError


def _write_parts(folder, sizes=(3, 2)):
    folder.mkdir(exist_ok=True)
    paths, start = [], 0
    for i, n in enumerate(sizes):
        path = folder / f"part.{i}.parquet"
        pd.DataFrame({"x": range(start, start + n), "y": ["a"] * n}).to_parquet(path, index=False)
        paths.append(path)
        start += n
    return paths


def _save(store, parts, rows=5, key="k"):
    return store.save_snapshot_parts("p", input_key=key, parts=parts, data_hash="d" * 64, rows=rows, columns=2,
                                     contract={"columns": []}, report={"gate": {"passed": True}})


def test_parts_round_trip_in_order_with_their_rows(store, tmp_path):
    snapshot = _save(store, _write_parts(tmp_path / "out"))
    frame = pd.concat([pd.read_parquet(p) for p in store.snapshot_parts(snapshot)], ignore_index=True)
    assert frame["x"].tolist() == [0, 1, 2, 3, 4]
    assert (snapshot.rows, snapshot.report) == (5, {"gate": {"passed": True}, "layout": "parts"})


def test_the_manifest_lists_each_part_with_its_hash_and_rows(store, tmp_path):
    snapshot = _save(store, _write_parts(tmp_path / "out"))
    manifest = json.loads(store.read_snapshot(snapshot))
    assert manifest["layout"] == "parts"
    assert [(e["rows"], e["path"].startswith("snapshots/")) for e in manifest["parts"]] == [(3, True), (2, True)]


def test_parts_are_copied_so_the_written_files_may_go(store, tmp_path):
    parts = _write_parts(tmp_path / "out")
    snapshot = _save(store, parts)
    for part in parts:
        part.unlink()
    assert all(p.is_file() for p in store.snapshot_parts(snapshot))


def test_a_missing_part_is_named_with_the_fix(store, tmp_path):
    snapshot = _save(store, _write_parts(tmp_path / "out"))
    store.snapshot_parts(snapshot)[1].unlink()
    with pytest.raises(ArtifactError, match=r"snapshot part 'snapshots/\w+\.parquet' of data snapshot \d+ is missing "
                                            r"from .*; restore the folder or re-run `loopml run`"):
        store.snapshot_parts(snapshot)


def test_a_truncated_part_is_named_with_the_fix(store, tmp_path):
    snapshot = _save(store, _write_parts(tmp_path / "out"))
    part = store.snapshot_parts(snapshot)[0]
    part.write_bytes(part.read_bytes()[:20])
    with pytest.raises(ArtifactError, match=r"has 20 bytes, \d+ were recorded: the file was changed or truncated "
                                            r"after it was stored. Restore the folder or re-run `loopml run`"):
        store.snapshot_parts(snapshot)


def test_a_single_file_snapshot_is_not_a_parts_snapshot(store):
    snapshot = store.save_snapshot("p", input_key="k", data=b"PAR1 rows", data_hash="d" * 64, rows=10, columns=3,
                                   contract={"columns": []}, report={"gate": {"passed": True}})
    with pytest.raises(StoreError, match=rf"data snapshot {snapshot.id} is a single Parquet file, not a parts "
                                         "snapshot; read it with Store.read_snapshot"):
        store.snapshot_parts(snapshot)


def test_a_row_count_that_does_not_match_the_parts_is_refused(store, tmp_path):
    with pytest.raises(StoreError, match="the 2 snapshot parts hold 5 rows, but rows=6 was given; pass the parts' "
                                         "total row count"):
        _save(store, _write_parts(tmp_path / "out"), rows=6)
    assert store.find_snapshot("p", "k") is None
    assert not list((store.artifacts.root / "snapshots").glob("*"))


def test_an_empty_list_of_parts_is_refused(store):
    with pytest.raises(StoreError, match="a parts snapshot needs at least one part file; received an empty list"):
        _save(store, [], rows=0)


def test_an_empty_part_is_refused(store, tmp_path):
    [empty] = _write_parts(tmp_path / "out", sizes=(0,))
    with pytest.raises(StoreError, match=r"snapshot part .*part\.0\.parquet holds no rows; every part of a snapshot "
                                         "must hold rows"):
        _save(store, [empty], rows=0)


def test_a_part_that_does_not_exist_is_refused(store, tmp_path):
    with pytest.raises(StoreError, match=r"snapshot part .*nowhere\.parquet does not exist; pass the Parquet part "
                                         "files that were written"):
        _save(store, [tmp_path / "nowhere.parquet"], rows=1)


def test_snapshot_frame_reads_every_part_or_the_same_seeded_sample_of_them(store, tmp_path):
    from loopml.data.snapshot import snapshot_frame

    snapshot = _save(store, _write_parts(tmp_path / "out", sizes=(40, 60)), rows=100)
    assert snapshot_frame(store, snapshot)["x"].tolist() == list(range(100))
    sample = snapshot_frame(store, snapshot, max_rows=30, seed=3)
    assert len(sample) == 30 and sample["x"].is_monotonic_increasing and sample["x"].is_unique
    assert sample.equals(snapshot_frame(store, snapshot, max_rows=30, seed=3))
    assert {0, 1} == {int(x >= 40) for x in sample["x"]}  # drawn across both parts
