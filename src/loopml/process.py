"""The loop: runs Business → Data → Model → Operations, applies each gate, goes back when one fails.

Every gate writes a :class:`~loopml.decisions.Decision`. The engine owns the side
effects (store writes); the stages are plain functions. Work already done on the
same inputs (content hashes of spec and data) is reused, so a re-run with nothing
changed trains nothing, and a change redoes only what depends on it.

>>> from loopml.process import run_project
>>> result = run_project(spec, store)     # doctest: +SKIP
>>> result.outcome, result.exit_code      # doctest: +SKIP
('registered', 0)
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata as _pkg
from typing import Any, Literal

from loopml.compute import Compute, compute_for, optuna_batch
from loopml.data import (
    assess,
    check_data,
    clean,
    collect,
    file_hash,
    frame_from_parquet,
    frame_hash,
    frame_to_parquet,
    infer_contract,
)
from loopml.data.sources import open_source
from loopml.decisions import Decision
from loopml.errors import NotFoundError, SpecError
from loopml.maintenance import MaintainResult, maintain_project  # re-exported: maintenance lives in its package
from loopml.model import SearchPlan, TrainedModel, diagnose, evaluate, predict_latency_ms, search, split_holdout
from loopml.model.features import feature_hook_sha256
from loopml.spec import CleanSpec, ComputeSpec, ProjectSpec, spec_hash
from loopml.store import ModelVersion, SnapshotRecord, Store
from loopml.store._optuna import optuna_storage, study_name

__all__ = ["MaintainResult", "RunResult", "maintain_project", "run_project"]

Outcome = Literal["registered", "goal_not_met", "data_insufficient", "not_deployable"]
Progress = Callable[[str, str], None]


@dataclass
class RunResult:
    """Where one ``loopml run`` ended, and the decisions that got it there."""

    run_id: int
    project: str
    outcome: Outcome
    explanation: str
    model_version: ModelVersion | None = None
    decisions: list[Decision] = field(default_factory=list)
    reachable: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "registered" else 1

    def leaderboard(self) -> tuple[str, list[dict[str, Any]]]:
        """The latest search's leaderboard (selection metric, rows best first), from the goal decision."""
        for d in reversed(self.decisions):
            if d.stage == "model" and d.gate == "goal" and "leaderboard" in d.evidence:
                return d.evidence.get("selection_metric", ""), d.evidence["leaderboard"]
        return "", []

    def reachable_text(self) -> str:
        """What the data can reach, in words (empty when the goal was met)."""
        r = self.reachable
        if not r:
            return ""
        name = r.get("metric", "the goal metric")
        parts = [f"best {name} seen {r['best']:.3f} (holdout {r['holdout']:.3f})"]
        if r.get("at_constraints") is not None:
            parts.append(f"{r['at_constraints']:.3f} while the operating-point constraints hold (out of fold)")
        for other, value in (r.get("trade_off") or {}).items():
            if value is not None:
                parts.append(f"at the goal's {name} the best {other} is {value:.3f}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "project": self.project,
            "outcome": self.outcome,
            "explanation": self.explanation,
            "model_version": self.model_version.version if self.model_version else None,
            "reachable": self.reachable,
            "decisions": [d.to_dict() for d in self.decisions],
        }


@dataclass(frozen=True)
class _Plan:
    """What the loop changes when it goes back: cleaning choices, sources forced in, search width."""

    clean: CleanSpec
    search: SearchPlan
    extra_sources: tuple[str, ...] = ()


def run_project(spec: ProjectSpec, store: Store, *, progress: Progress | None = None,
                replay_run: int | None = None, cluster: str | None = None) -> RunResult:
    """Run the loop for ``spec`` until the goal is met or nothing left can help.

    ``replay_run`` rebuilds the model of an earlier run from its recorded trial sequence, without
    timing: the same data and spec give the identical model even when that run had a time budget.
    ``cluster`` (a Dask scheduler address or scheduler file) overrides the spec's ``compute.dask``:
    the search trials then run on that cluster's workers.
    """
    if cluster is not None:
        spec = _with_cluster(spec, cluster)
    loop = _Loop(spec, store, progress or (lambda stage, message: None))
    if replay_run is not None:
        loop.replay = _recorded_trials(store, spec.project, replay_run)
    return loop.run()


def _with_cluster(spec: ProjectSpec, cluster: str) -> ProjectSpec:
    from pydantic import ValidationError

    try:
        compute = ComputeSpec.model_validate({**spec.compute.model_dump(), "dask": cluster})
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise SpecError(f"--cluster: {reason}", [f"--cluster: {reason}"]) from None
    return spec.model_copy(update={"compute": compute})



