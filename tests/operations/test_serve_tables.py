"""POST /predict with Arrow IPC stream and Parquet bodies: the same contract, the same predictions as JSON."""

from __future__ import annotations

import io

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.operations import create_app

ARROW = "application/vnd.apache.arrow.stream"


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=7)  # several record batches, as a streaming client sends
    return sink.getvalue().to_pybytes()


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in frame.to_dict("records")]


@pytest.fixture(scope="module")
def frame(served) -> pd.DataFrame:
    return served.holdout.head(40)


@pytest.fixture(scope="module")
def table(frame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.fixture(scope="module")
def from_json(client, frame) -> list[dict]:
    r = client.post("/predict", json={"rows": _records(frame)})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


@pytest.mark.parametrize(("content_type", "encode"), [
    (ARROW, _arrow),
    ("application/vnd.apache.parquet", _parquet),
    ("application/x-parquet", _parquet),
])
def test_a_table_body_predicts_as_json_does(client, served, table, from_json, content_type, encode):
    r = client.post("/predict", content=encode(table), headers={"content-type": content_type})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == served.version.version
    predictions = r.json()["predictions"]
    assert [p["prediction"] for p in predictions] == [p["prediction"] for p in from_json]
    assert [p["probability"] for p in predictions] == pytest.approx([p["probability"] for p in from_json])


def test_a_bad_value_in_a_table_names_its_row_and_column(client, table):
    ages = pa.array(["41"] + [str(a) for a in table.column("age").to_pylist()[1:]])
    bad = table.set_column(table.schema.get_field_index("age"), "age", ages)
    r = client.post("/predict", content=_arrow(bad), headers={"content-type": ARROW})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert (detail[0]["row"], detail[0]["column"]) == (0, "age")
    assert detail[0]["reason"] == "expected an integer, found str '41'"


@pytest.mark.parametrize(("content_type", "reason"), [
    (ARROW, "the body is not a readable Arrow IPC stream: "),
    ("application/vnd.apache.parquet", "the body is not a readable Parquet file: "),
])
@pytest.mark.parametrize("body", [b"PAR1 not really", b"\xff" * 64, b"{\"row\": {}}"])
def test_an_unreadable_table_is_422(client, content_type, reason, body):
    r = client.post("/predict", content=body, headers={"content-type": content_type})
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["reason"].startswith(reason)


def test_an_empty_table_body_is_422(client):
    r = client.post("/predict", content=b"", headers={"content-type": ARROW})
    assert r.status_code == 422
    assert r.json()["detail"][0]["reason"] == "the body is empty; send an Arrow IPC stream with one row per record"


@pytest.mark.parametrize("content_type,encode,name", [(ARROW, _arrow, "Arrow IPC stream"),
                                                      ("application/x-parquet", _parquet, "Parquet file")])
def test_a_table_of_no_rows_is_422(client, table, content_type, encode, name):
    r = client.post("/predict", content=encode(table.slice(0, 0)), headers={"content-type": content_type})
    assert r.status_code == 422
    assert r.json()["detail"][0]["reason"] == f"the {name} holds no rows; send at least one record"


def test_duplicate_columns_are_422(client, table):
    doubled = pa.Table.from_arrays([table.column("age"), table.column("age")], names=["age", "age"])
    r = client.post("/predict", content=_parquet(doubled), headers={"content-type": "application/x-parquet"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["reason"] == "the Parquet file has duplicate columns: age; send each column once"


@pytest.mark.parametrize(("content_type", "encode", "found"), [
    (ARROW, _arrow, "more than 10"), ("application/vnd.apache.parquet", _parquet, "40")])
def test_a_table_over_max_rows_is_413(served, run_app, table, content_type, encode, found):
    with run_app(create_app(served.store, served.project, max_rows=10)) as url:
        r = httpx.post(f"{url}/predict", content=encode(table), headers={"content-type": content_type})
    assert r.status_code == 413
    assert r.json()["detail"][0]["reason"] == (f"a batch of {found} rows is over the limit of 10 rows per request; "
                                               "send smaller batches")


@pytest.mark.parametrize("content_type", ["text/csv", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_an_unknown_content_type_is_415_naming_the_accepted_ones(client, content_type):
    r = client.post("/predict", content=b"age=41", headers={"content-type": content_type})
    assert r.status_code == 415
    (problem,) = r.json()["detail"]
    assert problem["reason"] == (f"unsupported Content-Type '{content_type}'; send one of: application/json, "
                                 "application/vnd.apache.arrow.stream, application/vnd.apache.parquet, "
                                 "application/x-parquet")


def test_feedback_takes_json_only(client):
    r = client.post("/feedback", content=b"x", headers={"content-type": ARROW})
    assert r.status_code == 415
    assert r.json()["detail"][0]["reason"] == "send feedback as application/json"
