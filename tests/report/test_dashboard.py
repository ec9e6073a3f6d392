"""The dashboard as a user meets it: a project that has run, served over loopback, read in headless Chromium.

The project: the loop run twice on 1,500 real rows of the benefits survey (seeds 0 and 1, so two model
versions, v2 the champion), then 300 further rows logged as serving logs them, labeled, and monitored in
two windows. The dashboard runs in uvicorn on a free 127.0.0.1 port; the browser may reach nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
import yaml

from loopml.decisions import Decision
from loopml.model.artifact import TrainedModel
from loopml.operations.monitor import monitor_project
from loopml.process import run_project
from loopml.report._diagram import loop_position, process_diagram
from loopml.report.dashboard import dashboard_app
from loopml.spec import ProjectSpec, load_spec
from loopml.store import Store

BENCH = Path(__file__).resolve().parents[1] / "bench_data"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
CHROMIUM = shutil.which("chromium")
TOKEN = "s3cret-admin-token"
PROJECT = "dashboard-test"


@dataclass
class Site:
    url: str
    spec: ProjectSpec
    store: Store


def _write_spec(root: Path, seed: int) -> ProjectSpec:
    doc = {"project": PROJECT,
           "business": {"problem": "Who applies for unemployment insurance?", "task": "binary", "target": "ui",
                        "positive": "yes", "goal": {"metric": "roc_auc", "at_least": 0.6}},
           "data": {"sources": [{"name": "survey", "path": "benefits.parquet"}], "min_rows": 200},
           "model": {"budget": "2m", "seed": seed, "folds": 3, "trials": 2},
           "operations": {"monitor": {"window": 150}}}
    (root / "loopml.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_spec(root)


def _log_and_monitor(spec: ProjectSpec, store: Store, fresh: pd.DataFrame) -> None:
    """Log ``fresh``'s predictions by the champion as serving logs them, label them all, and monitor."""
    champion = store.alias(spec.project, "champion")
    model = TrainedModel.from_bytes(store.read_model(champion), root=spec.root)
    features = fresh.drop(columns=["ui", "bluecol"])
    records = json.loads(features.to_json(orient="records"))
    rows = [{"id": uuid.uuid4().hex, "features": r, "prediction": y, "probability": float(p), "latency_ms": 0.5}
            for r, y, p in zip(records, model.predict(features).tolist(), model.predict_proba(features)[:, 1],
                               strict=True)]
    store.log_predictions(spec.project, champion.id, rows)
    for row, truth in zip(rows, fresh["ui"].tolist(), strict=True):
        store.record_feedback(spec.project, row["id"], truth)
    monitor_project(spec, store)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProjectSpec, Store]]:
    root = tmp_path_factory.mktemp("dashboard")
    frame = pd.read_parquet(BENCH / "benefits.parquet")
    frame.head(1500).to_parquet(root / "benefits.parquet")
    store = Store.open(root)
    for seed in (0, 1):
        spec = _write_spec(root, seed)
        assert run_project(spec, store).outcome == "registered"
    _log_and_monitor(spec, store, frame.iloc[1500:1800].reset_index(drop=True))
    yield spec, store
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(app, port: int) -> Iterator[str]:
    """The app in uvicorn on 127.0.0.1:``port``, in a thread, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the dashboard did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(project) -> Iterator[Site]:
    spec, store = project
    with _serve(dashboard_app(store, spec.project, spec=spec, admin_token=TOKEN), _free_port()) as url:
        yield Site(url, spec, store)


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=20) as c:
        yield c


def _champion(site: Site) -> int:
    return site.store.alias(site.spec.project, "champion").version


def _changes(site: Site) -> int:
    return len(site.store.registry_decisions(site.spec.project))


def _notice(html: str) -> str:
    start = html.index('class="notice bad"')
    return html[html.index(">", start) + 1:html.index("</p>", start)].replace("&#39;", "'")


# -- plain HTTP: pages and bad input ---------------------------------------------------------------
def test_every_page_answers_and_reading_them_changes_nothing(site, client):
    before = (len(site.store.decisions(PROJECT)), _champion(site))
    for path, heading in (("/", "Where the loop stands"), ("/decisions", "Decisions"), ("/models", "Model versions"),
                          ("/models/1", "Model version 1"), ("/monitoring", "Drift per column")):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert heading in answer.text and '<nav class="dashboard">' in answer.text, path
        assert "http://" not in answer.text.replace('xmlns="http://www.w3.org/2000/svg"', ""), path
    assert (len(site.store.decisions(PROJECT)), _champion(site)) == before


def test_an_unknown_page_names_the_pages_there_are(client):
    answer = client.get("/champions")
    assert answer.status_code == 404
    assert _notice(answer.text) == ("no page at /champions; the dashboard's pages are /, /decisions, /models, "
                                    "/monitoring and /models/N for one model version")


def test_an_unknown_version_names_the_versions_there_are(client):
    answer = client.get("/models/9")
    assert answer.status_code == 404
    assert _notice(answer.text) == f"project '{PROJECT}' has no model version 9; known versions: 1, 2"


def test_a_version_that_is_not_a_number_is_bad_input(client):
    answer = client.get("/models/latest")
    assert answer.status_code == 400
    assert _notice(answer.text).startswith("version: input should be a valid integer")
    assert "found 'latest'" in _notice(answer.text)


def test_an_unknown_stage_suggests_the_closest(client):
    answer = client.get("/decisions", params={"stage": "modle"})
    assert answer.status_code == 400
    assert _notice(answer.text) == ("stage: 'modle' is not a stage of the loop; did you mean 'model'? give one of "
                                    "business, data, model, operations, maintenance, or leave it out for every stage")


def test_a_limit_under_one_is_bad_input(client):
    answer = client.get("/decisions", params={"limit": 0})
    assert answer.status_code == 400
    assert _notice(answer.text) == "limit: found 0; give how many of the latest decisions to show, 1 or more"


def test_the_stage_filter_shows_only_that_stages_decisions_with_their_evidence(site, client):
    html = client.get("/decisions", params={"stage": "data"}).text
    rows = html.count('<tr data-stage="')
    assert rows == html.count('<tr data-stage="data">') == sum(1 for d in site.store.decisions(PROJECT)
                                                               if d.stage == "data")
    assert '<details class="evidence">' in html and "&#34;rows&#34;" in html


def test_a_wrong_token_is_refused_and_nothing_changes(site, client):
    before, changes = _champion(site), _changes(site)
    target = 1 if before == 2 else 2
    answer = client.post(f"/models/{target}/promote", data={"token": "guess", "actor": "eve", "reason": "try"})
    assert answer.status_code == 401
    assert _notice(answer.text) == ("wrong admin token: give the token set in LOOPML_ADMIN_TOKEN in the admin token "
                                    "field; nothing changed")
    assert 'value="try"' in answer.text and "guess" not in answer.text  # the reason is kept, the token never echoed
    assert (_champion(site), _changes(site)) == (before, changes)


def test_a_change_without_a_reason_is_refused_and_nothing_changes(site, client):
    before, changes = _champion(site), _changes(site)
    target = 1 if before == 2 else 2
    answer = client.post(f"/models/{target}/promote", data={"token": TOKEN, "actor": "ana", "reason": "  "})
    assert answer.status_code == 400
    assert _notice(answer.text) == ("why? A change of the champion needs a reason for the audit log: write it in the "
                                    "reason field; nothing changed")
    assert (_champion(site), _changes(site)) == (before, changes)


def test_a_change_without_who_is_refused(site, client):
    answer = client.post("/models/rollback", data={"token": TOKEN, "reason": "the March labels"})
    assert answer.status_code == 400
    assert _notice(answer.text) == ("who makes the change? Write your name in the 'who' field, for the audit log; "
                                    "nothing changed")


def test_a_form_field_that_is_not_one_is_refused(site, client):
    answer = client.post("/models/1/promote", data={"token": TOKEN, "actor": "ana", "reason": "r", "force": "1"})
    assert answer.status_code == 400
    assert _notice(answer.text) == "force: extra inputs are not permitted, found '1'; the form's fields are token, " \
                                   "actor, reason"


def test_promoting_an_unknown_version_is_refused_and_names_the_versions(site, client):
    changes = _changes(site)
    answer = client.post("/models/9/promote", data={"token": TOKEN, "actor": "ana", "reason": "r"})
    assert answer.status_code == 404
    assert _notice(answer.text) == (f"project '{PROJECT}' has no model version 9; known versions: 1, 2; "
                                    "nothing changed")
    assert _changes(site) == changes


def test_promoting_the_champion_is_a_conflict(site, client):
    champion = _champion(site)
    answer = client.post(f"/models/{champion}/promote", data={"token": TOKEN, "actor": "ana", "reason": "r"})
    assert answer.status_code == 409
    assert _notice(answer.text) == (f"model version {champion} is already the champion of project '{PROJECT}'; "
                                    "nothing changed")


def test_a_script_may_post_json_and_rollback_is_a_decision_with_who_and_why(site, client):
    before = _champion(site)
    client.post(f"/models/{1 if before == 2 else 2}/promote", json={"token": TOKEN, "actor": "ci", "reason": "swap"})
    answer = client.post("/models/rollback", json={"token": TOKEN, "actor": "ana", "reason": "back to the old one"})
    assert answer.status_code == 303
    change = site.store.registry_decisions(PROJECT)[-1]
    assert answer.headers["location"] == f"/models?change={change.id}"
    assert (change.action, change.actor, change.evidence["reason"]) == ("rollback", "ana", "back to the old one")
    assert _champion(site) == before
    page = client.get(answer.headers["location"]).text
    assert f"champion: v{3 - before} → v{before} by ana: back to the old one (decision #{change.id})" in page


def test_an_unknown_change_id_is_named(client):
    answer = client.get("/models", params={"change": 999})
    assert answer.status_code == 200
    assert _notice(answer.text) == f"change 999 is not a registry change of project '{PROJECT}'"


def test_without_an_admin_token_promote_is_off_and_refused(project, monkeypatch):
    spec, store = project
    monkeypatch.delenv("LOOPML_ADMIN_TOKEN", raising=False)
    with _serve(dashboard_app(store, spec.project, spec=spec), _free_port()) as url:
        page = httpx.get(f"{url}/models").text
        answer = httpx.post(f"{url}/models/1/promote", data={"token": "", "actor": "a", "reason": "r"})
    assert "Promote and rollback are off: start <code>loopml ui</code> with LOOPML_ADMIN_TOKEN set." in page
    assert answer.status_code == 403
    assert _notice(answer.text) == ("promote and rollback are disabled: start `loopml ui` with LOOPML_ADMIN_TOKEN "
                                    "set; nothing changed")


def test_without_a_spec_the_goal_comes_from_the_business_decision(project):
    spec, store = project
    with _serve(dashboard_app(store, spec.project, admin_token=TOKEN), _free_port()) as url:
        html = httpx.get(url).text
    assert "goal roc_auc (threshold 0.6)" in html


def test_a_project_that_has_not_run_yet_says_how_to_start(tmp_path):
    store = Store.open(tmp_path)
    try:
        with _serve(dashboard_app(store, "fresh", admin_token=TOKEN), _free_port()) as url:
            pages = {path: httpx.get(url + path) for path in ("/", "/decisions", "/models", "/monitoring")}
    finally:
        store.close()
    assert {path: a.status_code for path, a in pages.items()} == dict.fromkeys(pages, 200)
    assert "No decision yet: <code>loopml run</code> starts the loop." in pages["/"].text
    assert pages["/"].text.count('data-state="not_reached"') == 5
    assert "No model version yet: <code>loopml run</code> registers one when the goal is met." in pages["/models"].text
    assert "project &#39;fresh&#39; has no model versions and no monitoring windows" in pages["/monitoring"].text


# -- where the loop stands ---------------------------------------------------------------------------
def _d(i: int, stage: str, gate: str, verdict: str, next_stage: str | None, run_id: int | None = 1) -> Decision:
    return Decision(stage=stage, gate=gate, verdict=verdict, action="a", next_stage=next_stage, summary=gate,
                    run_id=run_id, id=i)


def test_a_stage_that_sent_the_loop_back_and_one_that_stopped_it_are_told_apart():
    decisions = [_d(1, "business", "goal_fits_task", "pass", "data", run_id=1),
                 _d(2, "business", "goal_fits_task", "pass", "data", run_id=2),
                 _d(3, "data", "enough_data", "pass", "model", run_id=2),
                 _d(4, "model", "goal", "fail", "data", run_id=2),
                 _d(5, "data", "enough_data", "pass", "model", run_id=2),
                 _d(6, "model", "goal", "fail", "business", run_id=2),
                 _d(7, "business", "feasibility", "fail", None, run_id=2)]
    runs = [{"id": 1, "kind": "run"}, {"id": 2, "kind": "run"}, {"id": 3, "kind": "assess"}]
    position = loop_position(decisions, runs)
    states = {s.stage: (s.state, s.went_back) for s in position.stages}
    assert states == {"business": ("failed", 0), "data": ("passed", 0), "model": ("went_back", 2),
                      "operations": ("not_reached", 0), "maintenance": ("not_reached", 0)}
    assert position.current == "business" and position.run["id"] == 2
    assert ("model", "data", 1) in position.back_edges and ("model", "business", 1) in position.back_edges
    svg = process_diagram(position)
    assert 'data-stage="model" data-state="went_back"' in svg and 'data-stage="business" data-state="failed"' in svg
    assert svg.count('data-current="true"') == 1 and "1×" in svg


def test_a_monitoring_alert_after_the_run_fails_operations_and_points_at_maintenance():
    decisions = [_d(1, "business", "goal_fits_task", "pass", "data"), _d(2, "model", "goal", "pass", "operations"),
                 _d(3, "operations", "pre_deploy", "pass", "maintenance"),
                 _d(4, "operations", "monitor", "fail", "maintenance", run_id=None)]
    position = loop_position(decisions, [{"id": 1, "kind": "run"}])
    assert {s.stage: s.state for s in position.stages}["operations"] == "failed"
    assert position.current == "maintenance"


# -- in a browser ----------------------------------------------------------------------------------
_DRAWN_JS = """(selector) => Array.from(document.querySelectorAll(selector)).map(svg => {
    const marks = Array.from(svg.querySelectorAll('.mark'));
    const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 && b.height > 0; });
    const box = svg.getBoundingClientRect();
    return {title: svg.getAttribute('aria-label'), width: box.width, height: box.height, drawn: drawn.length,
            marks: marks.length};
})"""


@pytest.fixture(scope="module")
def browser(site):
    if CHROMIUM is None:
        pytest.skip("install chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="install the test extra: pip install -e '.[test]'")
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, site):
    """A fresh page that may reach the dashboard and nothing else; the test asserts nothing else was asked for."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.blocked = []

    def only_the_dashboard(route) -> None:
        if route.request.url.startswith(site.url):
            route.continue_()
        else:
            tab.blocked.append(route.request.url)
            route.abort()

    tab.route("**/*", only_the_dashboard)
    yield tab
    context.close()
    assert tab.blocked == []


