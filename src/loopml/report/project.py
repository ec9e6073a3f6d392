"""The stage report: one run of the loop, from the business goal to the model card, as one HTML page.

Built from the store (the decisions, the run's snapshot and its registered model): the goal and the
verdict; every decision of the loop as a timeline with its evidence; per data source its assessment
(availability, usability, quality, cost), the distributions of its most important columns and where
its values are missing; the leaderboard, the learning curve extrapolated to the goal, the
precision–recall curve (regression: the residuals) with the operating point and the goal, feature
importance and calibration; and a model card: intended use, data lineage, metrics with 95%
intervals, limitations. What the store does not hold (curves, importance, intervals of the other
metrics) is computed from the stored model on its locked holdout, rebuilt from the stored snapshot.

Each ``*_section`` function takes plain inputs and returns a dict (charts as SVG markup), so other
pages (the dashboard) can reuse them.

>>> report = project_report(store, "benefits-outreach")     # doctest: +SKIP
>>> report.write("report.html")                              # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pandas as pd

from loopml.business.metrics import METRICS
from loopml.data.snapshot import snapshot_frame
from loopml.errors import LoopmlError, NotFoundError
from loopml.report._model import evaluate_on_holdout, model_section
from loopml.report.charts import category_bars, histogram, missing_map
from loopml.report.page import Report, render_page, svg

if TYPE_CHECKING:
    from loopml.decisions import Decision
    from loopml.model.artifact import TrainedModel
    from loopml.spec import ProjectSpec
    from loopml.store import ModelVersion, SnapshotRecord, Store

__all__ = ["card_section", "data_section", "goal_section", "model_section", "project_report", "timeline_section"]

_RUN_KIND = "run"  # the store's kind for `loopml run`
_ALL_RUNS = 1_000_000
_TIMELINE_MAX = 300  # decisions drawn; `loopml history` lists every one
_EVIDENCE_ITEMS = 14
_DISTRIBUTIONS = 3  # per source: its most important columns
_MAP_COLUMNS = 24
_MAP_BLOCKS = 40
_CHART_WIDTH = 560
_PARTS_SAMPLE_ROWS = 100_000  # rows of a snapshot stored in parts the charts are drawn from
_VERDICTS = {"registered": ("goal met", "good"), "goal_not_met": ("goal not met", "bad"),
             "data_insufficient": ("not enough data", "bad"), "not_deployable": ("registered, not deployed", "bad"),
             "running": ("still running", ""), "failed": ("failed", "bad")}


def project_report(store: Store, project: str, *, spec: ProjectSpec | None = None, run: int | None = None) -> Report:
    """The stage report of ``project``'s run ``run`` (default: the latest ``loopml run``), as one HTML page.

    ``spec`` adds what the store does not hold of the business goal when the run predates it being
    recorded (the problem in words, the constraints). Raises :class:`~loopml.errors.NotFoundError` when
    the project has no run yet, or no run ``run``.

    >>> html = project_report(store, "benefits-outreach", spec=spec)     # doctest: +SKIP
    >>> "Model card" in html                                              # doctest: +SKIP
    True
    """
    ctx = _Context.load(store, project, spec=spec, run=run)
    goal = goal_section(ctx.business, ctx.run, ctx.model_version, champion=store.alias(project, "champion"))
    model = model_section(ctx.goal_evidence, ctx.business, ctx.evaluation)
    context = {
        "title": f"{project}: stage report",
        "subtitle": f"run {ctx.run['id']} · goal {ctx.business['goal_text']} · {goal['verdict']}",
        "goal": goal,
        "timeline": timeline_section(ctx.decisions, ctx.all_runs, selected_run=ctx.run["id"]),
        "data": data_section(ctx.sources, ctx.frame, ctx.business, importance=ctx.evaluation.get("importance"),
                             snapshot=ctx.snapshot),
        "model": model,
        "card": card_section(ctx.business, ctx.model_version, ctx.snapshot, ctx.sources, ctx.evaluation,
                             ctx.decisions_of_run, ctx.limitations),
        "problems": ctx.problems,
    }
    return render_page("project.html.j2", **context)


# -- reading the store ---------------------------------------------------------------------------
@dataclass
class _Context:
    store: Store
    project: str
    spec: ProjectSpec | None
    run: dict[str, Any]
    all_runs: list[dict[str, Any]]
    decisions: list[Decision]
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, store: Store, project: str, *, spec: ProjectSpec | None, run: int | None) -> _Context:
        all_runs = store.runs(project, limit=_ALL_RUNS)
        loops = [r for r in all_runs if r["kind"] == _RUN_KIND]
        if not loops:
            raise NotFoundError(f"project '{project}' has no run in this store yet: run `loopml run` first "
                                "(or check the project name, `project:` in loopml.yaml)")
        if run is None:
            chosen = loops[0]
        else:
            found = [r for r in loops if r["id"] == run]
            if not found:
                raise NotFoundError(f"project '{project}' has no run {run}; its runs: "
                                    f"{', '.join(str(r['id']) for r in loops)} (`loopml status` shows the latest)")
            chosen = found[0]
        return cls(store, project, spec, chosen, all_runs, store.decisions(project))

    @cached_property
    def decisions_of_run(self) -> list[Decision]:
        return [d for d in self.decisions if d.run_id == self.run["id"]]

    @cached_property
    def goal_decision(self) -> Decision | None:
        found = [d for d in self.decisions_of_run if d.stage == "model" and d.gate == "goal"]
        if not found:
            return None
        last = found[-1]
        if last.action == "reuse" and last.verdict == "pass" and self.model_version is not None:
            return self.store.registered_by(self.model_version) or last
        return last

    @cached_property
    def goal_evidence(self) -> dict[str, Any]:
        return self.goal_decision.evidence if self.goal_decision is not None else {}

    @cached_property
    def model_version(self) -> ModelVersion | None:
        for d in reversed(self.decisions_of_run):
            if d.stage == "model" and d.gate == "goal" and d.verdict == "pass":
                number = d.evidence.get("model_version")
                if number is not None:
                    return self.store.model_version(self.project, int(number))
        mine = [v for v in self.store.model_versions(self.project) if v.run_id == self.run["id"]]
        return mine[-1] if mine else None

    @cached_property
    def business(self) -> dict[str, Any]:
        """The goal as the run recorded it, with the spec's words where the record lacks them."""
        recorded = next((d.evidence for d in self.decisions_of_run if d.stage == "business"
                         and d.gate == "goal_fits_task"), {})
        b = self.spec.business if self.spec is not None else None
        metric = recorded.get("metric") or (b.goal.metric if b else None)
        threshold = recorded.get("threshold", b.goal.threshold if b else None)
        greater = METRICS[metric].greater_is_better if metric in METRICS else True
        with_ = recorded.get("with") if recorded else (dict(b.goal.with_) if b else {})
        gate_on = recorded.get("gate_on") or (b.goal.gate_on if b else "point")
        text = f"{metric} {'>=' if greater else '<='} {threshold:g}" if metric and threshold is not None else "–"
        if gate_on == "ci_bound":
            text += f" (on the {'lower' if greater else 'upper'} 95% bound)"
        if with_:
            text += " with " + ", ".join(f"{k} >= {v:g}" for k, v in with_.items())
        constraints = b.constraints.model_dump(exclude_none=True) if b else {}
        return {"problem": recorded.get("problem") or (b.problem if b else None),
                "task": recorded.get("task") or (b.task if b else None),
                "target": recorded.get("target") or (b.target if b else None),
                "positive": recorded.get("positive", b.positive if b else None),
                "metric": metric, "threshold": threshold, "greater_is_better": greater, "with": with_ or {},
                "goal_text": text, "costs": recorded.get("costs") or (b.costs.model_dump() if b and b.costs else None),
                "constraints": constraints}

    @cached_property
    def snapshot(self) -> SnapshotRecord | None:
        ids = [d.evidence["snapshot_id"] for d in self.decisions_of_run
               if d.stage == "data" and "snapshot_id" in d.evidence]
        snapshot_id = ids[-1] if ids else (self.model_version.snapshot_id if self.model_version else None)
        if snapshot_id is None:
            return None
        try:
            return self.store.snapshot(int(snapshot_id))
        except LoopmlError as exc:
            self.problems.append(f"the run's data snapshot cannot be read ({exc})")
            return None

    @cached_property
    def frame(self) -> pd.DataFrame | None:
        if self.snapshot is None:
            return None
        try:
            # A snapshot cleaned in partitions may not fit in memory: its charts are drawn from a sample.
            parts = self.snapshot.report.get("layout") == "parts"
            return snapshot_frame(self.store, self.snapshot, max_rows=_PARTS_SAMPLE_ROWS if parts else None)
        except (LoopmlError, OSError, ValueError) as exc:
            self.problems.append(f"the snapshot's rows cannot be read ({exc}): distributions, the missing-value "
                                 "map and everything computed on the holdout are left out")
            return None

    @cached_property
    def model(self) -> TrainedModel | None:
        from loopml.model.artifact import TrainedModel

        if self.model_version is None:
            return None
        try:
            return TrainedModel.from_bytes(self.store.read_model(self.model_version), root=self.store.root)
        except (LoopmlError, OSError, ValueError) as exc:
            self.problems.append(f"model version {self.model_version.version} cannot be loaded ({exc}): the "
                                 "curves, importance and intervals computed from it are left out")
            return None

    @cached_property
    def holdout(self) -> pd.DataFrame | None:
        """The run's locked holdout, rebuilt from the snapshot with the split the run recorded."""
        from loopml.model.search import split_holdout

        frame, b, e = self.frame, self.business, self.goal_evidence
        if frame is None or not e:
            return None
        if self.snapshot is not None and self.snapshot.report.get("layout") == "parts":
            return self._holdout_of_parts(e)
        split = e.get("holdout_split") or {}
        if not split and self.spec is not None:
            split = {"fraction": self.spec.data.holdout, "seed": self.spec.model.seed}
        if not split and e.get("holdout_rows"):
            split = {"fraction": e["holdout_rows"] / len(frame), "seed": 0}
        try:
            _, holdout = split_holdout(frame, b["target"], b["task"], float(split.get("fraction", 0.2)),
                                       int(split.get("seed", 0)))
        except LoopmlError as exc:
            self.problems.append(f"the locked holdout cannot be rebuilt ({exc})")
            return None
        if e.get("holdout_rows") and len(holdout) != e["holdout_rows"]:
            self.problems.append(f"the rebuilt holdout has {len(holdout):,} rows where the run used "
                                 f"{e['holdout_rows']:,}: the computed charts may differ from the run's numbers")
        return holdout.reset_index(drop=True)

    def _holdout_of_parts(self, e: dict[str, Any]) -> pd.DataFrame | None:
        """The holdout rows a run trained in partitions was evaluated on, drawn again from the parts."""
        from loopml.model._large import locked_holdout

        split = e.get("holdout_split") or {}
        try:
            parts = self.store.snapshot_parts(self.snapshot)
            return locked_holdout(parts, seed=int(split.get("seed", 0)), fraction=float(split.get("fraction", 0.2)),
                                  max_rows=(e.get("holdout") or {}).get("rows"))
        except (LoopmlError, OSError, ValueError) as exc:
            self.problems.append(f"the locked holdout cannot be read from the snapshot's parts ({exc})")
            return None

    @cached_property
    def evaluation(self) -> dict[str, Any]:
        """What is computed from the stored model on the holdout (empty without a model)."""
        model, holdout = self.model, self.holdout
        if model is None or holdout is None or self.model_version is None:
            return {}
        try:
            return evaluate_on_holdout(model, holdout, self.business, self.model_version)
        except (LoopmlError, ValueError, KeyError) as exc:
            self.problems.append(f"model version {self.model_version.version} cannot predict on its holdout "
                                 f"({exc}): the charts computed from it are left out")
            return {}

    @cached_property
    def sources(self) -> list[dict[str, Any]]:
        return _sources(self.decisions, self.snapshot, self.decisions_of_run, self.spec)

    @cached_property
    def limitations(self) -> list[str]:
        return _limitations(self.decisions, self.run["id"], self.goal_evidence, self.snapshot, self.business,
                            self.model_version)


