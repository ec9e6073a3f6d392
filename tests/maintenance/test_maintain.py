"""Maintenance on labeled production rows: wait, keep, or retrain and promote only a better model."""

import uuid

import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.model import SearchPlan, search
from loopml.process import maintain_project, run_project
from loopml.spec import load_spec
from loopml.store import Store

from conftest import write_spec


@pytest.fixture
def served_project(project_dir, benefits_csv):
    """A project with a champion, and 400 fresh rows the champion never saw."""
    write_spec(project_dir, business={"problem": "x", "task": "binary", "target": "ui", "positive": "yes",
                                      "goal": {"metric": "roc_auc", "at_least": 0.58}})
    spec = load_spec(project_dir)
    store = Store.open(project_dir)
    assert run_project(spec, store).outcome == "registered"
    fresh = pd.read_csv(benefits_csv).iloc[2000:2400].reset_index(drop=True)
    return spec, store, fresh


def _log_and_label(store, spec, rows: pd.DataFrame, labels) -> None:
    champion = store.alias(spec.project, "champion")
    ids = [uuid.uuid4().hex for _ in range(len(rows))]
    features = rows.drop(columns=["ui", "bluecol"]).to_dict(orient="records")
    store.log_predictions(spec.project, champion.id, [
        {"id": i, "features": f, "prediction": "yes", "probability": 0.5, "latency_ms": 1.0}
        for i, f in zip(ids, features)])
    for i, label in zip(ids, labels):
        store.record_feedback(spec.project, i, label)


def test_no_champion_is_a_clear_error(project_dir):
    with pytest.raises(ModelError, match="has no champion to maintain; run `loopml run` first"):
        maintain_project(load_spec(project_dir), Store.open(project_dir))


def test_too_few_labels_waits(served_project):
    spec, store, fresh = served_project
    _log_and_label(store, spec, fresh.head(10), fresh["ui"].head(10))
    result = maintain_project(spec, store)
    assert (result.outcome, result.exit_code) == ("waiting", 0)
    assert "10 new labeled predictions since the last check; need 40" in result.decisions[-1].summary


def test_goal_that_holds_keeps_the_champion_and_moves_the_checkpoint(served_project):
    spec, store, fresh = served_project
    _log_and_label(store, spec, fresh, fresh["ui"])
    result = maintain_project(spec, store)
    assert (result.outcome, result.exit_code) == ("goal_holds", 0)
    assert store.monitor_windows(spec.project)[-1]["rows"] == 400
    again = maintain_project(spec, store)
    assert again.outcome == "waiting"


def test_breached_goal_retrains_but_keeps_a_champion_the_challenger_cannot_beat(served_project):
    spec, store, fresh = served_project
    flipped = fresh["ui"].map({"yes": "no", "no": "yes"})  # the concept inverted: no model of the past can follow
    _log_and_label(store, spec, fresh, flipped)
    result = maintain_project(spec, store)
    assert (result.outcome, result.exit_code) == ("kept_champion", 1)
    gates = [(d.gate, d.verdict, d.action) for d in result.decisions]
    assert gates[0] == ("goal_holds", "fail", "retrain")
    assert gates[-1] == ("challenger_vs_champion", "fail", "keep_champion")
    assert store.alias(spec.project, "champion").version == 1
    assert store.alias(spec.project, "challenger").version == 2
    assert store.alerts(spec.project)[-1]["kind"] == "goal_breached"


def test_a_failing_champion_is_replaced_by_a_challenger_that_meets_the_goal(served_project):
    spec, store, fresh = served_project
    champion = store.alias(spec.project, "champion")
    frame = pd.read_csv(spec.root / "benefits.csv").drop(columns=["bluecol"])
    frame["ui"] = frame["ui"].sample(frac=1.0, random_state=0).to_numpy()  # a champion that learned noise
    noise = search(frame, target="ui", task="binary", goal=spec.business.goal, positive="yes",
                   plan=SearchPlan(families=("linear",), folds=3))
    weak = store.register_model(spec.project, run_id=None, snapshot_id=champion.snapshot_id, input_key="noise",
                                model_bytes=noise.model.to_bytes(), spec_hash="x", family="linear",
                                metrics={"holdout": {"value": 0.0}}, operating_point={}, lineage={})
    store.set_alias(spec.project, "champion", weak.version, actor="test", reason="inject a weak champion")
    _log_and_label(store, spec, fresh, fresh["ui"])
    result = maintain_project(spec, store)
    assert (result.outcome, result.exit_code) == ("promoted", 0)
    promoted = store.alias(spec.project, "champion")
    assert promoted.version == 3 and promoted.lineage["retrained_from"] == weak.version
    assert result.decisions[-1].action == "promote"
    assert "challenger meets the goal and beats the champion" in result.decisions[-1].summary
