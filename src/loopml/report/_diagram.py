"""Where the loop stands: each stage's state from the decisions of the latest cycle, drawn as the process diagram.

A cycle starts with the latest ``loopml run`` and takes in every decision written after it (monitoring,
maintenance passes, promotions by hand). A stage's state is its latest judged decision (verdict pass or
fail) in the cycle: ``passed``; ``went_back`` when it failed and sent the loop to itself or an earlier
stage; ``failed`` when it failed otherwise (a stop, an alert); ``reached`` when it wrote only information;
``not_reached`` when it wrote nothing. The loop's current position is where its latest decision sent it.

>>> position = loop_position(store.decisions("benefits-outreach"), store.runs("benefits-outreach"))  # doctest: +SKIP
>>> [s.state for s in position.stages], position.current                                          # doctest: +SKIP
(['passed', 'passed', 'passed', 'passed', 'not_reached'], 'maintenance')
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from html import escape
from typing import Any

from loopml.decisions import Decision
from loopml.maintenance.audit import STAGES

__all__ = ["STATES", "LoopPosition", "StageState", "loop_position", "process_diagram"]

STATES = {"passed": "passed", "failed": "failed", "went_back": "went back", "reached": "reached",
          "not_reached": "not reached"}
_FILL = {"passed": ("#e6f4ea", "#1a7f37"), "failed": ("#fdecea", "#b42318"), "went_back": ("#fff4d6", "#9a6700"),
         "reached": ("#eef3fb", "#0b5cad"), "not_reached": ("#f6f8fa", "#8c959f")}
# The decision points of the process that send the loop back: (from, to), drawn as dashed arcs below the boxes.
_BACK_EDGES = (("model", "data"), ("model", "business"), ("operations", "model"), ("maintenance", "data"))
_BOX_W, _BOX_H, _GAP, _LEFT, _TOP = 150, 88, 42, 20, 44
_WIDTH = _LEFT * 2 + 5 * _BOX_W + 4 * _GAP
_HEIGHT = 230
_GATE_CHARS = 23  # at 11px, what fits in a box; the hover text holds the rest


@dataclass(frozen=True)
class StageState:
    """One stage in the latest cycle: its state, how many decisions it wrote, how often it sent the loop back."""

    stage: str
    state: str
    decisions: int
    went_back: int
    latest: Decision | None
    judged: Decision | None = None  # the latest decision with a verdict, pass or fail: it sets the state

    @property
    def label(self) -> str:
        return STATES[self.state]


@dataclass(frozen=True)
class LoopPosition:
    """Every stage's state, where the loop is now, and the run and decisions the cycle holds."""

    stages: tuple[StageState, ...]
    current: str | None
    run: dict[str, Any] | None
    decisions: tuple[Decision, ...]
    back_edges: tuple[tuple[str, str, int], ...]  # (from, to, times) taken in the cycle


def loop_position(decisions: list[Decision], runs: list[dict[str, Any]]) -> LoopPosition:
    """The state of each stage in the cycle started by the latest run of kind ``run`` (all decisions without one)."""
    loop_runs = [r for r in runs if r["kind"] == "run"]
    run = max(loop_runs, key=lambda r: r["id"]) if loop_runs else None
    cycle = decisions
    if run is not None:
        first = next((d.id for d in decisions if d.run_id == run["id"]), None)
        cycle = [d for d in decisions if first is not None and d.id is not None and d.id >= first]
    stages = tuple(_stage_state(stage, [d for d in cycle if d.stage == stage]) for stage in STAGES)
    current = None
    if cycle:
        last = cycle[-1]
        current = last.next_stage if last.next_stage in STAGES else last.stage
    taken = Counter((d.stage, d.next_stage) for d in cycle if _sent_back(d))
    edges = tuple((a, b, taken[(a, b)]) for a, b in _BACK_EDGES)
    edges += tuple((a, b, n) for (a, b), n in sorted(taken.items()) if (a, b) not in _BACK_EDGES)
    return LoopPosition(stages=stages, current=current, run=run, decisions=tuple(cycle), back_edges=edges)


def process_diagram(position: LoopPosition) -> str:
    """The five stages as boxes coloured by state, the way forward, the ways back, and where the loop is now."""
    x = {s: _LEFT + i * (_BOX_W + _GAP) for i, s in enumerate(STAGES)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" role="img" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
             f'width="{_WIDTH}" height="{_HEIGHT}" aria-label="The loop: business, data, model, operations, '
             'maintenance" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" '
             'font-size="12">',
             "<title>The loop: business, data, model, operations, maintenance</title>",
             f"<defs>{_marker('arrow', '#57606a')}{_marker('arrow-back', '#9a6700')}</defs>"]
    mid = _TOP + _BOX_H / 2
    for a, b in zip(STAGES, STAGES[1:], strict=False):
        parts.append(f'<path class="mark forward" d="M{x[a] + _BOX_W:.0f} {mid:.0f} L{x[b] - 3:.0f} {mid:.0f}" '
                     'stroke="#57606a" stroke-width="1.6" fill="none" marker-end="url(#arrow)"/>')
    for i, (a, b, times) in enumerate(position.back_edges):
        parts.append(_back_arc(x, a, b, times, i))
    for s in position.stages:
        parts.append(_box(x[s.stage], s, s.stage == position.current))
    parts.append("</svg>")
    return "\n".join(parts)