def _recorded_trials(store: Store, project: str, run_id: int) -> list[dict[str, Any]]:
    for d in reversed(store.decisions(project, run_id=run_id)):
        if d.stage == "model" and d.gate == "goal" and d.evidence.get("trials"):
            return d.evidence["trials"]
    searched = sorted({d.run_id for d in store.decisions(project)
                       if d.stage == "model" and d.gate == "goal" and d.evidence.get("trials")})
    raise NotFoundError(f"run {run_id} of project '{project}' has no recorded search to replay; runs with one: "
                        f"{', '.join(map(str, searched)) or 'none yet (run `loopml run` first)'}")


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _fingerprint(spec: ProjectSpec, source) -> str:
    """Content hash of a source: its file bytes, or the rows it returns (databases, DuckDB, Python)."""
    from loopml.spec import FileSourceSpec

    if isinstance(source, FileSourceSpec):
        paths = sorted(spec.root.glob(source.path)) if any(c in source.path for c in "*?[") \
            else [spec.source_path(source)]
        return _digest([file_hash(p) for p in paths])
    return frame_hash(open_source(source, spec.root).read())


def _pays_off(gain: float, cost_per_1k: float, min_gain: float, value_per_point: float | None) -> tuple[bool, str]:
    """Whether a source's measured gain pays for it, and why, in words."""
    if gain < min_gain:
        return False, f"the gain is under data.acquisition.min_gain {min_gain:g}"
    if cost_per_1k == 0:
        return True, "it costs nothing"
    if value_per_point is None:
        return True, (f"it costs {cost_per_1k:g} per 1,000 rows and no data.acquisition.value_per_point is set, "
                      "so it is judged on the gain alone")
    value = gain / 0.01 * value_per_point
    verdict = value >= cost_per_1k
    return verdict, (f"its value {value:.3g} per 1,000 rows ({gain / 0.01:.2f} points × {value_per_point:g}) "
                     f"{'covers' if verdict else 'does not cover'} its cost {cost_per_1k:g}")


def _feature_hook(spec: ProjectSpec) -> dict[str, str] | None:
    """The spec's feature hook and the SHA-256 of its module file (reuse key and lineage), or None."""
    if spec.model.features is None:
        return None
    return {"hook": spec.model.features, "sha256": feature_hook_sha256(spec.model.features, spec.root)}


def _packages() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("loopml", "numpy", "pandas", "scikit-learn", "lightgbm", "pyarrow"):
        try:
            out[name] = _pkg.version(name)
        except _pkg.PackageNotFoundError:
            out[name] = "unknown"
    return out


