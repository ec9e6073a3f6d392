"""GET /metrics: Prometheus text scraped over HTTP; the counts move with the requests served, and the
monitor's alerts show as gauges read from the store, throttled, and never failing the scrape."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from loopml.model.artifact import TrainedModel
from loopml.operations import create_app
from loopml.operations.monitor import monitor_project
from loopml.spec import GoalSpec, ProjectSpec, load_spec
from loopml.store import ModelVersion, Store

_BENEFITS = Path(__file__).parents[2] / "examples" / "benefits" / "benefits.csv"


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def rows(served) -> list[dict]:
    frame = served.holdout.head(2)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in frame.to_dict("records")]


def test_counts_move_with_requests(served, run_app, rows):
    version = str(served.version.version)
    with run_app(create_app(served.store, served.project)) as url:
        before = _scrape(url)
        assert _value(before, "loopml_model_version") == served.version.version
        assert _value(before, "loopml_inflight_requests") == 0
        assert httpx.post(f"{url}/predict", json={"rows": rows}).status_code == 200
        assert httpx.post(f"{url}/predict", json={"row": rows[0]}).status_code == 200
        assert httpx.post(f"{url}/predict", json={"row": {"age": "old"}}).status_code == 422
        assert httpx.get(f"{url}/no/such/path/{'x' * 40}").status_code == 404
        after = _scrape(url)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("loopml_requests_total", route="/predict", method="POST", status="200") == 2
    assert moved("loopml_requests_total", route="/predict", method="POST", status="422") == 1
    assert moved("loopml_request_errors_total", route="/predict", kind="bad_request") == 1
    assert moved("loopml_predicted_rows_total", model_version=version) == 3
    assert moved("loopml_request_duration_seconds_count", route="/predict") == 3
    # An unknown path counts under one label, so scanners cannot grow the metrics without bound.
    assert moved("loopml_requests_total", route="other", method="GET", status="404") == 1
    assert not any("no/such/path" in str(labels) for _, labels in after)


def test_latency_buckets_resolve_milliseconds(served, run_app, rows):
    with run_app(create_app(served.store, served.project)) as url:
        httpx.post(f"{url}/predict", json={"row": rows[0]})
        samples = _scrape(url)
    bounds = sorted(float(dict(labels)["le"]) for name, labels in samples
                    if name == "loopml_request_duration_seconds_bucket" and dict(labels)["route"] == "/predict")
    assert bounds[:4] == [0.0005, 0.001, 0.002, 0.005]
    assert bounds[-1] == float("inf")


def test_refused_requests_are_counted(served, run_app, rows):
    with run_app(create_app(served.store, served.project, max_body_bytes=100)) as url:
        assert httpx.post(f"{url}/predict", json={"rows": rows}).status_code == 413
        samples = _scrape(url)
    assert _value(samples, "loopml_requests_total", route="/predict", method="POST", status="413") == 1
    assert _value(samples, "loopml_request_errors_total", route="/predict", kind="too_large") == 1


# -- the monitor's gauges ----------------------------------------------------------------------------
@dataclass
class Monitored:
    """A project of its own: a model built on the low-unemployment states, and rows from the other states."""

    spec: ProjectSpec
    store: Store
    model: TrainedModel
    version: ModelVersion
    away: pd.DataFrame

    def log_away(self, rows: int = 200) -> None:
        """Log ``rows`` predictions for workers from the states the model never saw, as serving does."""
        features = self.away.head(rows).drop(columns=["ui"])
        P = self.model.predict_proba(features)[:, 1]
        labels = self.model.predict(features).tolist()
        records = json.loads(features.to_json(orient="records"))
        self.store.log_predictions(self.spec.project, self.version.id, [
            {"id": uuid.uuid4().hex, "features": r, "prediction": y, "probability": float(p), "latency_ms": 0.5}
            for r, y, p in zip(records, labels, P, strict=True)])


@pytest.fixture
def monitored(tmp_path: Path, register) -> Callable[..., Monitored]:
    """``monitored(url=None)``: a monitored project in a store under tmp_path (or at ``url``)."""
    if not _BENEFITS.exists():
        pytest.skip(f"the benefits example data is missing: {_BENEFITS}")
    frame = pd.read_csv(_BENEFITS).dropna(subset=["ui"]).reset_index(drop=True)
    rates = frame.groupby("state")["stateur"].mean().sort_values()
    low = frame["state"].isin(set(rates.index[: len(rates) // 2]))
    home, away = frame[low].head(1500).reset_index(drop=True), frame[~low].reset_index(drop=True)
    stores: list[Store] = []

    def make(url: str | None = None) -> Monitored:
        home.to_parquet(tmp_path / "train.parquet")
        doc = {"project": "monitored",
               "business": {"problem": "monitored", "task": "binary", "target": "ui", "positive": "yes",
                            "goal": {"metric": "accuracy", "at_least": 0.5}},
               "data": {"sources": [{"name": "train", "path": "train.parquet"}]},
               "operations": {"monitor": {"window": 200, "drift": {"min_importance": 0}}}}
        (tmp_path / "loopml.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        spec = load_spec(tmp_path, check_data=False)
        store = Store.open(tmp_path, url=url)
        stores.append(store)
        model, _, version = register(store, spec.project, home, target="ui", task="binary", positive="yes",
                                     goal=GoalSpec(metric="accuracy", at_least=0.5))
        return Monitored(spec, store, model, version, away)

    yield make
    for store in stores:
        store.close()


def _app(m: Monitored, *, interval_s: float, wait_s: float = 2.0):
    app = create_app(m.store, m.spec.project, reload_interval_s=0)
    app.state.metrics.monitor_interval_s = interval_s
    app.state.metrics.monitor_wait_s = wait_s
    return app


def _drift_alert(m: Monitored) -> list[str]:
    """Log a window from the other states and run a monitor pass; the drifted columns it found."""
    m.log_away(200)
    result = monitor_project(m.spec, m.store)
    assert "drift" in [a.kind for a in result.alerts]
    return result.windows[0].metrics["drift"]["drifted"]


def test_a_drift_alert_of_the_monitor_shows_on_metrics(monitored, run_app):
    m = monitored()
    with run_app(_app(m, interval_s=0)) as url:
        before = _scrape(url)
        drifted = _drift_alert(m)
        after = _scrape(url)
    assert _value(before, "loopml_monitor_alert", kind="drift") == 0
    assert _value(after, "loopml_monitor_alert", kind="drift") == 1
    assert _value(after, "loopml_monitor_alert", kind="goal_breached") == 0
    assert _value(after, "loopml_monitor_alerts", kind="drift") == 1
    assert _value(after, "loopml_monitor_last_seq") == 200
    assert "stateur" in drifted
    assert _value(after, "loopml_monitor_drifted_columns") == len(drifted)


def test_the_store_is_read_at_most_once_per_interval(monitored, run_app):
    m = monitored()
    with run_app(_app(m, interval_s=600)) as url:
        assert _value(_scrape(url), "loopml_monitor_alert", kind="drift") == 0
        _drift_alert(m)
        # Read 0 s ago: the scrape answers with the values it has, without asking the store.
        assert _value(_scrape(url), "loopml_monitor_alert", kind="drift") == 0


def test_a_failing_store_is_logged_once_and_the_gauges_keep_their_values(monitored, run_app, caplog):
    m = monitored()
    _drift_alert(m)
    with run_app(_app(m, interval_s=0)) as url:
        assert _value(_scrape(url), "loopml_monitor_alert", kind="drift") == 1
        with m.store.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE monitor_windows RENAME TO monitor_windows_away"))
        with caplog.at_level(logging.WARNING, logger="loopml.operations._metrics"):
            first, second = _scrape(url), _scrape(url)
        with m.store.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE monitor_windows_away RENAME TO monitor_windows"))
    assert _value(first, "loopml_monitor_alert", kind="drift") == 1
    assert _value(second, "loopml_monitor_alert", kind="drift") == 1
    [record] = [r for r in caplog.records if r.name == "loopml.operations._metrics"]
    assert record.getMessage().startswith("loopml serve: /metrics could not read the monitor's gauges from the "
                                          "store; they keep their last values until it can: OperationalError")
    assert "monitor_windows" in record.getMessage()


def test_a_store_that_hangs_does_not_hold_the_scrape(monitored, run_app, postgres_url):
    m = monitored(url=postgres_url)
    with run_app(_app(m, interval_s=0, wait_s=0.5)) as url:
        assert _value(_scrape(url), "loopml_monitor_alert", kind="drift") == 0
        _drift_alert(m)
        locker = sa.create_engine(postgres_url)
        try:
            with locker.begin() as conn:
                conn.execute(sa.text("LOCK TABLE monitor_windows IN ACCESS EXCLUSIVE MODE"))
                started = time.monotonic()
                held = _scrape(url)
                waited = time.monotonic() - started
        finally:
            locker.dispose()
        time.sleep(0.5)  # the read held back by the lock finishes in the background
        released = _scrape(url)
    assert waited < 5
    assert _value(held, "loopml_monitor_alert", kind="drift") == 0
    assert _value(released, "loopml_monitor_alert", kind="drift") == 1