def _marker(name: str, colour: str) -> str:
    # Sized in user units, so an arrowhead stays the same size on a thick (taken) arc and a thin one.
    return (f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" '
            f'markerHeight="9" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 Z" fill="{colour}"/></marker>')


def _stage_state(stage: str, own: list[Decision]) -> StageState:
    judged = [d for d in own if d.verdict in ("pass", "fail")]
    back = sum(1 for d in own if _sent_back(d))
    if not own:
        state = "not_reached"
    elif not judged:
        state = "reached"
    elif judged[-1].verdict == "pass":
        state = "passed"
    else:
        state = "went_back" if _sent_back(judged[-1]) else "failed"
    return StageState(stage=stage, state=state, decisions=len(own), went_back=back, latest=own[-1] if own else None,
                      judged=judged[-1] if judged else None)


def _sent_back(d: Decision) -> bool:
    """A failed gate that sent the loop to its own stage or an earlier one."""
    return (d.verdict == "fail" and d.next_stage in STAGES and d.stage in STAGES
            and STAGES.index(d.next_stage) <= STAGES.index(d.stage))


def _box(x: float, s: StageState, here: bool) -> str:
    fill, ink = _FILL[s.state]
    hover = f"{s.stage}: {s.label}" + (f" · latest: {s.latest.gate} {s.latest.verdict}, {s.latest.summary}"
                                       if s.latest else "")
    gate = s.judged.gate if s.judged else ""
    gate = gate if len(gate) <= _GATE_CHARS else gate[:_GATE_CHARS - 1] + "…"
    counts = f"{s.decisions} decision(s)" + (f" · back {s.went_back}×" if s.went_back else "")
    marker, current = "", ' data-current="true"' if here else ""
    if here:
        cx = x + _BOX_W / 2
        marker = (f'<path class="mark here" d="M{cx - 8:.0f} {_TOP - 16} L{cx + 8:.0f} {_TOP - 16} '
                  f'L{cx:.0f} {_TOP - 5} Z" fill="#0b5cad"/><text x="{cx:.0f}" y="{_TOP - 22}" text-anchor="middle" '
                  'fill="#0b5cad" font-weight="600">the loop is here</text>')
    return (f'<a href="/decisions?stage={s.stage}" class="stage" data-stage="{s.stage}" '
            f'data-state="{s.state}"{current}>'
            f'<rect class="mark box" x="{x:.0f}" y="{_TOP}" width="{_BOX_W}" height="{_BOX_H}" rx="8" fill="{fill}" '
            f'stroke="{ink}" stroke-width="{3.5 if here else 1.5}"><title>{escape(hover[:400])}</title></rect>'
            f'<text x="{x + _BOX_W / 2:.0f}" y="{_TOP + 24}" text-anchor="middle" font-size="15" font-weight="600" '
            f'fill="#1f2328">{s.stage.capitalize()}</text>'
            f'<text x="{x + _BOX_W / 2:.0f}" y="{_TOP + 45}" text-anchor="middle" fill="{ink}" font-weight="600">'
            f"{s.label}</text>"
            f'<text x="{x + _BOX_W / 2:.0f}" y="{_TOP + 61}" text-anchor="middle" fill="#59636e" font-size="11">'
            f"{escape(gate)}</text>"
            f'<text x="{x + _BOX_W / 2:.0f}" y="{_TOP + 77}" text-anchor="middle" fill="#59636e" font-size="11">'
            f"{counts}</text></a>{marker}")


def _back_arc(x: dict[str, float], a: str, b: str, times: int, i: int) -> str:
    """A dashed arc below the boxes from stage ``a`` back to stage ``b``; solid and labelled when taken."""
    bottom = _TOP + _BOX_H
    start = x[a] + _BOX_W * (0.62 if a != b else 0.7)
    end = x[b] + _BOX_W * (0.38 if a != b else 0.3)
    depth = 22 + 16 * max(STAGES.index(a) - STAGES.index(b), 0) + (i % 2) * 6
    colour = "#9a6700" if times else "#afb8c1"
    dash = "" if times else ' stroke-dasharray="5 4"'
    label = (f'<text x="{(start + end) / 2:.0f}" y="{bottom + depth * 0.75 + 14:.0f}" text-anchor="middle" '
             f'fill="#9a6700" font-size="11">{times}×</text>') if times else ""
    title = f"{a} → {b}: " + (f"taken {times}× in this cycle" if times else "a way back, not taken in this cycle")
    return (f'<path class="mark back" data-from="{a}" data-to="{b}" d="M{start:.0f} {bottom} C{start:.0f} '
            f'{bottom + depth} {end:.0f} {bottom + depth} {end:.0f} {bottom + 3}" stroke="{colour}" '
            f'stroke-width="{2 if times else 1.2}" fill="none"{dash} marker-end="url(#arrow-back)">'
            f"<title>{escape(title)}</title></path>{label}")
