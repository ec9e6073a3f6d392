"""Shadow and canary releases: a challenger proves itself on live traffic before it is promoted.

With ``maintenance.rollout.mode: shadow`` or ``canary``, a challenger that passes the offline comparison
is not promoted at once: the ``challenger`` alias points at it, and the server has it score every request
without answering (shadow) or answer ``canary_share`` of them (canary). Each maintenance pass then judges
it on its live labeled predictions, once ``rollout.min_labeled`` of them are labeled:

- shadow: both models on the same requests (the label of an answered prediction labels its shadow row),
  with a paired bootstrap of the difference (:func:`~loopml.maintenance.compare.compare_on_recent`);
- canary: each model on the requests it answered since the canary started, with an unpaired bootstrap
  (:func:`~loopml.maintenance.compare.compare_canary`).

A challenger that meets the goal and is not worse than the champion beyond the noise is promoted (the
champion alias moves; servers swap it in) and the challenger alias is cleared. Otherwise the release ends:
the challenger alias is cleared, so serving stops sending it traffic (a bad canary is *rolled back*).
Every step is a decision record of gate ``rollout``.

>>> challenger = released_challenger(store, "shop", policy)                       # doctest: +SKIP
>>> Release(spec, store, policy, recorder, lock, champion, challenger).judge()    # doctest: +SKIP
('rolled_back', 'canary v3 rolled back: the canary is worse than the champion beyond the noise: ...')
"""

from __future__ import annotations

from typing import Any

from loopml.errors import ModelError
from loopml.maintenance._record import Recorder, pause_for_tests
from loopml.maintenance.compare import Comparison, compare_canary, compare_on_recent, labeled_frame
from loopml.maintenance.lock import HeldLock
from loopml.maintenance.policy import Policy
from loopml.model import TrainedModel
from loopml.spec import ProjectSpec
from loopml.store import ModelVersion, Store

__all__ = ["Release", "released_challenger"]

_ACTOR = "loopml maintain"


def released_challenger(store: Store, project: str, policy: Policy) -> ModelVersion | None:
    """The version in a shadow or canary release: the challenger alias, in those modes, when it is not the champion.

    >>> released_challenger(store, "shop", read_policy(spec)).version   # doctest: +SKIP
    3
    """
    if policy.rollout == "direct":
        return None
    challenger = store.alias(project, "challenger")
    champion = store.alias(project, "champion")
    if challenger is None or champion is None or challenger.id == champion.id:
        return None
    return challenger


