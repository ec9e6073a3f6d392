"""The serving app over real HTTP: predictions, contract checks, feedback, probes, deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from loopml.errors import ModelError
from loopml.operations import create_app, load_served_model
from loopml.spec import GoalSpec
from loopml.store import Store
from loopml.store import schema as t


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as a JSON client sends them (numpy scalars become int/float/str)."""
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in frame.to_dict("records")]


def _logged(store: Store, prediction_id: str, wait_s: float = 5.0) -> dict | None:
    """The logged prediction; the log commits in groups off the request path, so wait for it a little."""
    deadline = time.monotonic() + wait_s
    while True:
        with store.engine.connect() as conn:
            row = conn.execute(t.predictions.select().where(t.predictions.c.id == prediction_id)).mappings().first()
        if row or time.monotonic() > deadline:
            return dict(row) if row else None
        time.sleep(0.02)


def _predict_one(client: httpx.Client, row: dict) -> str:
    r = client.post("/predict", json={"row": row})
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]["id"]


@pytest.fixture
def good_row(served) -> dict:
    return _records(served.holdout.head(1))[0]


# -- probes and docs -----------------------------------------------------------------------------


def test_health_and_ready(client, served):
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "model_version": served.version.version}


def test_not_ready_without_a_champion(served, run_app):
    with pytest.raises(ModelError, match="project 'nobody' has no champion yet; run `loopml run` first"):
        load_served_model(served.store, "nobody")
    with run_app(create_app(served.store, "nobody")) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        r = httpx.get(f"{url}/ready")
        assert r.status_code == 503
        assert "has no champion yet" in r.json()["detail"]
        assert httpx.post(f"{url}/predict", json={"row": {"age": 1}}).status_code == 503


def test_openapi_lists_typed_endpoints(client):
    doc = client.get("/openapi.json").json()
    assert "post" in doc["paths"]["/predict"]
    assert {"/feedback", "/health", "/ready"} <= set(doc["paths"])
    assert {"PredictRequest", "PredictResponse", "Prediction", "ProblemResponse"} <= set(doc["components"]["schemas"])


# -- predictions ---------------------------------------------------------------------------------


def test_single_row_is_predicted_and_logged(client, served, good_row):
    r = client.post("/predict", json={"row": good_row})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == served.version.version
    (p,) = body["predictions"]
    assert len(p["id"]) == 32 and int(p["id"], 16) >= 0
    assert p["prediction"] in {"yes", "no"}
    assert 0.0 <= p["probability"] <= 1.0
    assert p["probabilities"] is None

    logged = _logged(served.store, p["id"])
    assert logged is not None
    assert logged["features"] == good_row
    assert logged["prediction"] == p["prediction"]
    assert logged["probability"] == pytest.approx(p["probability"])
    assert logged["latency_ms"] >= 0
    assert logged["model_version_id"] == served.version.id


def test_batch_matches_the_model(client, served):
    frame = served.holdout.head(50)
    r = client.post("/predict", json={"rows": _records(frame)})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len({p["id"] for p in predictions}) == 50
    # The served decision is the model's, threshold included.
    assert [p["prediction"] for p in predictions] == served.model.predict(frame).tolist()
    expected = served.model.predict_proba(frame)[:, 1]
    assert [p["probability"] for p in predictions] == pytest.approx(expected.tolist())
    assert all(_logged(served.store, p["id"]) for p in predictions)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_responses(served, run_app, register, toy_frame, task):
    frame = toy_frame().drop(columns=["flag"])
    target, drop, goal = (("kind", "amount", GoalSpec(metric="accuracy", at_least=0.5)) if task == "multiclass"
                          else ("amount", "kind", GoalSpec(metric="rmse", at_most=1.0)))
    model, _, _ = register(served.store, f"toy-{task}", frame.drop(columns=[drop]), target=target, task=task, goal=goal)
    X = frame.drop(columns=["kind", "amount"]).head(3)
    with run_app(create_app(served.store, f"toy-{task}")) as url:
        r = httpx.post(f"{url}/predict", json={"rows": _records(X)})
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        if task == "multiclass":
            assert [p["prediction"] for p in predictions] == model.predict(X).tolist()
            for p in predictions:
                assert set(p["probabilities"]) == {"a", "b", "c"}
                assert sum(p["probabilities"].values()) == pytest.approx(1.0)
                assert p["probability"] == pytest.approx(p["probabilities"][p["prediction"]])
            bad, good, expected = "d", "c", "the model's classes are: a, b, c"
        else:
            assert [p["prediction"] for p in predictions] == pytest.approx(model.predict(X).tolist())
            assert all(p["probability"] is None and p["probabilities"] is None for p in predictions)
            bad, good, expected = "high", 3.5, "a regression label must be a finite number; got 'high'"
        fb = {"prediction_id": predictions[0]["id"]}
        r = httpx.post(f"{url}/feedback", json={**fb, "label": bad})
        assert r.status_code == 422 and expected in r.json()["detail"][0]["reason"]
        assert httpx.post(f"{url}/feedback", json={**fb, "label": good}).status_code == 200


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        ({"age": "old"}, "age", "expected an integer, found str 'old'"),
        ({"age": "41"}, "age", "expected an integer, found str '41'"),
        ({"age": 41.5}, "age", "expected an integer"),
        ({"rr": None}, "rr", "null not allowed"),
        ({"state": "st99"}, "state", "unknown category 'st99'"),
        ({"joblost": {"nested": 1}}, "joblost", "expected a string"),
        ({"colour": "red"}, "colour", "unknown column"),
        ({"ui": "yes"}, "ui", "this is the target"),
    ],
)
def test_contract_violations_are_422(client, good_row, change, column, reason):
    r = client.post("/predict", json={"rows": [good_row, {**good_row, **change}]})
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert (problem["row"], problem["column"]) == (1, column)
    assert reason in problem["reason"]


