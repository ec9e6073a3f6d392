"""The prediction log: group commits, feedback by id, back-pressure, and what survives SIGTERM and SIGKILL."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from loopml.errors import ConflictError, NotFoundError, SpecError, StoreError
from loopml.operations.predlog import LogBackpressure, PredictionLog
from loopml.spec import GoalSpec
from loopml.store import ModelVersion, Store
from loopml.store import schema as t

from .conftest import free_port

PROJECT = "benefits-log"
FLUSH_INTERVAL_S = 0.05  # the default the server runs with
KILL_MARGIN_S = 1.0  # one write on a busy shared machine, with room to spare


def _rows(n: int) -> list[dict]:
    return [{"id": uuid.uuid4().hex, "features": {"age": 41, "state": "st42"}, "prediction": "yes",
             "probability": 0.8, "latency_ms": 0.3} for _ in range(n)]


def _stored_ids(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(t.predictions.c.id)).scalars())


def _fake_model(store: Store) -> ModelVersion:
    snap = store.save_snapshot(PROJECT, input_key="k", data=b"rows", data_hash="h", rows=1, columns=1, contract={},
                               report={})
    return store.register_model(PROJECT, run_id=None, snapshot_id=snap.id, input_key="k", model_bytes=b"model",
                                spec_hash="s", family="linear", metrics={}, operating_point={}, lineage={})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path)
    yield s
    s.close()


@pytest.fixture
def pg_store(tmp_path: Path, postgres_url: str) -> Iterator[Store]:
    s = Store.open(tmp_path, url=postgres_url)
    yield s
    s.close()


@pytest.fixture
def mv(store: Store) -> ModelVersion:
    return _fake_model(store)


@pytest.fixture
def log(store: Store) -> Iterator[PredictionLog]:
    log = PredictionLog(store, PROJECT, flush_interval_s=60)  # only flush(), max_batch or close() write
    log.start()
    yield log
    log.close()


# -- writing ---------------------------------------------------------------------------------------


def test_flush_writes_every_appended_row(store, mv, log):
    rows = _rows(3)
    log.append(mv.id, rows)
    log.flush()
    with store.engine.connect() as conn:
        stored = conn.execute(t.predictions.select().order_by(t.predictions.c.seq)).mappings().all()
    assert [r["id"] for r in stored] == [r["id"] for r in rows]
    assert stored[0]["features"] == {"age": 41, "state": "st42"}
    assert stored[0]["model_version_id"] == mv.id and stored[0]["project"] == PROJECT


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_many_appends_are_written_in_few_transactions(request, backend):
    s = request.getfixturevalue("store" if backend == "sqlite" else "pg_store")
    model = _fake_model(s)
    log = PredictionLog(s, PROJECT, flush_interval_s=0.2)
    log.start()
    for row in _rows(1000):  # 1,000 requests of one row each
        log.append(model.id, [row])
    log.close()
    assert log.rows_written == 1000 and s.prediction_count(PROJECT) == 1000
    assert log.batches_written <= 5


def test_a_full_batch_is_written_without_waiting_for_the_interval(store, mv):
    log = PredictionLog(store, PROJECT, flush_interval_s=60, max_batch=100)
    log.start()
    for row in _rows(250):
        log.append(mv.id, [row])
    deadline = time.monotonic() + 10
    while log.rows_written < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (log.rows_written, log.batches_written) == (200, 2)  # the last 50 wait for the interval
    log.close()
    assert store.prediction_count(PROJECT) == 250


def test_rows_are_written_within_the_interval_without_a_flush(store, mv):
    log = PredictionLog(store, PROJECT, flush_interval_s=0.1)
    log.start()
    start = time.monotonic()
    log.append(mv.id, _rows(1))
    while store.prediction_count(PROJECT) == 0:
        assert time.monotonic() - start < 0.1 + KILL_MARGIN_S, "the row was not written within the interval"
        time.sleep(0.01)
    log.close()


def test_close_writes_everything_and_can_be_called_twice(store, mv):
    log = PredictionLog(store, PROJECT, flush_interval_s=60)
    log.start()
    log.append(mv.id, _rows(7))
    log.close()
    log.close()
    assert store.prediction_count(PROJECT) == 7
    with pytest.raises(StoreError, match="this prediction log is closed and takes no more predictions"):
        log.append(mv.id, _rows(1))


def test_rows_appended_before_start_are_written_at_close(store, mv):
    log = PredictionLog(store, PROJECT)
    log.append(mv.id, _rows(2))
    log.close()
    assert store.prediction_count(PROJECT) == 2


def test_a_row_without_an_id_is_refused_at_append(log, mv):
    with pytest.raises(StoreError, match=r"a prediction to log lacks id; each row needs id, features and prediction"):
        log.append(mv.id, [{"features": {}, "prediction": "yes"}])
    assert log.rows_pending == 0


def test_a_row_the_store_refuses_is_logged_and_does_not_block_the_others(store, mv, log, caplog):
    rows = _rows(4)
    rows[2]["features"] = {"age": object()}  # cannot be stored as JSON
    log.append(mv.id, rows)
    with caplog.at_level(logging.ERROR, logger="loopml.operations.predlog"):
        log.flush(timeout=10)
    assert _stored_ids(store) == {rows[i]["id"] for i in (0, 1, 3)}
    assert (log.rows_written, log.rows_failed) == (3, 1)
    assert f"the store refuses prediction {rows[2]['id']} for good" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flush_interval_s": 0}, "flush_interval_s must be a positive number of seconds; got 0"),
        ({"max_batch": 0}, "max_batch must be at least 1 row; got 0"),
        ({"max_batch": 10, "max_pending": 5}, r"max_pending \(5\) must be at least max_batch \(10\)"),
    ],
)
def test_bad_settings_are_refused(store, kwargs, message):
    with pytest.raises(SpecError, match=message):
        PredictionLog(store, PROJECT, **kwargs)


# -- back-pressure and an unavailable store --------------------------------------------------------


def test_past_max_pending_append_refuses_until_the_store_catches_up(store, mv):
    log = PredictionLog(store, PROJECT, max_batch=10, max_pending=10)  # not started: nothing drains
    log.append(mv.id, _rows(10))
    with pytest.raises(LogBackpressure, match=r"the prediction log holds 10 rows not yet written to the store and 1 "
                                              r"more would pass its limit of 10; the store is slow or unavailable"):
        log.append(mv.id, _rows(1))
    log.flush()
    log.append(mv.id, _rows(1))
    log.close()
    assert store.prediction_count(PROJECT) == 11


def test_a_locked_database_delays_the_write_and_loses_nothing(store, mv, log):
    rows = _rows(5)
    blocker = sqlite3.connect(store.engine.url.database)
    blocker.execute("BEGIN EXCLUSIVE")  # as another process writing for a long time
    try:
        log.append(mv.id, rows)
        with pytest.raises(StoreError, match=r"5 predictions were still not written after 0.3 s; the store is not "
                                             r"accepting writes"):
            log.flush(timeout=0.3)
    finally:
        blocker.rollback()
        blocker.close()
    log.flush(timeout=15)
    assert _stored_ids(store) == {r["id"] for r in rows}


@pytest.mark.postgres
def test_a_lost_connection_is_retried_and_loses_nothing(pg_store, postgres_url, caplog):
    import psycopg

    model = _fake_model(pg_store)
    log = PredictionLog(pg_store, PROJECT, flush_interval_s=60)
    log.start()
    log.append(model.id, _rows(1))
    log.flush()  # the log's connection is now open, pooled
    database = pg_store.engine.url.database
    with psycopg.connect(f"host=127.0.0.1 port=5432 dbname={database}", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
    rows = _rows(3)
    log.append(model.id, rows)
    with caplog.at_level(logging.WARNING, logger="loopml.operations.predlog"):
        log.flush(timeout=20)
    log.close()
    assert {r["id"] for r in rows} <= _stored_ids(pg_store)
    assert pg_store.prediction_count(PROJECT) == 4
    assert "writing 3 predictions failed" in caplog.text and "they are kept and retried" in caplog.text


# -- feedback --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_feedback_for_a_prediction_still_in_the_log_is_recorded(request, backend):
    s = request.getfixturevalue("store" if backend == "sqlite" else "pg_store")
    model = _fake_model(s)
    log = PredictionLog(s, PROJECT, flush_interval_s=60)
    log.start()
    [row] = _rows(1)
    log.append(model.id, [row])
    log.record_feedback(row["id"], "no")
    [labeled] = s.labeled_predictions(PROJECT)
    assert (labeled["id"], labeled["label"]) == (row["id"], "no")
    log.close()


def test_feedback_for_a_prediction_another_worker_still_holds_is_recorded(store, mv):
    # Two workers, two logs, one store: the label reaches the worker that did not answer the prediction.
    answered_by, labeled_by = (PredictionLog(store, PROJECT, flush_interval_s=0.2) for _ in range(2))
    answered_by.start()
    [row] = _rows(1)
    answered_by.append(mv.id, [row])
    labeled_by.record_feedback(row["id"], "yes")
    assert [p["id"] for p in store.labeled_predictions(PROJECT)] == [row["id"]]
    answered_by.close()
    labeled_by.close()


def test_late_and_partial_feedback_labels_only_the_predictions_it_names(store, mv, log):
    rows = _rows(5)
    log.append(mv.id, rows)
    log.flush()
    log.record_feedback(rows[3]["id"], "yes")
    log.record_feedback(rows[1]["id"], "no")
    assert [(p["id"], p["label"]) for p in store.labeled_predictions(PROJECT)] == [
        (rows[3]["id"], "yes"), (rows[1]["id"], "no")]
    assert store.prediction_count(PROJECT) == 5


def test_a_second_label_is_a_conflict(mv, log):
    [row] = _rows(1)
    log.append(mv.id, [row])
    log.record_feedback(row["id"], "yes")
    with pytest.raises(ConflictError, match=f"prediction '{row['id']}' already has a label; a label is recorded once"):
        log.record_feedback(row["id"], "no")


def test_feedback_for_an_unknown_id_is_not_found(log):
    with pytest.raises(NotFoundError, match=f"unknown prediction_id '{'0' * 32}': no prediction with this id was "
                                            f"logged for project '{PROJECT}'"):
        log.record_feedback("0" * 32, "yes")


# -- a real server, stopped under load -------------------------------------------------------------


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory, benefits_csv, register) -> Path:
    """A project folder with a spec and a trained champion, as `loopml run` leaves it."""
    folder = tmp_path_factory.mktemp("served")
    frame = pd.read_csv(benefits_csv)
    frame.head(1500).to_csv(folder / "benefits.csv", index=False)
    spec = {"project": PROJECT,
            "business": {"problem": "Who applies for unemployment insurance?", "task": "binary", "target": "ui",
                         "positive": "yes", "goal": {"metric": "recall", "at_least": 0.6}},
            "data": {"sources": [{"name": "survey", "path": "benefits.csv"}]}}
    (folder / "loopml.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    store = Store.open(folder)
    register(store, PROJECT, frame.head(1500), target="ui", task="binary", goal=GoalSpec(metric="recall", at_least=0.6),
             positive="yes")
    store.close()
    return folder


@pytest.fixture(scope="module")
def request_rows(benefits_csv) -> list[dict]:
    return pd.read_csv(benefits_csv).iloc[1500:1700].drop(columns=["ui"]).to_dict(orient="records")


class _Load:
    """Client threads sending single-row /predict requests; remembers when each 200 came back."""

    def __init__(self, url: str, rows: list[dict], threads: int = 2):
        self.acked: list[tuple[str, float]] = []
        self._url, self._rows = url, rows
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> _Load:
        for th in self._threads:
            th.start()
        return self

    def __exit__(self, *exc) -> None:
        for th in self._threads:
            th.join(30)

    def _send(self, offset: int) -> None:
        with httpx.Client(base_url=self._url, timeout=10) as client:
            i = offset
            while True:
                try:
                    r = client.post("/predict", json={"row": self._rows[i % len(self._rows)]})
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    with self._lock:
                        self.acked.append((r.json()["predictions"][0]["id"], time.monotonic()))
                i += 1

    def wait_for(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            assert time.monotonic() < deadline, f"only {len(self.acked)} predictions answered in {timeout} s"
            time.sleep(0.01)


def _start_server(project_dir: Path, *, flush_interval_s: float | None = None) -> tuple[subprocess.Popen, str]:
    """``loopml serve`` in a real process; with ``flush_interval_s``, its prediction log waits that long."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS")}
    command = [sys.executable, "-m", "loopml", "serve", "--port", str(port)]
    if flush_interval_s is not None:
        # The same CLI, with a longer default interval: rows are sure to be waiting when the signal comes.
        command[1:3] = ["-c", "import sys; from loopml.operations.predlog import PredictionLog; "
                        f"PredictionLog.__init__.__kwdefaults__['flush_interval_s'] = {flush_interval_s}; "
                        "from loopml.cli import app; app(prog_name='loopml')"]
    proc = subprocess.Popen(command, cwd=project_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"loopml serve exited early: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"loopml serve did not become ready: {proc.stderr.read()}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen, sig: signal.Signals) -> float:
    """Send ``sig`` to the server; returns when it was sent."""
    at = time.monotonic()
    os.kill(proc.pid, sig)
    return at