# -- goal and verdict ----------------------------------------------------------------------------
def goal_section(business: dict[str, Any], run: dict[str, Any], model_version: ModelVersion | None, *,
                 champion: ModelVersion | None = None) -> dict[str, Any]:
    """The business goal and the run's verdict: cards and the run's outcome in words."""
    verdict, tone = _VERDICTS.get(run["status"], (run["status"], ""))
    cards = [{"label": "goal", "value": business["goal_text"], "tone": "", "note": ""},
             {"label": f"run {run['id']}", "value": verdict, "tone": tone, "note": _when(run.get("finished_at"))}]
    if model_version is not None:
        holdout = (model_version.metrics or {}).get("holdout") or {}
        cards.append({"label": "holdout " + str(holdout.get("metric", "")), "value": _fmt(holdout.get("value")),
                      "tone": "good" if holdout.get("met") else "bad",
                      "note": f"95% CI {_fmt(holdout.get('ci_low'))}–{_fmt(holdout.get('ci_high'))}"
                              if holdout.get("ci_low") is not None else ""})
        cards.append({"label": "model", "value": f"v{model_version.version} {model_version.family}", "tone": "",
                      "note": ", ".join(model_version.aliases) or model_version.status})
    if champion is not None:
        cards.append({"label": "champion now", "value": f"v{champion.version}", "tone": "", "note": champion.family})
    return {"problem": business.get("problem"), "task": business.get("task"), "target": business.get("target"),
            "positive": business.get("positive"), "verdict": verdict, "tone": tone,
            "explanation": run.get("outcome") or "", "cards": cards}