def _shoot(page, name: str) -> None:
    if os.environ.get("LOOPML_DOCS_IMAGES"):  # refresh the screenshots in docs/images
        page.screenshot(path=str(DOCS_IMAGES / name), full_page=False)


def test_the_loop_page_draws_the_diagram_with_each_stage_and_a_chart(page, site):
    assert page.goto(site.url + "/").status == 200
    stages = page.eval_on_selector_all("svg.diagram a.stage", "as => as.map(a => [a.dataset.stage, a.dataset.state, "
                                                              "a.dataset.current || ''])")
    # Operations' latest verdict is the monitoring pass's (an alert fails it); a change by hand adds only info.
    [monitored] = [d for d in site.store.decisions(PROJECT) if d.gate == "monitor"]
    operations = "passed" if monitored.verdict == "pass" else "failed"
    here = "operations" if _changes(site) else "maintenance"
    assert stages == [["business", "passed", ""], ["data", "passed", ""], ["model", "passed", ""],
                      ["operations", operations, "true" if here == "operations" else ""],
                      ["maintenance", "not_reached", "true" if here == "maintenance" else ""]]
    [diagram] = page.evaluate(_DRAWN_JS, "svg.diagram")
    assert diagram["width"] > 600 and diagram["drawn"] >= 5 + 4 + 1, diagram  # boxes, forward arrows, "here"
    [chart] = page.evaluate(_DRAWN_JS, "svg.chart")
    assert chart["width"] > 300 and chart["drawn"] >= 2, chart
    assert "The loop is at" in page.inner_text("#position")
    _shoot(page, "dashboard.png")
    page.click("svg.diagram a.stage[data-stage=model]")
    page.wait_for_url("**/decisions?stage=model")
    assert set(page.eval_on_selector_all("table.decisions tbody tr", "rs => rs.map(r => r.dataset.stage)")) == {"model"}


