"""`loopml monitor` on real data: windows over the prediction log, quality, drift, estimated and labeled performance.

Two real cases from the public benchmark suite. Benefits: a model built on the states with the lowest
unemployment rates; windows from the same states, or from the other states. Segment: an image-region
classifier; windows of regions from anywhere in the image, or from its middle band only, where it is
really less accurate (a covariate shift that the estimate sees before any label arrives).
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from loopml.data.contract import infer_contract
from loopml.data.snapshot import frame_hash, frame_to_parquet
from loopml.errors import ConflictError, SpecError
from loopml.model.artifact import TrainedModel
from loopml.model.search import SearchPlan, search, split_holdout
from loopml.operations.monitor import monitor_project, update_monitor_gauges
from loopml.spec import ProjectSpec, load_spec
from loopml.store import ModelVersion, Store

BENCH = Path(__file__).resolve().parents[1] / "bench_data"  # real tables, copied into the repo
STATE_LEVEL = {"state", "stateur", "statemb", "rr"}  # columns set by the worker's state


@dataclass(frozen=True)
class Case:
    """A trained model, its training rows, and real rows it has not seen: same population and shifted."""

    target: str
    task: str
    positive: Any
    train: pd.DataFrame
    same: pd.DataFrame
    shifted: pd.DataFrame
    model: TrainedModel


def _bench(name: str) -> pd.DataFrame:
    path = BENCH / f"{name}.parquet"
    return pd.read_parquet(path)


def _train(train: pd.DataFrame, target: str, task: str, positive: Any = None) -> TrainedModel:
    from loopml.spec import GoalSpec

    goal = GoalSpec(metric="accuracy", at_least=0.5)
    return search(train, target=target, task=task, goal=goal, positive=positive,
                  plan=SearchPlan(families=("linear",), folds=3)).model


@pytest.fixture(scope="module")
def benefits() -> Case:
    frame = _bench("benefits")
    rates = frame.groupby("state")["stateur"].mean().sort_values()
    home = frame[frame["state"].isin(set(rates.index[: len(rates) // 2]))]
    away = frame[~frame["state"].isin(set(rates.index[: len(rates) // 2]))].reset_index(drop=True)
    train, same = split_holdout(home, "ui", "binary", 0.3, seed=0)
    return Case("ui", "binary", "yes", train, same.reset_index(drop=True), away, _train(train, "ui", "binary", "yes"))


@pytest.fixture(scope="module")
def segment() -> Case:
    frame = _bench("segment")
    train, same = split_holdout(frame, "category", "multiclass", 0.5, seed=0)
    row = same["region-centroid-row"]
    middle = same[(row > row.quantile(0.5)) & (row <= row.quantile(0.75))].reset_index(drop=True)
    return Case("category", "multiclass", None, train, same.reset_index(drop=True), middle,
                _train(train, "category", "multiclass"))


@dataclass
class Project:
    root: Path
    spec: ProjectSpec
    store: Store
    case: Case
    version: ModelVersion

    def log(self, frame: pd.DataFrame, *, drop: tuple[str, ...] = (), at: list[datetime] | None = None) -> list[str]:
        """Answer ``frame`` with the model and log each prediction as serving does; returns their ids."""
        features = frame.drop(columns=[self.case.target])
        P = self.case.model.predict_proba(features)
        labels = self.case.model.predict(features)
        records = json.loads(features.drop(columns=list(drop)).to_json(orient="records"))
        rows = []
        for i, (record, label) in enumerate(zip(records, labels.tolist(), strict=True)):
            p = P[i, 1] if self.case.task == "binary" else P[i].max()
            row = {"id": uuid.uuid4().hex, "features": record, "prediction": label, "probability": float(p),
                   "latency_ms": 0.4 + 0.1 * (i % 10)}
            if at is not None:
                row["created_at"] = at[i]
            rows.append(row)
        self.store.log_predictions(self.spec.project, self.version.id, rows)
        return [r["id"] for r in rows]

    def label(self, ids: list[str], frame: pd.DataFrame) -> None:
        for prediction_id, label in zip(ids, frame[self.case.target].tolist(), strict=True):
            self.store.record_feedback(self.spec.project, prediction_id, label)


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator:
    """``make_project(case, goal, monitor, reference=, url=)``: a project folder, store and champion for ``case``."""
    stores: list[Store] = []

    def make(case: Case, goal: dict, monitor: dict, *, reference: pd.DataFrame | None = None,
             url: str | None = None) -> Project:
        root = tmp_path / f"project{len(stores)}"
        root.mkdir()
        case.train.to_parquet(root / "train.parquet")
        business = {"problem": "monitored", "task": case.task, "target": case.target, "goal": goal}
        if case.positive is not None:
            business["positive"] = case.positive
        doc = {"project": "monitored", "business": business,
               "data": {"sources": [{"name": "train", "path": "train.parquet"}]},
               "operations": {"monitor": monitor}}
        (root / "loopml.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        spec = load_spec(root, check_data=False)
        store = Store.open(root, url=url)
        stores.append(store)
        data = case.train if reference is None else reference
        contract = infer_contract(case.train, target=case.target, task=case.task)
        snapshot = store.save_snapshot(spec.project, input_key="k", data=frame_to_parquet(data),
                                       data_hash=frame_hash(data), rows=len(data), columns=data.shape[1],
                                       contract=contract.model_dump(mode="json"), report={})
        version = store.register_model(spec.project, run_id=None, snapshot_id=snapshot.id, input_key="k",
                                       model_bytes=case.model.to_bytes(), spec_hash="test",
                                       family=case.model.family, metrics={}, operating_point={}, lineage={})
        store.set_alias(spec.project, "champion", version.version, actor="test", reason="fixture")
        return Project(root, spec, store, case, version)

    yield make
    for store in stores:
        store.close()


ACCURACY = {"metric": "accuracy", "at_least": 0.5}


# -- same population, shifted population ---------------------------------------------------------
def test_windows_from_the_training_population_raise_no_alert(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.same.head(400))
    result = monitor_project(p.spec, p.store)
    assert [(w.first_seq, w.last_seq, w.rows) for w in result.windows] == [(1, 200, 200), (201, 400, 200)]
    assert result.alerts == [] and result.exit_code == 0
    for w in result.windows:
        assert w.metrics["verdicts"] == {"data_quality": False, "drift": False, "goal_breach_estimated": False}
        assert w.metrics["drift"]["drifted"] == []
    assert (result.decision.verdict, result.decision.action) == ("pass", "keep")
    assert result.decision.summary == "2 new window(s) monitored: no alert"


def test_a_window_from_other_states_raises_a_drift_alert_led_by_the_state_columns(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.shifted.head(200))
    result = monitor_project(p.spec, p.store)
    [window] = result.windows
    [drift] = [a for a in result.alerts if a.kind == "drift"]
    leading = [c["column"] for c in drift.detail["columns"][:3]]
    assert set(leading) <= STATE_LEVEL and "state" in leading, leading
    assert set(drift.detail["important"][:3]) <= STATE_LEVEL
    assert drift.summary.startswith(f"window {window.id} (seqs 1–200): drift in state")
    # The states the model never saw are also unknown categories to its contract.
    [quality] = [a for a in result.alerts if a.kind == "data_quality"]
    assert {"column": "state", "measure": "unknown_category", "value": 1.0, "limit": 0.05} in quality.detail["breaches"]
    decision = result.decision
    assert (decision.stage, decision.gate, decision.verdict, decision.action, decision.next_stage) == \
        ("operations", "monitor", "fail", "alert", "maintenance")
    assert {a["id"] for a in decision.evidence["alerts"]} == {a.id for a in result.alerts}
    assert p.store.decisions(p.spec.project)[-1].id == decision.id
    assert result.exit_code == 1


def test_columns_are_ranked_by_drift_times_importance(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.shifted.head(200))
    drift = monitor_project(p.spec, p.store).windows[0].metrics["drift"]
    drifted = [c for c in drift["columns"] if c["drifted"]]
    scores = [c["score"] for c in drifted]
    assert scores == sorted(scores, reverse=True)
    assert all(c["score"] == pytest.approx(c["effect"] * drift["importance"][c["column"]]) for c in drifted)
    assert sum(drift["importance"].values()) == pytest.approx(1.0)
    assert drift["importance"]["bluecol"] == 0.0  # constant in training: the model ignores it


# -- incremental -----------------------------------------------------------------------------------
def test_a_second_pass_computes_nothing_and_writes_nothing(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.shifted.head(200))
    first = monitor_project(p.spec, p.store)
    decisions, alerts = len(p.store.decisions(p.spec.project)), len(p.store.alerts(p.spec.project))
    again = monitor_project(p.spec, p.store)
    assert (again.windows, again.relabeled, again.alerts, again.decision) == ([], [], [], None)
    assert again.exit_code == 0
    assert len(p.store.monitor_windows(p.spec.project, kind="predictions")) == len(first.windows) == 1
    assert (len(p.store.decisions(p.spec.project)), len(p.store.alerts(p.spec.project))) == (decisions, alerts)


def test_a_partly_filled_window_waits_and_is_computed_once_full(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.same.head(250))
    result = monitor_project(p.spec, p.store)
    assert [w.last_seq for w in result.windows] == [200]
    assert result.pending_rows == 50
    assert "50 prediction(s) wait for the next window (it computes at 200, operations.monitor.window)" in result.notes
    p.log(benefits.same.iloc[250:400])
    assert [(w.first_seq, w.last_seq) for w in monitor_project(p.spec, p.store).windows] == [(201, 400)]


def test_a_window_stored_once_even_if_two_passes_compute_it(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.store.add_monitor_window(p.spec.project, model_version_id=None, first_seq=1, last_seq=200, rows=200,
                               metrics={}, kind="predictions", key="seq:1")
    with pytest.raises(ConflictError, match="monitor window 'seq:1' of project 'monitored' is stored already: "
                                            "another monitoring pass computed it"):
        p.store.add_monitor_window(p.spec.project, model_version_id=None, first_seq=1, last_seq=200, rows=200,
                                   metrics={}, kind="predictions", key="seq:1")


@pytest.mark.postgres
def test_a_pass_on_postgresql_stores_windows_labels_and_alerts_once(benefits, make_project, postgres_url):
    p = make_project(benefits, ACCURACY, {"window": 200}, url=postgres_url)
    p.label(p.log(benefits.shifted.head(200)), benefits.shifted.head(200))
    [window] = monitor_project(p.spec, p.store).windows
    assert window.labeled["rows"] == 200 and window.labeled["met"] is True
    assert {a["kind"] for a in p.store.alerts(p.spec.project)} == {"drift", "data_quality"}
    again = monitor_project(p.spec, p.store)
    assert (again.windows, again.relabeled, again.alerts) == ([], [], [])


def test_a_0002_store_keeps_its_maintenance_windows_as_labels_windows(tmp_path):
    from alembic import command
    from alembic.config import Config

    import loopml.store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(loopml.store.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.exec_driver_sql("INSERT INTO monitor_windows (project, first_seq, last_seq, rows, metrics, created_at) "
                             "VALUES ('p', 1, 40, 40, '{}', '2024-05-01 12:00:00')")
    engine.dispose()
    store = Store.open(tmp_path, url=url)
    [window] = store.monitor_windows("p")
    assert (window["kind"], window["labeled"], window["window_key"]) == ("labels", None, None)
    assert (store.last_monitored_seq("p"), store.last_monitored_seq("p", kind="predictions")) == (40, 0)
    store.close()


def test_monitor_windows_leave_the_maintenance_checkpoint_alone(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.same.head(200))
    monitor_project(p.spec, p.store)
    assert p.store.last_monitored_seq(p.spec.project) == 0  # `loopml maintain` counts feedback seqs apart
    assert p.store.last_monitored_seq(p.spec.project, kind="predictions") == 200


# -- performance: estimated before labels, labeled after -------------------------------------------
SEGMENT_GOAL = {"metric": "accuracy", "at_least": 0.87}


def test_the_estimate_sees_a_real_drop_before_labels_and_late_labels_confirm_it(segment, make_project):
    p = make_project(segment, SEGMENT_GOAL, {"window": 250})
    same_ids = p.log(segment.same.head(250))
    middle_ids = p.log(segment.shifted.head(250))
    first = monitor_project(p.spec, p.store)
    same, middle = first.windows
    assert same.metrics["performance"]["estimated"]["met"] is True
    estimated = middle.metrics["performance"]["estimated"]
    assert estimated["value"] < 0.87 and estimated["bound"] < 0.87
    assert [a.kind for a in first.alerts if a.window_id == middle.id and a.kind.startswith("goal")] == \
        ["goal_breach_estimated"]
    assert middle.labeled is None  # no label yet

    p.label(same_ids, segment.same.head(250))
    p.label(middle_ids, segment.shifted.head(250))
    second = monitor_project(p.spec, p.store)
    assert second.windows == []  # nothing is recomputed: only the labeled side moves
    assert {w.id for w in second.relabeled} == {same.id, middle.id}
    labeled = {w.id: w.labeled for w in second.relabeled}
    assert labeled[same.id]["met"] is True and labeled[same.id]["rows"] == 250
    truth = labeled[middle.id]
    assert truth["met"] is False and truth["value"] < 0.87 and truth["margin"] == pytest.approx(truth["value"] - 0.87)
    assert truth["agreement"] == pytest.approx(abs(estimated["value"] - truth["value"]))
    assert truth["agreement"] < 0.1
    [breach] = second.alerts
    assert (breach.kind, breach.window_id) == ("goal_breached", middle.id)
    stored = {w["id"]: w for w in p.store.monitor_windows(p.spec.project, kind="predictions")}
    assert stored[middle.id]["metrics"] == middle.metrics
    assert stored[middle.id]["labeled"]["alert_id"] == breach.id
    assert monitor_project(p.spec, p.store).relabeled == []


def test_labels_for_a_window_already_breached_update_it_without_a_second_alert(segment, make_project):
    p = make_project(segment, SEGMENT_GOAL, {"window": 250, "min_labeled": 30})
    ids = p.log(segment.shifted.head(250))
    monitor_project(p.spec, p.store)
    p.label(ids[:100], segment.shifted.head(100))
    assert [a.kind for a in monitor_project(p.spec, p.store).alerts] == ["goal_breached"]
    p.label(ids[100:], segment.shifted.iloc[100:250])
    later = monitor_project(p.spec, p.store)
    assert later.alerts == [] and later.relabeled[0].labeled["rows"] == 250


def test_too_few_labels_say_how_many_are_needed(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    ids = p.log(benefits.same.head(200))
    monitor_project(p.spec, p.store)
    p.label(ids[:5], benefits.same.head(5))
    [window] = monitor_project(p.spec, p.store).relabeled
    assert window.labeled["problem"] == ("5 labeled prediction(s) so far; labeled performance needs 30 "
                                         "(operations.monitor.min_labeled)")


def test_a_window_of_one_class_has_no_labeled_metric_but_keeps_its_estimate(benefits, make_project):
    p = make_project(benefits, {"metric": "roc_auc", "at_least": 0.5}, {"window": 200})
    applied = benefits.same[benefits.same["ui"] == "yes"].head(200)
    p.label(p.log(applied), applied)
    [window] = monitor_project(p.spec, p.store).windows
    assert window.labeled["problem"] == ("labeled roc_auc is undefined on this window: its 200 labels are all "
                                         "'yes' (one class), and roc_auc needs both classes; the estimate is "
                                         "still given")
    assert 0.5 < window.metrics["performance"]["estimated"]["value"] < 1


# -- bad input -------------------------------------------------------------------------------------
def test_a_corrupted_row_and_a_missing_column_get_messages_and_other_windows_are_computed(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.same.head(200))
    bad = benefits.same.iloc[200:398].assign(age=None)
    p.log(bad.head(100), drop=("tenure",))
    with p.store.engine.begin() as conn:  # a row whose features were cut off mid-write
        conn.execute(sa.text("INSERT INTO predictions (id, project, model_version_id, features, prediction, "
                             "created_at) VALUES ('cut', 'monitored', :v, '{\"age\": 4', '\"yes\"', "
                             "CURRENT_TIMESTAMP)"), {"v": p.version.id})
    p.store.log_predictions(p.spec.project, p.version.id, [{"id": "list", "features": [41, "st11"],
                                                            "prediction": "yes"}])
    p.log(bad.iloc[100:], drop=("tenure",))
    p.log(benefits.same.iloc[400:600])
    result = monitor_project(p.spec, p.store)
    first, broken, last = result.windows
    assert first.notes == [] and last.notes == []
    assert "row seq 301: features are not valid JSON (" in broken.notes[0]
    assert broken.notes[0].endswith("; the row is left out of this window")
    assert broken.notes[1] == ("row seq 302: features are list, not a JSON object of column: value; "
                               "the row is left out of this window")
    assert ("column 'tenure' is missing from the log: none of the 198 readable rows sends it; send it with "
            "every request (the model fills it in, but drift cannot be measured)") in broken.notes
    assert ("drift of column 'tenure': column 'tenure' is missing from the current window: send it with every "
            "record, or leave it out of columns=") in broken.notes
    assert ("drift of column 'age': column 'age' is missing in all 198 rows of the current window: check the "
            "source or the pipeline step that fills it") in broken.notes
    assert broken.metrics["quality"]["unreadable_rows"] == 2
    breaches = {(b["column"], b["measure"]) for b in broken.metrics["quality"]["breaches"]}
    assert {("age", "missing_increase"), ("tenure", "missing_increase")} <= breaches
    assert "estimated" in broken.metrics["performance"]
    assert monitor_project(p.spec, p.store).windows == []


def test_a_reference_without_a_column_says_so_for_that_column(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200}, reference=benefits.train.drop(columns=["tenure"]))
    p.log(benefits.same.head(200))
    [window] = monitor_project(p.spec, p.store).windows
    assert ("drift of column 'tenure': column 'tenure' is not in the reference: drift needs it in both windows; "
            "pass columns= with the reference's columns") in window.notes
    assert window.metrics["drift"]["drifted"] == []


def test_a_window_without_refused_requests_counts_none(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.same.head(200))
    rejected = monitor_project(p.spec, p.store).windows[0].metrics["rejected"]
    assert (rejected["requests"], rejected["rows"], rejected["share"], rejected["breach"]) == (0, 0, 0.0, None)
    assert rejected["columns"] == []


# -- time windows ----------------------------------------------------------------------------------
def test_time_windows_cover_closed_periods_and_skip_empty_ones(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"every": "1h"})
    day = datetime(2024, 5, 1, tzinfo=UTC)
    at = [day + timedelta(hours=hour, minutes=5 + i) for hour in (10, 11, 13) for i in range(30)]
    p.log(benefits.same.head(90), at=at)
    result = monitor_project(p.spec, p.store, now=day + timedelta(hours=13, minutes=40))
    spans = [(w.starts_at.hour, w.ends_at.hour, w.rows) for w in result.windows]
    assert spans == [(10, 11, 30), (11, 12, 30), (12, 13, 0)]
    assert result.windows[2].notes == ["no predictions were logged from 2024-05-01T12:00:00+00:00 to "
                                       "2024-05-01T13:00:00+00:00: the window is empty and skipped"]
    assert "30 prediction(s) wait for their period (every 1h) to close" in result.notes
    later = monitor_project(p.spec, p.store, now=day + timedelta(hours=14))
    assert [(w.first_seq, w.last_seq, w.starts_at.hour) for w in later.windows] == [(61, 90, 13)]
    assert monitor_project(p.spec, p.store, now=day + timedelta(hours=14, minutes=30)).windows == []


# -- alerts out: webhook, Prometheus ---------------------------------------------------------------
class _Hook(http.server.BaseHTTPRequestHandler):
    """Answers 500 to the first POST and 204 to the rest; keeps every body."""

    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        self.send_response(500 if len(type(self).bodies) == 1 else 204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict]]]:
    handler = type("Hook", (_Hook,), {"bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/loopml?token=secret", handler.bodies
    server.shutdown()
    thread.join(5)


def test_alerts_are_posted_to_the_webhook_and_retried_after_a_500(benefits, make_project, hook):
    url, bodies = hook
    p = make_project(benefits, ACCURACY, {"window": 200, "webhook": url})
    p.log(benefits.shifted.head(200))
    result = monitor_project(p.spec, p.store)
    first = result.alerts[0]
    assert len(bodies) == len(result.alerts) + 1  # the first alert went twice
    assert bodies[0] == bodies[1] and bodies[0]["alert_id"] == first.id and bodies[0]["kind"] == first.kind
    assert {b["kind"] for b in bodies} == {"drift", "data_quality"}
    stored = {a["id"]: a["delivery"] for a in p.store.alerts(p.spec.project)}
    assert stored[first.id] == {"host": url.split("/hooks")[0], "attempts": 2, "status": 204, "delivered": True,
                                "error": None}
    assert all(d["attempts"] == 1 and d["delivered"] for i, d in stored.items() if i != first.id)


def test_an_unreachable_webhook_is_recorded_and_the_pass_completes(benefits, make_project):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    p = make_project(benefits, ACCURACY, {"window": 200, "webhook": f"http://127.0.0.1:{port}/hook"})
    p.log(benefits.shifted.head(200))
    result = monitor_project(p.spec, p.store)
    assert result.alerts and result.decision.verdict == "fail"
    for alert in p.store.alerts(p.spec.project):
        delivery = alert["delivery"]
        assert (delivery["attempts"], delivery["delivered"], delivery["status"]) == (3, False, None)
        assert delivery["error"].startswith("ConnectError")


def test_alerts_are_exposed_as_prometheus_gauges(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    registry = CollectorRegistry()
    update_monitor_gauges(registry, p.store, p.spec.project)
    assert b'loopml_monitor_alert{kind="drift"} 0.0' in generate_latest(registry)
    p.log(benefits.shifted.head(200))
    monitor_project(p.spec, p.store)
    update_monitor_gauges(registry, p.store, p.spec.project)
    text = generate_latest(registry).decode()
    assert 'loopml_monitor_alert{kind="drift"} 1.0' in text
    assert 'loopml_monitor_alert{kind="goal_breached"} 0.0' in text
    assert 'loopml_monitor_alerts{kind="data_quality"} 1.0' in text
    assert "loopml_monitor_last_seq 200.0" in text
    assert 'loopml_monitor_goal_metric{source="estimated"} 0.' in text


# -- the spec ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("monitor", "problem"), [
    ({"by": "time"}, "operations.monitor: by 'time' cuts one window per period and needs every: DURATION, "
                     "such as every: 1h"),
    ({"by": "count", "every": "1h"}, "operations.monitor: every applies to by: 'time'; with by: 'count' a window "
                                     "holds `window` predictions: remove every, or set by: time"),
    ({"every": "1h", "window": 500}, "operations.monitor: window counts predictions and applies to by: 'count'; "
                                     "with by: 'time' a window lasts `every`: remove window, or set by: count"),
    ({"every": "soon"}, "operations.monitor.every: expected a duration such as 90, '90s', '5m' or '1h', "
                        "found 'soon'"),
    ({"webhook": "hooks.example.com"}, "operations.monitor.webhook: expected an http:// or https:// URL such as "
                                       "https://hooks.example.com/loopml, found 'hooks.example.com'"),
    ({"drift": {"psi": 0}}, "operations.monitor.drift.psi: found 0 (int); input should be greater than 0"),
    ({"drift": {"alfa": 0.1}}, "operations.monitor.drift.alfa: unknown key; did you mean 'alpha'? allowed keys "
                               "here: psi, alpha, wasserstein, jensen_shannon, min_importance"),
    ({"quality": {"missing_increase": 2}}, "operations.monitor.quality.missing_increase: found 2 (int); input "
                                           "should be less than or equal to 1"),
])
def test_bad_monitor_settings_name_the_key_and_the_fix(tmp_path, monitor, problem):
    doc = {"project": "p", "business": {"problem": "x", "task": "binary", "target": "ui",
                                        "goal": {"metric": "recall", "at_least": 0.6}},
           "data": {"sources": [{"name": "s", "path": "s.csv"}]}, "operations": {"monitor": monitor}}
    (tmp_path / "loopml.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path, check_data=False)
    assert caught.value.problems == [problem]


def test_every_alone_means_time_windows(tmp_path):
    doc = {"project": "p", "business": {"problem": "x", "task": "binary", "target": "ui",
                                        "goal": {"metric": "recall", "at_least": 0.6}},
           "data": {"sources": [{"name": "s", "path": "s.csv"}]}, "operations": {"monitor": {"every": "30m"}}}
    (tmp_path / "loopml.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    monitor = load_spec(tmp_path, check_data=False).operations.monitor
    assert (monitor.by, monitor.every, monitor.drift.psi, monitor.drift.alpha) == ("time", 1800.0, 0.2, 0.05)


# -- the command line --------------------------------------------------------------------------------
def _loopml(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_cli_exits_0_without_alert_and_1_with_one(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.same.head(200))
    quiet = _loopml("monitor", cwd=p.root)
    assert quiet.returncode == 0, quiet.stderr
    assert "1 new window(s), 0 with new labels: no alert" in quiet.stdout
    p.log(benefits.shifted.head(200))
    loud = _loopml("monitor", "--json", cwd=p.root)
    assert loud.returncode == 1, loud.stderr
    payload = json.loads(loud.stdout)
    assert {a["kind"] for a in payload["alerts"]} == {"drift", "data_quality"}
    assert payload["decision"]["next_stage"] == "maintenance"


def test_cli_watch_runs_passes_until_stopped(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    p.log(benefits.shifted.head(200))
    done = _loopml("monitor", "--watch", "--every", "0.1", "--max-passes", "2", "--json", cwd=p.root)
    assert done.returncode == 1, done.stderr  # the first pass raised alerts
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert len(first["windows"]) == 1 and second["windows"] == [] and second["alerts"] == []


def test_cli_every_without_watch_is_bad_input(benefits, make_project):
    p = make_project(benefits, ACCURACY, {"window": 200})
    done = _loopml("monitor", "--every", "5m", cwd=p.root)
    assert done.returncode == 2
    assert "--every 5m: the pause applies between the passes of --watch; add --watch" in done.stderr
