"""The maintenance policy: which alert triggers which action, and what makes an action wait.

:func:`read_policy` reads ``maintenance`` from the spec; :func:`decide` turns the alerts of a pass
(from ``loopml monitor``, and the pass's own check of the goal on new labels) into one action:
``retrain``, ``collect_then_retrain`` (read the sources' new rows first), ``alert`` (only say so),
``wait`` (too few labeled rows to compare on) or ``none``. A cool-down since the last retrain, or a breach
seen only by the estimate when ``act_on_estimate`` is off, turns a retrain into an alert, with the reason.

>>> from loopml.spec import MaintenanceSpec
>>> policy = read_policy(MaintenanceSpec.model_validate({"on": {"drift": "collect_then_retrain"}}))
>>> decide(policy, [Signal("drift", "monitor", "age drifted")], labeled_rows=0, last_retrain_at=None).action
'collect_then_retrain'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from loopml.spec import TRIGGERS, MaintenanceSpec, ProjectSpec

__all__ = ["Action", "Policy", "PolicyDecision", "Signal", "decide", "read_policy", "trigger_for_alert"]

Action = Literal["none", "wait", "alert", "retrain", "collect_then_retrain"]
# The stronger action wins when several alerts fire at once.
_RANK = {"alert": 0, "retrain": 1, "collect_then_retrain": 2}
# Alerts that need no labels: a breach seen only by them is confirmed by nothing yet.
_ESTIMATES = {"goal_breach_estimated"}


@dataclass(frozen=True)
class Policy:
    """The maintenance section of the spec, resolved: durations in seconds, every alert with its action."""

    actions: dict[str, str]
    cooldown_s: float
    min_labeled: int
    act_on_estimate: bool
    approval: Literal["auto", "human"]
    gate: Literal["beat_champion", "meet_goal"]
    budget_s: float
    trials: int | None
    window: Literal["auto", "all", "recent", "weighted"]
    compare_share: float
    confidence: float
    resamples: int
    retry_attempts: int
    retry_backoff_s: float
    lock_wait_s: float
    stale_after_s: float
    # How a challenger reaches traffic (maintenance.rollout): direct, or a shadow or canary release first.
    rollout: Literal["direct", "shadow", "canary"] = "direct"
    canary_share: float = 0.1
    rollout_min_labeled: int = 100

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_policy(spec: ProjectSpec | MaintenanceSpec) -> Policy:
    """The policy of a project spec (or of its ``maintenance`` section alone).

    >>> read_policy(MaintenanceSpec()).actions["goal_breached"], read_policy(MaintenanceSpec()).approval
    ('retrain', 'auto')
    """
    m = spec.maintenance if isinstance(spec, ProjectSpec) else spec
    return Policy(actions=m.actions, cooldown_s=m.cooldown, min_labeled=m.min_labeled,
                  act_on_estimate=m.act_on_estimate, approval=m.approval, gate=m.retrain.gate,
                  budget_s=m.retrain.budget, trials=m.retrain.trials, window=m.retrain.window,
                  compare_share=m.compare.share, confidence=m.compare.confidence, resamples=m.compare.resamples,
                  retry_attempts=m.sources.attempts, retry_backoff_s=m.sources.backoff, lock_wait_s=m.lock.wait,
                  stale_after_s=m.lock.stale_after, rollout=m.rollout.mode, canary_share=m.rollout.canary_share,
                  rollout_min_labeled=m.rollout.min_labeled)


@dataclass(frozen=True)
class Signal:
    """One reason to act: the policy trigger it is, where it came from, and what it said."""

    trigger: str
    origin: Literal["monitor", "maintain"]
    summary: str
    alert_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PolicyDecision:
    """The action of a pass, the triggers behind it, and why in words."""

    action: Action
    triggers: list[str]
    reason: str
    wanted: str | None = None  # what the alerts asked for before a cool-down or missing labels held it back

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trigger_for_alert(kind: str) -> str | None:
    """The policy trigger an alert kind stands for; None for a kind the policy does not act on.

    >>> trigger_for_alert("drift"), trigger_for_alert("source_down")
    ('drift', None)
    """
    return kind if kind in TRIGGERS else None


def decide(policy: Policy, signals: list[Signal], *, labeled_rows: int, last_retrain_at: datetime | None,
           now: datetime | None = None) -> PolicyDecision:
    """The one action for this pass's ``signals``.

    ``labeled_rows``: new labeled rows the champion never trained on (a retrain needs ``min_labeled``
    of them to compare on; ``collect_then_retrain`` counts the sources' new rows later, after reading
    them). ``last_retrain_at``: when the last retrain started (the cool-down counts from it).
    """
    now = now or datetime.now(UTC)
    if not signals:
        return PolicyDecision("none", [], "no alert since the last pass")
    triggers = list(dict.fromkeys(s.trigger for s in signals))
    asked = {t: policy.actions.get(t, "alert") for t in triggers}
    acting = [t for t, a in asked.items() if a != "alert"]
    listed = ", ".join(f"{t} → {a}" for t, a in asked.items())
    if not acting:
        return PolicyDecision("alert", triggers, f"{listed}: the policy only alerts on these (maintenance.on)")
    wanted = max((asked[t] for t in acting), key=_RANK.__getitem__)
    if set(acting) <= _ESTIMATES and not policy.act_on_estimate and labeled_rows < policy.min_labeled:
        return PolicyDecision("alert", triggers, (
            f"{listed}: the goal is breached by the estimate only, and {labeled_rows} labeled rows cannot confirm it "
            f"yet (need {policy.min_labeled}); set maintenance.act_on_estimate: true to retrain on the estimate"),
            wanted)
    if last_retrain_at is not None and policy.cooldown_s > 0:
        ready = last_retrain_at + timedelta(seconds=policy.cooldown_s)
        if now < ready:
            return PolicyDecision("alert", triggers, (
                f"{listed}: held back by the cool-down: the last retrain started {_ago(now - last_retrain_at)} ago "
                f"({last_retrain_at:%Y-%m-%d %H:%M:%S} UTC); the next may start after {ready:%Y-%m-%d %H:%M:%S} UTC "
                f"(maintenance.cooldown {_ago(timedelta(seconds=policy.cooldown_s))})"), wanted)
    if wanted == "retrain" and labeled_rows < policy.min_labeled:
        return PolicyDecision("wait", triggers, (
            f"{listed}: a retrain needs {policy.min_labeled} new labeled rows to train on and compare champion and "
            f"challenger (maintenance.min_labeled); {labeled_rows} so far. Waiting for labels, or map the alert to "
            "collect_then_retrain to read the sources' new rows"), wanted)
    return PolicyDecision(wanted, triggers, f"{listed}: {wanted.replace('_', ' ')} (maintenance.on)")  # type: ignore[arg-type]


def _ago(delta: timedelta) -> str:
    """A duration in the largest whole unit that fits.

    >>> _ago(timedelta(minutes=90)), _ago(timedelta(seconds=42))
    ('1.5h', '42s')
    """
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.0f}s"