def test_the_monitoring_page_draws_its_charts_inside_the_dashboard(page, site):
    assert page.goto(site.url + "/monitoring").status == 200
    charts = page.evaluate(_DRAWN_JS, "svg.chart")
    assert len(charts) >= 4, [c["title"] for c in charts]
    assert all(c["drawn"] > 0 and c["width"] > 100 for c in charts), charts
    assert page.inner_text("nav.dashboard a.active") == "monitoring"


def test_filtering_decisions_by_stage_in_the_browser(page, site):
    page.goto(site.url + "/decisions")
    everything = page.locator("table.decisions tbody tr").count()
    page.click(".filters a[data-stage=operations]")
    page.wait_for_url("**/decisions?stage=operations")
    shown = page.eval_on_selector_all("table.decisions tbody tr", "rs => rs.map(r => r.dataset.stage)")
    assert set(shown) == {"operations"} and 0 < len(shown) < everything
    assert len(shown) == sum(1 for d in site.store.decisions(PROJECT) if d.stage == "operations")


def test_promote_without_the_token_is_refused_on_the_page_and_in_the_store(page, site):
    before, changes = _champion(site), _changes(site)
    target = 1 if before == 2 else 2
    page.goto(site.url + "/models")
    page.fill("input[name=actor]", "eve")
    page.fill("input[name=reason]", "no token")
    with page.expect_response(f"**/models/{target}/promote") as answer:
        page.click(f"button[formaction='/models/{target}/promote']")
    assert answer.value.status == 401
    assert page.inner_text("#outcome").startswith("no admin token")
    assert page.inner_text(f"tr[data-version='{before}'] td.aliases") == "champion"
    assert page.inner_text(f"tr[data-version='{target}'] td.aliases") == ""
    assert (_champion(site), _changes(site)) == (before, changes)