def test_missing_column_is_422(client, good_row):
    row = {k: v for k, v in good_row.items() if k != "age"}
    r = client.post("/predict", json={"row": row})
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["row"] == 0 and problem["column"] == "age"
    assert problem["reason"].startswith("missing column; expected an integer")


def test_nan_in_raw_json_is_422(client, good_row):
    # Python's json (and so FastAPI) accepts a bare NaN; the contract treats it as a missing value.
    body = json.dumps({"row": {**good_row, "age": float("nan")}})
    assert "NaN" in body
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert (problem["row"], problem["column"]) == (0, "age")
    assert "null not allowed" in problem["reason"]


def test_oversized_batch_is_413(served, run_app, good_row):
    with run_app(create_app(served.store, served.project, max_rows=5)) as url:
        r = httpx.post(f"{url}/predict", json={"rows": [good_row] * 6})
        assert httpx.post(f"{url}/predict", json={"rows": [good_row] * 5}).status_code == 200
    assert r.status_code == 413
    (problem,) = r.json()["detail"]
    assert "6 rows is over the limit of 5 rows per request" in problem["reason"]


@pytest.mark.parametrize(
    ("body", "row", "reason"),
    [
        (b"{not json", None, "the body is not valid JSON"),
        (b"", None, "the body is empty; send a JSON object"),
        (b"null", None, "body: Input should be an object"),
        (b"[1, 2]", None, "body: Input should be an object"),
        (b'{"rows": "abc"}', None, "body.rows: Input should be a valid array"),
        (b'{"rows": [{"age": 1}, "a string"]}', 1, "body.rows[1]: Input should be an object"),
        (b'{"row": "a string"}', 0, "body.row: Input should be an object"),
        (b'{"rows": []}', None, "body.rows: List should have at least 1 item"),
        (b"{}", None, "give exactly one of 'rows' (a list of records) or 'row' (one record)"),
        (b'{"row": {}, "rows": [{}]}', None, "give exactly one of 'rows'"),
        (b'{"row": {}, "model": 2}', None, "body.model: Extra inputs are not permitted"),
    ],
)
def test_malformed_bodies_are_422(client, body, row, reason):
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert all(set(p) == {"row", "column", "reason"} for p in detail)
    assert any(p["row"] == row and reason in p["reason"] for p in detail), detail


# -- feedback ------------------------------------------------------------------------------------


def test_feedback_is_recorded_once(client, served, good_row):
    prediction_id = _predict_one(client, good_row)
    r = client.post("/feedback", json={"prediction_id": prediction_id, "label": "yes"})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "recorded"}
    labeled = {p["id"]: p["label"] for p in served.store.labeled_predictions(served.project)}
    assert labeled[prediction_id] == "yes"

    again = client.post("/feedback", json={"prediction_id": prediction_id, "label": "no"})
    assert again.status_code == 409
    assert "already has a label" in again.json()["detail"]


def test_feedback_for_an_unknown_prediction_is_404(client):
    r = client.post("/feedback", json={"prediction_id": "0" * 32, "label": "no"})
    assert r.status_code == 404
    assert r.json()["detail"].startswith("unknown prediction_id '00000000")


@pytest.mark.parametrize("label", ["maybe", 1, True])
def test_feedback_with_an_unknown_label_is_422(client, good_row, label):
    prediction_id = _predict_one(client, good_row)
    r = client.post("/feedback", json={"prediction_id": prediction_id, "label": label})
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["column"] == "label"
    assert "the model's classes are: no, yes" in problem["reason"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"prediction_id": "x"}, "body.label: Field required"),
        ({"prediction_id": "x", "label": None}, "body.label: expected a string, number or boolean; got NoneType"),
        ({"prediction_id": "x", "label": {"a": 1}}, "body.label: expected a string, number or boolean; got dict"),
        ({"label": "yes"}, "body.prediction_id: Field required"),
    ],
)
def test_feedback_body_must_be_typed(client, body, reason):
    r = client.post("/feedback", json=body)
    assert r.status_code == 422
    assert [p["reason"] for p in r.json()["detail"]] == [reason]


# -- serve() -------------------------------------------------------------------------------------


def test_serve_records_and_stops_its_deployment(served, unused_port):
    port = unused_port
    code = ("import sys; from loopml.store import Store; from loopml.operations import serve; "
            "serve(Store.open(sys.argv[1]), sys.argv[2], port=int(sys.argv[3]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(served.root), served.project, str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "the server exited early"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGINT)  # uvicorn's graceful stop, as Ctrl-C
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with served.store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.deployments).where(t.deployments.c.port == port)).mappings().all()
    assert len(rows) == 1
    assert rows[0]["model_version_id"] == served.version.id
    assert rows[0]["pid"] == proc.pid
    assert rows[0]["stopped_at"] is not None
