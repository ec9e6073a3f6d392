"""The decision record: what every gate of the loop writes, and how it is shown.

>>> d = Decision(stage="model", gate="goal", verdict="fail", action="widen_search",
...              next_stage="model", summary="recall 0.74 < 0.80", evidence={"recall": 0.74})
>>> d.verdict
'fail'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["Decision", "Verdict", "decisions_table"]

Verdict = Literal["pass", "fail", "info"]


@dataclass(frozen=True)
class Decision:
    """One gate's outcome: the evidence (numbers), the verdict, and where the loop goes next."""

    stage: str
    gate: str
    verdict: Verdict
    action: str
    next_stage: str | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    actor: str = "loopml"
    run_id: int | None = None
    id: int | None = None
    at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat() if self.at else None
        return out


def decisions_table(decisions: list[Decision], title: str = "Decision log"):
    """The decisions, oldest first, as a rich renderable that reads well at any terminal width.

    Each decision is a heading line (number, stage, gate, verdict, action, next stage)
    followed by its summary, indented.
    """
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    colours = {"pass": "green", "fail": "red", "info": "cyan"}
    parts: list = [Text(title, style="bold underline")]
    for d in decisions:
        head = Text()
        head.append(f"#{d.id or '-'} ", style="dim")
        head.append(f"{d.stage} · {d.gate} ", style="bold")
        head.append(d.verdict.upper(), style=f"bold {colours.get(d.verdict, 'white')}")
        head.append(f"  {d.action}" + (f" → {d.next_stage}" if d.next_stage else ""), style="dim")
        parts += [head, Padding(Text(d.summary), (0, 0, 0, 4))]
    return Group(*parts)
