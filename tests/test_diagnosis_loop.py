"""Datasets with a known cause of failure: the diagnosis names it and the loop takes the matching way back."""

import pathlib
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes

from loopml.errors import SpecError
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



def test_an_unreachable_goal_first_joins_the_left_out_source_then_stops_with_what_is_reachable(tmp_path):
    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "benefits-sources"
    for name in ("survey.csv", "regional.csv"):
        shutil.copy(example / name, tmp_path / name)
    text = (example / "unreachable.yaml").read_text()
    (tmp_path / "loopml.yaml").write_text(text.replace("model: {budget: 2m, trials: 24, seed: 0}",
                                                       "model: {trials: 4, folds: 3}"))
    result = run_project(load_spec(tmp_path), Store.open(tmp_path))
    gates = [(d.stage, d.gate, d.action) for d in result.decisions]
    assert gates.count(("data", "source_pays_off", "drop")) == 1  # measured once; joined when the goal needs it
    back = next(d for d in result.decisions if d.stage == "data" and d.gate == "infeasible")
    assert back.evidence["extra_sources"] == ["regional"]
    assert "the goal is out of reach with the sources used; before revising it" in back.summary
    assert gates[-1] == ("business", "feasibility", "revise_goal")
    assert result.outcome == "goal_not_met"
    assert result.reachable["trade_off"]["precision"] is not None


def _flipped_scans(folder, share=0.15):
    """The breast-cancer scans (real, learnable) with ``share`` of their diagnoses flipped."""
    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    flip = np.random.default_rng(0).choice(len(frame), int(share * len(frame)), replace=False)
    frame.loc[flip, "target"] = frame.loc[flip, "target"].map({"malignant": "benign", "benign": "malignant"})
    frame.to_csv(folder / "scans.csv", index=False)


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noisy")
    _flipped_scans(folder)
    return _run(folder, {
        "project": "noisy", "business": {"problem": "x", "task": "binary", "target": "target",
                                         "positive": "malignant", "goal": {"metric": "accuracy", "at_least": 0.95}},
        "data": {"sources": [{"name": "scans", "path": "scans.csv"}]}, "model": {"trials": 4, "folds": 3}})


def test_flipped_labels_send_the_loop_back_to_drop_them_from_the_training_rows(noisy_run):
    first, second = [d for d in noisy_run.decisions if d.stage == "model" and d.gate == "goal"][:2]
    assert first.evidence["diagnosis"]["cause"] == "label_noise" and first.evidence["label_issues"]["dropped"] == 0
    back = next(d for d in noisy_run.decisions if d.stage == "data" and d.gate == "label_noise")
    assert (back.action, back.evidence["clean"]["label_noise"]) == ("change_plan", "drop")
    assert back.summary == ("going back to Data to drop rows whose labels are likely wrong "
                            "(data.clean.label_noise: drop)")
    dropped = second.evidence["label_issues"]["dropped"]
    assert dropped > 0.5 * 0.15 * second.evidence["train_rows"]  # most of the flipped training rows
    notes = " ".join(second.evidence["notes"])
    assert f"dropped {dropped:,} of {second.evidence['train_rows']:,} training rows whose label" in notes
    assert second.evidence["holdout_rows"] == first.evidence["holdout_rows"]  # the locked holdout keeps every row


def test_labels_still_wrong_in_the_holdout_after_the_drop_are_sent_to_the_source(noisy_run):
    # Accuracy 0.95 is out of reach while the holdout keeps its flipped labels: the loop says where to fix them.
    stop = [d for d in noisy_run.decisions if d.stage == "data" and d.gate == "label_noise"][-1]
    assert (noisy_run.outcome, stop.action) == ("goal_not_met", "stop")
    assert "already dropped from the training rows (data.clean.label_noise: drop); fix the labels at the source" \
        in stop.summary


def test_label_noise_drop_on_a_regression_task_is_refused(tmp_path):
    load_diabetes(as_frame=True).frame.to_csv(tmp_path / "diabetes.csv", index=False)
    with pytest.raises(SpecError, match=r"data\.clean\.label_noise: 'drop' needs a classification task \(binary or "
                                        r"multiclass\); a regression target has no label to be wrong"):
        _run(tmp_path, {
            "project": "progression", "business": {"problem": "x", "task": "regression", "target": "target",
                                                   "goal": {"metric": "r2", "at_least": 0.4}},
            "data": {"sources": [{"name": "visits", "path": "diabetes.csv"}], "clean": {"label_noise": "drop"}},
            "model": {"trials": 2, "folds": 3}})
