"""The maintenance policy: the spec's keys with their bad-input messages, and the action each pass takes."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from conftest import write_spec

from loopml.errors import SpecError
from loopml.maintenance import Signal, decide, read_policy
from loopml.maintenance.policy import trigger_for_alert
from loopml.spec import TRIGGERS, MaintenanceSpec, load_spec


def _spec(project_dir, maintenance):
    write_spec(project_dir, maintenance=maintenance)
    return load_spec(project_dir)


def _problems(project_dir, maintenance) -> list[str]:
    with pytest.raises(SpecError) as err:
        _spec(project_dir, maintenance)
    return err.value.problems


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _policy(**maintenance):
    return read_policy(MaintenanceSpec.model_validate(maintenance))


def test_the_default_policy_retrains_on_a_breached_goal_and_only_alerts_on_the_rest(project_dir):
    policy = read_policy(load_spec(project_dir))
    assert policy.actions == {"goal_breached": "retrain", "goal_breach_estimated": "alert", "drift": "alert",
                              "data_quality": "alert"}
    assert (policy.approval, policy.gate, policy.cooldown_s, policy.window) == ("auto", "beat_champion", 0.0, "auto")


def test_the_short_form_triggers_names_the_alerts_that_retrain(project_dir):
    policy = read_policy(_spec(project_dir, {"triggers": ["goal_breached", "drift"]}))
    assert policy.actions["drift"] == "retrain" and policy.actions["data_quality"] == "alert"


def test_durations_are_read_in_seconds(project_dir):
    policy = read_policy(_spec(project_dir, {"cooldown": "6h", "retrain": {"budget": "90s"},
                                             "lock": {"wait": 0, "stale_after": "2m"}}))
    assert (policy.cooldown_s, policy.budget_s, policy.lock_wait_s, policy.stale_after_s) == (21600, 90, 0, 120)


def test_an_unknown_alert_gets_a_did_you_mean(project_dir):
    assert _problems(project_dir, {"on": {"goal_breach": "retrain"}}) == [
        "maintenance.on.goal_breach: unknown alert 'goal_breach'; did you mean 'goal_breached'? alerts: "
        "goal_breached, goal_breach_estimated, drift, data_quality"]


def test_an_unknown_action_gets_a_did_you_mean(project_dir):
    assert _problems(project_dir, {"on": {"drift": "retrian"}}) == [
        "maintenance.on.drift: unknown action 'retrian'; did you mean 'retrain'? actions: retrain, "
        "collect_then_retrain, alert"]


def test_an_unknown_trigger_in_the_short_form_gets_a_did_you_mean(project_dir):
    assert _problems(project_dir, {"triggers": ["drfit"]}) == [
        "maintenance.triggers: unknown alert 'drfit'; did you mean 'drift'? alerts: goal_breached, "
        "goal_breach_estimated, drift, data_quality"]


def test_a_negative_cooldown_names_the_fix(project_dir):
    assert _problems(project_dir, {"cooldown": "-1h"}) == [
        "maintenance.cooldown: found '-1h', a negative duration; give 0 (none) or a positive duration such as "
        "'30m' or '6h'"]


def test_both_forms_at_once_are_refused(project_dir):
    assert _problems(project_dir, {"on": {"drift": "alert"}, "triggers": ["drift"]}) == [
        "maintenance: give 'on' (alert: action) or its short form 'triggers' (the alerts that retrain), not both"]


def test_other_bad_policy_keys_name_what_is_allowed(project_dir):
    assert _problems(project_dir, {"approval": "boss", "retrain": {"window": "latest"}, "compare": {"share": 1.5},
                                   "min_labeled": 3}) == [
        "maintenance.min_labeled: found 3 (int); input should be greater than or equal to 10",
        "maintenance.approval: found 'boss'; allowed: 'auto' or 'human'",
        "maintenance.retrain.window: found 'latest'; allowed: 'auto', 'all', 'recent' or 'weighted'",
        "maintenance.compare.share: found 1.5 (float); input should be less than 1",
    ]


def test_a_misspelt_policy_key_gets_a_did_you_mean(project_dir):
    problems = _problems(project_dir, {"cooldwn": "1h"})
    assert problems[0].startswith("maintenance.cooldwn: unknown key; did you mean 'cooldown'?")


def test_the_examples_policy_still_loads(project_dir):
    doc = yaml.safe_load("maintenance: {triggers: [goal_breached], min_labeled: 100, retrain: {gate: beat_champion}}")
    assert read_policy(_spec(project_dir, doc["maintenance"])).min_labeled == 100


def test_the_triggers_are_the_alerts_monitor_raises():
    from loopml.operations.monitor import ALERT_KINDS

    assert set(TRIGGERS) == set(ALERT_KINDS)
    assert trigger_for_alert("source_down") is None


def test_no_alert_means_no_action():
    assert decide(_policy(), [], labeled_rows=500, last_retrain_at=None, now=NOW).action == "none"


def test_the_strongest_action_wins_when_several_alerts_fire():
    policy = _policy(on={"drift": "collect_then_retrain", "goal_breached": "retrain"})
    signals = [Signal("goal_breached", "maintain", "mae 260"), Signal("drift", "monitor", "speed drifted")]
    decision = decide(policy, signals, labeled_rows=500, last_retrain_at=None, now=NOW)
    assert (decision.action, decision.triggers) == ("collect_then_retrain", ["goal_breached", "drift"])


def test_the_cooldown_turns_a_retrain_into_an_alert_until_it_ends():
    policy = _policy(cooldown="1h")
    signal = [Signal("goal_breached", "maintain", "mae 260")]
    held = decide(policy, signal, labeled_rows=500, last_retrain_at=NOW - timedelta(minutes=20), now=NOW)
    assert (held.action, held.wanted) == ("alert", "retrain")
    assert "held back by the cool-down: the last retrain started 20m ago" in held.reason
    assert "the next may start after 2024-05-01 12:40:00 UTC" in held.reason
    later = decide(policy, signal, labeled_rows=500, last_retrain_at=NOW - timedelta(minutes=61), now=NOW)
    assert later.action == "retrain"


def test_an_estimated_breach_without_labels_retrains_only_when_the_policy_allows():
    signal = [Signal("goal_breach_estimated", "monitor", "estimated mae 240")]
    on = {"goal_breach_estimated": "collect_then_retrain"}
    held = decide(_policy(on=on), signal, labeled_rows=0, last_retrain_at=None, now=NOW)
    assert held.action == "alert"
    assert "breached by the estimate only, and 0 labeled rows cannot confirm it yet" in held.reason
    assert "set maintenance.act_on_estimate: true" in held.reason
    allowed = decide(_policy(on=on, act_on_estimate=True), signal, labeled_rows=0, last_retrain_at=None, now=NOW)
    assert allowed.action == "collect_then_retrain"


def test_a_retrain_waits_for_enough_new_labels_to_compare_on():
    decision = decide(_policy(min_labeled=100), [Signal("goal_breached", "monitor", "mae 260")], labeled_rows=30,
                      last_retrain_at=None, now=NOW)
    assert decision.action == "wait"
    assert "a retrain needs 100 new labeled rows to train on and compare champion and challenger" in decision.reason
