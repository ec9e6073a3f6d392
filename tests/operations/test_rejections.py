"""Requests refused at serving's door (422): recorded by column and kind, counted per monitoring window.

A real model trained on the benefits table is served by uvicorn on loopback; clients send rows that break
its data contract, then `monitor_project` counts them in the window whose span they fell in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from fastapi import FastAPI

from loopml.data.contract import FieldError, infer_contract
from loopml.data.snapshot import frame_hash, frame_to_parquet
from loopml.model.artifact import TrainedModel
from loopml.model.search import SearchPlan, search, split_holdout
from loopml.operations import create_app
from loopml.operations.monitor import monitor_project
from loopml.operations.predlog import MAX_REJECTION_GROUPS, RejectionLog, rejection_rows
from loopml.report import monitoring_report
from loopml.spec import GoalSpec, ProjectSpec, load_spec
from loopml.store import Store

BENCH = Path(__file__).resolve().parents[1] / "bench_data"
TARGET = "ui"
WINDOW = 10


@dataclass(frozen=True)
class Trained:
    model: TrainedModel
    train: pd.DataFrame
    records: list[dict[str, Any]]  # rows the model has not seen, as a JSON client sends them


@pytest.fixture(scope="module")
def trained() -> Trained:
    frame = pd.read_parquet(BENCH / "benefits.parquet").dropna(subset=[TARGET])
    train, holdout = split_holdout(frame, TARGET, "binary", 0.2, seed=0)
    model = search(train, target=TARGET, task="binary", goal=GoalSpec(metric="accuracy", at_least=0.5),
                   positive="yes", plan=SearchPlan(families=("linear",), folds=3)).model
    records = json.loads(holdout.drop(columns=[TARGET]).head(40).to_json(orient="records"))
    return Trained(model, train, records)


@dataclass
class Project:
    spec: ProjectSpec
    store: Store
    version_id: int


def _make(root: Path, trained: Trained, monitor: dict[str, Any], url: str | None = None) -> Project:
    """A project folder with a spec, its store and the trained model as champion."""
    trained.train.to_parquet(root / "train.parquet")
    doc = {"project": "refused", "business": {"problem": "refusals", "task": "binary", "target": TARGET,
                                              "positive": "yes", "goal": {"metric": "accuracy", "at_least": 0.5}},
           "data": {"sources": [{"name": "train", "path": "train.parquet"}]},
           "operations": {"monitor": monitor}}
    (root / "loopml.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    spec = load_spec(root, check_data=False)
    store = Store.open(root, url=url)
    train = trained.train
    contract = infer_contract(train, target=TARGET, task="binary")
    snapshot = store.save_snapshot(spec.project, input_key="k", data=frame_to_parquet(train),
                                   data_hash=frame_hash(train), rows=len(train), columns=train.shape[1],
                                   contract=contract.model_dump(mode="json"), report={})
    version = store.register_model(spec.project, run_id=None, snapshot_id=snapshot.id, input_key="k",
                                   model_bytes=trained.model.to_bytes(), spec_hash="test",
                                   family=trained.model.family, metrics={}, operating_point={}, lineage={})
    store.set_alias(spec.project, "champion", version.version, actor="test", reason="fixture")
    return Project(spec, store, version.id)


COUNT = {"window": WINDOW, "quality": {"rejected": 0.2}}


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request, tmp_path: Path, trained: Trained) -> Iterator[Project]:
    """Count windows of 10 predictions, on SQLite and on PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    p = _make(tmp_path, trained, COUNT, url)
    yield p
    p.store.close()


@pytest.fixture
def local(tmp_path: Path, trained: Trained) -> Iterator[Project]:
    """Count windows of 10 predictions, on SQLite."""
    p = _make(tmp_path, trained, COUNT)
    yield p
    p.store.close()


def _flush(app: FastAPI) -> None:
    app.state.prediction_log.flush(timeout=30)
    app.state.rejection_log.flush(timeout=30)


def _bad_requests(url: str, records: list[dict[str, Any]]) -> None:
    """Three refused requests: a batch of three bad rows, one row with a misspelt column, a body that is not JSON."""
    batch = [{**records[0], "age": "old"}, {**records[1], "sex": "other"},
             {**{k: v for k, v in records[2].items() if k != "tenure"}, "age": None}]
    misspelt = {"agee" if k == "age" else k: v for k, v in records[3].items()}
    for response in (httpx.post(f"{url}/predict", json={"rows": batch}),
                     httpx.post(f"{url}/predict", json={"row": misspelt}),
                     httpx.post(f"{url}/predict", content=b"{not json", headers={"content-type": "application/json"})):
        assert response.status_code == 422, response.text


