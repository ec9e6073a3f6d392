"""Monitoring: the prediction log in windows — data quality, drift, labeled and estimated performance, latency.

:func:`monitor_project` computes every **pending** window of the log and stores each once. A window is
``operations.monitor.window`` consecutive predictions (``by: count``), or the predictions of one closed
period of ``every`` (``by: time``; periods are aligned to the epoch in UTC, so ``every: 1h`` cuts on the
hour). A window is computed once, when it is complete, and never again; a partly filled window waits.

For each window, against the training snapshot of the model version that answered most of its rows:

- **data quality** per column: missing share (and the reference's), numbers outside the training range,
  categories training never saw, values of the wrong type; rows whose features cannot be read; and the
  requests serving **refused** (422) by column and kind of violation, with their share of the rows sent
  (``metrics["rejected"]``). A window owns the refusals logged after the previous window's up to the last
  one logged by the window's end (its last prediction, or the end of its period), so each is counted once,
  in the window whose span it fell in; one written late joins the next window. Refusals while nothing is
  answered wait for the next window (``by: count``) or fill the period's empty window (``by: time``);
- **drift** per column (:func:`~loopml.operations.drift.drift_report`, thresholds from the spec), of the
  model's output, and jointly (:func:`~loopml.operations.drift.domain_classifier`); columns ranked by
  drift x importance, importance being how much the model's output moves when the column is shuffled;
- **performance**: without labels the CBPE estimate of the goal metric (classifiers), with its interval;
  with labels the goal metric with a bootstrap interval, its margin to the goal and its agreement with the
  estimate;
- **latency** p50 and p99 from the log.

Labels arrive after the predictions. The input side of a window is computed once; its **labeled
performance** is (re)computed in a later pass whenever new labels for it have arrived, on all its labels so
far, and never for labels it has already seen.

Alerts (stored, POSTed to ``operations.monitor.webhook`` with retries, and in Prometheus gauges through
:func:`update_monitor_gauges`): ``goal_breached`` (labeled), ``goal_breach_estimated`` (the estimate's
pessimistic bound misses the goal), ``drift`` (a drifted column with at least ``drift.min_importance`` of the
model's importance, or the model's output drifted) and ``data_quality`` (a limit of ``quality`` exceeded,
``quality.rejected`` included).
Each pass that computes something writes one decision (stage ``operations``, gate ``monitor``) that
Maintenance can act on.

>>> result = monitor_project(spec, store)                      # doctest: +SKIP
>>> result.exit_code, [a.kind for a in result.alerts]          # doctest: +SKIP
(1, ['drift'])
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning

from loopml.data.contract import DataContract
from loopml.data.snapshot import snapshot_frame
from loopml.decisions import Decision
from loopml.errors import ConflictError, LoopmlError
from loopml.model.artifact import TrainedModel
from loopml.model.evaluate import evaluate
from loopml.model.features import _key
from loopml.operations._alerts import ALERT_KINDS, alert_verdicts, post_alert, rejected_text, window_alerts
from loopml.operations._gauges import update_monitor_gauges
from loopml.operations._live import LiveRows, data_quality, parse_rows, typed_frame, with_columns
from loopml.operations._windows import (
    PREDICTION_WINDOWS,
    WindowPlan,
    cut_by_count,
    cut_by_time,
    first_at,
    iso,
    last_at,
)
from loopml.operations.drift import domain_classifier, drift_report
from loopml.operations.estimate import BINARY_METRICS, MULTICLASS_METRICS, estimate_performance
from loopml.spec import MonitorSpec, ProjectSpec
from loopml.store import ModelVersion, Store

if TYPE_CHECKING:
    pass

__all__ = ["ALERT_KINDS", "Alert", "MonitorResult", "WindowSummary", "monitor_project", "post_alert",
           "update_monitor_gauges"]

OUTPUT = "model_output"  # the name the model's output goes by in the drift report
_REFERENCE_SAMPLE = 2000  # reference rows for the model's outputs and the domain classifier
_DRIFT_REFERENCE_ROWS = 200_000  # training rows drift is measured against; a seeded sample of larger snapshots
_IMPORTANCE_SAMPLE = 500  # reference rows shuffled, column by column, to measure importance
_N_BOOT = 500


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alert:
    """One alert: its kind (one of :data:`ALERT_KINDS`), window, summary, evidence and webhook delivery."""

    id: int
    kind: str
    window_id: int | None
    summary: str
    detail: dict[str, Any]
    delivery: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WindowSummary:
    """A window this pass computed (or whose labeled performance it updated), as stored."""

    id: int
    first_seq: int
    last_seq: int
    rows: int
    model_version: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    metrics: dict[str, Any]
    labeled: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["starts_at"] = self.starts_at.isoformat() if self.starts_at else None
        out["ends_at"] = self.ends_at.isoformat() if self.ends_at else None
        return out


@dataclass
class MonitorResult:
    """What one monitoring pass computed: new windows, windows whose labels moved, alerts, the decision."""

    project: str
    windows: list[WindowSummary] = field(default_factory=list)
    relabeled: list[WindowSummary] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    pending_rows: int = 0
    notes: list[str] = field(default_factory=list)
    decision: Decision | None = None

    @property
    def exit_code(self) -> int:
        """0: no alert raised in this pass; 1: at least one."""
        return 1 if self.alerts else 0

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "exit_code": self.exit_code,
                "windows": [w.to_dict() for w in self.windows], "relabeled": [w.to_dict() for w in self.relabeled],
                "alerts": [a.to_dict() for a in self.alerts], "pending_rows": self.pending_rows,
                "notes": self.notes, "decision": self.decision.to_dict() if self.decision else None}


# -- the pass ------------------------------------------------------------------------------------
def monitor_project(spec: ProjectSpec, store: Store, *, now: datetime | None = None) -> MonitorResult:
    """One monitoring pass: compute every pending window, update labeled performance, raise alerts.

    ``now`` (default: the clock, UTC) decides which time windows are closed. Nothing computed before is
    computed again; a second pass with no new predictions or labels computes nothing and writes nothing.

    >>> result = monitor_project(spec, store)                           # doctest: +SKIP
    >>> [(w.first_seq, w.last_seq) for w in result.windows]             # doctest: +SKIP
    [(1, 1000), (1001, 2000)]
    """
    now = datetime.now(UTC) if now is None else (now if now.tzinfo else now.replace(tzinfo=UTC))
    return _Pass(spec, store, now).run()


@dataclass
class _Context:
    """What one model version brings to every window it answered: cached for the pass."""

    version: ModelVersion
    model: TrainedModel | None
    contract: DataContract | None
    reference: pd.DataFrame | None  # the snapshot's feature columns
    sample: pd.DataFrame | None  # a seeded sample of it
    outputs: pd.Series | None  # the model's output on the sample
    importance: dict[str, float] | None
    problems: list[str]


class _Pass:
    def __init__(self, spec: ProjectSpec, store: Store, now: datetime):
        self.spec, self.store, self.now = spec, store, now
        self.project = spec.project
        self.monitor: MonitorSpec = spec.operations.monitor
        self.goal = spec.business.goal
        self.result = MonitorResult(project=spec.project)
        self._contexts: dict[int, _Context] = {}
        self._versions: dict[int, ModelVersion] = {}

    def run(self) -> MonitorResult:
        cursor = self.store.monitor_cursor(self.project)
        # Labels are read up to this feedback seq, so one that arrives during the pass is seen by the next.
        self.labels_cut = self.store.last_feedback_seq(self.project)
        self.rejections_seq = self._rejections_cursor()
        pending = self.store.logged_times(self.project, after_seq=cursor["last_seq"])
        plans = (cut_by_count(pending, self.monitor.window) if self.monitor.by == "count"
                 else cut_by_time(pending, self.monitor.every or 0.0, cursor["ends_at"], self.now))
        covered = sum(p.rows for p in plans)
        self.result.pending_rows = len(pending) - covered
        if not pending and cursor["last_seq"] == 0:
            self.result.notes.append("no predictions are logged yet: serve the champion (`loopml serve`) and "
                                     "monitor once requests arrive")
        elif self.result.pending_rows:
            self.result.notes.append(self._waiting_note())
        new_ids: set[int] = set()
        for plan in plans:
            summary = self._window(plan)
            if summary is not None:
                self.result.windows.append(summary)
                new_ids.add(summary.id)
        waiting = self.store.rejection_counts(self.project, after_seq=self.rejections_seq, until=self.now)
        if waiting["requests"]:
            self.result.notes.append(f"{waiting['requests']} refused request(s) logged after the last window wait "
                                     "for the next one")
        self._labels_pass(cursor["labels_seq"], new_ids)
        self._decide()
        return self.result

    def _rejections_cursor(self) -> int:
        """The last rejection seq the stored windows counted (0 before any)."""
        last = self.store.monitor_windows(self.project, kind=PREDICTION_WINDOWS, last=1)
        rejected = (last[0]["metrics"] or {}).get("rejected") if last else None
        return int((rejected or {}).get("last_seq") or 0)

    def _rejected(self, until: datetime | None, answered: int) -> dict[str, Any]:
        """The refusals this window owns (see the module docstring), their share of the rows sent, the breach."""
        counts = self.store.rejection_counts(self.project, after_seq=self.rejections_seq, until=until or self.now)
        refused = counts["rows"] + counts["unsized"]  # a body that could not be read counts as one row
        share = refused / (refused + answered) if refused else 0.0
        limit = self.monitor.quality.rejected
        breach = None
        if share > limit:
            breach = {"column": None, "measure": "rejected", "value": share, "limit": limit,
                      "requests": counts["requests"], "rows": refused}
        return {**counts, "share": share, "limit": limit, "breach": breach}

    def _waiting_note(self) -> str:
        n = self.result.pending_rows
        if self.monitor.by == "count":
            return (f"{n} prediction(s) wait for the next window (it computes at {self.monitor.window}, "
                    "operations.monitor.window)")
        return f"{n} prediction(s) wait for their period (every {_duration(self.monitor.every or 0)}) to close"

    # -- one window ----------------------------------------------------------------------------
    def _window(self, plan: WindowPlan) -> WindowSummary | None:
        if plan.rows == 0:
            return self._empty(plan)
        raw = self.store.logged_rows(self.project, first_seq=plan.first_seq, last_seq=plan.last_seq)
        notes: list[str] = []
        records, unreadable = parse_rows(raw)
        notes += [f"row seq {seq}: {why}; the row is left out of this window" for seq, why in unreadable[:5]]
        if len(unreadable) > 5:
            notes.append(f"... and {len(unreadable) - 5} more unreadable row(s)")
        versions = Counter(r["model_version_id"] for r in raw)
        version_id = versions.most_common(1)[0][0]
        ctx = self._context(version_id)
        notes += ctx.problems
        if len(versions) > 1:
            others = sum(n for v, n in versions.items() if v != version_id)
            notes.append(f"{others} row(s) of other model versions are left out of the model-side checks (output "
                         f"drift, performance); they come from version(s) "
                         f"{', '.join(str(self._version(v).version) for v in versions if v != version_id)}")
        live = typed_frame(records, ctx.contract) if ctx.contract else None
        frame = live.frame if live else pd.DataFrame()
        mine = np.array([r["model_version_id"] == version_id for r in records], dtype=bool)
        metrics: dict[str, Any] = {
            "window": {"by": self.monitor.by, "first_seq": plan.first_seq, "last_seq": plan.last_seq,
                       "rows": plan.rows, "readable_rows": len(records), "model_version": ctx.version.version,
                       "model_versions": {str(self._version(v).version): n for v, n in versions.items()}},
            "latency": _latency(raw),
        }
        if live is None or not records:
            why = ("no row of this window could be read" if not records
                   else "the model's data contract is unavailable")
            notes.append(f"{why}: data quality, drift and performance are not computed for it")
            metrics.update(quality=None, drift=None, performance=None)
        else:
            metrics["quality"] = data_quality(live, ctx, len(unreadable), self.monitor, notes)
            metrics["drift"] = self._drift(live, records, mine, ctx, notes)
            metrics["performance"] = {"goal": self.goal.describe(),
                                      "estimated": self._estimate(frame[mine], records, mine, ctx, notes)}
        metrics["rejected"] = self._rejected(plan.ends_at or last_at(raw), plan.rows)
        metrics["verdicts"] = alert_verdicts(metrics)
        metrics["notes"] = notes
        labeled = None
        if metrics["performance"] is not None:
            labeled = self._labeled(plan, frame, records, mine, ctx, metrics, previous=None)
        try:
            window_id = self.store.add_monitor_window(
                self.project, model_version_id=version_id, first_seq=plan.first_seq, last_seq=plan.last_seq,
                rows=plan.rows, metrics=metrics, kind=PREDICTION_WINDOWS, key=plan.key,
                starts_at=plan.starts_at or first_at(raw),
                ends_at=plan.ends_at or last_at(raw), labeled=labeled, labels_seq=self.labels_cut)
        except ConflictError:
            self.result.notes.append(f"window of seqs {plan.first_seq}–{plan.last_seq} was stored by another "
                                     "monitoring pass meanwhile; it is not stored twice")
            return None
        self.rejections_seq = metrics["rejected"]["last_seq"]
        for kind, summary, detail in window_alerts(window_id, metrics, self.goal, self.monitor):
            self._alert(kind, window_id, summary, detail)
        if labeled is not None and labeled.get("met") is False:
            labeled = self._labeled_alert(window_id, plan, labeled)
        return WindowSummary(id=window_id, first_seq=plan.first_seq, last_seq=plan.last_seq, rows=plan.rows,
                             model_version=ctx.version.version, starts_at=plan.starts_at or first_at(raw),
                             ends_at=plan.ends_at or last_at(raw), metrics=metrics, labeled=labeled, notes=notes)

    def _empty(self, plan: WindowPlan) -> WindowSummary | None:
        span = f"{iso(plan.starts_at)} to {iso(plan.ends_at)}"
        note = f"no predictions were logged from {span}: the window is empty and skipped"
        rejected = self._rejected(plan.ends_at, 0)
        if rejected["requests"]:
            note += f"; serving refused {rejected['requests']} request(s) in it"
        metrics = {"window": {"by": self.monitor.by, "rows": 0}, "skipped": note, "notes": [note],
                   "rejected": rejected}
        try:
            window_id = self.store.add_monitor_window(
                self.project, model_version_id=None, first_seq=plan.first_seq, last_seq=plan.last_seq, rows=0,
                metrics=metrics, kind=PREDICTION_WINDOWS, key=plan.key, starts_at=plan.starts_at, ends_at=plan.ends_at,
                labels_seq=None)
        except ConflictError:
            return None
        self.rejections_seq = rejected["last_seq"]
        if rejected["breach"]:
            # Every request of the period was refused: the one thing to alert on when nothing was answered.
            self._alert("data_quality", window_id, f"window {window_id} ({span}): " + rejected_text(rejected),
                        {"window_id": window_id, "breaches": [rejected["breach"]]})
        return WindowSummary(id=window_id, first_seq=plan.first_seq, last_seq=plan.last_seq, rows=0,
                             model_version=None, starts_at=plan.starts_at, ends_at=plan.ends_at, metrics=metrics,
                             labeled=None, notes=[note])

    # -- the model version's reference ---------------------------------------------------------
    def _version(self, version_id: int) -> ModelVersion:
        if version_id not in self._versions:
            self._versions.update({v.id: v for v in self.store.model_versions(self.project)})
        return self._versions[version_id]

    def _context(self, version_id: int) -> _Context:
        if version_id in self._contexts:
            return self._contexts[version_id]
        mv = self._version(version_id)
        problems: list[str] = []
        model = contract = reference = sample = outputs = importance = None
        try:
            model = TrainedModel.from_bytes(self.store.read_model(mv), root=self.spec.root)
        except LoopmlError as exc:
            problems.append(f"model version {mv.version} cannot be loaded ({exc}): output drift and performance "
                            "are not computed")
        try:
            snapshot = self.store.snapshot(mv.snapshot_id)
            contract = DataContract.model_validate(snapshot.contract)
            frame = snapshot_frame(self.store, snapshot, max_rows=_DRIFT_REFERENCE_ROWS, seed=self.spec.model.seed)
            reference = frame.drop(columns=[c for c in (contract.target,) if c in frame.columns])
        except (LoopmlError, ValueError) as exc:
            problems.append(f"the training snapshot of model version {mv.version} cannot be read ({exc}): "
                            "drift is not computed")
        if reference is not None and len(reference):
            rng = np.random.default_rng(self.spec.model.seed)
            take = np.sort(rng.choice(len(reference), min(len(reference), _REFERENCE_SAMPLE), replace=False))
            sample = reference.iloc[take].reset_index(drop=True)
            if model is not None and contract is not None:
                try:
                    outputs = _outputs(model, with_columns(sample, contract))
                    importance = _importance(model, with_columns(sample, contract), contract.feature_names,
                                             seed=self.spec.model.seed)
                except (LoopmlError, ValueError, KeyError) as exc:
                    problems.append(f"model version {mv.version} cannot predict on its reference ({exc}): output "
                                    "drift and importance are not computed")
        ctx = _Context(mv, model, contract, reference, sample, outputs, importance, problems)
        self._contexts[version_id] = ctx
        return ctx

    # -- drift ---------------------------------------------------------------------------------
    def _drift(self, live: LiveRows, records: list[dict], mine: np.ndarray, ctx: _Context,
               notes: list[str]) -> dict[str, Any] | None:
        if ctx.reference is None or ctx.contract is None:
            return None
        cfg = self.monitor.drift
        columns = ctx.contract.feature_names
        # A column no row sent is absent, not missing: the report then says to send it.
        sent = live.frame[[c for c in columns if live.present[c]]]
        report = drift_report(ctx.reference, sent, columns=columns, psi_threshold=cfg.psi, alpha=cfg.alpha,
                              wasserstein_threshold=cfg.wasserstein, js_threshold=cfg.jensen_shannon,
                              importance=ctx.importance)
        notes += [f"drift of column '{c}': {why}" for c, why in report.problems.items()]
        out = report.to_dict()
        out["importance"] = ctx.importance
        out["important"] = [c for c in report.drifted
                            if ctx.importance is None or ctx.importance.get(c, 0.0) >= cfg.min_importance]
        out["output"] = self._output_drift(live.frame, records, mine, ctx, notes)
        shared = [c for c in sent.columns if c in ctx.reference.columns
                  and sent[c].notna().any() and ctx.reference[c].notna().any()]
        try:
            out["domain_classifier"] = domain_classifier(
                ctx.sample[shared], sent[shared], columns=shared, seed=self.spec.model.seed,
                max_rows=max(40, min(20_000, 2 * len(sent))))
        except LoopmlError as exc:
            out["domain_classifier"] = {"problem": str(exc)}
            notes.append(f"domain classifier: {exc}")
        return out

    def _output_drift(self, frame: pd.DataFrame, records: list[dict], mine: np.ndarray, ctx: _Context,
                      notes: list[str]) -> dict[str, Any] | None:
        if ctx.outputs is None or ctx.model is None:
            return None
        try:
            current = _live_outputs(ctx.model, frame[mine], [r for r, m in zip(records, mine, strict=True) if m])
            cfg = self.monitor.drift
            report = drift_report(pd.DataFrame({OUTPUT: ctx.outputs}), pd.DataFrame({OUTPUT: current}),
                                  psi_threshold=cfg.psi, alpha=cfg.alpha, wasserstein_threshold=cfg.wasserstein,
                                  js_threshold=cfg.jensen_shannon)
        except LoopmlError as exc:
            notes.append(f"drift of the model's output: {exc}")
            return {"problem": str(exc)}
        row = report[OUTPUT].to_dict()
        if row.get("problem"):
            notes.append(f"drift of the model's output: {row['problem']}")
        return row

    # -- performance ---------------------------------------------------------------------------
    def _estimate(self, frame: pd.DataFrame, records: list[dict], mine: np.ndarray, ctx: _Context,
                  notes: list[str]) -> dict[str, Any]:
        model, goal = ctx.model, self.goal
        if model is None:
            return {"problem": "the model cannot be loaded"}
        allowed = {"binary": BINARY_METRICS, "multiclass": MULTICLASS_METRICS}.get(model.task, ())
        if model.task == "regression":
            return {"problem": "a regression model's performance cannot be estimated without labels; it is "
                               "measured when labels arrive"}
        if goal.metric not in allowed:
            return {"problem": f"{goal.metric} cannot be estimated without labels (estimable: {', '.join(allowed)}); "
                               "it is measured when labels arrive"}
        if model.class_costs is not None:
            return {"problem": "this model decides by per-class costs, which the estimate does not model; "
                               "performance is measured when labels arrive"}
        try:
            mine_records = [r for r, m in zip(records, mine, strict=True) if m]
            P = _probabilities(model, frame, mine_records)
            threshold = model.threshold if model.task == "binary" else None
            seed = self.spec.model.seed
            est = estimate_performance(P, threshold=threshold, metric=goal.metric, seed=seed)
            constraints = {name: estimate_performance(P, threshold=threshold, metric=name, seed=seed).to_dict()
                           for name in goal.with_}
        except LoopmlError as exc:
            notes.append(f"performance estimate: {exc}")
            return {"problem": str(exc)}
        bound = est.ci_low if goal.greater_is_better else est.ci_high
        met = goal.is_met(bound) and all(c["ci_low"] >= goal.with_[n] for n, c in constraints.items())
        return {**est.to_dict(), "bound": bound, "met": bool(met), "margin": _margin(goal, est.value),
                "constraints": {n: {**c, "required": goal.with_[n]} for n, c in constraints.items()}}

    def _labeled(self, plan: WindowPlan, frame: pd.DataFrame, records: list[dict], mine: np.ndarray, ctx: _Context,
                 metrics: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
        labels = self.store.window_labels(self.project, first_seq=plan.first_seq, last_seq=plan.last_seq,
                                          up_to_feedback_seq=self.labels_cut)
        if not labels or ctx.model is None:
            return previous
        seqs = [r["seq"] for r in records]
        keep = np.array([m and s in labels for s, m in zip(seqs, mine, strict=True)])
        n = int(keep.sum())
        out: dict[str, Any] = {"rows": n, "coverage": n / max(1, int(mine.sum())), "labels_seq": self.labels_cut}
        if previous and previous.get("alert_id"):
            out["alert_id"] = previous["alert_id"]
        need = self.monitor.min_labeled
        if n < need:
            out["problem"] = (f"{n} labeled prediction(s) so far; labeled performance needs {need} "
                              "(operations.monitor.min_labeled)")
            return out
        target = ctx.model.target
        labeled = frame[keep].reset_index(drop=True)
        labeled[target] = [labels[s] for s, k in zip(seqs, keep, strict=True) if k]
        problem = _one_class(ctx.model, labeled[target], self.goal.metric)
        if problem is None:
            try:
                with warnings.catch_warnings():  # a window may lack a class: that metric is then None, said once
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    ev = evaluate(ctx.model, labeled, self.goal, seed=self.spec.model.seed, n_boot=_N_BOOT,
                                  costs=self.spec.business.costs)
            except LoopmlError as exc:
                problem = f"labeled {self.goal.metric} cannot be computed: {exc}"
        if problem is not None:
            out["problem"] = problem
            return out
        out.update(metric=ev.metric, value=ev.value, ci_low=ev.ci_low, ci_high=ev.ci_high, met=ev.met, gate=ev.gate,
                   constraints=ev.constraints, margin=_margin(self.goal, ev.value), metrics=ev.metrics)
        estimated = (metrics.get("performance") or {}).get("estimated") or {}
        out["agreement"] = abs(estimated["value"] - ev.value) if "value" in estimated else None
        return out

    def _labeled_alert(self, window_id: int, plan: WindowPlan, labeled: dict[str, Any]) -> dict[str, Any]:
        """Raise the labeled goal breach once per window; later label updates keep its id."""
        if labeled.get("alert_id"):
            return labeled
        summary = (f"window {window_id} (seqs {plan.first_seq}–{plan.last_seq}): goal {self.goal.describe()} "
                   f"breached on {labeled['rows']} labeled predictions: {labeled['metric']} {labeled['value']:.3f} "
                   f"(95% CI {labeled['ci_low']:.3f}–{labeled['ci_high']:.3f})")
        alert = self._alert("goal_breached", window_id, summary, {k: v for k, v in labeled.items() if k != "metrics"})
        labeled = {**labeled, "alert_id": alert.id}
        self.store.set_window_labeled(window_id, labeled=labeled, labels_seq=self.labels_cut)
        return labeled

    # -- labels that arrived later -------------------------------------------------------------
    def _labels_pass(self, seen: int, new_ids: set[int]) -> None:
        """Update the labeled performance of earlier windows that gained labels since the last pass."""
        if self.labels_cut <= seen:
            return
        seqs = self.store.labeled_seqs(self.project, after_feedback_seq=seen, up_to_feedback_seq=self.labels_cut)
        if not seqs:
            return
        ranges = [r for r in self.store.monitor_window_ranges(self.project) if r[0] not in new_ids]
        starts = [r[1] for r in ranges]
        touched: dict[int, tuple[int, int, int]] = {}
        for seq in seqs:
            i = int(np.searchsorted(starts, seq, side="right")) - 1
            if i >= 0 and ranges[i][1] <= seq <= ranges[i][2]:
                touched[ranges[i][0]] = ranges[i]
        if not touched:
            return
        for window in self.store.monitor_windows(self.project, kind=PREDICTION_WINDOWS, ids=sorted(touched)):
            self._relabel(window)

    def _relabel(self, window: dict[str, Any]) -> None:
        plan = WindowPlan(window["first_seq"], window["last_seq"], window["rows"], window["starts_at"],
                          window["ends_at"])
        metrics = window["metrics"]
        if metrics.get("performance") is None:
            return
        ctx = self._context(window["model_version_id"])
        raw = self.store.logged_rows(self.project, first_seq=plan.first_seq, last_seq=plan.last_seq)
        records, _ = parse_rows(raw)
        if ctx.contract is None or not records:
            return
        frame = typed_frame(records, ctx.contract).frame
        mine = np.array([r["model_version_id"] == window["model_version_id"] for r in records])
        labeled = self._labeled(plan, frame, records, mine, ctx, metrics, previous=window["labeled"])
        if labeled is None:
            return
        self.store.set_window_labeled(window["id"], labeled=labeled, labels_seq=self.labels_cut)
        if labeled.get("met") is False:
            labeled = self._labeled_alert(window["id"], plan, labeled)
        self.result.relabeled.append(WindowSummary(
            id=window["id"], first_seq=plan.first_seq, last_seq=plan.last_seq, rows=plan.rows,
            model_version=ctx.version.version, starts_at=plan.starts_at, ends_at=plan.ends_at, metrics=metrics,
            labeled=labeled, notes=[labeled["problem"]] if labeled.get("problem") else []))

    # -- alerts and the decision ---------------------------------------------------------------
    def _alert(self, kind: str, window_id: int | None, summary: str, detail: dict[str, Any]) -> Alert:
        detail = {"summary": summary, **detail}
        alert_id = self.store.add_alert(self.project, window_id=window_id, kind=kind, detail=detail)
        delivery = None
        if self.monitor.webhook:
            payload = {"project": self.project, "alert_id": alert_id, "kind": kind, "window_id": window_id,
                       "summary": summary, "detail": detail, "at": datetime.now(UTC).isoformat()}
            delivery = post_alert(self.monitor.webhook, payload)
            self.store.set_alert_delivery(alert_id, delivery)
        alert = Alert(alert_id, kind, window_id, summary, detail, delivery)
        self.result.alerts.append(alert)
        return alert

    def _decide(self) -> None:
        r = self.result
        computed = [w for w in r.windows if w.rows > 0]
        if not computed and not r.relabeled and not r.alerts:
            return
        evidence = {"windows": [w.id for w in r.windows], "relabeled": [w.id for w in r.relabeled],
                    "alerts": [{"id": a.id, "kind": a.kind, "window_id": a.window_id, "summary": a.summary}
                               for a in r.alerts]}
        scope = f"{len(computed)} new window(s)" + (f", {len(r.relabeled)} with new labels" if r.relabeled else "")
        if r.alerts:
            kinds = sorted({a.kind for a in r.alerts})
            decision = Decision(stage="operations", gate="monitor", verdict="fail", action="alert",
                                next_stage="maintenance",
                                summary=f"{len(r.alerts)} alert(s) ({', '.join(kinds)}) on {scope}: "
                                        + "; ".join(a.summary for a in r.alerts[:3])
                                        + (" ..." if len(r.alerts) > 3 else ""),
                                evidence={**evidence, "kinds": kinds})
        else:
            decision = Decision(stage="operations", gate="monitor", verdict="pass", action="keep", next_stage=None,
                                summary=f"{scope} monitored: no alert", evidence=evidence)
        r.decision = self.store.record_decision(self.project, decision)


# -- the model's side ----------------------------------------------------------------------------
def _outputs(model: TrainedModel, frame: pd.DataFrame) -> pd.Series:
    """The model's output per row: P(positive) (binary), the predicted class as text (multiclass) or the value."""
    if model.task == "binary":
        return pd.Series(model.predict_proba(frame)[:, 1])
    if model.task == "multiclass":
        return pd.Series([str(v) for v in model.predict(frame)], dtype="object")
    return pd.Series(np.asarray(model.predict(frame), dtype=float))


