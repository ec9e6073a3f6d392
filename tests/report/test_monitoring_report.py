"""The monitoring report of a real monitored project, read as a user would: in a headless browser, offline.

The project: a model trained on the benefits survey's low-unemployment states, served (its predictions
logged as serving logs them) on two windows from the same states and one from the other states, all
labeled, and monitored. The third window drifts; a few of its rows carry markup in a category, as a
hostile client could send it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from loopml.data.contract import infer_contract
from loopml.data.snapshot import frame_hash, frame_to_parquet
from loopml.errors import NotFoundError
from loopml.model.artifact import TrainedModel
from loopml.model.search import SearchPlan, search, split_holdout
from loopml.operations.monitor import monitor_project
from loopml.report import Report, monitoring_report
from loopml.spec import GoalSpec, ProjectSpec, load_spec
from loopml.store import Store

from .browser import CHARTS_JS, needs_chromium, offline_page

BENCH = Path(__file__).resolve().parents[1] / "bench_data"  # real tables, copied into the repo
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "monitoring-report.png"
HOSTILE = '<script>alert("state")</script>'


@dataclass(frozen=True)
class Case:
    train: pd.DataFrame
    same: pd.DataFrame
    shifted: pd.DataFrame
    model: TrainedModel


@dataclass
class Project:
    root: Path
    spec: ProjectSpec
    store: Store
    version_id: int


@pytest.fixture(scope="module")
def case() -> Case:
    path = BENCH / "benefits.parquet"
    frame = pd.read_parquet(path)
    rates = frame.groupby("state")["stateur"].mean().sort_values()
    low = set(rates.index[: len(rates) // 2])
    train, same = split_holdout(frame[frame["state"].isin(low)], "ui", "binary", 0.3, seed=0)
    shifted = frame[~frame["state"].isin(low)].reset_index(drop=True)
    model = search(train, target="ui", task="binary", goal=GoalSpec(metric="accuracy", at_least=0.5),
                   positive="yes", plan=SearchPlan(families=("linear",), folds=3)).model
    return Case(train, same.reset_index(drop=True), shifted, model)


def _project(root: Path, case: Case, monitor: dict | None = None) -> Project:
    """A project folder with a registered champion and its training snapshot, nothing logged yet."""
    root.mkdir(parents=True)
    case.train.to_parquet(root / "train.parquet")
    doc = {"project": "monitored",
           "business": {"problem": "monitored", "task": "binary", "target": "ui", "positive": "yes",
                        "goal": {"metric": "accuracy", "at_least": 0.6}, "constraints": {"predict_p99_ms": 2}},
           "data": {"sources": [{"name": "train", "path": "train.parquet"}]},
           "operations": {"monitor": monitor or {"window": 200}}}
    (root / "loopml.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    spec = load_spec(root, check_data=False)
    store = Store.open(root)
    contract = infer_contract(case.train, target="ui", task="binary")
    snapshot = store.save_snapshot(spec.project, input_key="k", data=frame_to_parquet(case.train),
                                   data_hash=frame_hash(case.train), rows=len(case.train),
                                   columns=case.train.shape[1], contract=contract.model_dump(mode="json"), report={})
    version = store.register_model(spec.project, run_id=None, snapshot_id=snapshot.id, input_key="k",
                                   model_bytes=case.model.to_bytes(), spec_hash="test", family=case.model.family,
                                   metrics={}, operating_point={}, lineage={})
    store.set_alias(spec.project, "champion", version.version, actor="test", reason="fixture")
    return Project(root, spec, store, version.id)


def _serve(p: Project, case: Case, frame: pd.DataFrame, *, label: bool, at: list[datetime] | None = None) -> None:
    """Log ``frame``'s predictions as serving does, then (``label``) their true labels as feedback."""
    features = frame.drop(columns=["ui"])
    probability = case.model.predict_proba(features)[:, 1]
    predicted = case.model.predict(features).tolist()
    records = json.loads(features.to_json(orient="records"))
    rows = [{"id": uuid.uuid4().hex, "features": r, "prediction": y, "probability": float(pr),
             "latency_ms": 0.4 + 0.1 * (i % 10)} for i, (r, y, pr) in enumerate(zip(records, predicted, probability,
                                                                                     strict=True))]
    for row, when in zip(rows, at or [], strict=False):
        row["created_at"] = when
    p.store.log_predictions(p.spec.project, p.version_id, rows)
    if label:
        for row, truth in zip(rows, frame["ui"].tolist(), strict=True):
            p.store.record_feedback(p.spec.project, row["id"], truth)


def _log_three_windows(p: Project, case: Case) -> None:
    shifted = case.shifted.head(200).copy()
    shifted.loc[:29, "state"] = HOSTILE  # 15%: among the categories drawn
    _serve(p, case, case.same.head(400), label=True)
    _serve(p, case, shifted, label=True)


