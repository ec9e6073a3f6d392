"""Champion against challenger on the same recent labeled rows that neither was trained on.

>>> older, recent = split_older_recent(frame)                               # doctest: +SKIP
>>> compare_on_recent(champion, challenger, recent, goal).promote           # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from loopml.model import TrainedModel, evaluate
from loopml.spec import GoalSpec

__all__ = ["Comparison", "compare_on_recent", "labeled_frame", "split_older_recent"]


def labeled_frame(rows: list[dict[str, Any]], target: str) -> pd.DataFrame:
    """Labeled predictions from the store as a training-shaped frame (features plus target)."""
    frame = pd.DataFrame([r["features"] for r in rows])
    frame[target] = [r["label"] for r in rows]
    return frame


def split_older_recent(frame: pd.DataFrame, recent_share: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Older rows (may be trained on) and the most recent rows (kept for the comparison only)."""
    cut = len(frame) - max(1, int(round(len(frame) * recent_share)))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


@dataclass(frozen=True)
class Comparison:
    promote: bool
    reason: str
    champion: dict[str, Any]
    challenger: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason, "champion": self.champion,
                "challenger": self.challenger}


def compare_on_recent(champion: TrainedModel, challenger: TrainedModel, recent: pd.DataFrame, goal: GoalSpec,
                      *, seed: int = 0) -> Comparison:
    """Promote only a challenger that meets the goal and beats the champion on ``recent``."""
    champ = evaluate(champion, recent, goal, seed=seed, n_boot=200)
    chall = evaluate(challenger, recent, goal, seed=seed, n_boot=200)
    # A champion that misses the goal is beaten by any challenger that meets it.
    better = chall.value > champ.value if goal.greater_is_better else chall.value < champ.value
    better = better or not champ.met
    scores = (f"challenger {goal.metric} {chall.value:.3f}{_constraints(chall)} vs champion {champ.value:.3f}"
              f"{_constraints(champ)} on {len(recent)} recent rows")
    if not chall.met:
        reason = f"challenger misses the goal {goal.describe()}: {scores}"
    elif not better:
        reason = f"challenger does not beat the champion: {scores}"
    else:
        reason = f"challenger meets the goal and beats the champion: {scores}"
    return Comparison(chall.met and better, reason, champ.to_dict(), chall.to_dict())


def _constraints(evaluation) -> str:
    return "".join(f" ({k} {v['value']:.3f})" if v["value"] is not None else f" ({k} undefined)"
                   for k, v in evaluation.constraints.items())