def _live_outputs(model: TrainedModel, frame: pd.DataFrame, records: list[dict[str, Any]]) -> pd.Series:
    """What the model answered in the window: the logged probability or prediction, else recomputed."""
    if model.task == "binary":
        logged = [r["probability"] for r in records]
        if logged and all(isinstance(p, (int, float)) for p in logged):
            return pd.Series(logged, dtype="float64")
        return _outputs(model, frame)
    if model.task == "multiclass":
        return pd.Series([None if r["prediction"] is None else str(r["prediction"]) for r in records], dtype="object")
    return pd.Series([r["prediction"] if isinstance(r["prediction"], (int, float)) else np.nan for r in records],
                     dtype="float64")


def _probabilities(model: TrainedModel, frame: pd.DataFrame, records: list[dict[str, Any]]) -> np.ndarray:
    """Binary: the logged P(positive) when every row has one (what was served); else the model's on the features."""
    if model.task == "binary":
        logged = [r["probability"] for r in records]
        if logged and all(isinstance(p, (int, float)) and 0 <= p <= 1 for p in logged):
            return np.asarray(logged, dtype=float)
        return model.predict_proba(frame)[:, 1]
    return model.predict_proba(frame)


def _importance(model: TrainedModel, sample: pd.DataFrame, columns: list[str], *, seed: int) -> dict[str, float] | None:
    """Each column's share of how much the model's output moves when that column alone is shuffled.

    Measured the same way for every model family (and a feature hook): the mean absolute change of the
    probabilities (or of the value, in its standard deviations) over a reference sample.
    """
    rows = sample.iloc[:_IMPORTANCE_SAMPLE].reset_index(drop=True)
    base = _output_matrix(model, rows)
    scale = float(base.std()) if model.task == "regression" and base.std() > 0 else 1.0
    rng = np.random.default_rng(seed)
    moved = {}
    for name in columns:
        shuffled = rows.copy()
        shuffled[name] = rng.permutation(shuffled[name].to_numpy())
        moved[name] = float(np.abs(_output_matrix(model, shuffled) - base).sum(axis=1).mean() / scale)
    total = sum(moved.values())
    return None if total <= 0 else {k: v / total for k, v in moved.items()}


