"""Maintenance passes on a real population shift: wait, keep, retrain once, promote only a better model."""

import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.maintenance import maintain_project
from loopml.model import TrainedModel, evaluate
from loopml.operations.registry import promote
from loopml.spec import load_spec
from loopml.store import Store


def _gates(result):
    return [(d.stage, d.gate, d.verdict, d.action) for d in result.decisions]


def _retrains(store, project="shop"):
    return [d for d in store.decisions(project) if d.stage == "maintenance" and d.gate == "window"]


def test_no_champion_is_a_clear_error(project_dir):
    with pytest.raises(ModelError, match="has no champion to maintain; run `loopml run` first"):
        maintain_project(load_spec(project_dir), Store.open(project_dir))


def test_too_few_labels_waits(shop):
    shop.log(shop.unseen_early.head(10))
    result = maintain_project(shop.spec(), shop.store)
    assert (result.outcome, result.exit_code) == ("waiting", 0)
    assert "10 new labeled predictions since the last check; need 40" in result.decisions[-1].summary


def test_same_population_keeps_the_champion_and_retrains_nothing(shop):
    shop.log(shop.unseen_early)
    result = maintain_project(shop.spec(), shop.store)
    assert (result.outcome, result.exit_code) == ("goal_holds", 0)
    assert _gates(result) == [("maintenance", "goal_holds", "pass", "keep")]
    assert [v.version for v in shop.store.model_versions("shop")] == [1]
    assert maintain_project(shop.spec(), shop.store).outcome == "waiting"  # the checkpoint moved past those labels


def test_population_shift_retrains_once_and_the_promotion_restores_the_goal(shop):
    spec = shop.spec(retrain={"window": "auto"})
    shop.log(shop.months(13, 16))
    result = maintain_project(spec, shop.store)
    assert (result.outcome, result.exit_code) == ("promoted", 0), result.explanation
    assert _gates(result)[:3] == [("maintenance", "goal_holds", "fail", "alert"),
                                  ("maintenance", "policy", "info", "retrain"),
                                  ("data", "enough_data", "pass", "proceed")]
    windows = [d.evidence["window"] for d in result.decisions if d.stage == "model" and d.gate == "goal"]
    assert windows == ["all", "recent", "weighted"]
    champion = shop.store.alias("shop", "champion")
    assert champion.version == 2 and champion.lineage["retrained_from"] == 1
    assert champion.lineage["window"] == _retrains(shop.store)[0].evidence["window"]
    assert result.decisions[-1].action == "promote" and "beats the champion beyond the noise" in result.explanation

    later = shop.months(17, 17)  # a month no model has seen: the new champion meets the goal there
    model = TrainedModel.from_bytes(shop.store.read_model(champion), root=shop.root)
    assert evaluate(model, later, spec.business.goal, n_boot=50).met
    shop.log(later)
    again = maintain_project(spec, shop.store)
    assert again.outcome == "goal_holds" and len(_retrains(shop.store)) == 1


def test_a_challenger_that_does_not_beat_the_champion_beyond_the_noise_is_never_promoted(shop):
    # Prices fall for three months, then the newest labeled sales look like the old ones again: the
    # challenger learned the fall, and on the newest rows the champion is as good or better.
    shop.log(shop.months(17, 19))
    shop.log(shop.unseen_early)
    share = len(shop.unseen_early) / (len(shop.months(17, 19)) + len(shop.unseen_early))
    result = maintain_project(shop.spec(compare={"share": round(share, 3)}), shop.store)
    assert (result.outcome, result.exit_code) == ("kept_champion", 1), result.explanation
    assert shop.store.alias("shop", "champion").version == 1
    assert shop.store.alias("shop", "challenger").version == 2
    last = result.decisions[-1]
    assert (last.gate, last.verdict, last.action) == ("challenger_vs_champion", "fail", "keep_champion")
    assert not last.evidence["paired"]["better"] and last.evidence["paired"]["rows"] == len(shop.unseen_early)
    assert "paired bootstrap interval" in last.summary
    assert not any(d.action == "promote" for d in shop.store.decisions("shop") if d.stage == "maintenance")


def test_a_retrain_whose_windows_all_miss_the_goal_keeps_the_champion_and_says_why(shop):
    rows = shop.months(13, 16)
    noise = rows["price"].sample(frac=1.0, random_state=1).to_numpy()  # prices unrelated to the machines
    shop.log(rows, pd.Series(noise))
    result = maintain_project(shop.spec(), shop.store)
    assert (result.outcome, result.exit_code) == ("retrain_failed", 1)
    assert "no training window passes the Model gate" in result.explanation
    last = result.decisions[-1]
    assert (last.gate, last.verdict, last.action) == ("retrain", "fail", "keep_champion")
    assert "champion v1 keeps serving" in last.summary
    assert [v.version for v in shop.store.model_versions("shop")] == [1]


