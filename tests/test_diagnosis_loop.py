"""Datasets with a known cause of failure: the diagnosis names it and the loop takes the matching way back."""

import pandas as pd
import yaml

from loopml.process import run_project
from loopml.spec import load_spec
from loopml.store import Store


def _run(folder, doc):
    (folder / "loopml.yaml").write_text(yaml.safe_dump(doc))
    return run_project(load_spec(folder), Store.open(folder))


def _business(goal, positive="yes"):
    return {"problem": "x", "task": "binary", "target": "ui", "positive": positive, "goal": goal}


def test_heavy_imbalance_sends_the_loop_back_to_resample(tmp_path, benefits_csv):
    frame = pd.read_csv(benefits_csv)
    rare = frame[frame["ui"] == "no"].sample(150, random_state=0)  # 'no' becomes ~4% of rows
    pd.concat([frame[frame["ui"] == "yes"], rare]).to_csv(tmp_path / "benefits.csv", index=False)
    result = _run(tmp_path, {
        "project": "imbalanced", "business": _business({"metric": "roc_auc", "at_least": 0.95}, positive="no"),
        "data": {"sources": [{"name": "survey", "path": "benefits.csv"}], "clean": {"imbalance": "none"}},
        "model": {"trials": 4, "folds": 3}})
    goal_miss = next(d for d in result.decisions if d.gate == "goal" and d.verdict == "fail")
    assert goal_miss.evidence["diagnosis"]["cause"] == "imbalance"
    back = next(d for d in result.decisions if d.stage == "data" and d.gate == "imbalance")
    assert (back.action, back.evidence["clean"]["imbalance"]) == ("change_plan", "oversample")
    assert "oversample the smallest class" in back.summary


def test_signal_held_in_a_left_out_source_is_joined_when_the_goal_needs_it(tmp_path, benefits_csv):
    moved = ["worker_id", "joblost", "rr", "tenure", "age"]
    frame = pd.read_csv(benefits_csv)
    frame.insert(0, "worker_id", range(1, len(frame) + 1))
    frame.drop(columns=moved[1:]).to_csv(tmp_path / "survey.csv", index=False)
    frame[moved].to_csv(tmp_path / "records.csv", index=False)
    result = _run(tmp_path, {
        "project": "signal", "business": _business({"metric": "roc_auc", "at_least": 0.66}),
        "data": {"sources": [{"name": "survey", "path": "survey.csv"},
                             {"name": "records", "path": "records.csv", "join": {"on": "worker_id"},
                              "cost_per_1k_rows": 0.4}],
                 "acquisition": {"value_per_point": 0.01}},  # alone, the records do not pay for themselves
        "model": {"trials": 4, "folds": 3}})
    assert next(d for d in result.decisions if d.gate == "source_pays_off").action == "drop"
    goal_miss = next(d for d in result.decisions if d.gate == "goal" and d.verdict == "fail")
    cause = goal_miss.evidence["diagnosis"]["cause"]
    assert cause in ("missing_signal", "more_data")  # a plateau of every family, or a curve still rising
    back = next(d for d in result.decisions if d.stage == "data" and d.gate == cause)
    assert back.evidence["extra_sources"] == ["records"]
    assert result.outcome == "registered"
    assert result.model_version.lineage["sources_used"] == ["survey", "records"]
