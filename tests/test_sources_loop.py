"""The Data stage adds a further source only when its measured gain pays for its cost."""

import pandas as pd
import pytest
import yaml

from loopml.process import run_project
from loopml.spec import load_spec
from loopml.store import Store

MOVED = ["worker_id", "joblost", "rr", "tenure", "age"]


@pytest.fixture
def two_sources(tmp_path, benefits_csv):
    """The benefits survey split in two real parts joined by worker id: the second holds strong signal."""
    frame = pd.read_csv(benefits_csv)
    frame.insert(0, "worker_id", range(1, len(frame) + 1))
    frame.drop(columns=MOVED[1:]).to_csv(tmp_path / "survey.csv", index=False)
    frame[MOVED].to_csv(tmp_path / "records.csv", index=False)

    def write(value_per_point, cost=0.4):
        doc = {
            "project": "two-sources",
            "business": {"problem": "x", "task": "binary", "target": "ui", "positive": "yes",
                         "goal": {"metric": "roc_auc", "at_least": 0.55}},
            "data": {"sources": [{"name": "survey", "path": "survey.csv"},
                                 {"name": "records", "path": "records.csv", "join": {"on": "worker_id"},
                                  "cost_per_1k_rows": cost}],
                     "acquisition": {"value_per_point": value_per_point}},
            "model": {"budget": "1m", "folds": 3, "trials": 4},
        }
        (tmp_path / "loopml.yaml").write_text(yaml.safe_dump(doc))
        spec = load_spec(tmp_path)
        return run_project(spec, Store.open(tmp_path))

    return write


def _source_decision(result):
    return next(d for d in result.decisions if d.gate == "source_pays_off")


def test_a_source_whose_gain_covers_its_cost_is_joined(two_sources):
    result = two_sources(value_per_point=1.0)
    decision = _source_decision(result)
    assert (decision.verdict, decision.action) == ("pass", "add")
    assert decision.evidence["gain"] > 0.02
    assert "covers its cost 0.4" in decision.summary
    assert result.model_version.lineage["sources_used"] == ["survey", "records"]
    assert next(d for d in result.decisions if d.gate == "collect").summary.count("joined records") == 1


def test_a_source_that_does_not_pay_is_dropped_with_the_evidence(two_sources):
    result = two_sources(value_per_point=0.05)
    decision = _source_decision(result)
    assert (decision.verdict, decision.action) == ("fail", "drop")
    assert "does not cover its cost 0.4" in decision.summary
    assert "joined" not in next(d for d in result.decisions if d.gate == "collect").summary


def test_a_free_source_without_gain_is_dropped(tmp_path, benefits_csv):
    frame = pd.read_csv(benefits_csv)
    frame.drop(columns=["stateur", "statemb"]).to_csv(tmp_path / "survey.csv", index=False)
    frame[["state", "yrdispl", "stateur", "statemb"]].drop_duplicates().to_csv(tmp_path / "regional.csv", index=False)
    doc = {"project": "regional", "business": {"problem": "x", "task": "binary", "target": "ui", "positive": "yes",
                                               "goal": {"metric": "roc_auc", "at_least": 0.55}},
           "data": {"sources": [{"name": "survey", "path": "survey.csv"},
                                {"name": "regional", "path": "regional.csv", "join": {"on": ["state", "yrdispl"]}}],
                    "acquisition": {"min_gain": 0.01}},
           "model": {"budget": "1m", "folds": 3, "trials": 4}}
    (tmp_path / "loopml.yaml").write_text(yaml.safe_dump(doc))
    result = run_project(load_spec(tmp_path), Store.open(tmp_path))
    decision = _source_decision(result)
    assert decision.action == "drop" and "under data.acquisition.min_gain 0.01" in decision.summary