# -- the timeline --------------------------------------------------------------------------------
def timeline_section(decisions: list[Decision], runs: list[dict[str, Any]], *, selected_run: int) -> dict[str, Any]:
    """Every decision up to the end of ``selected_run``, grouped by run, each with its evidence's numbers."""
    ids = [d.id for d in decisions if d.run_id == selected_run and d.id is not None]
    last = max(ids) if ids else math.inf
    shown = [d for d in decisions if d.id is None or d.id <= last]
    left_out = max(0, len(shown) - _TIMELINE_MAX)
    shown = shown[left_out:]
    by_id = {r["id"]: r for r in runs}
    groups: list[dict[str, Any]] = []
    for d in shown:
        if not groups or groups[-1]["run_id"] != d.run_id:
            r = by_id.get(d.run_id) or {}
            groups.append({"run_id": d.run_id, "kind": r.get("kind", "by hand"), "status": r.get("status", ""),
                           "started": _when(r.get("started_at")), "selected": d.run_id == selected_run,
                           "decisions": []})
        groups[-1]["decisions"].append({
            "id": d.id, "at": _when(d.at), "stage": d.stage, "gate": d.gate, "verdict": d.verdict,
            "action": d.action, "next_stage": d.next_stage or "", "summary": d.summary, "actor": d.actor,
            "evidence": _evidence_items(d.evidence)})
    return {"groups": groups, "left_out": left_out, "count": len(shown)}