class _Loop:
    def __init__(self, spec: ProjectSpec, store: Store, progress: Progress):
        self.spec = spec
        self.store = store
        self.progress = progress
        self.project = spec.project
        self.decisions: list[Decision] = []
        self.run_id = 0
        self.spec_sha = spec_hash(spec)
        self.deadline = time.monotonic() + spec.model.budget
        self.replay: list[dict[str, Any]] | None = None
        self._compute: Compute | None = None  # connected on the first search, closed when the run ends

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> RunResult:
        self.progress("data", "hashing sources")
        self.source_hashes = {s.name: _fingerprint(self.spec, s) for s in self.spec.data.sources}
        self.run_id = self.store.start_run(self.project, "run", self.spec_sha,
                                           _digest([self.spec_sha, self.source_hashes]))
        try:
            result = self._loop()
        except BaseException as exc:
            self.store.finish_run(self.run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if self._compute is not None:
                self._compute.close()
        self.store.finish_run(self.run_id, result.outcome, result.explanation)
        return result

    def _loop(self) -> RunResult:
        self._business_gate()
        plan = _Plan(clean=self.spec.data.clean,
                     search=SearchPlan(seed=self.spec.model.seed, folds=self.spec.model.folds,
                                       trials=self.spec.model.trials))
        for iteration in range(1, self.spec.model.max_iterations + 1):
            snapshot, data_ok = self._data_stage(plan, iteration)
            if not data_ok:
                better = self._cleaning_that_keeps_rows(plan.clean, snapshot)
                if better is None:
                    return self._end("data_insufficient", snapshot.report["gate"]["reasons"][0]
                                     + "; add rows or a source to the spec")
                plan = replace(plan, clean=better)
                continue
            goal = self._model_stage(snapshot, plan, iteration)
            if goal["met"]:
                return self._operations_gate(goal["model_version"], snapshot)
            diagnosis = goal["diagnosis"]
            self.reachable = diagnosis.get("reachable", {})
            if diagnosis["next_stage"] == "model":
                if not plan.search.can_widen:
                    return self._stop_infeasible(f"the search is already at its widest; {diagnosis['explanation']}")
                if time.monotonic() >= self.deadline:
                    return self._stop_infeasible(
                        f"the model budget of {self.spec.model.budget:g}s is spent before the search could widen; "
                        f"{diagnosis['explanation']}")
                plan = replace(plan, search=plan.search.widen())
                continue
            # Out of reach with the columns used: a source left out for its cost is the last thing to try.
            if diagnosis["next_stage"] == "data" or (diagnosis["cause"] == "infeasible" and self._unused(plan)):
                better = self._data_fix(plan, diagnosis)
                if better is not None:
                    plan = better
                    continue
            return self._stop_infeasible(diagnosis["explanation"])
        return self._stop_infeasible(
            f"stopped after {self.spec.model.max_iterations} iterations (model.max_iterations) "
            "without meeting the goal")

    # -- Business ------------------------------------------------------------------------------

    def _business_gate(self) -> None:
        b = self.spec.business
        self._decide("business", "goal_fits_task", "pass", "proceed", "data",
                     f"{b.task} task on target '{b.target}'; goal {b.goal.describe()} on the locked holdout",
                     {"problem": b.problem, "task": b.task, "target": b.target, "positive": b.positive,
                      "metric": b.goal.metric, "threshold": b.goal.threshold, "gate_on": b.goal.gate_on,
                      "with": dict(b.goal.with_), "costs": b.costs.model_dump() if b.costs else None})

    def _stop_infeasible(self, why: str) -> RunResult:
        goal = self.spec.business.goal
        reach = getattr(self, "reachable", {})
        self._decide("business", "feasibility", "fail", "revise_goal", None,
                     f"goal {goal.describe()} is not reachable with this data: {why}",
                     {"goal": goal.describe(), "reachable": reach})
        return self._end("goal_not_met", f"goal {goal.describe()} is not reachable with this data")

    # -- Data ----------------------------------------------------------------------------------

    @contextmanager
    def _stage(self, stage: str, iteration: int):
        """Record when a stage starts and ends (with its seconds) as stage events."""
        started = time.monotonic()
        self.store.stage_event(self.run_id, stage, "started", {"iteration": iteration})
        outcome = "failed"
        try:
            yield
            outcome = "finished"
        finally:
            self.store.stage_event(self.run_id, stage, outcome,
                                   {"iteration": iteration, "seconds": round(time.monotonic() - started, 3)})

    def _data_stage(self, plan: _Plan, iteration: int) -> tuple[SnapshotRecord, bool]:
        with self._stage("data", iteration):
            return self._data_stage_body(plan, iteration)

    def _data_stage_body(self, plan: _Plan, iteration: int) -> tuple[SnapshotRecord, bool]:
        spec = self.spec
        key = _digest({"sources": self.source_hashes,
                       "spec": [s.model_dump(mode="json") for s in spec.data.sources],
                       "clean": plan.clean.model_dump(), "extra_sources": list(plan.extra_sources),
                       "target": spec.business.target,
                       "task": spec.business.task, "min_rows": spec.data.min_rows})
        snapshot = self.store.find_snapshot(self.project, key)
        if snapshot is not None:
            used = snapshot.report.get("sources_used", [s.name for s in spec.data.sources])
            self._decide("data", "snapshot", "info", "reuse", "data",
                         f"sources and cleaning unchanged: reusing snapshot {snapshot.data_hash[:12]} "
                         f"({snapshot.rows:,} rows from {', '.join(used)})",
                         {"snapshot_id": snapshot.id, "input_key": key, "sources_used": used})
        else:
            names = self._select_sources(plan.clean, joined=plan.extra_sources)
            names += [n for n in plan.extra_sources if n not in names]
            snapshot = self._build_snapshot(plan.clean, key, names)
        self._sources_used = snapshot.report.get("sources_used", [s.name for s in spec.data.sources])
        gate = snapshot.report["gate"]
        verdict = "pass" if gate["passed"] else "fail"
        summary = (f"{snapshot.rows:,} rows × {snapshot.columns} features after cleaning; "
                   + ("; ".join(gate["reasons"]) if gate["reasons"] else "enough rows and every class represented"))
        self._decide("data", "enough_data", verdict, "proceed" if gate["passed"] else "reclean",
                     "model" if gate["passed"] else "data", summary,
                     {**gate["evidence"], "iteration": iteration, "snapshot_id": snapshot.id})
        return snapshot, gate["passed"]

    def _select_sources(self, plan: CleanSpec, *, joined: tuple[str, ...] = ()) -> list[str]:
        """The further sources worth joining: ranked by measured gain per cost, each kept only if it pays.

        Gains are cross-validated on a threshold-free metric of the task (steadier than a metric at an
        operating point), on at most 20,000 rows, with a quick LightGBM. Sources in ``joined`` (the loop
        went back to join them) are not measured again.
        """
        spec = self.spec
        candidates = [s for s in spec.data.sources[1:] if s.name not in joined]
        if not candidates:
            return []
        if (size := self._large_base()) is not None:  # measuring a source would read the large base whole
            raise self._joins_refused(size, [c.name for c in candidates])
        rules = spec.data.acquisition
        self.progress("data", f"measuring what {len(candidates)} further source(s) add")
        base_score, metric = self._quick_score([])
        gains = {c.name: self._quick_score([c.name])[0] - base_score for c in candidates}
        ranked = sorted(candidates, key=lambda c: gains[c.name] / max(c.cost_per_1k_rows, 1e-9), reverse=True)
        chosen: list[str] = []
        current = base_score
        for source in ranked:
            score = self._quick_score([*chosen, source.name])[0] if chosen else current + gains[source.name]
            gain = score - current
            pays, why = _pays_off(gain, source.cost_per_1k_rows, rules.min_gain, rules.value_per_point)
            evidence = {"source": source.name, "metric": metric, "score_without": current, "score_with": score,
                        "gain": gain, "cost_per_1k_rows": source.cost_per_1k_rows,
                        "min_gain": rules.min_gain, "value_per_point": rules.value_per_point,
                        "rank": ranked.index(source) + 1}
            self._decide("data", "source_pays_off", "pass" if pays else "fail", "add" if pays else "drop", "data",
                         f"source '{source.name}' {'added' if pays else 'dropped'}: {metric} {current:.4f} → "
                         f"{score:.4f} ({gain:+.4f}) with it; {why}", evidence)
            if pays:
                chosen.append(source.name)
                current = score
        return chosen

    def _quick_score(self, names: list[str]) -> tuple[float, str]:
        """Cross-validated threshold-free score of the base source joined with ``names``."""
        from loopml.spec import GoalSpec

        spec = self.spec
        b = spec.business
        metric = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "regression": "r2"}[b.task]
        cache = self.__dict__.setdefault("_quick_cache", {})
        if tuple(names) not in cache:
            frame = collect(spec, names=names).frame
            frame = clean(frame, b.target, b.task, self.spec.data.clean).frame
            if len(frame) > 20_000:
                frame = frame.sample(20_000, random_state=spec.model.seed)
            result = search(frame, target=b.target, task=b.task, goal=GoalSpec(metric=metric, at_least=0.0),
                            positive=b.positive,
                            plan=SearchPlan(families=("lightgbm",), folds=3, seed=spec.model.seed, n_estimators=100))
            cache[tuple(names)] = result.cv_score
        return cache[tuple(names)], metric

    def _build_snapshot(self, plan: CleanSpec, key: str, names: list[str]) -> SnapshotRecord:
        spec = self.spec
        target, task = spec.business.target, spec.business.task
        if (size := self._large_base()) is not None:
            return self._build_snapshot_in_partitions(plan, key, names, size)
        self.progress("data", "collecting sources")
        collected = collect(spec, names=names)
        self._decide("data", "collect", "info", "collected", "data",
                     ", ".join(f"{s.name}: {s.rows:,} rows in {s.read_seconds:.2f}s" for s in collected.sources)
                     + "".join(f"; joined {j.source} on {j.on} ({j.match_rate:.0%} matched)" for j in collected.joins),
                     {"sources": [s.to_dict() for s in collected.sources],
                      "joins": [j.to_dict() for j in collected.joins]})
        self.progress("data", "assessing and cleaning")
        before = assess(collected.frame, target, task, limits=spec.data.limits, seed=spec.model.seed)
        cleaned = clean(collected.frame, target, task, plan, assessment=before)
        after = assess(cleaned.frame, target, task, limits=spec.data.limits, seed=spec.model.seed)
        self._decide("data", "clean", "info", "cleaned", "data",
                     "; ".join(cleaned.actions) or "nothing to clean",
                     {"plan": plan.model_dump(), **cleaned.report})
        check = check_data(after, min_rows=spec.data.min_rows, task=task, limits=spec.data.limits)
        contract = infer_contract(cleaned.frame, target, task)
        report = {"assessment_raw": before.to_dict(), "assessment": after.to_dict(), "cleaning": cleaned.report,
                  "gate": {"passed": check.passed, "evidence": check.evidence, "reasons": check.reasons},
                  "clean_plan": plan.model_dump(), "sources_used": [spec.data.sources[0].name, *names]}
        return self.store.save_snapshot(
            self.project, input_key=key, data=frame_to_parquet(cleaned.frame), data_hash=frame_hash(cleaned.frame),
            rows=len(cleaned.frame), columns=len(contract.columns), contract=contract.model_dump(mode="json"),
            report=report)

    # -- Data larger than memory: the base file cleaned in partitions on the cluster, stored as Parquet parts --

    def _large_base(self) -> int | None:
        """The base file's bytes when it takes the large path (compute.dask set, over compute.memory_limit)."""
        from loopml.data.assess import _larger_than_memory

        if self.spec.compute.dask is None:
            return None
        return _larger_than_memory(self.spec, self.spec.data.sources[0])

    def _joins_refused(self, size: int, names: list[str]) -> Exception:
        """The error (recorded as a decision first) for further sources next to a base larger than memory."""
        from loopml.errors import DataError

        base, limit = self.spec.data.sources[0].name, self.spec.compute.memory_limit
        message = (f"base source '{base}' is {size:,} bytes, larger than compute.memory_limit ({limit:,} bytes), so "
                   f"it is cleaned in partitions on the cluster, where joining further sources "
                   f"({', '.join(map(repr, names))}) is not supported yet. Pre-join the files into one CSV or Parquet "
                   f"file and list only it under data.sources, or raise compute.memory_limit above {size:,} bytes "
                   "to join in memory")
        self._decide("data", "collect", "fail", "stop", None, message,
                     {"base": base, "bytes": size, "memory_limit": limit, "further_sources": names})
        return DataError(message)

    def _build_snapshot_in_partitions(self, plan: CleanSpec, key: str, names: list[str],
                                      size: int) -> SnapshotRecord:
        """Assess, clean and snapshot the base file in partitions on the cluster; nothing is read whole."""
        import tempfile

        from loopml.data._large import clean_in_partitions
        from loopml.data._profile_dask import columns_of

        spec = self.spec
        base, limit = spec.data.sources[0], spec.compute.memory_limit
        if names:
            raise self._joins_refused(size, names)
        usual = {"delimiter": (None, ","), "encoding": (None, "utf-8", "utf8"), "header": (None, True)}
        options = {k: v for k, ok in usual.items() if (v := getattr(base, k)) not in ok}
        if options:  # dask reads a file by its suffix, with a header, commas and UTF-8
            from loopml.errors import DataError

            raise DataError(f"source '{base.name}': {', '.join(f'{k}: {v!r}' for k, v in options.items())} cannot "
                            f"be honoured when the file is read in partitions (it is {size:,} bytes, larger than "
                            f"compute.memory_limit); convert it to Parquet or to a comma-separated UTF-8 CSV with a "
                            f"header, or raise compute.memory_limit above {size:,} bytes")
        compute = self._compute_here("data")
        where = f"Dask at {compute.address} ({compute.workers} workers)"  # the batch matters to the model, not here
        self.progress("data", f"assessing and cleaning '{base.name}' in partitions on {where}")
        started = time.monotonic()
        scratch = spec.root / ".loopml"
        scratch.mkdir(parents=True, exist_ok=True)
        # The workers write the parts, so the folder is in the project: reachable from workers on this machine.
        with tempfile.TemporaryDirectory(dir=scratch, prefix="parts-") as out_dir:
            large = clean_in_partitions(spec.source_path(base), spec.business.target, spec.business.task, plan,
                                        client=compute.client, seed=spec.model.seed, limits=spec.data.limits,
                                        memory_limit=limit, out_dir=out_dir, min_rows=spec.data.min_rows)
            seconds = round(time.monotonic() - started, 2)
            rows_in, on = large.report["cleaning"]["rows_in"], f"in {large.partitions} partitions on {where}"
            read = {"name": base.name, "kind": base.kind, "description": base.path, "rows": rows_in,
                    "columns": columns_of(spec.source_path(base)), "total_rows": rows_in, "more_rows": 0,
                    "newest": None, "read_seconds": seconds, "cost_per_1k_rows": base.cost_per_1k_rows,
                    "cost": rows_in / 1000 * base.cost_per_1k_rows, "path": base.path,
                    "details": {"bytes": size, "memory_limit": limit, "partitions": large.partitions,
                                "engine": large.report["assessment_raw"]["methods"].get("engine")}}
            self._decide("data", "collect", "info", "collected", "data",
                         f"{base.name}: {rows_in:,} rows {on} ({size:,} bytes, larger than compute.memory_limit "
                         f"{limit:,}); read, assessed and cleaned in {seconds:.2f}s", {"sources": [read], "joins": []})
            self._decide("data", "clean", "info", "cleaned", "data",
                         f"{'; '.join(large.actions) or 'nothing to clean'} ({on})",
                         {"plan": plan.model_dump(), **large.report["cleaning"]})
            return self.store.save_snapshot_parts(
                self.project, input_key=key, parts=large.parts, data_hash=large.data_hash, rows=large.rows,
                columns=large.columns, contract=large.contract, report={**large.report, "sources_used": [base.name]})

    def _data_fix(self, plan: _Plan, diagnosis: dict[str, Any]) -> _Plan | None:
        """The concrete change to the Data stage that answers a diagnosed cause, recorded; None if none is left."""
        cause, clean_plan = diagnosis["cause"], plan.clean
        change: tuple[str, _Plan] | None = None
        if cause == "leakage" and clean_plan.leakage == "keep":
            change = ("drop the leakage suspects (data.clean.leakage: drop)",
                      replace(plan, clean=clean_plan.model_copy(update={"leakage": "drop"})))
        elif cause == "label_noise" and clean_plan.label_noise == "keep":
            change = ("drop rows whose labels are likely wrong (data.clean.label_noise: drop)",
                      replace(plan, clean=clean_plan.model_copy(update={"label_noise": "drop"})))
        elif cause == "imbalance" and clean_plan.imbalance not in ("oversample", "undersample"):
            change = ("oversample the smallest class in the training rows (data.clean.imbalance: oversample)",
                      replace(plan, clean=clean_plan.model_copy(update={"imbalance": "oversample"})))
        elif cause in ("missing_signal", "more_data", "infeasible"):
            # A left-out source brings columns, not rows; for a rising learning curve it is still the
            # one thing the Data stage can add when every row is already read.
            unused = self._unused(plan)
            if unused:
                change = (f"join source '{unused[0]}', which was left out when it did not pay for itself alone",
                          replace(plan, extra_sources=(*plan.extra_sources, unused[0])))
        if change is None:
            what = {"more_data": "every source in the spec is already used and read in full; add rows or a source "
                                 "to data.sources",
                    "missing_signal": "no source in the spec is left to add; add a source or a feature hook",
                    "label_noise": "rows whose labels are likely wrong are already dropped from the training rows "
                                   "(data.clean.label_noise: drop); fix the labels at the source",
                    }.get(cause, f"the fix for {cause} is already in place")
            self._decide("data", cause, "fail", "stop", "business", f"nothing left in the Data stage can help: {what}",
                         {"cause": cause})
            return None
        before = "the goal is out of reach with the sources used; before revising it, " if cause == "infeasible" else ""
        self._decide("data", cause, "fail", "change_plan", "data", f"{before}going back to Data to {change[0]}",
                     {"cause": cause, "clean": change[1].clean.model_dump(),
                      "extra_sources": list(change[1].extra_sources)})
        return change[1]

    def _unused(self, plan: _Plan) -> list[str]:
        """The spec's further sources that this run has not joined."""
        return [s.name for s in self.spec.data.sources[1:]
                if s.name not in self._sources_used and s.name not in plan.extra_sources]

    def _cleaning_that_keeps_rows(self, plan: CleanSpec, snapshot: SnapshotRecord) -> CleanSpec | None:
        """A cleaning plan that loses fewer rows, if the current one lost any."""
        lost = snapshot.report["cleaning"].get("dropped_missing_rows", 0)
        if plan.missing == "drop_rows" and lost:
            better = plan.model_copy(update={"missing": "impute"})
            self._decide("data", "enough_data", "info", "reclean", "data",
                         f"dropping rows with missing values lost {lost:,} rows; cleaning again with missing: impute",
                         {"dropped_missing_rows": lost})
            return better
        return None

    # -- Model ---------------------------------------------------------------------------------

    def _model_stage(self, snapshot: SnapshotRecord, plan: _Plan, iteration: int) -> dict[str, Any]:
        with self._stage("model", iteration):
            return self._model_stage_body(snapshot, plan, iteration)

    def _model_stage_body(self, snapshot: SnapshotRecord, plan: _Plan, iteration: int) -> dict[str, Any]:
        spec = self.spec
        b = spec.business
        # The loopml version is part of the key: an upgrade may train differently, so it trains again.
        hook = _feature_hook(spec)
        key = _digest({"data": snapshot.data_hash, "business": b.model_dump(mode="json", by_alias=True),
                       "loopml": _packages()["loopml"], "clean": plan.clean.model_dump(),
                       "seed": spec.model.seed, "holdout": spec.data.holdout, "plan": plan.search.describe(),
                       # Optuna batches change the trial sequence; where trials run does not.
                       **({"optuna_batch": optuna_batch(spec)} if optuna_batch(spec) > 1 else {}),
                       # Editing the hook's file changes the features, so the model trains again.
                       **({"feature_hook": hook} if hook else {})})
        registered = self.store.find_model(self.project, key) if self.replay is None else None
        if registered is not None:
            self._decide("model", "goal", "pass", "reuse", "operations",
                         f"data, goal and search unchanged: reusing model version {registered.version} "
                         f"({b.goal.metric} {registered.metrics['holdout']['value']:.3f} on the holdout)",
                         {"model_version": registered.version, "input_key": key})
            return {"met": True, "model_version": registered}
        earlier = self._earlier_goal_miss(key) if self.replay is None else None
        if earlier is not None:
            self._decide("model", "goal", "fail", "reuse", earlier["diagnosis"]["next_stage"],
                         f"data, goal and search unchanged since decision {earlier['decision_id']}: "
                         f"{earlier['summary']}", {**earlier["evidence"], "reused_decision": earlier["decision_id"]})
            return {"met": False, "diagnosis": earlier["diagnosis"]}
        if snapshot.report.get("layout") == "parts":  # larger than memory: a sample searched, all rows on Dask
            return self._model_stage_large(snapshot, plan, iteration, key, hook)

        frame = frame_from_parquet(self.store.read_snapshot(snapshot))
        train, holdout = split_holdout(frame, b.target, b.task, spec.data.holdout, spec.model.seed)
        self.progress("model", f"searching ({plan.search.describe()})")
        started = time.monotonic()
        # On PostgreSQL the Optuna studies go to the store's database, where a team opens them; a replay tunes nothing.
        storage = optuna_storage(self.store) if self.replay is None else None
        study = study_name(self.store, self.project, self.run_id, f"model-{iteration}") if storage else None
        result = search(train, target=b.target, task=b.task, goal=b.goal, costs=b.costs, positive=b.positive,
                        plan=plan.search, budget_s=self._search_budget(iteration),
                        progress=self._trial_progress, replay=self.replay, clean=plan.clean,
                        feature_hook=spec.model.features, hook_root=spec.root, compute=self._compute_here(),
                        study_storage=storage, study_name=study)
        self.progress("model", "evaluating on the locked holdout")
        evaluation = evaluate(result.model, holdout, b.goal, seed=spec.model.seed, costs=b.costs)
        return self._goal_gate(snapshot, plan, iteration, key, hook, result, evaluation, started=started, train=train,
                               latency_rows=holdout, train_rows=len(train), holdout_rows=len(holdout),
                               rows_available=len(frame), extra={"optuna_study": study} if study else {})

    def _model_stage_large(self, snapshot: SnapshotRecord, plan: _Plan, iteration: int, key: str,
                           hook: dict[str, str] | None) -> dict[str, Any]:
        """A parts snapshot: the search on an in-memory sample, then LightGBM on every training row over Dask."""
        from loopml.model._large import sample_rows_for, train_in_partitions

        spec, b = self.spec, self.spec.business
        if spec.compute.dask is None:
            raise SpecError(f"data snapshot {snapshot.id} is stored in parts (larger than compute.memory_limit) and "
                            "trains only on a Dask cluster; set compute.dask in the spec (or pass --cluster)")
        cluster = self._compute_here()
        parts = self.store.snapshot_parts(snapshot)
        # A parts snapshot exists only under a memory limit; 2 GB, the documented example, if it was since removed.
        sample_rows = sample_rows_for(parts, spec.compute.memory_limit or 2_000_000_000)
        self.progress("model", f"searching a sample of up to {sample_rows:,} rows ({plan.search.describe()}), "
                               "then LightGBM on every training row on the cluster")
        started = time.monotonic()
        storage = optuna_storage(self.store) if self.replay is None else None
        study = study_name(self.store, self.project, self.run_id, f"model-{iteration}") if storage else None
        large = train_in_partitions(
            parts, target=b.target, task=b.task, goal=b.goal, costs=b.costs, positive=b.positive, plan=plan.search,
            budget_s=self._search_budget(iteration), clean=plan.clean, cluster=cluster, seed=spec.model.seed,
            holdout_fraction=spec.data.holdout, sample_rows=sample_rows, progress=self._trial_progress,
            replay=self.replay, feature_hook=spec.model.features, hook_root=spec.root, study_storage=storage,
            study_name=study)
        result = replace(large.result, model=large.model, notes=[*large.result.notes, *large.notes])
        return self._goal_gate(
            snapshot, plan, iteration, key, hook, result, large.evaluation, started=started, train=large.sample,
            latency_rows=large.sample.head(200), train_rows=large.train_rows, holdout_rows=large.holdout_rows,
            rows_available=large.train_rows + large.holdout_rows,
            extra={"large": {"sample_rows": large.sample_rows, "train_rows": large.train_rows,
                             "fit_rows": large.fit_rows, "partitions": large.partitions, "workers": large.workers,
                             "notes": large.notes}, **({"optuna_study": study} if study else {})})

    def _goal_gate(self, snapshot: SnapshotRecord, plan: _Plan, iteration: int, key: str, hook: dict[str, str] | None,
                   result: Any, evaluation: Any, *, started: float, train: Any, latency_rows: Any, train_rows: int,
                   holdout_rows: int, rows_available: int, extra: dict[str, Any]) -> dict[str, Any]:
        """The model stage's gate: register the model when the goal is met on the holdout, else diagnose the miss."""
        spec, b = self.spec, self.spec.business
        evidence = {
            "input_key": key, "iteration": iteration, "plan": plan.search.describe(),
            "family": result.model.family, "cv_score": result.cv_score,
            "holdout": evaluation.to_dict(), "operating_point": result.operating_point,
            "candidates": [c.to_dict() if hasattr(c, "to_dict") else c.__dict__ for c in result.candidates],
            "leaderboard": result.leaderboard()[:10], "selection_metric": result.selection_metric,
            "trials": result.trials, "notes": result.notes, "label_issues": result.label_issues,
            "train_rows": train_rows, "holdout_rows": holdout_rows, "seconds": round(time.monotonic() - started, 2),
            # The stage report draws these: the curve, and the split that rebuilds the locked holdout.
            "learning_curve": result.learning_curve,
            "holdout_split": {"fraction": spec.data.holdout, "seed": spec.model.seed},
            **extra,
        }
        ci = f"(95% CI {evaluation.ci_low:.3f}–{evaluation.ci_high:.3f})"
        constraints = "".join(f", {k} {v['value'] if v['value'] is None else round(v['value'], 3)} "
                              f"(need {v['required']:g})" for k, v in evaluation.constraints.items())
        measured = (f"{evaluation.metric} {evaluation.value:.3f} {ci}{constraints} on {evaluation.rows:,} holdout rows"
                    f" (gate: {evaluation.gate['text']})")
        if evaluation.met:
            decision = Decision(stage="model", gate="goal", verdict="pass", action="register", next_stage="operations",
                                summary=f"goal {b.goal.describe()} met by {result.model.family}: {measured}",
                                evidence=evidence, run_id=self.run_id)
            mv = self.store.register_model(
                self.project, run_id=self.run_id, snapshot_id=snapshot.id, input_key=key,
                model_bytes=result.model.to_bytes(), spec_hash=self.spec_sha, family=result.model.family,
                metrics={"holdout": evaluation.to_dict(), "cv_score": result.cv_score},
                operating_point=result.operating_point,
                lineage={"snapshot_id": snapshot.id, "data_hash": snapshot.data_hash, "sources": self.source_hashes,
                         "sources_used": snapshot.report.get("sources_used"),
                         "spec_hash": self.spec_sha, "packages": _packages(), "train_rows": train_rows,
                         "holdout_rows": holdout_rows, "plan": plan.search.describe(), "feature_hook": hook},
                decision=decision)
            self.decisions.append(self.store.decisions(self.project, run_id=self.run_id, limit=1)[0])
            self._holdout = latency_rows
            return {"met": True, "model_version": mv}
        diagnosis = diagnose(result, evaluation, b.goal, plan=plan.search, rows_available=rows_available, train=train,
                             assessment=snapshot.report.get("assessment"))
        diag = {"cause": diagnosis.cause, "next_stage": diagnosis.next_stage, "evidence": diagnosis.evidence,
                "explanation": f"{measured}; {diagnosis.explanation}", "reachable": diagnosis.reachable}
        self._decide("model", "goal", "fail", f"back_to_{diagnosis.next_stage}", diagnosis.next_stage,
                     f"goal {b.goal.describe()} missed: {measured}; {diagnosis.explanation}",
                     {**evidence, "diagnosis": diag})
        return {"met": False, "diagnosis": diag}

    def _compute_here(self, stage: str = "model") -> Compute:
        """The run's compute, connected on first use; ``stage`` is the stage that needs it first."""
        if self._compute is None:
            self._compute = compute_for(self.spec)
            if self.spec.compute.dask is not None:
                self.progress(stage, f"connected to {self._compute.describe()}")
        return self._compute

    def _trial_progress(self, trials_done: int, best: float | None, seconds_left: float | None) -> None:
        left = f", {seconds_left:.0f}s left" if seconds_left is not None else ""
        best_text = f", best {best:.4f}" if best is not None else ""
        self.progress("model", f"{trials_done} trials{best_text}{left}")

    def _earlier_goal_miss(self, key: str) -> dict[str, Any] | None:
        for d in reversed(self.store.decisions(self.project)):
            if d.stage == "model" and d.gate == "goal" and d.verdict == "fail" \
                    and d.evidence.get("input_key") == key and "diagnosis" in d.evidence:
                return {"decision_id": d.evidence.get("reused_decision", d.id), "summary": d.summary,
                        "evidence": d.evidence, "diagnosis": d.evidence["diagnosis"]}
        return None

    # -- Operations (pre-deploy gate) ----------------------------------------------------------

    def _operations_gate(self, mv: ModelVersion, snapshot: SnapshotRecord) -> RunResult:
        limit = self.spec.business.constraints.predict_p99_ms
        champion = self.store.alias(self.project, "champion")
        if champion is not None and champion.id == mv.id:
            self._decide("operations", "pre_deploy", "pass", "keep", None,
                         f"model version {mv.version} is already the champion", {"model_version": mv.version})
            return self._end("registered", f"model version {mv.version} is the champion", mv)
        model = TrainedModel.from_bytes(self.store.read_model(mv), root=self.spec.root)
        sample = getattr(self, "_holdout", None)
        if sample is None and snapshot.report.get("layout") == "parts":  # never read whole: the first part's rows
            import pyarrow.parquet as pq

            first = pq.ParquetFile(self.store.snapshot_parts(snapshot)[0])
            sample = next(first.iter_batches(batch_size=200)).to_pandas()
        elif sample is None:
            sample = frame_from_parquet(self.store.read_snapshot(snapshot)).head(200)
        features = sample.drop(columns=[self.spec.business.target])
        latency = predict_latency_ms(model, features, n=200)
        evidence = {"model_version": mv.version, "p50_ms": latency["p50"], "p99_ms": latency["p99"],
                    "predict_p99_ms_limit": limit}
        if limit is not None and latency["p99"] > limit:
            self._decide("operations", "pre_deploy", "fail", "keep_champion", "model",
                         f"single-row p99 latency {latency['p99']:.2f} ms exceeds the constraint "
                         f"predict_p99_ms {limit:g}; version {mv.version} stays registered but is not deployed",
                         evidence)
            return self._end("not_deployable", f"p99 latency {latency['p99']:.2f} ms > {limit:g} ms", mv)
        previous = champion.version if champion else None
        decision = Decision(stage="operations", gate="pre_deploy", verdict="pass", action="promote",
                            next_stage="maintenance",
                            summary=f"version {mv.version} is the champion"
                                    + (f" (was {previous})" if previous else "")
                                    + f"; single-row p99 {latency['p99']:.2f} ms"
                                    + (f" within {limit:g} ms" if limit else ""),
                            evidence={**evidence, "previous_champion": previous}, run_id=self.run_id)
        self.store.set_alias(self.project, "champion", mv.version, actor="loopml run",
                             reason=f"run {self.run_id}: goal met", decision=decision, expect=champion)
        self.decisions.append(self.store.decisions(self.project, run_id=self.run_id, limit=1)[0])
        return self._end("registered", f"model version {mv.version} meets the goal and is the champion",
                         self.store.model_version(self.project, mv.version))

    # -- helpers -------------------------------------------------------------------------------

    def _search_budget(self, iteration: int) -> float:
        """Seconds for this iteration's search: half the model budget left, all of it in the last iteration.

        A time-budgeted search tunes until its clock runs out, so the first search would otherwise leave
        nothing for the way back (a wider search, a joined source) when the goal is missed.
        """
        left = max(self.deadline - time.monotonic(), 1.0)
        return left if iteration >= self.spec.model.max_iterations else max(left / 2, 1.0)

    def _decide(self, stage: str, gate: str, verdict: str, action: str, next_stage: str | None, summary: str,
                evidence: dict[str, Any]) -> Decision:
        decision = self.store.record_decision(self.project, Decision(
            stage=stage, gate=gate, verdict=verdict, action=action, next_stage=next_stage,  # type: ignore[arg-type]
            summary=summary, evidence=evidence, run_id=self.run_id))
        self.decisions.append(decision)
        self.progress(stage, summary)
        return decision

    def _end(self, outcome: Outcome, explanation: str, mv: ModelVersion | None = None) -> RunResult:
        return RunResult(run_id=self.run_id, project=self.project, outcome=outcome, explanation=explanation,
                         model_version=mv, decisions=self.decisions, reachable=getattr(self, "reachable", {}))