def _output_matrix(model: TrainedModel, frame: pd.DataFrame) -> np.ndarray:
    if model.task == "regression":
        return np.asarray(model.predict(frame), dtype=float)[:, None]
    return model.predict_proba(frame)


def _one_class(model: TrainedModel, labels: pd.Series, metric: str) -> str | None:
    """Why the labeled metric is undefined on one class (accuracy is not), or None."""
    if model.task == "regression" or metric == "accuracy":
        return None
    classes = sorted({_key(v) for v in labels})
    if len(classes) > 1:
        return None
    return (f"labeled {metric} is undefined on this window: its {len(labels)} labels are all '{classes[0]}' "
            f"(one class), and {metric} needs both classes; the estimate is still given")


def _margin(goal: Any, value: float) -> float:
    """How far ``value`` is on the good side of the goal (negative: the goal is missed by that much)."""
    return value - goal.threshold if goal.greater_is_better else goal.threshold - value


def _latency(raw: list[dict[str, Any]]) -> dict[str, Any]:
    values = np.array([r["latency_ms"] for r in raw if isinstance(r["latency_ms"], (int, float))], dtype=float)
    if not len(values):
        return {"rows": 0, "p50_ms": None, "p99_ms": None, "note": "no latency was logged for these rows"}
    p50, p99 = np.percentile(values, [50, 99])
    return {"rows": int(len(values)), "p50_ms": float(p50), "p99_ms": float(p99)}


def _duration(seconds: float) -> str:
    """Seconds as a short duration for messages (``3600`` → ``1h``)."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
