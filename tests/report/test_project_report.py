"""The stage report of real runs of the loop, read as a user would: its numbers, in a headless browser, offline.

Two projects run the loop once per module on real tables: a binary one (the benefits survey, its
state unemployment rates as a second source joined on state; one job-loss category and the problem
text carry markup) and a regression one (hourly wages, whose education and language have missing
values) that first misses an unreachable goal, then meets a reachable one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
import yaml

from loopml import Report, project_report, run_project
from loopml.data.snapshot import frame_from_parquet
from loopml.errors import NotFoundError
from loopml.spec import ProjectSpec, load_spec
from loopml.store import Store

from .browser import CHARTS_JS, needs_chromium, offline_page

BENCH = Path(__file__).resolve().parents[1] / "bench_data"  # real tables, copied into the repo
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "stage-report.png"
HOSTILE = '<script>alert("joblost")</script>'
PROBLEM = "Who applies for unemployment insurance? <img src=x onerror=alert(1)>"
FAST = {"budget": "2m", "seed": 0, "folds": 3, "trials": 4}


@dataclass
class Project:
    root: Path
    spec: ProjectSpec
    store: Store


def _write(root: Path, doc: dict) -> ProjectSpec:
    (root / "loopml.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_spec(root)


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("binary")
    frame = pd.read_parquet(BENCH / "benefits.parquet").head(2000)
    frame["joblost"] = frame["joblost"].astype(str).replace("seasonal_job_ended", HOSTILE)
    frame.groupby("state", as_index=False)["stateur"].mean().to_parquet(root / "regional.parquet")
    frame.drop(columns=["stateur"]).to_parquet(root / "survey.parquet")
    spec = _write(root, {
        "project": "benefits",
        "business": {"problem": PROBLEM, "task": "binary", "target": "ui", "positive": "yes",
                     "goal": {"metric": "recall", "at_least": 0.6, "with": {"precision": 0.72}}},
        "data": {"sources": [{"name": "survey", "path": "survey.parquet"},
                             {"name": "regional", "path": "regional.parquet", "join": {"on": "state"},
                              "cost_per_1k_rows": 0.5}], "min_rows": 200},
        "model": FAST})
    store = Store.open(root)
    assert run_project(spec, store).outcome == "registered"
    yield Project(root, spec, store)
    store.close()


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("regression")
    pd.read_parquet(BENCH / "slid.parquet").to_parquet(root / "slid.parquet")
    doc = {"project": "wages",
           "business": {"problem": "Hourly wage of a worker", "task": "regression", "target": "wages",
                        "goal": {"metric": "rmse", "at_most": 3.0}},
           "data": {"sources": [{"name": "slid", "path": "slid.parquet"}], "min_rows": 200}, "model": FAST}
    store = Store.open(root)
    assert run_project(_write(root, doc), store).outcome == "goal_not_met"
    doc["business"]["goal"] = {"metric": "rmse", "at_most": 7.0}
    spec = _write(root, doc)
    assert run_project(spec, store).outcome == "registered"
    yield Project(root, spec, store)
    store.close()


@pytest.fixture(scope="module")
def html(binary: Project) -> Report:
    return project_report(binary.store, binary.spec.project, spec=binary.spec)


@pytest.fixture(scope="module")
def wages(regression: Project) -> Report:
    return project_report(regression.store, regression.spec.project, spec=regression.spec)


def _section(page: str, name: str) -> str:
    [found] = re.findall(rf'<section id="{name}">.*?</section>', page, re.DOTALL)
    return found


def _charts(page: str) -> list[str]:
    return re.findall(r'<svg [^>]*aria-label="([^"]*)"', page)


def _champion(p: Project):
    return p.store.alias(p.spec.project, "champion")


# -- the page ------------------------------------------------------------------------------------
def test_the_report_is_one_page_that_loads_nothing_from_elsewhere(html):
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"<(?:script|link|img|iframe)\b", html, re.IGNORECASE)
    assert "@import" not in html and "url(" not in html


def test_the_report_has_every_section_and_chart(html):
    for heading in ("Business goal and verdict", "The loop: decisions (7)", "Data", "Model", "Model card"):
        assert f">{heading}</h2>" in html, heading
    charts = _charts(html)
    assert {"Missing values: survey", "Missing values: regional", "stateur", "joblost"} <= set(charts)
    assert charts[-4:] == ["Learning curve: recall by training rows", "Precision and recall on the locked holdout",
                           "Feature importance", "Calibration: predicted against observed"]


def test_the_goal_and_the_verdict_are_the_runs(html, binary):
    holdout = _champion(binary).metrics["holdout"]
    goal = _section(html, "goal")
    assert "recall &gt;= 0.6 with precision &gt;= 0.72" in goal
    assert '<span class="tag good">goal met</span> model version 1 meets the goal and is the champion' in goal
    assert f'<div class="value">{holdout["value"]:.4g}</div>' in goal
    assert f"95% CI {holdout['ci_low']:.4g}–{holdout['ci_high']:.4g}" in goal


def test_the_timeline_holds_every_decision_of_the_run_with_its_numbers(html, binary):
    decisions = binary.store.decisions(binary.spec.project)
    timeline = _section(html, "timeline")
    assert re.findall(r'<span class="muted">#(\d+)</span> <b>([a-z_]+ · [a-z_]+)</b>', timeline) == [
        (str(d.id), f"{d.stage} · {d.gate}") for d in decisions]
    paid = next(d for d in decisions if d.gate == "source_pays_off")
    assert f"<dt>gain</dt><dd>{paid.evidence['gain']:.4g}</dd>" in timeline
    assert "<dt>with</dt><dd>precision 0.72</dd>" in timeline  # a small dict of numbers, flattened


def test_each_source_shows_availability_usability_quality_and_cost(html):
    data = _section(html, "data")
    survey, regional = re.findall(r'<article class="source">.*?</article>', data, re.DOTALL)
    for part in ("Availability", "Usability", "Quality", "Cost"):
        assert f"<caption>{part}</caption>" in survey and f"<caption>{part}</caption>" in regional
    assert "<th>rows read</th><td>2,000</td>" in survey and "<th>rows read</th><td>51</td>" in regional
    assert "<th>joined on</th><td>state: 100.0% of rows matched</td>" in regional
    assert "<th>per 1,000 rows</th><td>0.5</td>" in regional and "<th>verdict</th><td>added" in regional
    assert "<th>unusable columns</th><td>bluecol: constant" in survey
    assert re.search(r"stateur: share of rows per bin, by ui; importance \d+\.\d%", regional)


def test_the_precision_recall_chart_marks_the_operating_point_and_the_goal(html, binary):
    mv = _champion(binary)
    holdout = mv.metrics["holdout"]["metrics"]
    model = _section(html, "model")
    assert (f"gives recall {holdout['recall']:.3f} and precision {holdout['precision']:.3f} on "
            f"{mv.lineage['holdout_rows']} holdout rows") in model
    assert re.search(r'<circle class="mark marker" [^>]*><title>threshold 0\.\d+: \(0\.\d+, 0\.\d+\)</title>', model)
    assert "<title>recall ≥ 0.6: 0.6</title>" in model and "<title>precision ≥ 0.72: 0.72</title>" in model


def test_the_leaderboard_and_the_learning_curve_come_from_the_run(html, binary):
    goal = next(d for d in binary.store.decisions(binary.spec.project) if d.gate == "goal")
    model = _section(html, "model")
    rows = re.findall(r'<tr><td class="n">(\d+)</td><td>([a-z_]+)</td>', model)
    assert rows == [(str(r["rank"]), r["family"]) for r in goal.evidence["leaderboard"]]
    curve = goal.evidence["learning_curve"]
    for point in curve:
        assert f"out of fold, on a share of the training rows: ({point['rows']:.4g}, {point['score']:.4g})" in model


def test_the_model_card_gives_use_lineage_metrics_with_intervals_and_limitations(html, binary):
    mv = _champion(binary)
    card = _section(html, "card")
    assert "<th>problem</th><td>Who applies for unemployment insurance? &lt;img" in card
    assert f"<th>source survey</th><td>2,000 rows · {mv.lineage['sources']['survey'][:12]}</td>" in card
    assert f"<th>snapshot</th><td>{mv.lineage['data_hash'][:12]} · 2,000 rows × 16 features" in card
    holdout = mv.metrics["holdout"]
    found = re.findall(r'<tr><td>([a-z_0-9]+)(?: <span class="tag">goal</span>)?</td><td class="n">([^<]+)</td>'
                       r'<td class="n">([^<]+)</td></tr>', card)
    metrics = {name: (value, interval) for name, value, interval in found}
    assert set(metrics) == set(holdout["metrics"])
    assert metrics["recall"] == (f"{holdout['value']:.4g}", f"{holdout['ci_low']:.4g}–{holdout['ci_high']:.4g}")
    for name, (value, interval) in metrics.items():
        low, high = (float(v) for v in interval.split("–"))
        assert low <= float(value) <= high, name
    assert "the locked holdout has 400 rows, so its intervals are wide" in card


def test_markup_in_the_data_and_the_spec_is_shown_as_text(html):
    assert "<script" not in html and "<img" not in html
    assert "<title>&lt;script&gt;alert(&quot;joblost&quot;)&lt;/script&gt;</title>" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_same_store_gives_the_same_page_and_the_report_writes_nothing(html, binary):
    before = len(binary.store.decisions(binary.spec.project)), binary.store.runs(binary.spec.project)
    assert project_report(binary.store, binary.spec.project, spec=binary.spec) == html
    assert (len(binary.store.decisions(binary.spec.project)), binary.store.runs(binary.spec.project)) == before


def test_without_the_spec_the_goal_comes_from_what_the_run_recorded(html, binary):
    bare = project_report(binary.store, binary.spec.project)
    assert _section(bare, "goal") == _section(html, "goal")
    assert "<th>problem</th><td>Who applies for unemployment insurance?" in bare


def test_a_report_shows_in_jupyter_in_an_iframe_and_writes_itself(html, tmp_path):
    assert html._repr_html_().startswith('<iframe srcdoc="&lt;!doctype html&gt;')
    assert html.write(tmp_path / "reports" / "report.html").read_text(encoding="utf-8") == html


# -- regression, and a run that missed its goal --------------------------------------------------
def test_a_regression_report_draws_the_residuals_against_the_goal(wages, regression):
    charts = _charts(wages)
    assert charts[-4:] == ["Learning curve: rmse by training rows", "Residuals on the locked holdout",
                           "Feature importance", "Calibration: predicted against observed"]
    model = _section(wages, "model")
    assert "<title>goal rmse 7: 7</title>" in model and "<title>−7: -7</title>" in model
    assert re.search(r"600 of 823 holdout rows; rmse [0-9.]+, \d+\.\d% of rows within ±7", model)


def test_the_missing_value_map_counts_the_snapshots_missing_values(wages, regression):
    snapshot = regression.store.snapshot(_champion(regression).snapshot_id)
    frame = frame_from_parquet(regression.store.read_snapshot(snapshot))
    missing = int(frame.drop(columns=["wages"]).isna().sum().sum())
    assert missing > 0
    data = _section(wages, "data")
    assert f"{missing:,} missing value(s) in the cleaned snapshot" in data
    cells = re.findall(r"<title>education · rows ([\d,]+)–([\d,]+): (\d+\.\d)% missing</title>", data)
    assert cells[0][0] == "1" and cells[-1][1] == f"{len(frame):,}"
    rows = int(cells[0][1].replace(",", ""))
    assert f"{frame['education'].iloc[:rows].isna().mean():.1%}" == f"{cells[0][2]}%"


def test_the_timeline_spans_both_runs_and_the_miss_is_a_limitation(wages, regression):
    timeline = _section(wages, "timeline")
    assert re.findall(r'<li class="run( selected)?">run (\d+)', timeline) == [("", "1"), (" selected", "2")]
    [miss] = [d for d in regression.store.decisions("wages") if d.gate == "goal" and d.verdict == "fail"]
    explanation = miss.evidence["diagnosis"]["explanation"]
    card = unescape(_section(wages, "card"))
    assert f"run 1, diagnosis ({miss.evidence['diagnosis']['cause']}): {explanation}" in card


def test_the_report_of_the_run_that_missed_shows_why_and_what_it_searched(regression):
    page = project_report(regression.store, "wages", spec=regression.spec, run=1)
    goal = unescape(_section(page, "goal"))
    assert "goal not met</span> goal rmse <= 3 is not reachable with this data" in goal
    assert "run 1 · goal rmse &lt;= 3 · goal not met" in page  # the goal that run had, not today's
    assert "No model was registered in this run" in page
    assert _charts(page)[-1] == "Learning curve: rmse by training rows"  # from the diagnosis's evidence
    assert "extrapolated, the goal needs over 100× the rows used: more rows will not reach it" in page
    assert re.search(r'<tr><td class="n">1</td><td>[a-z_]+</td>', _section(page, "model"))


# -- bad input -----------------------------------------------------------------------------------
def test_an_unknown_project_or_run_names_the_fix(binary):
    with pytest.raises(NotFoundError) as caught:
        project_report(binary.store, "benefit")
    assert str(caught.value) == ("project 'benefit' has no run in this store yet: run `loopml run` first (or check "
                                 "the project name, `project:` in loopml.yaml)")
    with pytest.raises(NotFoundError) as caught:
        project_report(binary.store, "benefits", run=9)
    assert str(caught.value) == "project 'benefits' has no run 9; its runs: 1 (`loopml status` shows the latest)"


# -- the command line ----------------------------------------------------------------------------
def _loopml(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_cli_report_writes_the_page(regression):
    done = _loopml("report", "--out", "out/report.html", "--run", "2", cwd=regression.root)
    assert done.returncode == 0, done.stderr
    assert "report written to out/report.html" in done.stdout
    written = (regression.root / "out" / "report.html").read_text(encoding="utf-8")
    assert ">Model card</h2>" in written and "Residuals on the locked holdout" in written


def test_cli_report_bad_input_exits_2_with_the_fix(regression, tmp_path):
    unknown = _loopml("report", "--run", "7", cwd=regression.root)
    assert unknown.returncode == 2
    assert "project 'wages' has no run 7; its runs: 2, 1" in unknown.stderr
    (regression.root / "reports").mkdir(exist_ok=True)
    folder = _loopml("report", "--out", "reports", cwd=regression.root)
    assert folder.returncode == 2
    assert "--out reports: is a folder; give the HTML file to write, such as reports/report.html" in folder.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(regression.root / "slid.parquet", fresh)
    shutil.copy(regression.root / "loopml.yaml", fresh)
    never_run = _loopml("report", cwd=fresh)
    assert never_run.returncode == 2
    assert "project 'wages' has no run in this store yet: run `loopml run` first" in never_run.stderr
    assert not (fresh / "report.html").exists()


# -- in a browser --------------------------------------------------------------------------------
@needs_chromium
def test_in_headless_chromium_offline_every_chart_draws(html, tmp_path):
    path = html.write(tmp_path / "report.html")
    with offline_page(path) as opened:
        charts = opened.page.evaluate(CHARTS_JS)
        decisions = opened.page.locator("ol.timeline li.decision").count()
        if os.environ.get("LOOPML_DOCS_IMAGES"):  # refresh the screenshot in docs/images
            opened.page.locator("#model").scroll_into_view_if_needed()
            opened.page.screenshot(path=str(DOCS_IMAGE), full_page=False)
    assert opened.blocked == [] and opened.requested == [path.as_uri()]
    assert [c["title"] for c in charts] == _charts(html) and len(charts) >= 10
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 60, chart
        assert chart["drawn"] > 0 and chart["empty_paths"] == 0, chart
    assert decisions == 7


# -- with a recorded assessment ------------------------------------------------------------------
def test_a_recorded_assessment_of_the_sources_is_shown_with_its_time(regression):
    done = _loopml("assess", "--json", cwd=regression.root)
    assert done.returncode == 0, done.stderr
    [assessed] = [d for d in regression.store.decisions("wages") if d.gate == "assessment"]
    page = project_report(regression.store, "wages", spec=regression.spec)
    [source] = re.findall(r'<article class="source">.*?</article>', _section(page, "data"), re.DOTALL)
    assert f"assessed by `loopml assess` at {assessed.at:%Y-%m-%d %H:%M:%S} UTC" in source
    quality = assessed.evidence["sources"][0]["quality"]
    assert "<th>holds the target</th><td>yes</td>" in source
    assert f"<th>duplicate rows</th><td>{quality['duplicate_share']:.1%}</td>" in source


def test_the_report_of_an_earlier_run_leaves_out_an_assessment_made_after_it(regression):
    done = _loopml("assess", "--json", cwd=regression.root)
    assert done.returncode == 0, done.stderr
    first = min(d.run_id for d in regression.store.decisions("wages") if d.gate == "goal_fits_task")
    page = project_report(regression.store, "wages", spec=regression.spec, run=first)
    assert "assessed by `loopml assess`" not in _section(page, "data")
    assert "assessed by `loopml assess`" in _section(project_report(regression.store, "wages"), "data")


def test_a_multiclass_report_draws_confidence_calibration_and_per_class_recall(tmp_path):
    pd.read_parquet(BENCH / "segment.parquet").sample(900, random_state=0).to_parquet(tmp_path / "segment.parquet")
    spec = _write(tmp_path, {
        "project": "segments",
        "business": {"problem": "Which surface an image region shows", "task": "multiclass", "target": "category",
                     "goal": {"metric": "accuracy", "at_least": 0.8}},
        "data": {"sources": [{"name": "regions", "path": "segment.parquet"}], "min_rows": 200}, "model": FAST})
    store = Store.open(tmp_path)
    try:
        assert run_project(spec, store).outcome == "registered"
        page = project_report(store, "segments", spec=spec)
    finally:
        store.close()
    assert _charts(page)[-3:] == ["Recall per class on the holdout", "Feature importance",
                                  "Calibration: predicted against observed"]
    model = unescape(_section(page, "model"))
    assert "the top class's probability in" in model
    assert all(f">{c}<" in model for c in ("brickface", "cement", "foliage", "grass", "path", "sky", "window"))
    assert "accuracy" in _section(page, "goal")
