"""The loop end to end on real data: gates, decisions, going back, reuse of work already done."""

import pytest
import yaml
from conftest import write_spec

from loopml.process import run_project
from loopml.spec import load_spec
from loopml.store import Store


def _run(folder):
    spec = load_spec(folder)
    store = Store.open(spec.root)
    return run_project(spec, store), store


def _gates(result):
    return [(d.stage, d.gate, d.verdict) for d in result.decisions]


def test_met_goal_registers_a_champion_with_a_decision_per_gate(project_dir):
    result, store = _run(project_dir)
    assert (result.outcome, result.exit_code) == ("registered", 0)
    assert _gates(result)[0] == ("business", "goal_fits_task", "pass")
    assert ("data", "enough_data", "pass") in _gates(result)
    assert ("model", "goal", "pass") in _gates(result)
    assert _gates(result)[-1] == ("operations", "pre_deploy", "pass")
    champion = store.alias("benefits-test", "champion")
    assert champion.version == result.model_version.version == 1
    assert champion.lineage["spec_hash"] and champion.lineage["packages"]["lightgbm"]
    assert champion.metrics["holdout"]["value"] >= 0.6


def test_every_decision_carries_numbers(project_dir):
    result, _ = _run(project_dir)
    goal = next(d for d in result.decisions if d.gate == "goal")
    holdout = goal.evidence["holdout"]
    assert holdout["ci_low"] <= holdout["value"] <= holdout["ci_high"]
    assert goal.evidence["holdout_rows"] == 400 and goal.evidence["train_rows"] == 1600


def test_rerun_with_unchanged_inputs_trains_nothing(project_dir):
    first, store = _run(project_dir)
    again, _ = _run(project_dir)
    assert again.outcome == "registered"
    assert [v.version for v in store.model_versions("benefits-test")] == [1]
    actions = [(d.stage, d.action) for d in again.decisions]
    assert ("data", "reuse") in actions and ("model", "reuse") in actions


def test_changed_model_section_reuses_the_data_snapshot(project_dir):
    _run(project_dir)
    write_spec(project_dir, model={"budget": "2m", "seed": 1, "folds": 3, "trials": 4})
    again, store = _run(project_dir)
    actions = [(d.stage, d.action) for d in again.decisions]
    assert ("data", "reuse") in actions
    assert ("model", "register") in actions
    assert [v.version for v in store.model_versions("benefits-test")] == [1, 2]


def test_changed_data_redoes_the_data_stage(project_dir):
    _run(project_dir)
    csv = project_dir / "benefits.csv"
    csv.write_text(csv.read_text().replace("\n", "\n", 1)[:-1] + "\n")
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-5]) + "\n")
    again, _ = _run(project_dir)
    assert ("data", "collected") in [(d.stage, d.action) for d in again.decisions]


def test_unreachable_goal_ends_with_what_the_data_can_reach(project_dir):
    write_spec(project_dir, business={
        "problem": "x", "task": "binary", "target": "ui", "positive": "yes",
        "goal": {"metric": "recall", "at_least": 0.95, "with": {"precision": 0.9}}})
    result, store = _run(project_dir)
    assert (result.outcome, result.exit_code) == ("goal_not_met", 1)
    last = result.decisions[-1]
    assert (last.stage, last.gate, last.verdict, last.action) == ("business", "feasibility", "fail", "revise_goal")
    assert "is not reachable with this data" in last.summary
    assert result.reachable and result.reachable["best"] < 0.95
    assert store.model_versions("benefits-test") == []
    assert store.alias("benefits-test", "champion") is None


def test_too_few_rows_stops_at_the_data_gate(project_dir):
    doc = yaml.safe_load((project_dir / "loopml.yaml").read_text())
    doc["data"]["min_rows"] = 5000
    (project_dir / "loopml.yaml").write_text(yaml.safe_dump(doc))
    result, _ = _run(project_dir)
    assert result.outcome == "data_insufficient"
    gate = next(d for d in result.decisions if d.gate == "enough_data")
    assert gate.verdict == "fail" and "need at least 5,000" in gate.summary
    assert "add rows or a source to the spec" in result.explanation


def test_cleaning_that_drops_too_many_rows_is_redone(project_dir):
    import pandas as pd

    frame = pd.read_csv(project_dir / "benefits.csv")
    frame.loc[frame.index[::3], "tenure"] = None  # a third of the rows lose a value
    frame.to_csv(project_dir / "benefits.csv", index=False)
    doc = yaml.safe_load((project_dir / "loopml.yaml").read_text())
    doc["data"].update(min_rows=1500, clean={"missing": "drop_rows"})
    (project_dir / "loopml.yaml").write_text(yaml.safe_dump(doc))
    result, _ = _run(project_dir)
    gates = [(d.gate, d.verdict, d.action) for d in result.decisions if d.stage == "data"]
    assert ("enough_data", "fail", "reclean") in gates
    assert ("enough_data", "pass", "proceed") in gates
    assert result.outcome == "registered"


def test_latency_constraint_blocks_deployment(project_dir):
    doc = yaml.safe_load((project_dir / "loopml.yaml").read_text())
    doc["business"]["constraints"] = {"predict_p99_ms": 0.0001}
    (project_dir / "loopml.yaml").write_text(yaml.safe_dump(doc))
    result, store = _run(project_dir)
    assert (result.outcome, result.exit_code) == ("not_deployable", 1)
    assert "exceeds the constraint predict_p99_ms" in result.decisions[-1].summary
    assert store.alias("benefits-test", "champion") is None


def test_replay_rebuilds_the_identical_model_from_a_time_budgeted_run(project_dir):
    # A short budget: a timed search tunes until its clock or its patience runs out.
    write_spec(project_dir, model={"budget": "5s", "seed": 0, "folds": 3})
    first, store = _run(project_dir)
    assert first.outcome == "registered"
    spec = load_spec(project_dir)
    again = run_project(spec, store, replay_run=first.run_id)
    assert again.model_version.version == 2
    assert again.model_version.artifact_sha256 == first.model_version.artifact_sha256


def test_replay_of_a_run_without_a_search_names_the_runs_that_have_one(project_dir):
    from loopml.errors import NotFoundError

    first, store = _run(project_dir)
    with pytest.raises(NotFoundError, match=f"run 99 of project 'benefits-test' has no recorded search to replay; "
                                            f"runs with one: {first.run_id}"):
        run_project(load_spec(project_dir), store, replay_run=99)


def test_decisions_of_a_run_stay_its_own_when_another_run_of_the_project_writes_meanwhile(project_dir):
    from loopml.decisions import Decision

    spec = load_spec(project_dir)

    class _BusyProject(Store):  # another run of the same project records a decision right after each move
        def set_alias(self, project, *args, **kwargs):
            moved = super().set_alias(project, *args, **kwargs)
            self.record_decision(project, Decision(stage="model", gate="goal", verdict="fail", action="stop",
                                                   next_stage=None, summary="another run", evidence={}, run_id=None))
            return moved

    result = run_project(spec, _BusyProject.open(spec.root))
    assert result.outcome == "registered"
    assert "another run" not in [d.summary for d in result.decisions]
    assert {d.run_id for d in result.decisions} == {result.run_id}
