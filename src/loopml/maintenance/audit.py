"""The audit trail: every decision of the whole loop, from the first run to the latest promotion.

Each gate of each stage wrote a decision with its evidence; promotions, rollbacks and archiving by hand
are decisions too (``operations · registry``). :func:`history` reads them, oldest first, optionally of
one stage and only the latest ``limit``; :func:`history_table` shows them with the kind of run each
came from and the evidence in short.

>>> [d.gate for d in history(store, "benefits-outreach", stage="maintenance", limit=2)]   # doctest: +SKIP
['challenger_vs_champion', 'policy']
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from loopml.decisions import Decision
from loopml.errors import SpecError
from loopml.store import Store

__all__ = ["STAGES", "evidence_brief", "history", "history_table", "run_kinds"]

STAGES = ("business", "data", "model", "operations", "maintenance")
# Evidence keys that are bulky lists or tables; the short form leaves them to --json.
_BULKY = {"candidates", "leaderboard", "trials", "sources", "joins", "assessment", "signals", "windows", "policy",
          "cleaning", "steps", "notes", "label_issues", "skipped", "problems", "diagnosis", "report", "metrics",
          "reason", "summary", "why", "explanation"}


def history(store: Store, project: str, *, stage: str | None = None, limit: int | None = None) -> list[Decision]:
    """Decisions of ``project`` oldest first; only of ``stage`` when given; only the latest ``limit`` when given.

    :class:`SpecError` for an unknown stage (with a suggestion) or a limit under 1.
    """
    if stage is not None and stage not in STAGES:
        close = difflib.get_close_matches(stage, STAGES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SpecError(f"--stage: unknown stage '{stage}'; {hint}stages: {', '.join(STAGES)}")
    if limit is not None and limit < 1:
        raise SpecError(f"--limit: found {limit}; give a number of decisions of 1 or more, or leave it out for all")
    decisions = store.decisions(project)
    if stage is not None:
        decisions = [d for d in decisions if d.stage == stage]
    return decisions[-limit:] if limit else decisions


def run_kinds(store: Store, project: str, decisions: list[Decision]) -> dict[int, str]:
    """The kind (run, maintain, assess) of every run the decisions came from."""
    wanted = {d.run_id for d in decisions if d.run_id is not None}
    if not wanted:
        return {}
    return {r["id"]: r["kind"] for r in store.runs(project, limit=max(wanted) + 1) if r["id"] in wanted}


def evidence_brief(evidence: dict[str, Any], width: int = 120) -> str:
    """The evidence's plain numbers and words in one line (nested values flattened one level; nulls left out).

    >>> evidence_brief({"value": 0.8312, "rows": 400, "holdout": {"value": 0.79}, "trials": [1, 2], "cost": None})
    'value=0.8312 rows=400 holdout.value=0.79'
    """
    parts = []
    for key, value in evidence.items():
        if key in _BULKY:
            continue
        if isinstance(value, dict):
            parts += [f"{key}.{k}={_short(v)}" for k, v in value.items()
                      if v is not None and _plain(v) and k not in _BULKY]
        elif value is not None and _plain(value):
            parts.append(f"{key}={_short(value)}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def history_table(decisions: list[Decision], kinds: dict[int, str], *, title: str):
    """The decisions as a rich renderable: a heading line each, then the summary and the evidence in short."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    colours = {"pass": "green", "fail": "red", "info": "cyan"}
    parts: list = [Text(title, style="bold underline")]
    for d in decisions:
        head = Text()
        head.append(f"#{d.id} ", style="dim")
        head.append(f"{d.at:%Y-%m-%d %H:%M:%S} " if d.at else "", style="dim")
        if d.run_id is not None:
            head.append(f"{kinds.get(d.run_id, 'run')} {d.run_id} ", style="dim")
        head.append(f"{d.stage} · {d.gate} ", style="bold")
        head.append(d.verdict.upper(), style=f"bold {colours.get(d.verdict, 'white')}")
        head.append(f"  {d.action}" + (f" → {d.next_stage}" if d.next_stage else ""), style="dim")
        if d.actor not in ("loopml", "loopml maintain"):  # a person's name is worth the space
            head.append(f"  by {d.actor}", style="dim")
        parts += [head, Padding(Text(d.summary), (0, 0, 0, 4))]
        brief = evidence_brief(d.evidence)
        if brief:
            parts.append(Padding(Text(brief, style="dim"), (0, 0, 0, 4)))
    return Group(*parts)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) and len(str(value)) <= 80


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)
