"""Per-class costs through the loop: the goal decision records the cost per holdout row, the model applies them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from conftest import write_spec

from loopml.model import TrainedModel
from loopml.process import run_project
from loopml.spec import load_spec
from loopml.store import Store

CHILE = Path(__file__).parent / "model" / "chile.parquet"


def test_the_goal_decision_records_the_expected_cost_and_the_model_weighs_its_decisions(tmp_path):
    pd.read_parquet(CHILE).to_csv(tmp_path / "chile.csv", index=False)
    write_spec(tmp_path, project="plebiscite",
               business={"problem": "How will a voter vote?", "task": "multiclass", "target": "vote",
                         "goal": {"metric": "accuracy", "at_least": 0.4}, "costs": {"per_class": {"A": 8}}},
               data={"sources": [{"name": "poll", "path": "chile.csv"}]},
               model={"budget": "2m", "seed": 0, "folds": 3, "trials": 1, "max_iterations": 1})
    spec = load_spec(tmp_path / "loopml.yaml")
    store = Store.open(spec.root)
    try:
        result = run_project(spec, store)
        model = TrainedModel.from_bytes(store.read_model(result.model_version), root=spec.root)
    finally:
        store.close()
    assert result.outcome == "registered", result.explanation
    goal = next(d for d in result.decisions if d.stage == "model" and d.gate == "goal")
    assert 0 < goal.evidence["holdout"]["expected_cost"] < goal.evidence["operating_point"][
        "expected_cost_per_row_without_costs"]
    assert goal.evidence["operating_point"]["class_costs"] == {"A": 8.0, "N": 1.0, "U": 1.0, "Y": 1.0}
    assert model.class_costs == [8.0, 1.0, 1.0, 1.0]
    rows = pd.read_parquet(CHILE).drop(columns=["vote"]).head(300)
    assert np.mean(model.predict(rows) == "A") > 0.05  # without costs the model never predicts A
