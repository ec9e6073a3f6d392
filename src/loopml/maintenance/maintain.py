"""One maintenance pass, and passes on a schedule.

A pass, under the project's maintenance lock: read the alerts ``loopml monitor`` raised since the last
pass; judge the goal on the labeled predictions since the last check (so a pass works with or without
a monitor); let the policy pick one action; retrain when it says so; compare the challenger with the
champion on the most recent labeled rows neither trained on; and promote, as the very last step and in
one transaction with its decision, only a challenger that meets the goal and beats the champion by more
than the noise (or register it for a human to promote, with ``approval: human``).

Outcomes and the exit codes of ``loopml maintain``:

====================  ====  =====================================================================
outcome               code  meaning
====================  ====  =====================================================================
goal_holds            0     the goal holds on the new labels; nothing to do
waiting               0     too few new labels to judge the goal, and no alert
promoted              0     a retrained challenger beat the champion and now serves (or, in a shadow
                            or canary release, passed on live traffic)
in_rollout            0     a challenger is in shadow or canary (just started, or waiting for labels)
alert_only            1     an alert the policy only reports, or a retrain held back (cool-down,
                            too few labels, an estimate without labels)
kept_champion         1     a challenger was trained but does not beat the champion (or a shadow
                            failed on live traffic)
rolled_back           1     a canary failed on live traffic; it no longer answers requests
retrain_failed        1     the retrain failed (bad fresh data, budget, gates); the champion serves
awaiting_approval     5     a challenger beats the champion; a human promotes it
(lock busy)           4     another pass held the lock for the whole wait
====================  ====  =====================================================================

>>> result = maintain_project(spec, store)            # doctest: +SKIP
>>> result.outcome, result.exit_code                  # doctest: +SKIP
('promoted', 0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from loopml.decisions import Decision
from loopml.errors import ModelError
from loopml.maintenance._record import Progress, Recorder, pause_for_tests
from loopml.maintenance.compare import labeled_frame
from loopml.maintenance.lock import HeldLock, MaintenanceBusy, maintenance_lock
from loopml.maintenance.policy import Policy, PolicyDecision, Signal, decide, read_policy, trigger_for_alert
from loopml.maintenance.retrain import Retrainer, RetrainOutcome
from loopml.maintenance.rollout import Release, released_challenger
from loopml.model import TrainedModel, evaluate
from loopml.spec import ProjectSpec, spec_hash
from loopml.store import ModelVersion, Store

__all__ = ["EXIT_CODES", "MaintainOutcome", "MaintainResult", "maintain_project", "watch"]

MaintainOutcome = Literal["waiting", "goal_holds", "promoted", "kept_champion", "alert_only", "retrain_failed",
                          "awaiting_approval", "in_rollout", "rolled_back"]
EXIT_CODES: dict[str, int] = {"goal_holds": 0, "waiting": 0, "promoted": 0, "in_rollout": 0, "alert_only": 1,
                              "kept_champion": 1, "rolled_back": 1, "retrain_failed": 1, "awaiting_approval": 5,
                              "lock_busy": MaintenanceBusy.exit_code}
_ALERTS_READ = "maintain.alerts_read"
_LAST_RETRAIN = "maintain.last_retrain"


@dataclass
class MaintainResult:
    """What one ``loopml maintain`` pass found and did."""

    run_id: int
    project: str
    outcome: MaintainOutcome
    explanation: str
    champion: ModelVersion | None = None
    challenger: ModelVersion | None = None
    decisions: list[Decision] = field(default_factory=list)
    action: str = "none"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "project": self.project, "outcome": self.outcome,
                "exit_code": self.exit_code, "action": self.action, "explanation": self.explanation,
                "champion": self.champion.version if self.champion else None,
                "challenger": self.challenger.version if self.challenger else None,
                "decisions": [d.to_dict() for d in self.decisions]}


def maintain_project(spec: ProjectSpec, store: Store, *, progress: Progress | None = None,
                     lock_wait_s: float | None = None) -> MaintainResult:
    """One maintenance pass (see the module's doc); waits up to ``lock_wait_s`` (default the spec's) for the lock.

    Raises :class:`~loopml.errors.ModelError` without a champion, :class:`MaintenanceBusy` when another
    pass keeps the lock for the whole wait.
    """
    policy = read_policy(spec)
    if store.alias(spec.project, "champion") is None:
        raise ModelError(f"project '{spec.project}' has no champion to maintain; run `loopml run` first")
    wait = policy.lock_wait_s if lock_wait_s is None else lock_wait_s
    with maintenance_lock(store, spec.project, wait_s=wait, stale_after_s=policy.stale_after_s) as lock:
        run_id = store.start_run(spec.project, "maintain", spec_hash(spec))
        lock.attach_run(run_id)
        rec = Recorder(store, spec.project, run_id, progress)
        try:
            if lock.took_over:
                _record_takeover(store, rec, lock.took_over)
            pause_for_tests("locked")
            result = _Pass(spec, store, policy, rec, lock).run()
        except BaseException as exc:
            store.finish_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        store.finish_run(run_id, result.outcome, result.explanation)
        return result


def watch(load: Callable[[], tuple[ProjectSpec, Store]], *, every_s: float, max_passes: int | None = None,
          on_pass: Callable[[MaintainResult | None, Exception | None], None] | None = None,
          lock_wait_s: float | None = None, sleep: Callable[[float], None] = time.sleep) -> MaintainResult | None:
    """Run a pass every ``every_s`` seconds (the spec is read again each time) until ``max_passes`` or Ctrl-C.

    A pass that finds the lock busy is reported to ``on_pass`` and the next one tries again; any other
    error ends the watch. Returns the last pass's result.
    """
    last: MaintainResult | None = None
    done = 0
    while max_passes is None or done < max_passes:
        started = time.monotonic()
        spec, store = load()
        try:
            last = maintain_project(spec, store, lock_wait_s=lock_wait_s)
            if on_pass:
                on_pass(last, None)
        except MaintenanceBusy as exc:
            if on_pass:
                on_pass(None, exc)
        finally:
            store.close()
        done += 1
        if max_passes is None or done < max_passes:
            sleep(max(0.0, every_s - (time.monotonic() - started)))
    return last


def _record_takeover(store: Store, rec: Recorder, holder: dict[str, Any]) -> None:
    """Say whose lock was taken and why; a run it left 'running' is marked failed."""
    run = holder.get("run_id")
    if run:
        stuck = [r for r in store.runs(rec.project, limit=50) if r["id"] == run and r["status"] == "running"]
        if stuck:
            store.finish_run(run, "failed", f"its process stopped without finishing: {holder['why']}")
    rec.decide("maintenance", "lock", "info", "take_over", None,
               f"took over the maintenance lock of process {holder.get('pid')} on {holder.get('host')}"
               + (f" (run {run})" if run else "") + f": {holder['why']}",
               {k: str(v) if isinstance(v, datetime) else v for k, v in holder.items()})


class _Pass:
    def __init__(self, spec: ProjectSpec, store: Store, policy: Policy, rec: Recorder, lock: HeldLock):
        self.spec, self.store, self.policy, self.rec, self.lock = spec, store, policy, rec, lock
        self.project = spec.project
        self.release: tuple[ModelVersion, str] | None = None  # a challenger in shadow or canary, still waiting

    def _done(self, outcome: MaintainOutcome, why: str, challenger: ModelVersion | None = None,
              action: str = "none") -> MaintainResult:
        return MaintainResult(self.rec.run_id, self.project, outcome, why, self.store.alias(self.project, "champion"),
                              challenger, self.rec.decisions, action)

    def run(self) -> MaintainResult:
        champion = self.store.alias(self.project, "champion")
        if champion is None:  # archived or rolled away while this pass waited for the lock
            raise ModelError(f"project '{self.project}' has no champion to maintain; run `loopml run` first")
        released = released_challenger(self.store, self.project, self.policy)
        if released is not None:
            # A release's verdict comes first: it may promote, or take a bad canary off the traffic.
            outcome, why = Release(self.spec, self.store, self.policy, self.rec, self.lock, champion, released).judge()
            if outcome != "in_rollout":
                return self._done(outcome, why, released, action="rollout")  # type: ignore[arg-type]
            self.release = (released, why)
        signals, last_alert = self._monitor_signals(champion)
        checked, signal = self._check_labels(champion, signals)
        if signal is not None:
            signals.append(signal)
        labels_through = int((champion.lineage or {}).get("labels_through") or 0)
        new_labels = len(self.store.labeled_predictions(self.project, after_feedback_seq=labels_through))
        decision = decide(self.policy, signals, labeled_rows=new_labels, last_retrain_at=self._last_retrain())
        result = self._act(champion, decision, signals, new_labels, checked)
        if self.release is not None and result.outcome in ("goal_holds", "waiting"):
            result.outcome, result.explanation = "in_rollout", f"{self.release[1]}; {result.explanation}"
            result.challenger = self.release[0]
        if last_alert:  # read only once acted on: a pass that dies first leaves them for the next one
            self.store.set_checkpoint(self.project, _ALERTS_READ, last_alert)
        return result

    def _act(self, champion: ModelVersion, decision: PolicyDecision, signals: list[Signal], new_labels: int,
             checked: tuple[MaintainOutcome, str]) -> MaintainResult:
        if decision.action == "none":
            return self._done(*checked)
        self._record_policy(decision, signals, new_labels)
        if decision.action in ("alert", "wait"):
            return self._done("alert_only", decision.reason, action=decision.action)
        if self.release is not None:
            challenger, _ = self.release
            why = (f"{decision.reason}; held back: v{challenger.version} is in a {self.policy.rollout} release, and "
                   "its verdict on live traffic comes first")
            self.rec.decide("maintenance", "rollout", "info", "hold_retrain", None, why,
                            {"challenger": challenger.version, "mode": self.policy.rollout, "wanted": decision.action})
            return self._done("in_rollout", why, challenger, action="wait")
        self.store.set_checkpoint(self.project, _LAST_RETRAIN, {"at": datetime.now(UTC).isoformat(),
                                                                "run_id": self.rec.run_id})
        outcome = Retrainer(self.spec, self.store, champion, self.policy, self.rec).run(decision.action)
        return self._settle(champion, outcome, decision.action)

    # -- what happened since the last pass -------------------------------------------------------

    def _monitor_signals(self, champion: ModelVersion) -> tuple[list[Signal], int]:
        """Alerts of ``loopml monitor`` not read yet, as policy signals; and the last alert id seen.

        A goal breach measured on a window another version answered says nothing about the champion
        (labels of the old model's last windows arrive after a promotion), so it is not a signal.
        """
        seen = int(self.store.checkpoint(self.project, _ALERTS_READ) or 0)
        fresh = [a for a in self.store.alerts(self.project) if a["id"] > seen]
        window_ids = sorted({a["window_id"] for a in fresh if a.get("window_id") is not None})
        served_by = {w["id"]: w.get("model_version_id")
                     for w in self.store.monitor_windows(self.project, ids=window_ids)} if window_ids else {}
        signals = []
        for alert in fresh:
            detail = alert.get("detail") or {}
            trigger = trigger_for_alert(alert["kind"])
            if detail.get("raised_by") == "maintain" or trigger is None:
                continue
            answered_by = served_by.get(alert.get("window_id"))
            if trigger in ("goal_breached", "goal_breach_estimated") and answered_by not in (None, champion.id):
                continue
            summary = str(detail.get("summary") or detail.get("message") or alert["kind"])
            signals.append(Signal(trigger, "monitor", summary, alert["id"], {"kind": alert["kind"]}))
        return signals, max((a["id"] for a in fresh), default=0)

    def _check_labels(self, champion: ModelVersion,
                      signals: list[Signal]) -> tuple[tuple[MaintainOutcome, str], Signal | None]:
        """The goal on the labeled predictions since the last check: holds, breached (a signal), or too few."""
        spec, store, goal = self.spec, self.store, self.spec.business.goal
        rows = store.labeled_predictions(self.project, after_feedback_seq=store.last_monitored_seq(self.project))
        need = self.policy.min_labeled
        if len(rows) < need:
            why = f"{len(rows)} new labeled predictions since the last check; need {need} (maintenance.min_labeled)"
            self.rec.decide("maintenance", "enough_labels", "info", "wait", None, why,
                            {"labeled": len(rows), "needed": need})
            return ("waiting", why), None
        model = TrainedModel.from_bytes(store.read_model(champion), root=spec.root)
        try:
            live = evaluate(model, labeled_frame(rows, spec.business.target), goal, seed=spec.model.seed, n_boot=200,
                            costs=spec.business.costs)
        except ModelError as exc:
            why = f"the goal cannot be judged on the {len(rows)} new labeled predictions yet: {exc}"
            self.rec.decide("maintenance", "enough_labels", "info", "wait", None, why, {"labeled": len(rows)})
            return ("waiting", why), None
        window = store.add_monitor_window(self.project, model_version_id=champion.id,
                                          first_seq=rows[0]["feedback_seq"], last_seq=rows[-1]["feedback_seq"],
                                          rows=len(rows), metrics=live.to_dict())
        measured = (f"champion v{champion.version}: {goal.metric} {live.value:.3f} (95% CI {live.ci_low:.3f}–"
                    f"{live.ci_high:.3f}) on {len(rows)} labeled predictions")
        evidence = {"window_id": window, "champion": champion.version, **live.to_dict()}
        if live.met:
            self.rec.decide("maintenance", "goal_holds", "pass", "keep", None,
                            f"goal {goal.describe()} holds: {measured}", evidence)
            return ("goal_holds", measured), None
        self.rec.decide("maintenance", "goal_holds", "fail", "alert", "maintenance",
                        f"goal {goal.describe()} breached: {measured}", evidence)
        if any(s.trigger == "goal_breached" for s in signals):  # the monitor said so already
            return ("alert_only", measured), Signal("goal_breached", "maintain", measured, None, evidence)
        alert = store.add_alert(self.project, window_id=window, kind="goal_breached",
                                detail={**live.to_dict(), "summary": measured, "raised_by": "maintain"})
        return ("alert_only", measured), Signal("goal_breached", "maintain", measured, alert, evidence)

    def _last_retrain(self) -> datetime | None:
        last = self.store.checkpoint(self.project, _LAST_RETRAIN)
        return datetime.fromisoformat(last["at"]) if last else None

    def _record_policy(self, decision: PolicyDecision, signals: list[Signal], new_labels: int) -> None:
        next_stage = {"retrain": "model", "collect_then_retrain": "data"}.get(decision.action)
        self.rec.decide("maintenance", "policy", "info", decision.action, next_stage, decision.reason,
                        {"signals": [s.to_dict() for s in signals], **decision.to_dict(),
                         "new_labeled_rows": new_labels,
                         "policy": {k: v for k, v in self.policy.to_dict().items()
                                    if k in ("actions", "cooldown_s", "min_labeled", "act_on_estimate", "approval",
                                             "gate", "budget_s", "window", "rollout")}})

    # -- the last step ---------------------------------------------------------------------------

    def _settle(self, champion: ModelVersion, outcome: RetrainOutcome, action: str) -> MaintainResult:
        """Keep the champion, leave the challenger to a human, or promote it: the pass's last write."""
        if not outcome.ok:
            return self._done("retrain_failed", outcome.reason, action=action)
        challenger, comparison = outcome.challenger, outcome.comparison
        if challenger is None or comparison is None:
            raise ModelError("a retrain that succeeded must name its challenger and comparison")
        evidence = {"champion": champion.version, "challenger": challenger.version, **comparison.to_dict()}
        if comparison.promote and self.policy.rollout != "direct":
            # Not promoted yet: the challenger alias points at it, and live traffic decides (see rollout.py).
            release = Release(self.spec, self.store, self.policy, self.rec, self.lock, champion, challenger)
            why = release.start(comparison)
            return self._done("in_rollout", why, challenger, action)
        if not comparison.promote:
            self.rec.decide("maintenance", "challenger_vs_champion", "fail", "keep_champion", None,
                            f"v{challenger.version} not promoted: {comparison.reason}", evidence)
            return self._done("kept_champion", comparison.reason, challenger, action)
        if self.policy.approval == "human":
            why = (f"v{challenger.version} passes the comparison, and maintenance.approval is human: promote it with "
                   f"`loopml models promote {challenger.version} --reason \"...\"`; {comparison.reason}")
            self.rec.decide("maintenance", "challenger_vs_champion", "pass", "await_approval", "operations", why,
                            evidence)
            return self._done("awaiting_approval", why, challenger, action)
        pause_for_tests("promote")
        self.lock.ensure_held()
        decision = self.rec.pending(
            "maintenance", "challenger_vs_champion", "pass", "promote", "operations",
            f"v{challenger.version} promoted to champion (was v{champion.version}): {comparison.reason}; undo with "
            "`loopml models rollback --reason \"...\"`", evidence)
        # expect: a human's promotion made during this pass wins; this pass then fails and changes nothing.
        self.store.set_alias(self.project, "champion", challenger.version, actor="loopml maintain",
                             reason=comparison.reason, decision=decision, expect=champion)
        self.rec.written_last()
        return self._done("promoted", comparison.reason, challenger, action)