def test_promote_with_the_token_and_a_reason_moves_the_champion_on_the_page_and_in_the_store(page, site):
    before = _champion(site)
    target = 1 if before == 2 else 2
    page.goto(site.url + "/models")
    page.fill("input[name=token]", TOKEN)
    page.fill("input[name=actor]", "ana")
    page.fill("input[name=reason]", f"v{target} holds recall on the March labels")
    page.click(f"button[formaction='/models/{target}/promote']")
    page.wait_for_url("**/models?change=*")
    assert page.inner_text("#outcome").startswith(
        f"champion: v{before} → v{target} by ana: v{target} holds recall on the March labels")
    assert page.inner_text(f"tr[data-version='{target}'] td.aliases") == "champion"
    assert page.inner_text(f"tr[data-version='{before}'] td.aliases") == ""
    assert _champion(site) == target
    change = site.store.registry_decisions(PROJECT)[-1]
    assert (change.action, change.actor, change.evidence["reason"]) == ("promote", "ana",
                                                                        f"v{target} holds recall on the March labels")
    _shoot(page, "dashboard-models.png")


# -- the command -----------------------------------------------------------------------------------
def test_loopml_ui_serves_the_dashboard_until_interrupted(project):
    spec, _ = project
    port = _free_port()
    env = {**os.environ, "LOOPML_ADMIN_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "loopml", "ui", "--spec", str(spec.root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/models", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        assert answer.status_code == 200 and "promote v" in answer.text
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert f"dashboard of {PROJECT} on http://127.0.0.1:{port} (promote and rollback need the admin token)" in stderr


def test_loopml_ui_without_a_spec_is_bad_input(tmp_path):
    done = subprocess.run([sys.executable, "-m", "loopml", "ui", "--spec", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert f"{tmp_path / 'loopml.yaml'}: no such spec file; create one with `loopml init DATAFILE`" in done.stderr


def test_an_unexpected_failure_is_a_500_page_that_says_what_failed(tmp_path):
    import sqlalchemy as sa

    store = Store.open(tmp_path)
    try:
        with store.engine.begin() as conn:  # a store damaged outside loopml: its decisions table is gone
            conn.execute(sa.text("DROP TABLE decisions"))
        with _serve(dashboard_app(store, "damaged", admin_token=TOKEN), _free_port()) as url:
            answer = httpx.get(url + "/decisions")
    finally:
        store.close()
    assert answer.status_code == 500
    assert "the dashboard failed on /decisions: OperationalError" in answer.text
    assert "Nothing was changed; the server&#39;s log holds the traceback" in answer.text
