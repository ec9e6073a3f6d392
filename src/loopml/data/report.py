"""Render a :class:`~loopml.data.assess.ProjectAssessment` for the terminal: per source a header line
and four short sections (availability, usability, quality, cost), then the joined table; readable at
80 columns.

>>> from rich.console import Console
>>> Console(width=80).print(render_assessment(assess_project(spec)))  # doctest: +SKIP
survey · file benefits.csv · reachable
  availability  4,877 rows read in 0.03 s; 4,877 in all, 0 more; newest: n/a
  ...
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from loopml.data.assess import DataAssessment, ProjectAssessment, SourceAssessment

__all__ = ["render_assessment"]

_SHOWN = 4  # columns listed per finding before "+N more"


def render_assessment(pa: ProjectAssessment) -> Group:
    """A rich renderable of the whole assessment: every source in four parts, then the joined table."""
    parts: list[Any] = [Text(f"{pa.project}: target '{pa.target}' ({pa.task}), {len(pa.sources)} source"
                             f"{'s' if len(pa.sources) != 1 else ''}, assessed in {pa.seconds:.1f} s", style="bold")]
    for source in pa.sources:
        parts += [Text(""), *_source(source)]
    parts += [Text(""), *_joined(pa)]
    return Group(*parts)


def _grid(rows: list[tuple[str, str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="cyan", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, text in rows:
        grid.add_row(f"  {label}", text)
    return grid


def _source(s: SourceAssessment) -> list[Any]:
    av, us, cost = s.availability, s.usability, s.cost
    if not av["reachable"]:
        head = Text.assemble((s.name, "bold"), f" · {s.description} · ", ("unreachable", "bold red"))
        return [head, _grid([("availability", f"not read after {av['read_seconds']:.2f} s: {av['error']}"),
                             ("cost", f"{cost['cost_per_1k_rows']:g} per 1k rows; nothing read, nothing spent")])]
    head = Text.assemble((s.name, "bold"), f" · {s.description} · ", ("reachable", "green"))
    more = "unknown" if av["more_rows"] is None else f"{av['more_rows']:,} more"
    total = "total unknown" if av["total_rows"] is None else f"{av['total_rows']:,} in all"
    rows = [("availability", f"{av['rows']:,} rows read in {av['read_seconds']:.2f} s; {total}, {more}; "
                             f"newest: {av['newest'] or 'n/a'}"),
            ("usability", _usability(us)),
            ("quality", _quality(s.quality)),
            ("cost", f"{cost['cost_per_1k_rows']:g} per 1k rows × {cost['rows']:,} rows = {cost['cost']:.2f}; "
                     f"read {cost['read_seconds']:.2f} s")]
    return [head, _grid(rows)]


def _usability(us: dict) -> str:
    if us["target_present"]:
        target = "target ok" if us.get("target_ok") else f"target problem: {us.get('target_problem')}"
    else:
        target = "no target"
    kinds = Counter(us["columns"].values())
    text = f"{target}; {len(us['columns'])} columns: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common())
    join = us.get("join")
    if join:
        key = "+".join(join["key"])
        text += (f"; join on {key}: {join['error']}" if join.get("error") else
                 f"; join on {key}: {join['match_rate']:.1%} of base rows match, key "
                 + ("unique" if join["key_unique"] else f"NOT unique ({join['duplicate_keys']:,} repeats)"))
    if us["unusable"]:
        text += "; unusable: " + _listed({c: why.split(":")[0] for c, why in us["unusable"].items()})
    return text


def _listed(items: dict[str, Any]) -> str:
    shown = [f"{k} ({v})" for k, v in list(items.items())[:_SHOWN]]
    rest = len(items) - _SHOWN
    return ", ".join(shown) + (f", +{rest} more" if rest > 0 else "")


def _quality(q: dict) -> str:
    text = (f"missing {q['missing_cells_share']:.1%} of cells; duplicates {q['duplicate_rows']:,} "
            f"({q['duplicate_share']:.1%})")
    outliers = {c: o["count"] for c, o in q.get("outliers", {}).items() if o["count"]}
    if outliers:
        text += "; outliers: " + _listed(dict(sorted(outliers.items(), key=lambda kv: -kv[1])))
    if q.get("near_constant_columns"):
        text += "; near-constant: " + _listed({c: f"{s:.1%}" for c, s in q["near_constant_columns"].items()})
    if q.get("target_balance"):
        text += "; classes: " + ", ".join(f"{k} {v:.1%}" for k, v in list(q["target_balance"].items())[:_SHOWN])
    if q.get("leakage_suspects"):
        text += "; LEAKAGE suspects: " + _listed({s["column"]: f"{s['metric']} {s['score']:.3f}"
                                                  for s in q["leakage_suspects"]})
    noise = q.get("label_noise")
    if noise:
        text += f"; label noise {noise['share']:.1%} ({noise['rows']:,} of {noise['checked_rows']:,} rows)"
    return text


def _joined(pa: ProjectAssessment) -> list[Any]:
    head = Text("joined table", style="bold")
    if pa.joined is None:
        return [head, _grid([("error", pa.join_error or "not assessed")])]
    a: DataAssessment = pa.joined
    rows = [("rows", f"{a.rows:,} rows × {a.columns} features"
                     + "".join(f"; {j['source']} on {'+'.join(j['on'])}: {j['match_rate']:.1%} matched"
                               for j in pa.joins))]
    if pa.left_out:
        rows.append(("left out", _listed(pa.left_out)))
    quality = {**a.to_dict(), "outliers": a.outliers}
    rows.append(("quality", _quality(quality)))
    target = "ok" if a.target_ok else f"problem: {a.target_problem}"
    if a.unusable_columns:
        target += "; unusable: " + _listed({c: why.split(":")[0] for c, why in a.unusable_columns.items()})
    rows.append(("target", target))
    return [head, _grid(rows)]
