"""`loopml history`: every decision from the first run to the latest promotion; `loopml maintain` as cron runs it."""

import json

import pytest

from loopml.errors import SpecError
from loopml.maintenance import history, maintain_project
from loopml.maintenance.audit import evidence_brief
from loopml.operations.registry import rollback

from .conftest import loopml_process


def _run(*args, cwd):
    proc = loopml_process(*args, cwd=cwd)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


@pytest.fixture
def maintained(shop):
    """The shop after a promotion by maintenance and a rollback by hand."""
    shop.log(shop.months(13, 16))
    assert maintain_project(shop.spec(), shop.store).outcome == "promoted"
    rollback(shop.store, "shop", reason="v2 undersells the premium models", actor="ana")
    return shop


def test_history_holds_the_whole_loop_oldest_first(maintained):
    decisions = history(maintained.store, "shop")
    assert decisions[0].stage == "business" and decisions[0].gate == "goal_fits_task"
    stages = [d.stage for d in decisions]
    assert stages.index("model") < stages.index("operations") < stages.index("maintenance")
    promoted = next(d for d in decisions if d.stage == "maintenance" and d.action == "promote")
    assert (decisions[-1].gate, decisions[-1].action, decisions[-1].actor) == ("registry", "rollback", "ana")
    assert promoted.id < decisions[-1].id


def test_history_filters_by_stage_and_keeps_the_latest(maintained):
    latest = history(maintained.store, "shop", stage="maintenance", limit=2)
    assert [d.gate for d in latest] == ["window", "challenger_vs_champion"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"stage": "maintain"}, "--stage: unknown stage 'maintain'; did you mean 'maintenance'? stages: business, data, "
                            "model, operations, maintenance"),
    ({"limit": 0}, "--limit: found 0; give a number of decisions of 1 or more, or leave it out for all"),
])
def test_bad_history_options_are_named(shop, kwargs, message):
    with pytest.raises(SpecError) as err:
        history(shop.store, "shop", **kwargs)
    assert str(err.value) == message


def test_evidence_is_shown_in_short_and_whole_in_json():
    assert evidence_brief({"p99_ms": 1.23456, "trials": [{"a": 1}], "holdout": {"value": 0.9, "rows": 80}}) == \
        "p99_ms=1.235 holdout.value=0.9 holdout.rows=80"


def test_the_history_command_shows_each_decision_with_its_run_and_evidence(maintained):
    code, out, err = _run("history", cwd=maintained.root)
    assert code == 0, err
    assert "business · goal_fits_task PASS" in out
    assert "maintenance · challenger_vs_champion PASS  promote → operations" in out
    assert "operations · registry INFO  rollback  by ana" in out
    assert "maintain 2 " in out and "run 1 " in out  # the kind of run each decision came from
    assert "v2 undersells the premium models" in out


def test_the_history_command_filters_and_prints_json(maintained):
    code, out, err = _run("history", "--stage", "maintenance", "--limit", "3", "--json", cwd=maintained.root)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["count"] == 3 and payload["stage"] == "maintenance"
    last = payload["decisions"][-1]
    assert (last["gate"], last["action"], last["run_kind"]) == ("challenger_vs_champion", "promote", "maintain")
    assert last["evidence"]["paired"]["better"] is True


def test_the_history_command_names_a_bad_stage(shop):
    code, _, err = _run("history", "--stage", "modle", cwd=shop.root)
    assert code == 2 and "--stage: unknown stage 'modle'; did you mean 'model'?" in err


def test_maintain_exits_with_the_code_of_what_happened(shop):
    shop.log(shop.months(13, 16))
    code, out, err = _run("maintain", "--json", cwd=shop.root)
    assert (code, json.loads(out)["outcome"], json.loads(out)["exit_code"]) == (0, "promoted", 0), err
    code, out, _ = _run("maintain", cwd=shop.root)
    assert code == 0 and "waiting (exit 0): 0 new labeled predictions since the last check" in out


def test_maintain_watch_runs_bounded_passes_as_json_lines(shop):
    shop.log(shop.unseen_early)
    code, out, err = _run("maintain", "--watch", "--every", "1s", "--max-passes", "2", "--json", cwd=shop.root)
    assert code == 0, err
    passes = [json.loads(line) for line in out.splitlines()]
    assert [p["outcome"] for p in passes] == ["goal_holds", "waiting"]


@pytest.mark.parametrize(("args", "message"), [
    (("--every", "10m"), "--every 10m: the time between passes applies to --watch; add --watch"),
    (("--wait", "-5s"), "--wait: found '-5s', a negative duration; give 0 (none) or a positive duration"),
    (("--watch", "--every", "soon"), "--every: expected a duration such as 90, '90s', '5m' or '1h', found 'soon'"),
])
def test_maintain_names_bad_options(shop, args, message):
    code, _, err = _run("maintain", *args, cwd=shop.root)
    assert code == 2 and message in " ".join(err.split())