def test_the_cooldown_holds_back_a_second_retrain(shop):
    spec = shop.spec(cooldown="1h")
    shop.log(shop.months(13, 16))
    assert maintain_project(spec, shop.store).outcome in ("promoted", "kept_champion")
    shop.log(shop.months(19, 20))  # prices moved again: the goal is breached again
    second = maintain_project(spec, shop.store)
    assert (second.outcome, second.exit_code) == ("alert_only", 1)
    policy = next(d for d in second.decisions if d.gate == "policy")
    assert policy.action == "alert" and "held back by the cool-down" in policy.summary
    assert "maintenance.cooldown 1h" in policy.summary
    assert len(_retrains(shop.store)) == 1


def test_human_approval_registers_the_challenger_and_leaves_the_champion(shop):
    shop.log(shop.months(13, 16))
    result = maintain_project(shop.spec(approval="human"), shop.store)
    assert (result.outcome, result.exit_code) == ("awaiting_approval", 5)
    assert shop.store.alias("shop", "champion").version == 1
    assert shop.store.alias("shop", "challenger").version == 2
    assert "promote it with `loopml models promote 2 --reason" in result.decisions[-1].summary
    promote(shop.store, "shop", 2, reason="reviewed the comparison", actor="ana")
    assert shop.store.alias("shop", "champion").version == 2


def test_an_alert_the_policy_only_reports_changes_nothing(shop):
    shop.store.add_alert("shop", window_id=None, kind="drift", detail={"summary": "speed drifted"})
    result = maintain_project(shop.spec(on={"drift": "alert"}), shop.store)
    assert (result.outcome, result.exit_code) == ("alert_only", 1)
    policy = next(d for d in result.decisions if d.gate == "policy")
    assert "drift → alert: the policy only alerts on these (maintenance.on)" in policy.summary
    assert maintain_project(shop.spec(on={"drift": "alert"}), shop.store).outcome == "waiting"  # read once


def test_a_breach_without_enough_new_labels_waits_for_them(shop):
    shop.store.add_alert("shop", window_id=None, kind="goal_breached", detail={"summary": "mae 260 > 200"})
    result = maintain_project(shop.spec(), shop.store)
    assert (result.outcome, result.exit_code, result.action) == ("alert_only", 1, "wait")
    assert "a retrain needs 40 new labeled rows" in result.explanation


def test_a_pass_records_its_run_and_every_decision_under_it(shop):
    shop.log(shop.months(13, 16))
    result = maintain_project(shop.spec(), shop.store)
    run = next(r for r in shop.store.runs("shop") if r["id"] == result.run_id)
    assert (run["kind"], run["status"]) == ("maintain", result.outcome)
    assert {d.run_id for d in result.decisions} == {result.run_id}
    assert shop.store.lock_holder("shop", "maintain") is None  # released


def test_the_alerts_of_a_real_monitor_pass_drive_the_policy(shop):
    from loopml.operations.monitor import monitor_project

    spec = shop.spec(on={"drift": "collect_then_retrain", "goal_breached": "retrain"})
    shop.log(shop.months(13, 16))
    kinds = {a.kind for a in monitor_project(spec, shop.store).alerts}
    assert {"drift", "goal_breached"} <= kinds
    result = maintain_project(spec, shop.store)
    policy = next(d for d in result.decisions if d.gate == "policy")
    assert policy.action == "collect_then_retrain" and "drift → collect_then_retrain" in policy.summary
    assert {s["origin"] for s in policy.evidence["signals"]} == {"monitor", "maintain"}
    assert result.outcome == "promoted"
    assert maintain_project(spec, shop.store).outcome == "waiting"  # the monitor's alerts are read once


def test_a_breach_measured_on_a_version_no_longer_champion_is_not_acted_on(shop):
    old = shop.store.alias("shop", "champion")
    new = shop.store.register_model(
        "shop", run_id=None, snapshot_id=old.snapshot_id, input_key="promoted-since", spec_hash=old.spec_hash,
        model_bytes=shop.store.read_model(old), family=old.family, metrics=old.metrics,
        operating_point=old.operating_point, lineage=old.lineage)
    shop.store.set_alias("shop", "champion", new.version, actor="test", reason="promoted since")
    window = shop.store.add_monitor_window("shop", model_version_id=old.id, first_seq=1, last_seq=40, rows=40,
                                           metrics={}, kind="predictions", key="late-labels")
    shop.store.add_alert("shop", window_id=window, kind="goal_breached", detail={"summary": "mae 260 > 200"})
    result = maintain_project(shop.spec(), shop.store)
    assert result.outcome == "waiting" and result.action != "retrain"
    assert shop.store.alias("shop", "champion").version == new.version