def _evidence_items(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    """The evidence's numbers and short words as (key, text); long lists are counted, not listed."""
    items = []
    for key, value in evidence.items():
        if len(items) >= _EVIDENCE_ITEMS:
            break
        if isinstance(value, dict):
            flat = {k: v for k, v in value.items() if _scalar(v)}
            if flat and len(flat) == len(value) and len(flat) <= 4:
                items.append((key, ", ".join(f"{k} {_fmt(v)}" for k, v in flat.items())))
        elif isinstance(value, list):
            if value and all(_scalar(v) for v in value) and len(value) <= 6:
                items.append((key, ", ".join(_fmt(v) for v in value)))
            elif value:
                items.append((key, f"{len(value)} entries"))
        elif _scalar(value) and value is not None and not (isinstance(value, str) and len(value) > 80):
            items.append((key, _fmt(value)))
    return items


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


# -- data ----------------------------------------------------------------------------------------
def _sources(decisions: list[Decision], snapshot: SnapshotRecord | None, run_decisions: list[Decision],
             spec: ProjectSpec | None) -> list[dict[str, Any]]:
    """Each source as the store holds it: the run that built its snapshot, the last assessment before the next run."""
    built = _build_decisions(decisions, snapshot.id) if snapshot is not None else run_decisions
    collect = next((d.evidence for d in built if d.stage == "data" and d.gate == "collect"), {})
    paid = {d.evidence.get("source"): d for d in built if d.stage == "data" and d.gate == "source_pays_off"}
    # An assessment made after a later run started describes data this run never saw.
    run = run_decisions[-1].run_id if run_decisions else None
    later = [d.id or 0 for d in decisions if run is not None and d.gate == "goal_fits_task"  # a loop run's first
             and d.run_id is not None and d.run_id > run]
    assessed = next((d for d in reversed(decisions) if d.stage == "data" and d.gate == "assessment"
                     and (not later or (d.id or 0) < min(later))), None)
    by_name = {s["name"]: s for s in (assessed.evidence.get("sources") or [])} if assessed else {}
    joins = {j["source"]: j for j in collect.get("joins") or []}
    used = (snapshot.report.get("sources_used") if snapshot is not None else None) or []
    names = [s["name"] for s in collect.get("sources") or []]
    names += [n for n in [*(s.name for s in spec.data.sources), *paid, *by_name] if n not in names] \
        if spec is not None else [n for n in [*paid, *by_name] if n not in names]
    read = {s["name"]: s for s in collect.get("sources") or []}
    return [{"name": n, "read": read.get(n), "join": joins.get(n), "paid": paid.get(n),
             "assessed": by_name.get(n), "assessed_at": _when(assessed.at) if assessed and n in by_name else "",
             "used": n in used or (not used and n in read), "base": i == 0} for i, n in enumerate(names)]


def _build_decisions(decisions: list[Decision], snapshot_id: int) -> list[Decision]:
    """The decisions of the run that built snapshot ``snapshot_id`` (a later run may only reuse it)."""
    for d in decisions:
        if d.stage == "data" and d.gate == "enough_data" and d.evidence.get("snapshot_id") == snapshot_id:
            mine = [x for x in decisions if x.run_id == d.run_id and (x.id or 0) <= (d.id or 0)]
            if any(x.gate == "collect" for x in mine):
                return mine
    return []


def data_section(sources: list[dict[str, Any]], frame: pd.DataFrame | None, business: dict[str, Any], *,
                 importance: dict[str, float] | None = None, snapshot: SnapshotRecord | None = None) -> dict[str, Any]:
    """Per source: availability, usability, quality and cost, its distributions and its missing-value map."""
    report = snapshot.report if snapshot is not None else {}
    raw = report.get("assessment_raw") or {}
    target = business.get("target")
    out = []
    for s in sources:
        columns = _source_columns(s, frame, target)
        out.append({"name": s["name"], "used": s["used"], "base": s["base"],
                    "description": (s["read"] or s["assessed"] or {}).get("description", ""),
                    "assessed_at": s["assessed_at"],
                    "parts": [("Availability", _availability(s)), ("Usability", _usability(s, raw, columns)),
                              ("Quality", _quality(s, raw, columns)), ("Cost", _cost(s))],
                    "charts": _distributions(frame, columns, business, importance) if frame is not None else [],
                    "missing": _missing(frame, columns, s["name"]) if frame is not None and columns else None})
    cleaning = report.get("cleaning") or {}
    gate = report.get("gate") or {}
    return {"sources": out, "rows": snapshot.rows if snapshot else None,
            "columns": snapshot.columns if snapshot else None,
            "hash": snapshot.data_hash if snapshot else None,
            "cleaning": [_step_text(st) for st in cleaning.get("steps") or []
                         if st.get("rows_dropped") or st.get("columns_dropped")],
            "gate": "; ".join(gate.get("reasons") or []) or ("passed" if gate.get("passed") else "")}


def _source_columns(s: dict[str, Any], frame: pd.DataFrame | None, target: str | None) -> list[str]:
    """The source's feature columns as the snapshot holds them (join keys belong to the base source)."""
    listed = (s["read"] or {}).get("columns") or list(((s["assessed"] or {}).get("usability") or {})
                                                      .get("columns", {}) or [])
    keys = set((s["join"] or {}).get("on") or []) if not s["base"] else set()
    present = set(frame.columns) if frame is not None else set(listed)
    return [c for c in listed if c != target and c not in keys and c in present]


def _availability(s: dict[str, Any]) -> list[tuple[str, str]]:
    a = (s["assessed"] or {}).get("availability") or {}
    r = s["read"] or {}
    rows = r.get("rows", a.get("rows"))
    out = [("reachable", "yes" if r or a.get("reachable") else ("no: " + str(a.get("error")) if a else "not read"))]
    if rows is not None:
        out.append(("rows read", f"{rows:,}"))
    total = r.get("total_rows", a.get("total_rows"))
    if total is not None:
        out.append(("rows at the source", f"{total:,}"))
    more = r.get("more_rows", a.get("more_rows"))
    if more:
        out.append(("rows left unread", f"{more:,}"))
    newest = r.get("newest") or a.get("newest")
    if newest:
        out.append(("newest row", str(newest)))
    seconds = r.get("read_seconds", a.get("read_seconds"))
    if seconds is not None:
        out.append(("read in", f"{seconds:.2f} s"))
    return out


def _usability(s: dict[str, Any], raw: dict[str, Any], columns: list[str]) -> list[tuple[str, str]]:
    u = (s["assessed"] or {}).get("usability") or {}
    kinds = raw.get("column_kinds") or {}
    counted: dict[str, int] = {}
    for c in columns:
        kind = kinds.get(c) or (u.get("columns") or {}).get(c) or "other"
        counted[kind] = counted.get(kind, 0) + 1
    out = [("feature columns", f"{len(columns)}" + (f" ({', '.join(f'{n} {k}' for k, n in sorted(counted.items()))})"
                                                    if counted else ""))]
    if u.get("target_present") is not None:
        out.append(("holds the target", "yes" if u["target_present"] else "no"))
    join = s["join"]
    if join:
        out.append(("joined on", f"{', '.join(join['on'])}: {join['match_rate']:.1%} of rows matched"
                                 + ("" if join.get("right_key_unique", True) else ", key not unique")))
    elif (u.get("join") or {}).get("match_rate") is not None:
        out.append(("join check", f"{u['join']['match_rate']:.1%} of base rows matched"))
    unusable = {c: why for c, why in (raw.get("unusable_columns") or {}).items() if c in (s["read"] or {})
                .get("columns", [])} or u.get("unusable") or {}
    if unusable:
        out.append(("unusable columns", "; ".join(f"{c}: {why}" for c, why in list(unusable.items())[:5])))
    return out


def _quality(s: dict[str, Any], raw: dict[str, Any], columns: list[str]) -> list[tuple[str, str]]:
    q = (s["assessed"] or {}).get("quality") or {}
    missing = {c: v for c, v in (raw.get("missing_share") or q.get("missing_share") or {}).items()
               if c in columns and v}
    out = [("missing values", "none" if not missing else ", ".join(
        f"{c} {v:.1%}" for c, v in sorted(missing.items(), key=lambda kv: -kv[1])[:5]))]
    outliers = {c: o for c, o in (raw.get("outliers") or q.get("outliers") or {}).items()
                if c in columns and o.get("count")}
    if outliers:
        out.append(("outliers (far from the quartiles)", ", ".join(f"{c} {o['count']:,}" for c, o in
                                                                   list(outliers.items())[:5])))
    if s["base"] or q:
        dup = q.get("duplicate_share", raw.get("duplicate_share"))
        if dup is not None:
            out.append(("duplicate rows", f"{dup:.1%}"))
        noise = q.get("label_noise") or (raw.get("label_noise") if s["base"] else None)
        if noise and noise.get("share") is not None:
            out.append(("labels likely wrong", f"{noise['share']:.1%}"))
        leaks = q.get("leakage_suspects") or (raw.get("leakage_suspects") if s["base"] else None) or []
        out.append(("leakage suspects", ", ".join(str(x.get("column")) for x in leaks) or "none"))
    constant = [c for c in raw.get("constant_columns") or [] if c in ((s["read"] or {}).get("columns") or [])]
    if constant:
        out.append(("constant columns (dropped)", ", ".join(constant)))
    return out


def _cost(s: dict[str, Any]) -> list[tuple[str, str]]:
    r = s["read"] or (s["assessed"] or {}).get("cost") or {}
    out = []
    if r.get("cost_per_1k_rows") is not None:
        out.append(("per 1,000 rows", _fmt(r["cost_per_1k_rows"])))
    if r.get("cost") is not None:
        out.append(("cost of the rows read", _fmt(r["cost"])))
    if s["paid"] is not None:
        e = s["paid"].evidence
        out.append(("measured gain", f"{e.get('metric')} {_fmt(e.get('score_without'))} → {_fmt(e.get('score_with'))} "
                                     f"({e.get('gain', 0):+.4f})"))
        out.append(("verdict", "added: it pays for itself" if s["paid"].verdict == "pass" else "dropped: it does not "
                                                                                                "pay for itself"))
    out.append(("used in the snapshot", "yes" if s["used"] else "no"))
    return out


def _step_text(step: dict[str, Any]) -> str:
    """A cleaning step that changed the table, in words: ``duplicates: 36 rows dropped``."""
    done = []
    if step.get("rows_dropped"):
        done.append(f"{step['rows_dropped']:,} rows dropped")
    if step.get("columns_dropped"):
        done.append(f"columns dropped: {', '.join(map(str, step['columns_dropped']))}")
    return f"{step.get('step', 'step')}: {'; '.join(done)}"


def _groups(frame: pd.DataFrame, business: dict[str, Any]) -> tuple[pd.Series, tuple[str, str]] | None:
    """Rows split in two by the target: the positive class against the rest, or above and below the median."""
    target = business.get("target")
    if target not in frame.columns:
        return None
    y = frame[target]
    if business.get("task") == "regression":
        median = float(y.median())
        return y > median, (f"{target} ≤ {median:.3g}", f"{target} > {median:.3g}")
    values = y.astype(str)
    positive = business.get("positive")
    first = str(positive) if positive is not None and str(positive) in set(values) else values.value_counts().index[-1]
    return values == first, (f"{target} ≠ {first}", f"{target} = {first}")


def _distributions(frame: pd.DataFrame, columns: list[str], business: dict[str, Any],
                   importance: dict[str, float] | None) -> list[dict[str, Any]]:
    split = _groups(frame, business)
    if split is None or not columns:
        return []
    mask, names = split
    ranked = sorted(columns, key=lambda c: -(importance or {}).get(c, 0.0)) if importance else columns
    charts = []
    for c in ranked[:_DISTRIBUTIONS]:
        s = frame[c]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        draw = histogram if numeric else category_bars
        chart = draw(s[~mask].tolist(), s[mask].tolist(), title=c, names=names, width=_CHART_WIDTH)
        weight = (importance or {}).get(c)
        charts.append({"svg": svg(chart), "caption": f"{c}: share of rows per {'bin' if numeric else 'category'}, "
                       f"by {business.get('target')}" + (f"; importance {weight:.1%}" if weight is not None else "")})
    return charts


def _missing(frame: pd.DataFrame, columns: list[str], source: str) -> dict[str, Any]:
    isna = frame[columns].isna()
    order = sorted(columns, key=lambda c: (-int(isna[c].sum()), columns.index(c)))[:_MAP_COLUMNS]
    blocks = max(1, min(_MAP_BLOCKS, len(frame)))
    block_rows = math.ceil(len(frame) / blocks)
    blocks = math.ceil(len(frame) / block_rows)
    shares = [[float(isna[c].iloc[b * block_rows:(b + 1) * block_rows].mean()) for b in range(blocks)]
              for c in order]
    total = int(isna[order].to_numpy().sum())
    chart = missing_map(order, shares, title=f"Missing values: {source}", block_rows=block_rows, rows=len(frame),
                        width=_CHART_WIDTH)
    caption = (f"{total:,} missing value(s) in the cleaned snapshot, in row order; the model imputes them, learning "
               "how on its training rows" if total else "no missing value in the cleaned snapshot")
    return {"svg": svg(chart), "caption": caption}


# -- the model card ------------------------------------------------------------------------------
def card_section(business: dict[str, Any], mv: ModelVersion | None, snapshot: SnapshotRecord | None,
                 sources: list[dict[str, Any]], evaluation: dict[str, Any], run_decisions: list[Decision],
                 limitations: list[str]) -> dict[str, Any]:
    """The model card: intended use, data lineage, metrics with 95% intervals, limitations."""
    use = [("problem", business.get("problem") or "– (not recorded; pass the spec)"),
           ("task", f"{business.get('task')} on target '{business.get('target')}'"
                    + (f", positive class '{business['positive']}'" if business.get("positive") is not None else "")),
           ("goal on the locked holdout", business["goal_text"])]
    if business.get("costs"):
        use.append(("costs", ", ".join(f"{k} {_fmt(v)}" for k, v in business["costs"].items() if v is not None)))
    if business.get("constraints"):
        use.append(("constraints", ", ".join(f"{k} {_fmt(v)}" for k, v in business["constraints"].items())))
    point = (mv.operating_point if mv is not None else {}) or {}
    if point.get("threshold") is not None:
        use.append(("decides", f"positive when P(positive) ≥ {point['threshold']:.3g}"))
    latency = next((d.evidence for d in reversed(run_decisions) if d.stage == "operations"
                    and d.gate == "pre_deploy" and "p99_ms" in d.evidence), None)
    if latency is not None:
        use.append(("single-row latency", f"p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms"))
    lineage = (mv.lineage if mv is not None else {}) or {}
    hashes = lineage.get("sources") or {}
    rows = [{"name": s["name"], "hash": (hashes.get(s["name"]) or "")[:12], "used": s["used"],
             "rows": (s["read"] or {}).get("rows")} for s in sources]
    data = []
    if snapshot is not None:
        data.append(("snapshot", f"{snapshot.data_hash[:12]} · {snapshot.rows:,} rows × {snapshot.columns} "
                                 f"features · {_when(snapshot.created_at)}"))
    if lineage.get("train_rows") is not None:
        data.append(("training / holdout rows", f"{lineage['train_rows']:,} / {lineage.get('holdout_rows', 0):,}"))
    if lineage.get("spec_hash"):
        data.append(("spec", str(lineage["spec_hash"])[:12]))
    if lineage.get("plan"):
        data.append(("search", str(lineage["plan"])))
    packages = lineage.get("packages") or {}
    if packages:
        data.append(("built with", ", ".join(f"{k} {v}" for k, v in packages.items())))
    if lineage.get("git_commit"):
        data.append(("git commit", str(lineage["git_commit"])[:12]))
    if mv is not None:
        data.append(("artifact", f"{mv.artifact_sha256[:12]} (SHA-256)" + (f", {mv.artifact_size:,} bytes"
                                                                             if mv.artifact_size else "")))
    holdout = ((mv.metrics if mv is not None else {}) or {}).get("holdout") or {}
    metrics = evaluation.get("metrics") if evaluation else None
    if not metrics and holdout:
        metrics = [{"name": n, "value": v, "low": holdout.get("ci_low") if n == holdout.get("metric") else None,
                    "high": holdout.get("ci_high") if n == holdout.get("metric") else None,
                    "goal": n == holdout.get("metric")} for n, v in (holdout.get("metrics") or {}).items()]
    return {"model": f"version {mv.version} · {mv.family} · registered {_when(mv.created_at)}" if mv else None,
            "use": use, "sources": rows, "data": data, "metrics": metrics or [],
            "holdout_rows": holdout.get("rows"), "gate": (holdout.get("gate") or {}).get("text"),
            "limitations": limitations}


def _limitations(decisions: list[Decision], run_id: int, evidence: dict[str, Any], snapshot: SnapshotRecord | None,
                 business: dict[str, Any], mv: ModelVersion | None) -> list[str]:
    """What the diagnosis and the assessment found that bounds the model, in sentences."""
    out: list[str] = []
    ids = [d.id for d in decisions if d.run_id == run_id and d.id is not None]
    last = max(ids) if ids else math.inf
    diagnosed = set()
    for d in decisions:
        if (d.id or 0) > last:
            break
        diagnosis = d.evidence.get("diagnosis") if d.stage == "model" and d.gate == "goal" else None
        if diagnosis and diagnosis.get("explanation"):
            diagnosed.add(d.run_id)
            out.append(f"run {d.run_id}, diagnosis ({diagnosis.get('cause')}): {diagnosis['explanation']}")
        if d.stage == "business" and d.gate == "feasibility" and d.run_id == run_id and run_id not in diagnosed:
            out.append(d.summary)  # a stop the diagnosis did not already explain
    holdout = ((mv.metrics if mv is not None else {}) or {}).get("holdout") or {}
    threshold, greater = business.get("threshold"), business.get("greater_is_better", True)
    bound = holdout.get("ci_low") if greater else holdout.get("ci_high")
    if holdout and threshold is not None and bound is not None and holdout.get("met") and \
            (bound < threshold if greater else bound > threshold):
        out.append(f"the goal is met on the point estimate ({holdout['metric']} {holdout['value']:.3f}), but the 95% "
                   f"interval reaches {bound:.3f}, beyond the goal {threshold:g}: on new data the goal may be missed "
                   "(goal.gate_on: ci_bound judges the pessimistic end)")
    if holdout.get("rows") is not None and holdout["rows"] < 500:
        out.append(f"the locked holdout has {holdout['rows']:,} rows, so its intervals are wide")
    raw = (snapshot.report.get("assessment_raw") if snapshot is not None else None) or {}
    for s in raw.get("leakage_suspects") or []:
        out.append(f"column '{s.get('column')}' alone scores {s.get('metric')} {_fmt(s.get('score'))}: a leakage "
                   "suspect; check it is known at prediction time")
    noise = raw.get("label_noise") or {}
    if noise.get("share"):
        out.append(f"an estimated {noise['share']:.1%} of labels disagree confidently with out-of-fold predictions")
    balance = raw.get("target_balance") or {}
    if balance and min(balance.values()) < 0.1:
        small = min(balance, key=balance.get)
        out.append(f"class '{small}' is {balance[small]:.1%} of the rows: the model sees few examples of it")
    heavy = {c: v for c, v in (raw.get("missing_share") or {}).items() if v >= 0.05}
    if heavy:
        out.append("columns with 5% or more missing values, imputed by the model: "
                   + ", ".join(f"{c} ({v:.1%})" for c, v in heavy.items()))
    out += [f"search: {n}" for n in evidence.get("notes") or []]
    return out


# -- formatting ----------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "–"
    return str(value)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if hasattr(value, "strftime") else ""
