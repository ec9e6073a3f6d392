"""The decisions of one maintenance pass: written to the store as they are made, and kept for the result."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from loopml.decisions import Decision
from loopml.store import Store

Progress = Callable[[str, str], None]

# A crash-safety test sets LOOPML_TEST_PAUSE_AT=STEP[:SECONDS] and kills the pass while it sleeps at STEP.
PAUSE_VARIABLE = "LOOPML_TEST_PAUSE_AT"


class Recorder:
    """Writes each decision of run ``run_id`` and tells ``progress``; ``decisions`` keeps them in order."""

    def __init__(self, store: Store, project: str, run_id: int, progress: Progress | None = None):
        self.store = store
        self.project = project
        self.run_id = run_id
        self.progress: Progress = progress or (lambda stage, message: None)
        self.decisions: list[Decision] = []

    def decide(self, stage: str, gate: str, verdict: str, action: str, next_stage: str | None, summary: str,
               evidence: dict[str, Any]) -> Decision:
        """Record one decision now."""
        decision = self.store.record_decision(self.project, Decision(
            stage=stage, gate=gate, verdict=verdict, action=action, next_stage=next_stage,  # type: ignore[arg-type]
            summary=summary, evidence=evidence, actor="loopml maintain", run_id=self.run_id))
        return self.keep(decision)

    def pending(self, stage: str, gate: str, verdict: str, action: str, next_stage: str | None, summary: str,
                evidence: dict[str, Any]) -> Decision:
        """A decision to be written by the store together with the change it records (one transaction)."""
        return Decision(stage=stage, gate=gate, verdict=verdict, action=action,  # type: ignore[arg-type]
                        next_stage=next_stage, summary=summary, evidence=evidence, actor="loopml maintain",
                        run_id=self.run_id)

    def keep(self, decision: Decision) -> Decision:
        """Keep a decision the store has written, and say it."""
        self.decisions.append(decision)
        self.progress(decision.stage, decision.summary)
        return decision

    def written_last(self) -> Decision:
        """The latest decision in the store (the one a transaction just wrote), kept."""
        return self.keep(self.store.decisions(self.project, run_id=self.run_id, limit=1)[0])


def pause_for_tests(step: str) -> None:
    """Sleep at ``step`` when the crash-safety test asks for it (see :data:`PAUSE_VARIABLE`); else nothing."""
    name, _, seconds = os.environ.get(PAUSE_VARIABLE, "").partition(":")
    if name != step:
        return
    sys.stderr.write(f"loopml: paused at {step}\n")
    sys.stderr.flush()
    time.sleep(float(seconds or 3600))