def _groups(rejected: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {(g["column"], g["kind"], g["requests"], g["rows"]) for g in rejected["columns"]}


# -- serving records, monitoring counts ------------------------------------------------------------
def test_refused_requests_are_counted_per_column_and_kind_in_their_window(project, trained, run_app):
    app = create_app(project.store, project.spec.project)
    with run_app(app) as url:
        _bad_requests(url, trained.records)
        assert httpx.post(f"{url}/predict", json={"rows": trained.records[10:20]}).status_code == 200
        _flush(app)
    result = monitor_project(project.spec, project.store)
    [window] = result.windows
    rejected = window.metrics["rejected"]
    assert (rejected["requests"], rejected["rows"], rejected["unsized"]) == (3, 4, 1)
    assert _groups(rejected) == {
        ("age", "type", 1, 1), ("sex", "unknown_category", 1, 1), ("tenure", "missing_column", 1, 1),
        ("age", "null", 1, 1), ("agee", "unknown_column", 1, 1), ("age", "missing_column", 1, 1),
        (None, "body", 1, 0)}
    example = next(g["example"] for g in rejected["columns"] if g["kind"] == "type")
    assert example == "expected an integer, found str 'old'"
    # 4 refused rows and one unreadable body against 10 answered rows.
    assert rejected["share"] == pytest.approx(5 / 15)
    [alert] = [a for a in result.alerts if a.kind == "data_quality"]
    assert {"column": None, "measure": "rejected", "value": pytest.approx(5 / 15), "limit": 0.2, "requests": 3,
            "rows": 5} in alert.detail["breaches"]
    assert "rejected 33.3% > 20% (3 request(s) refused;" in alert.summary
    assert window.metrics["verdicts"]["data_quality"] is True


def test_a_refusal_after_the_window_waits_for_the_next_and_the_first_is_not_recomputed(project, trained, run_app):
    app = create_app(project.store, project.spec.project)
    with run_app(app) as url:
        assert httpx.post(f"{url}/predict", json={"rows": trained.records[:WINDOW]}).status_code == 200
        _flush(app)
        [first] = monitor_project(project.spec, project.store).windows
        assert first.metrics["rejected"]["requests"] == 0 and first.metrics["verdicts"]["data_quality"] is False
        assert httpx.post(f"{url}/predict", json={"row": {**trained.records[0], "age": 41.5}}).status_code == 422
        _flush(app)
        waiting = monitor_project(project.spec, project.store)
        assert waiting.windows == []
        assert "1 refused request(s) logged after the last window wait for the next one" in waiting.notes
        assert httpx.post(f"{url}/predict", json={"rows": trained.records[WINDOW:2 * WINDOW]}).status_code == 200
        _flush(app)
    [second] = monitor_project(project.spec, project.store).windows
    assert _groups(second.metrics["rejected"]) == {("age", "type", 1, 1)}
    assert second.metrics["rejected"]["share"] == pytest.approx(1 / 11)
    [stored_first] = project.store.monitor_windows(project.spec.project, ids=[first.id])
    assert stored_first["metrics"]["rejected"]["requests"] == 0
    rows = project.store.rejections(project.spec.project, after_seq=second.metrics["rejected"]["after_seq"],
                                    up_to_seq=second.metrics["rejected"]["last_seq"])
    assert [(r["column"], r["kind"], r["rows"], r["request_rows"]) for r in rows] == [("age", "type", 1, 1)]


def test_metrics_count_refusals_per_column_and_kind_and_unknown_columns_as_other(local, trained, run_app):
    app = create_app(local.store, local.spec.project)
    with run_app(app) as url:
        _bad_requests(url, trained.records)
        text = httpx.get(f"{url}/metrics").text
    assert re.search(r'loopml_rejected_requests_total\{column="age",kind="type"\} 1\.0', text)
    assert re.search(r'loopml_rejected_rows_total\{column="age",kind="type"\} 1\.0', text)
    assert re.search(r'loopml_rejected_requests_total\{column="other",kind="unknown_column"\} 1\.0', text)
    assert re.search(r'loopml_rejected_requests_total\{column="",kind="body"\} 1\.0', text)
    assert "agee" not in text


def test_a_full_rejection_log_drops_the_record_but_still_answers_422(local, trained, run_app):
    app = create_app(local.store, local.spec.project)
    with run_app(app) as url:
        # A log that is never started and holds one row: the store "falls behind" at once.
        app.state.rejection_log = full = RejectionLog(local.store, local.spec.project, max_batch=1,
                                                      max_pending=1)
        bad = {**trained.records[0], "age": "old"}
        assert httpx.post(f"{url}/predict", json={"row": bad}).status_code == 422
        r = httpx.post(f"{url}/predict", json={"row": bad})
        assert r.status_code == 422
        assert r.json()["detail"][0]["reason"] == "expected an integer, found str 'old'"
        assert (full.rows_pending, full.rows_dropped) == (1, 1)


# -- what is recorded, and how much --------------------------------------------------------------
def test_one_request_adds_a_bounded_number_of_rows_however_many_columns_it_invents():
    errors = [FieldError(0, f"made_up_{i}", "unknown column", "unknown_column")
              for i in range(MAX_REJECTION_GROUPS + 30)]
    rows = rejection_rows(errors, request_rows=1, model_version_id=None)
    assert len(rows) == MAX_REJECTION_GROUPS + 1
    assert rows[-1]["kind"] == "more" and rows[-1]["column"] is None and rows[-1]["rows"] == 1
    assert len({r["request_id"] for r in rows}) == 1


def test_the_example_is_the_first_reason_truncated_and_rows_are_counted_once_per_row():
    long = "expected an integer, found str '" + "x" * 500 + "'"
    errors = [FieldError(0, "age", long), FieldError(3, "age", "expected an integer, found bool True")]
    [row] = rejection_rows(errors, request_rows=5, model_version_id=7)
    assert (row["column"], row["kind"], row["rows"], row["request_rows"], row["model_version_id"]) == \
        ("age", "type", 2, 5, 7)
    assert row["example"] == long[:300]


def test_the_rejected_limit_must_be_a_share():
    from pydantic import ValidationError

    from loopml.spec import QualitySpec

    with pytest.raises(ValidationError, match=r"rejected\n  Input should be less than or equal to 1"):
        QualitySpec.model_validate({"rejected": 5})


# -- the report and the command line -------------------------------------------------------------
def test_the_report_lists_refusals_per_column_in_the_data_quality_section(local, trained, run_app):
    app = create_app(local.store, local.spec.project)
    with run_app(app) as url:
        _bad_requests(url, trained.records)
        assert httpx.post(f"{url}/predict", json={"rows": trained.records[10:20]}).status_code == 200
        _flush(app)
    monitor_project(local.spec, local.store)
    html = str(monitoring_report(local.store, local.spec.project, spec=local.spec))
    section = html[html.index('<section id="quality">'):]
    section = section[:section.index("</section>")]
    assert "Requests refused at serving" in section
    assert "3 request(s) (4 row(s)) that POST /predict answered with 422" in section
    assert "<td>sex</td><td>unknown category</td><td class=\"n\">1</td><td class=\"n\">1</td>" in section
    assert "<td>(all requests)</td><td>rejected</td>" in section


def test_the_loopml_monitor_table_says_how_many_requests_were_refused(local, trained, run_app):
    app = create_app(local.store, local.spec.project)
    with run_app(app) as url:
        _bad_requests(url, trained.records)
        assert httpx.post(f"{url}/predict", json={"rows": trained.records[10:20]}).status_code == 200
        _flush(app)
    done = subprocess.run([sys.executable, "-m", "loopml", "monitor"], cwd=local.spec.root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 1, done.stderr
    assert "1 over limit, 3 refused" in done.stdout
    assert "alert data_quality:" in done.stdout and "rejected 33.3% > 20%" in done.stdout


# -- time windows ----------------------------------------------------------------------------------
def test_a_period_in_which_every_request_was_refused_raises_a_data_quality_alert(tmp_path, trained):
    p = _make(tmp_path, trained, {"every": "1h", "quality": {"rejected": 0.2}})
    nine = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    p.store.log_predictions(p.spec.project, p.version_id, [
        {"id": uuid.uuid4().hex, "features": r, "prediction": "no", "probability": 0.2,
         "created_at": nine + timedelta(minutes=3 * i)} for i, r in enumerate(trained.records[:WINDOW])])
    [answered] = monitor_project(p.spec, p.store, now=nine + timedelta(hours=1, seconds=1)).windows
    assert answered.metrics["rejected"]["requests"] == 0
    # Between ten and eleven nothing is answered: two requests are refused, one at 11:00 belongs to the next hour.
    p.store.log_rejections(p.spec.project, [
        {"id": uuid.uuid4().hex, "request_id": f"r{i}", "column": "age", "kind": "type", "rows": 1,
         "request_rows": 1, "model_version_id": p.version_id, "created_at": nine + timedelta(minutes=m)}
        for i, m in enumerate((75, 80, 121))])
    result = monitor_project(p.spec, p.store, now=nine + timedelta(hours=2, seconds=1))
    [empty] = result.windows
    assert (empty.rows, empty.metrics["rejected"]["requests"], empty.metrics["rejected"]["share"]) == (0, 2, 1.0)
    assert empty.notes[0].endswith("the window is empty and skipped; serving refused 2 request(s) in it")
    [alert] = result.alerts
    assert alert.kind == "data_quality" and alert.window_id == empty.id
    assert "rejected 100.0% > 20% (2 request(s) refused; age type 2 row(s))" in alert.summary
    p.store.close()
