import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from rich.console import Console

from loopml.data import assess_project, render_assessment
from loopml.spec import load_spec

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"


def _spec(folder: Path, sources: list[dict]) -> Path:
    doc = {
        "project": "benefits-assess",
        "business": {"problem": "Who applies for unemployment insurance?", "task": "binary", "target": "ui",
                     "positive": "yes", "goal": {"metric": "roc_auc", "at_least": 0.6}},
        "data": {"sources": sources},
    }
    path = folder / "loopml.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two")
    shutil.copy(BENEFITS, folder / "benefits.csv")
    states = sorted(pd.read_csv(BENEFITS)["state"].unique())[:-2]  # two states have no regional row
    regional = pd.DataFrame({"state": states, "regional_rate": [round(0.02 + 0.001 * i, 3) for i in range(49)]})
    regional.to_csv(folder / "regional.csv", index=False)
    spec = load_spec(_spec(folder, [
        {"name": "survey", "path": "benefits.csv"},
        {"name": "regional", "path": "regional.csv", "join": {"on": "state"}, "cost_per_1k_rows": 0.4},
    ]))
    return spec, assess_project(spec), states


def test_each_source_has_four_parts_with_numbers(two_sources):
    _, pa, _ = two_sources
    survey, regional = pa.sources
    seconds = survey.availability["read_seconds"]
    assert survey.availability == {"reachable": True, "error": None, "read_seconds": seconds,
                                   "rows": 4877, "total_rows": 4877, "more_rows": 0, "newest": None}
    assert survey.usability["target_present"] and survey.usability["target_ok"]
    assert survey.usability["unusable"] == {"bluecol": "constant: every row is 'yes'"}
    assert survey.quality["duplicate_rows"] == 0
    assert survey.quality["target_balance"]["yes"] == pytest.approx(0.684, abs=1e-3)
    assert survey.cost == {"cost_per_1k_rows": 0.0, "rows": 4877, "cost": 0.0, "read_seconds": seconds,
                           "cost_all_rows": 0.0}
    assert regional.availability["rows"] == 49 and regional.usability["target_present"] is False
    assert regional.usability["columns"] == {"state": "id", "regional_rate": "numeric"}
    assert regional.usability["unusable"] == {}  # the join key is unique per row by design
    assert regional.cost["cost"] == pytest.approx(49 / 1000 * 0.4)
    assert regional.quality["label_noise"] is None and regional.quality["rows"] == 49


def test_the_join_match_rate_is_measured(two_sources):
    _, pa, states = two_sources
    survey = pd.read_csv(BENEFITS)
    expected = float(survey["state"].isin(states).mean())
    join = pa.sources[1].usability["join"]
    assert join == {"key": ["state"], "match_rate": expected, "matched_rows": int(survey["state"].isin(states).sum()),
                    "key_unique": True, "duplicate_keys": 0}
    assert 0.9 < expected < 1.0
    assert pa.joins[0]["match_rate"] == pytest.approx(expected)
    assert pa.joined.rows == 4877 and "regional_rate" in pa.joined.column_kinds
    assert pa.joined.missing_share["regional_rate"] == pytest.approx(1 - expected)


def test_round_trips_through_json_and_renders_at_80_columns(two_sources):
    _, pa, _ = two_sources
    data = pa.to_dict()
    assert json.loads(json.dumps(data)) == data
    console = Console(width=80, record=True, color_system=None)
    console.print(render_assessment(pa))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    for expected in ("survey · file", "regional · file", "availability  4,877 rows read", "join on state:",
                     "0.4 per 1k rows × 49 rows = 0.02", "joined table", "label noise"):
        assert expected in text


def test_an_unreachable_sql_source_is_reported_not_raised(tmp_path):
    shutil.copy(BENEFITS, tmp_path / "benefits.csv")
    spec = load_spec(_spec(tmp_path, [
        {"name": "survey", "path": "benefits.csv"},
        {"name": "warehouse", "url": f"sqlite:///{tmp_path}/no-such-folder/rates.db", "table": "rates",
         "join": {"on": "state"}, "cost_per_1k_rows": 1.5},
    ]))
    pa = assess_project(spec)
    warehouse = pa.sources[1].availability
    assert warehouse["reachable"] is False and warehouse["rows"] == 0 and warehouse["error"]
    assert pa.sources[1].cost["cost"] == 0.0
    assert list(pa.left_out) == ["warehouse"] and pa.left_out["warehouse"].startswith("unreachable: ")
    assert pa.joined is not None and pa.joined.rows == 4877 and pa.joins == []
    console = Console(width=80, record=True, color_system=None)
    console.print(render_assessment(pa))
    text = console.export_text()
    for expected in ("warehouse · ", "sqlite:///", "unreachable", "nothing read, nothing spent"):
        assert expected in text