@pytest.fixture(scope="module")
def monitored(case: Case, tmp_path_factory: pytest.TempPathFactory):
    p = _project(tmp_path_factory.mktemp("report") / "project", case)
    _log_three_windows(p, case)
    monitor_project(p.spec, p.store)
    yield p
    p.store.close()


@pytest.fixture(scope="module")
def html(monitored: Project) -> Report:
    return monitoring_report(monitored.store, monitored.spec.project, spec=monitored.spec)


def _drift_alert(p: Project) -> dict:
    [alert] = [a for a in p.store.alerts(p.spec.project) if a["kind"] == "drift"]
    return alert


# -- the page ------------------------------------------------------------------------------------
def test_the_report_is_one_page_that_loads_nothing_from_elsewhere(html):
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"<(?:script|link|img|iframe)\b", html, re.IGNORECASE)
    assert "@import" not in html and "url(" not in html


def test_the_report_shows_every_section_with_its_charts(html):
    for heading in ("Summary", "Drift per column", "Distributions: training snapshot against the latest window",
                    "Performance per window", "Data quality per window", "Latency", "Alerts (3)", "Windows"):
        assert f">{heading}</h2>" in html, heading
    titles = re.findall(r'<svg [^>]*aria-label="([^"]*)"', html)
    assert titles[0] == "PSI per column and window (log scale)"
    assert titles[-3:] == ["accuracy per window, with 95% intervals", "Worst column per measure and window",
                           "Prediction latency per window"]
    assert {"state", "stateur"} <= set(titles[1:-3])  # the most drifted columns' distributions


def test_the_summary_names_the_goal_the_champion_and_the_windows(html, monitored):
    assert "goal accuracy &gt;= 0.6 · 3 window(s) from " in html
    assert re.search(r"<tr><td>v1</td><td>linear</td><td>champion</td><td>registered</td><td class=\"n\">600</td>",
                     html)
    assert re.search(r'<div class="label">windows</div><div class="value">3</div>', html)


def test_the_alerts_table_lists_the_drift_alert_of_the_shifted_window(html, monitored):
    alert = _drift_alert(monitored)
    summary = alert["detail"]["summary"].replace("'", "&#39;")
    assert summary.startswith(f"window {alert['window_id']} (seqs 401–600): drift in state")
    assert (f'<td class="n">{alert["id"]}</td><td><span class="tag bad">drift</span></td>'
            f'<td>w{alert["window_id"]}</td>') in html
    assert summary in html


def test_markup_sent_in_a_category_is_shown_as_text(html):
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#34;state&#34;)&lt;/script&gt;" in html or \
        "&lt;script&gt;alert(&quot;state&quot;)&lt;/script&gt;" in html


def test_the_latency_constraint_from_the_spec_is_drawn(html):
    assert "p99 constraint 2 ms: 2" in html


def test_the_report_reads_the_store_and_changes_nothing(monitored, html):
    before = (monitored.store.monitor_windows(monitored.spec.project), monitored.store.alerts(monitored.spec.project),
              len(monitored.store.decisions(monitored.spec.project)))
    again = monitoring_report(monitored.store, monitored.spec.project, spec=monitored.spec)
    assert again == html  # the same store gives the same bytes
    after = (monitored.store.monitor_windows(monitored.spec.project), monitored.store.alerts(monitored.spec.project),
             len(monitored.store.decisions(monitored.spec.project)))
    assert after == before


def test_without_the_spec_the_goal_and_thresholds_come_from_what_the_windows_stored(monitored):
    html = monitoring_report(monitored.store, monitored.spec.project)
    assert "goal accuracy &gt;= 0.6" in html and "<title>goal 0.6: 0.6</title>" in html
    assert "<title>PSI threshold 0.2: 0.2</title>" in html
    assert "p99 constraint" not in html  # only the spec holds it


def test_windows_limits_the_report_to_the_latest_ones(monitored):
    html = monitoring_report(monitored.store, monitored.spec.project, spec=monitored.spec, windows=1)
    [table] = re.findall(r'<table class="windows">.*?</table>', html, re.DOTALL)
    assert re.findall(r"<tr><td>(w\d+)</td>", table) == ["w3"]
    assert "1 window(s) from " in html and ">Alerts (3)</h2>" in html  # every alert is still listed


def test_a_report_shows_in_jupyter_in_an_iframe_and_writes_itself(html, tmp_path):
    shown = html._repr_html_()
    assert shown.startswith('<iframe srcdoc="&lt;!doctype html&gt;') and "<script" not in shown
    path = html.write(tmp_path / "reports" / "monitoring.html")
    assert path.read_text(encoding="utf-8") == html


def test_a_project_with_a_model_and_no_window_yet_says_how_to_get_one(case, tmp_path):
    p = _project(tmp_path / "fresh", case)
    try:
        html = monitoring_report(p.store, p.spec.project, spec=p.spec)
    finally:
        p.store.close()
    assert "no monitoring window yet: serve the model and run `loopml monitor`" in html
    assert "No alert raised." in html