def _ids_in_store(project_dir: Path) -> set[str]:
    store = Store.open(project_dir)
    try:
        return _stored_ids(store)
    finally:
        store.close()


def test_sigterm_under_load_keeps_every_answered_prediction(project_dir, request_rows):
    proc, url = _start_server(project_dir, flush_interval_s=30)
    before = _ids_in_store(project_dir)
    try:
        with _Load(url, request_rows) as load:
            load.wait_for(300)
            assert _ids_in_store(project_dir) == before  # every answer so far waits in the log
            _stop(proc, signal.SIGTERM)
            proc.wait(timeout=20)  # uvicorn drains and runs the app's shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acked = {pid for pid, _ in load.acked}
    missing = acked - (_ids_in_store(project_dir) - before)
    assert not missing, f"{len(missing)} of {len(acked)} answered predictions are not in the store"


def test_sigkill_loses_at_most_the_last_interval(project_dir, request_rows):
    proc, url = _start_server(project_dir)
    try:
        with _Load(url, request_rows) as load:
            load.wait_for(50)
            time.sleep(FLUSH_INTERVAL_S + KILL_MARGIN_S + 0.5)  # so that some answers are older than the bound
            killed_at = _stop(proc, signal.SIGKILL)
            proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stored = _ids_in_store(project_dir)
    cutoff_age = FLUSH_INTERVAL_S + KILL_MARGIN_S
    cutoff = killed_at - cutoff_age
    old_enough = {pid for pid, at in load.acked if at < cutoff}
    assert len(old_enough) >= 50
    missing = old_enough - stored
    assert not missing, f"{len(missing)} predictions answered over {cutoff_age:.2f} s before the kill are not stored"


def test_a_full_log_makes_predict_answer_503(project_dir, request_rows, run_app):
    from loopml.operations import create_app

    store = Store.open(project_dir)
    app = create_app(store, PROJECT)
    try:
        with run_app(app) as url:
            # A log that holds one row and is never started: the store "falls behind" at once.
            app.state.prediction_log = PredictionLog(store, PROJECT, max_batch=1, max_pending=1)
            assert httpx.post(f"{url}/predict", json={"row": request_rows[0]}).status_code == 200
            r = httpx.post(f"{url}/predict", json={"row": request_rows[1]})
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
            assert "the prediction log holds 1 row not yet written" in r.json()["detail"]
    finally:
        store.close()


def test_sigterm_ends_the_server_cleanly_and_closes_its_deployment(project_dir):
    proc, url = _start_server(project_dir)
    try:
        _stop(proc, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = Store.open(project_dir)
    try:
        with store.engine.connect() as conn:
            stopped = conn.execute(sa.select(t.deployments.c.stopped_at)
                                   .order_by(t.deployments.c.id.desc()).limit(1)).scalar_one()
    finally:
        store.close()
    assert stopped is not None  # this server's deployment (a SIGKILLed one stays open: it never got to say)