class Release:
    """One challenger's release: its start (after the offline comparison) and its verdicts on live traffic."""

    def __init__(self, spec: ProjectSpec, store: Store, policy: Policy, rec: Recorder, lock: HeldLock,
                 champion: ModelVersion, challenger: ModelVersion):
        self.spec, self.store, self.policy, self.rec, self.lock = spec, store, policy, rec, lock
        self.project = spec.project
        self.champion, self.challenger = champion, challenger
        self.mode = policy.rollout

    @property
    def where(self) -> str:
        """The release in words: "in shadow" or "in canary at 10%"."""
        return "in shadow" if self.mode == "shadow" else f"in canary at {self.policy.canary_share:.0%}"

    def start(self, comparison: Comparison) -> str:
        """Record that the challenger, which passed the offline comparison, is now in shadow or canary."""
        c, m, need = self.challenger.version, self.champion.version, self.policy.rollout_min_labeled
        does = ("it scores every request without answering" if self.mode == "shadow"
                else f"it answers {self.policy.canary_share:.0%} of requests")
        why = (f"v{c} passes the offline comparison and is {self.where}: {does}; once {need} of its live predictions "
               f"are labeled it is promoted if it meets the goal and is not worse than champion v{m} beyond the "
               f"noise{', else rolled back' if self.mode == 'canary' else ''} ({comparison.reason})")
        self.rec.decide("maintenance", "rollout", "pass", self.mode, "operations", why,
                        {**self._plan(), "comparison": comparison.to_dict()})
        return why

    def judge(self) -> tuple[str, str]:
        """The verdict of this pass, as (outcome, why): ``in_rollout`` while labels are too few, else
        ``promoted``, ``awaiting_approval``, ``kept_champion`` (a shadow that fails) or ``rolled_back``."""
        c, need = self.challenger.version, self.policy.rollout_min_labeled
        mine, theirs = self._live_rows()
        counts = {"challenger_labeled": len(mine), "champion_labeled": len(theirs), "needed": need}
        short = [f"{n} of {whose} live predictions" for whose, n in
                 (("its", len(mine)), ("the champion's", len(theirs))) if n < need]
        if self.mode == "shadow":
            short = short[:1]  # a shadow row and its answered row are labeled together
        if short:
            why = (f"v{c} {self.where}: {' and '.join(short)} labeled so far; need {need} "
                   "(maintenance.rollout.min_labeled)")
            self.rec.decide("maintenance", "rollout", "info", "wait", None, why, {**self._plan(), **counts})
            return "in_rollout", why
        try:
            comparison = self._compare(mine, theirs)
        except ModelError as exc:
            why = f"v{c} {self.where}: its live predictions cannot be compared with the champion's yet: {exc}"
            self.rec.decide("maintenance", "rollout", "info", "wait", None, why, {**self._plan(), **counts})
            return "in_rollout", why
        evidence = {**self._plan(), **counts, "comparison": comparison.to_dict()}
        if comparison.promote:
            return self._promote(comparison, evidence)
        return self._end(comparison, evidence)

    # -- steps -----------------------------------------------------------------------------------

    def _plan(self) -> dict[str, Any]:
        return {"mode": self.mode, "canary_share": self.policy.canary_share if self.mode == "canary" else None,
                "min_labeled": self.policy.rollout_min_labeled, "champion": self.champion.version,
                "challenger": self.challenger.version}

    def _live_rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The challenger's labeled live rows, and the champion's to compare them with."""
        if self.mode == "shadow":
            rows = self.store.labeled_predictions(self.project, roles=("shadow",),
                                                  model_version_id=self.challenger.id)
            # Shadows of requests another champion answered (before a promotion) compare with no one here.
            paired = [r for r in rows if r["answered_version_id"] == self.champion.id]
            return paired, paired
        mine = self.store.labeled_predictions(self.project, roles=("canary",), model_version_id=self.challenger.id)
        if not mine:
            return [], []
        # The champion's requests over the same period: from the canary's first labeled request on.
        first = min(r["seq"] for r in mine)
        theirs = self.store.labeled_predictions(self.project, roles=("champion",),
                                                model_version_id=self.champion.id, from_seq=first)
        return mine, theirs

    def _compare(self, mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> Comparison:
        spec, policy, b = self.spec, self.policy, self.spec.business
        champion, challenger = (TrainedModel.from_bytes(self.store.read_model(mv), root=spec.root)
                                for mv in (self.champion, self.challenger))
        self.rec.progress("maintenance", f"judging v{self.challenger.version} {self.where} on live traffic")
        if self.mode == "shadow":
            return compare_on_recent(champion, challenger, labeled_frame(mine, b.target), b.goal, seed=spec.model.seed,
                                     gate="meet_goal", confidence=policy.confidence, resamples=policy.resamples,
                                     costs=b.costs)
        return compare_canary(champion, challenger, labeled_frame(theirs, b.target), labeled_frame(mine, b.target),
                              b.goal, seed=spec.model.seed, confidence=policy.confidence,
                              resamples=policy.resamples, costs=b.costs)

    def _promote(self, comparison: Comparison, evidence: dict[str, Any]) -> tuple[str, str]:
        c, m = self.challenger.version, self.champion.version
        if self.policy.approval == "human":
            why = (f"v{c} {self.where} passes on live traffic, and maintenance.approval is human: promote it with "
                   f"`loopml models promote {c} --reason \"...\"`; {comparison.reason}")
            self.rec.decide("maintenance", "rollout", "pass", "await_approval", "operations", why, evidence)
            return "awaiting_approval", why
        pause_for_tests("promote")
        self.lock.ensure_held()
        why = (f"v{c} promoted to champion after its release {self.where} (was v{m}): {comparison.reason}; "
               "undo with `loopml models rollback --reason \"...\"`")
        decision = self.rec.pending("maintenance", "rollout", "pass", "promote", "operations", why, evidence)
        self.store.set_alias(self.project, "champion", c, actor=_ACTOR, reason=comparison.reason, decision=decision,
                             expect=self.champion)
        self.rec.written_last()
        # The release is over: the new champion answers everything, and nothing shadows it.
        self.store.clear_alias(self.project, "challenger", actor=_ACTOR, reason=f"v{c} promoted after its release",
                               only_if=self.challenger.id)
        return "promoted", why

    def _end(self, comparison: Comparison, evidence: dict[str, Any]) -> tuple[str, str]:
        c, m = self.challenger.version, self.champion.version
        if self.mode == "canary":
            action, outcome = "rollback", "rolled_back"
            why = (f"canary v{c} rolled back: {comparison.reason}; the challenger alias is cleared, so serving stops "
                   f"sending it traffic and champion v{m} answers every request")
        else:
            action, outcome = "end_shadow", "kept_champion"
            why = (f"shadow v{c} not promoted: {comparison.reason}; the challenger alias is cleared, so the shadow "
                   f"stops; champion v{m} keeps serving")
        self.lock.ensure_held()
        decision = self.rec.pending("maintenance", "rollout", "fail", action, None, why, evidence)
        cleared = self.store.clear_alias(self.project, "challenger", actor=_ACTOR, reason=comparison.reason,
                                         decision=decision, only_if=self.challenger.id)
        if cleared is None:  # moved by someone meanwhile: theirs stands, and this pass says so
            why = f"v{c} {self.where} failed on live traffic, but the challenger alias moved meanwhile; left as it is"
            self.rec.decide("maintenance", "rollout", "info", "none", None, why, evidence)
            return "alert_only", why
        self.rec.written_last()
        return outcome, why