def test_time_windows_show_their_periods_and_an_empty_period_as_empty(case, tmp_path):
    p = _project(tmp_path / "hourly", case, monitor={"every": "1h"})
    day = datetime(2024, 5, 1, tzinfo=UTC)
    at = [day + timedelta(hours=hour, minutes=5 + i) for hour in (10, 13) for i in range(40)]
    try:
        _serve(p, case, case.same.head(80), label=False, at=at)
        monitor_project(p.spec, p.store, now=day + timedelta(hours=14))
        html = monitoring_report(p.store, p.spec.project, spec=p.spec)
    finally:
        p.store.close()
    assert "3 window(s) from 2024-05-01 10:00:00 UTC to 2024-05-01 14:00:00 UTC" in html
    assert re.search(r"<tr><td>w2</td><td>–</td><td class=\"n\">0</td><td>2024-05-01 11:00:00 UTC – 2024-05-01 "
                     r"13:00:00 UTC</td><td><span class=\"muted\">empty</span>", html)
    assert '<div class="label">windows</div><div class="value">2</div>\n<div class="label">1 empty</div>' in html


# -- bad input -------------------------------------------------------------------------------------
def test_an_unknown_project_names_the_project_and_the_fix(monitored):
    with pytest.raises(NotFoundError) as caught:
        monitoring_report(monitored.store, "monitord")
    assert str(caught.value) == ("project 'monitord' has no model versions and no monitoring windows in this store: "
                                 "check the project name (`project:` in loopml.yaml), then `loopml run`, "
                                 "`loopml serve` and `loopml monitor`")


def test_windows_below_one_is_refused_with_the_fix(monitored):
    with pytest.raises(ValueError, match=r"^windows=0: give how many of the latest windows to show, 1 or more$"):
        monitoring_report(monitored.store, monitored.spec.project, windows=0)


# -- the command line ----------------------------------------------------------------------------
def _loopml(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_cli_monitor_report_computes_the_windows_then_writes_the_report(case, tmp_path):
    p = _project(tmp_path / "cli", case)
    _log_three_windows(p, case)
    p.store.close()
    done = _loopml("monitor", "--report", "out/monitoring.html", cwd=p.root)
    assert done.returncode == 1, done.stderr  # the shifted window alerts
    assert "3 new window(s), 0 with new labels: 3 alert(s)" in done.stdout
    assert "report written to out/monitoring.html" in done.stdout
    written = (p.root / "out" / "monitoring.html").read_text(encoding="utf-8")
    assert ">Alerts (3)</h2>" in written and '<span class="tag bad">drift</span>' in written


def test_cli_monitor_json_keeps_stdout_for_the_json(case, tmp_path):
    p = _project(tmp_path / "json", case)
    p.store.close()
    done = _loopml("monitor", "--json", "--report", "monitoring.html", cwd=p.root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["windows"] == []
    assert "report written to monitoring.html" in done.stderr
    assert "no monitoring window yet" in (p.root / "monitoring.html").read_text(encoding="utf-8")


def test_cli_report_into_a_folder_or_under_a_file_is_bad_input(case, tmp_path):
    p = _project(tmp_path / "bad", case)
    p.store.close()
    (p.root / "reports").mkdir()
    (p.root / "notes.txt").write_text("a file", encoding="utf-8")
    folder = _loopml("monitor", "--report", "reports", cwd=p.root)
    assert folder.returncode == 2
    assert "--report reports: is a folder; give the HTML file to write, such as reports/monitoring.html" in \
        folder.stderr
    under_file = _loopml("monitor", "--report", "notes.txt/monitoring.html", cwd=p.root)
    assert under_file.returncode == 2
    assert "--report notes.txt/monitoring.html: cannot write it (" in under_file.stderr
    assert "give a writable file path" in under_file.stderr


# -- in a browser --------------------------------------------------------------------------------
@needs_chromium
def test_in_headless_chromium_offline_every_chart_draws_and_the_drift_alert_is_listed(html, monitored, tmp_path):
    path = html.write(tmp_path / "monitoring.html")
    with offline_page(path) as opened:
        charts = opened.page.evaluate(CHARTS_JS)
        alerts = opened.page.locator("table.alerts tbody tr").all_inner_texts()
        shot = tmp_path / "monitoring.png"
        opened.page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("LOOPML_DOCS_IMAGES"):  # refresh the screenshot in docs/images
            opened.page.screenshot(path=str(DOCS_IMAGE), full_page=False)
    assert opened.blocked == [] and opened.requested == [path.as_uri()]
    assert len(charts) == 7, [c["title"] for c in charts]
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 100, chart
        assert chart["drawn"] > 0 and chart["empty_paths"] == 0, chart
    lines = {c["title"]: c for c in charts}
    assert lines["PSI per column and window (log scale)"]["paths"] >= 6
    alert = _drift_alert(monitored)
    assert any(row.startswith(f"{alert['id']}\tdrift\tw{alert['window_id']}\t") and "drift in state" in row
               for row in alerts), alerts
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
