"""Retraining on fresh data: the new rows, the training window, the Data and Model gates, the challenger.

The champion trained on its snapshot. The **new rows** are what it never saw: the sources' rows newer
than its data (``collect_then_retrain``; incrementally by the base source's ``incremental`` column, or
read in full less the rows the snapshot holds) followed by the labeled predictions of the production
log, oldest first. The most recent ``maintenance.compare.share`` of them are held out: nothing trains
on them. The rest join the champion's snapshot in the **pool**, which passes the Data gate (assess,
clean, enough rows and quality) as a first run would.

Each **training window** is cut from the pool: ``all`` of it, ``recent`` (the new rows only) or
``weighted`` (the new rows plus as many older rows drawn at random, so the new rows weigh half).
Each trains within the retrain budget and must pass the Model gate (the goal on its locked holdout).
With ``window: auto`` the held-out rows are split in time: the older half chooses the window, the
newer half compares champion and challenger, so the choice cannot flatter the comparison.

>>> outcome = Retrainer(spec, store, champion, policy, recorder).run("retrain")   # doctest: +SKIP
>>> outcome.challenger.version, outcome.comparison.promote                        # doctest: +SKIP
(3, True)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.compute import Compute, compute_for
from loopml.data import (
    assess,
    check_data,
    clean,
    collect,
    frame_from_parquet,
    frame_hash,
    frame_to_parquet,
    infer_contract,
)
from loopml.data.sources._base import json_safe
from loopml.errors import LoopmlError, ModelError
from loopml.maintenance._record import Recorder, pause_for_tests
from loopml.maintenance.compare import Comparison, compare_on_recent, labeled_frame
from loopml.maintenance.policy import Policy
from loopml.model import SearchPlan, TrainedModel, evaluate, search, split_holdout
from loopml.spec import ProjectSpec, spec_hash
from loopml.store import ModelVersion, SnapshotRecord, Store
from loopml.store._optuna import optuna_storage, study_name

__all__ = ["FreshRows", "NewRows", "RetrainOutcome", "Retrainer", "collect_fresh", "fresh_problems", "new_rows",
           "training_windows"]

WINDOWS = ("all", "recent", "weighted")
# Fewer held-out rows than twice this cannot be split into rows that choose and rows that compare.
_MIN_SELECT_ROWS = 20
# Marks the pool's new rows through cleaning (which drops rows but keeps their order); removed after.
_NEW = "__loopml_new_row"


# -- fresh rows from the sources -----------------------------------------------------------------
@dataclass
class FreshRows:
    """Rows the sources hold that the champion's data does not; ``problem`` says why none could be read."""

    frame: pd.DataFrame | None
    how: str
    column: str | None = None  # the base source's incremental column, when it has one
    watermarks: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rows": 0 if self.frame is None else len(self.frame), "how": self.how, "column": self.column,
                "watermarks": self.watermarks, "sources": self.sources, "attempts": self.attempts,
                "problem": self.problem}


def collect_fresh(spec: ProjectSpec, *, base: pd.DataFrame, sources_used: list[str], since: dict[str, Any],
                  attempts: int = 3, backoff_s: float = 2.0, progress: Callable[[str, str], None] | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> FreshRows:
    """Read the rows of the sources that ``base`` (the champion's data) lacks, retrying a source that fails.

    With an ``incremental`` column on the base source, only rows past the watermark are read: the one in
    ``since`` (recorded by the last retrain), else the largest value ``base`` holds. Without one, the
    sources are read in full and the rows ``base`` already holds are left out. The further sources in
    ``sources_used`` are joined as in the Data stage. A read that fails is tried ``attempts`` times,
    waiting ``backoff_s``, then twice as long each time; then ``problem`` says why.
    """
    progress = progress or (lambda stage, message: None)
    first = spec.data.sources[0]
    names = [s.name for s in spec.data.sources[1:] if s.name in sources_used]
    column = first.incremental.column if first.incremental else None
    mark = since.get(first.name) if column else None
    if column and mark is None and column in base.columns and base[column].notna().any():
        mark = json_safe(base[column].max())
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            collected = collect(spec, names=names, since={first.name: mark} if mark is not None else None)
            break
        except Exception as exc:  # a source that does not answer now may answer in a moment
            error = f"{type(exc).__name__}: {exc}"
            if attempt < attempts:
                wait = backoff_s * 2 ** (attempt - 1)
                progress("data", f"reading the sources failed ({error[:80]}); attempt {attempt + 1} of {attempts} "
                                 f"in {wait:g}s")
                sleep(wait)
    else:
        return FreshRows(None, "not read", column, attempts=attempts, problem=(
            f"the sources could not be read after {attempts} attempt{'s' if attempts > 1 else ''} "
            f"(maintenance.sources): {error}"))
    frame = collected.frame
    if mark is not None:
        how = f"rows of '{first.name}' with {column} > {mark!r}"
    else:
        before = len(frame)
        frame = _unseen(frame, base)
        why = "it has no incremental column" if column is None else f"the champion's data lacks its column '{column}'"
        how = (f"'{first.name}' read in full ({why}): {before - len(frame):,} of its {before:,} rows are in the "
               "champion's data already")
    if column is not None and column in frame.columns:
        frame = frame.sort_values(column, kind="mergesort")
    return FreshRows(frame.reset_index(drop=True), how, column, dict(collected.watermarks),
                     [s.to_dict() for s in collected.sources], attempt)


def _unseen(frame: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` whose values (on the columns both share) are not a row of ``base``."""
    shared = [c for c in base.columns if c in frame.columns]
    if not shared:
        return frame
    known = set(_row_keys(base, shared))
    return frame[[k not in known for k in _row_keys(frame, shared)]]


def _row_keys(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    # Numbers compare as floats (a CSV's 5 is a snapshot's 5.0) and text as text, missing as one value.
    normal = {}
    for c in columns:
        s = frame[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            normal[c] = pd.to_numeric(s, errors="coerce").astype("float64")
        else:
            normal[c] = s.astype(object).where(s.notna(), "\x00missing").astype(str)
    return pd.util.hash_pandas_object(pd.DataFrame(normal), index=False).to_numpy()


def fresh_problems(frame: pd.DataFrame, contract: dict[str, Any], target: str) -> list[str]:
    """Why new source rows cannot join the champion's data: a missing target or column, text for numbers.

    >>> contract = {"columns": [{"name": "speed", "kind": "integer"}]}
    >>> fresh_problems(pd.DataFrame({"speed": [33, "fast"], "price": [1, 2]}), contract, "price")
    ["column 'speed' holds 1 value that is not a number (e.g. 'fast') where the champion's data has numbers"]
    """
    problems = []
    if target not in frame.columns:
        problems.append(f"the new rows lack the target column '{target}'")
    names = [c["name"] for c in contract.get("columns", [])]
    absent = [n for n in names if n not in frame.columns]
    if absent:
        problems.append(f"the new rows lack column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} "
                        "that the champion's data has")
    for c in contract.get("columns", []):
        if c["kind"] not in ("numeric", "integer") or c["name"] not in frame.columns:
            continue
        values = frame[c["name"]]
        bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
        if bad.any():
            n = int(bad.sum())
            problems.append(f"column '{c['name']}' holds {n:,} value{'s' if n > 1 else ''} that "
                            f"{'are' if n > 1 else 'is'} not a number (e.g. {values[bad].iloc[0]!r}) where the "
                            "champion's data has numbers")
    return problems


# -- new rows, held-out rows and windows ---------------------------------------------------------
@dataclass
class NewRows:
    """Rows the champion never trained on, oldest first: source rows, then labeled predictions."""

    frame: pd.DataFrame
    from_log: np.ndarray  # True for a labeled prediction, False for a source row
    seq: np.ndarray  # the feedback seq of a labeled prediction; 0 for a source row
    mark: list[Any]  # the incremental column's value of a source row; None for a labeled prediction

    def __len__(self) -> int:
        return len(self.frame)

    def part(self, rows: slice) -> NewRows:
        return NewRows(self.frame.iloc[rows].reset_index(drop=True), self.from_log[rows], self.seq[rows],
                       self.mark[rows])


def new_rows(fresh: FreshRows | None, labeled: list[dict[str, Any]], columns: list[str], target: str) -> NewRows:
    """Source rows then labeled predictions, on the champion's ``columns``; rows without a label dropped."""
    parts, from_log, seq, mark = [], [], [], []
    if fresh is not None and fresh.frame is not None and len(fresh.frame):
        parts.append(fresh.frame.reindex(columns=columns))
        from_log += [False] * len(fresh.frame)
        seq += [0] * len(fresh.frame)
        mark += (fresh.frame[fresh.column].tolist() if fresh.column in fresh.frame.columns
                 else [None] * len(fresh.frame))
    if labeled:
        parts.append(labeled_frame(labeled, target).reindex(columns=columns))
        from_log += [True] * len(labeled)
        seq += [r["feedback_seq"] for r in labeled]
        mark += [None] * len(labeled)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    keep = frame[target].notna().to_numpy() if len(frame) else np.zeros(0, dtype=bool)
    return NewRows(frame[keep].reset_index(drop=True), np.array(from_log, dtype=bool)[keep],
                   np.array(seq, dtype=int)[keep], [m for m, k in zip(mark, keep, strict=True) if k])


def training_windows(frame: pd.DataFrame, is_new: np.ndarray, *, choice: str, seed: int,
                     min_rows: int) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The frame each window trains on, and why a window was left out.

    >>> pool = pd.DataFrame({"x": range(10)})
    >>> windows, skipped = training_windows(pool, np.arange(10) >= 7, choice="auto", seed=0, min_rows=5)
    >>> {k: len(v) for k, v in windows.items()}, skipped["recent"]
    ({'all': 10, 'weighted': 6}, '3 new rows, fewer than data.min_rows 5')
    """
    wanted = WINDOWS if choice == "auto" else (choice,)
    new, old = frame[is_new], frame[~is_new]
    out: dict[str, pd.DataFrame] = {}
    skipped: dict[str, str] = {}
    for name in wanted:
        if name == "all":
            out["all"] = frame
        elif name == "recent":
            if len(new) < min_rows:
                skipped["recent"] = f"{len(new):,} new rows, fewer than data.min_rows {min_rows:,}"
            else:
                out["recent"] = new.reset_index(drop=True)
        elif not len(new):
            skipped["weighted"] = "no new rows to weigh"
        elif len(old) <= len(new):
            skipped["weighted"] = f"the older rows ({len(old):,}) are no more than the new ones: the same as 'all'"
        elif 2 * len(new) < min_rows:
            skipped["weighted"] = f"{2 * len(new):,} rows (the new ones and as many older), fewer than data.min_rows"
        else:
            older = old.sample(len(new), random_state=seed).sort_index()
            out["weighted"] = pd.concat([older, new]).reset_index(drop=True)
    if not out:
        skipped = {**skipped, "all": "used instead: the window asked for cannot be cut"}
        out["all"] = frame
    return out, skipped


# -- the retrain ---------------------------------------------------------------------------------
@dataclass
class RetrainOutcome:
    """A challenger and how it compared; or, when the retrain failed, why (the champion keeps serving)."""

    ok: bool
    reason: str
    challenger: ModelVersion | None = None
    comparison: Comparison | None = None


@dataclass
class _Window:
    name: str
    rows: int
    model: TrainedModel | None = None
    holdout: dict[str, Any] | None = None
    cv_score: float | None = None
    operating_point: dict[str, Any] | None = None
    train_rows: int = 0
    holdout_rows: int = 0
    seconds: float = 0.0
    problem: str | None = None
    selection: float | None = None
    # The search's best trials, each with the Dask worker that ran it on a cluster.
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    optuna_study: str | None = None  # what the search's Optuna studies are named after, when stored

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "train_rows": self.train_rows, "holdout_rows": self.holdout_rows,
                "holdout": self.holdout, "cv_score": self.cv_score, "seconds": round(self.seconds, 2),
                "problem": self.problem, "selection": self.selection,
                "family": self.model.family if self.model else None}


class _Failed(Exception):
    """The retrain cannot produce a challenger; the message says why."""


class Retrainer:
    """One retrain of ``champion``: new rows, the Data gate, a model per window, the choice, the comparison.

    Decisions go to ``recorder``; the challenger is registered with the decision that chose it. Nothing
    here moves the champion: promotion is the pass's last step.
    """

    def __init__(self, spec: ProjectSpec, store: Store, champion: ModelVersion, policy: Policy,
                 recorder: Recorder):
        self.spec, self.store, self.champion, self.policy, self.rec = spec, store, champion, policy, recorder
        self.project = spec.project
        self.deadline = time.monotonic() + policy.budget_s
        self.started = time.monotonic()
        self._compute: Compute | None = None  # connected on the first window, closed when the retrain ends

    def run(self, action: str) -> RetrainOutcome:
        """Retrain for ``action`` (``retrain`` or ``collect_then_retrain``); failures come back with their reason."""
        try:
            return self._run(action)
        except (_Failed, LoopmlError) as exc:
            why = str(exc)
            self.rec.decide("maintenance", "retrain", "fail", "keep_champion", None,
                            f"retrain failed: {why}; champion v{self.champion.version} keeps serving",
                            {"reason": why, "champion": self.champion.version,
                             "seconds": round(time.monotonic() - self.started, 2)})
            return RetrainOutcome(False, why)
        finally:
            if self._compute is not None:
                self._compute.close()

    def _run(self, action: str) -> RetrainOutcome:
        spec, b = self.spec, self.spec.business
        snapshot = self.store.snapshot(self.champion.snapshot_id)
        if snapshot.report.get("layout") == "parts":
            raise _Failed(f"the champion, version {self.champion.version}, was trained on {snapshot.rows:,} rows "
                          "cleaned in partitions (larger than compute.memory_limit), and a retrain reads its "
                          "training rows in memory: add the fresh rows to the source file and run `loopml run`, "
                          "which trains in partitions again")
        base = frame_from_parquet(self.store.read_snapshot(snapshot))
        lineage = self.champion.lineage or {}
        sources_used = snapshot.report.get("sources_used") or [s.name for s in spec.data.sources]
        fresh = self._fresh(base, sources_used, lineage) if action == "collect_then_retrain" else None
        labels_through = int(lineage.get("labels_through") or 0)
        labeled = self.store.labeled_predictions(self.project, after_feedback_seq=labels_through)
        columns = list(base.columns)
        rows = new_rows(fresh, labeled, columns, b.target)
        if len(rows) < self.policy.min_labeled:
            raise _Failed(f"{len(rows):,} new labeled rows (sources and production log), fewer than "
                          f"maintenance.min_labeled {self.policy.min_labeled}: too few to train on and to compare "
                          "champion and challenger")
        held = max(1, round(len(rows) * self.policy.compare_share))
        train_new, evaluation = rows.part(slice(0, len(rows) - held)), rows.part(slice(len(rows) - held, None))
        pause_for_tests("retrain")
        pool, is_new, data_report = self._data_gate(base, train_new)
        windows, skipped = training_windows(pool, is_new, choice=self.policy.window, seed=spec.model.seed,
                                            min_rows=spec.data.min_rows)
        select, compare = _select_and_compare(evaluation.frame, several=len(windows) > 1)
        if select is None and len(windows) > 1:
            skipped.update({n: f"{len(evaluation)} held-out rows are too few to choose a window on (need "
                               f"{2 * _MIN_SELECT_ROWS})" for n in windows if n != "all"})
            windows = {"all": windows["all"]}
        trained = [self._train(name, frame) for name, frame in windows.items()]
        chosen = self._choose(trained, skipped, select)
        comparison = self._compare(chosen, compare)
        challenger = self._register(chosen, trained, skipped, pool, snapshot, train_new, evaluation, fresh,
                                    data_report, comparison, select, compare, lineage, sources_used)
        return RetrainOutcome(True, comparison.reason, challenger, comparison)

    # -- steps -----------------------------------------------------------------------------------

    def _fresh(self, base: pd.DataFrame, sources_used: list[str], lineage: dict[str, Any]) -> FreshRows:
        fresh = collect_fresh(self.spec, base=base, sources_used=sources_used, since=lineage.get("watermarks") or {},
                              attempts=self.policy.retry_attempts, backoff_s=self.policy.retry_backoff_s,
                              progress=self.rec.progress)
        if fresh.problem is not None:
            self.store.add_alert(self.project, window_id=None, kind="source_down",
                                 detail={"problem": fresh.problem, "raised_by": "maintain",
                                         "run_id": self.rec.run_id})
            self.rec.decide("data", "collect", "fail", "alert", "model",
                            f"{fresh.problem}; alert raised; retraining on the champion's data and the labeled "
                            "production log only", fresh.to_dict())
            return fresh
        problems = fresh_problems(fresh.frame, self._contract(), self.spec.business.target) if len(fresh.frame) \
            else []
        if problems:
            self.rec.decide("data", "collect", "fail", "stop", None,
                            f"bad fresh data: {'; '.join(problems)}", {**fresh.to_dict(), "problems": problems})
            raise _Failed(f"bad fresh data from the sources: {'; '.join(problems)}; fix the source rows")
        self.rec.decide("data", "collect", "info", "collected", "data",
                        f"{len(fresh.frame):,} new rows from the sources ({fresh.how})", fresh.to_dict())
        return fresh

    def _contract(self) -> dict[str, Any]:
        return self.store.snapshot(self.champion.snapshot_id).contract

    def _data_gate(self, base: pd.DataFrame, train_new: NewRows) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
        """The pool (champion's data and the new rows to train on) through assess, clean and the Data gate."""
        spec, b = self.spec, self.spec.business
        pool = pd.concat([base, train_new.frame], ignore_index=True)
        before = assess(pool, b.target, b.task, limits=spec.data.limits, seed=spec.model.seed)
        tagged = pool.assign(**{_NEW: np.r_[np.zeros(len(base), dtype=int), np.ones(len(train_new), dtype=int)]})
        cleaned = clean(tagged, b.target, b.task, spec.data.clean, assessment=before)
        frame = cleaned.frame
        is_new = (frame.pop(_NEW).to_numpy() == 1) if _NEW in frame.columns else np.zeros(len(frame), dtype=bool)
        after = assess(frame, b.target, b.task, limits=spec.data.limits, seed=spec.model.seed)
        check = check_data(after, min_rows=spec.data.min_rows, task=b.task, limits=spec.data.limits)
        counts = {"rows": len(frame), "champion_rows": int((~is_new).sum()), "new_rows": int(is_new.sum()),
                  "new_from_sources": int((~train_new.from_log).sum()),
                  "new_from_log": int(train_new.from_log.sum())}
        report = {"assessment": after.to_dict(), "cleaning": {k: v for k, v in cleaned.report.items()
                                                              if k != "dropped_columns"},
                  "gate": {"passed": check.passed, "evidence": check.evidence, "reasons": check.reasons},
                  "counts": counts}
        summary = (f"retraining data: {len(frame):,} rows after cleaning ({counts['champion_rows']:,} of the "
                   f"champion's, {counts['new_rows']:,} new: {counts['new_from_sources']:,} from the sources, "
                   f"{counts['new_from_log']:,} labeled predictions)"
                   + ("" if check.passed else "; " + "; ".join(check.reasons)))
        self.rec.decide("data", "enough_data", "pass" if check.passed else "fail",
                        "proceed" if check.passed else "stop", "model" if check.passed else None, summary,
                        {**check.evidence, **counts, "cleaning": cleaned.actions})
        if not check.passed:
            raise _Failed(f"the retraining data fails the Data gate: {'; '.join(check.reasons)}")
        return frame, is_new, report

    def _train(self, name: str, frame: pd.DataFrame) -> _Window:
        """One window through the Model stage and its gate: search on its rows, the goal on its holdout."""
        spec, b = self.spec, self.spec.business
        window = _Window(name, len(frame))
        left = self.deadline - time.monotonic()
        if left <= 0:
            window.problem = (f"the retrain budget of {self.policy.budget_s:g}s (maintenance.retrain.budget) was "
                              f"spent after {time.monotonic() - self.started:.1f}s, before this window could train")
            self._window_decision(window)
            return window
        started = time.monotonic()
        trials = self.policy.trials or spec.model.trials
        compute = self._compute_here()  # outside the try: a cluster that cannot be reached fails the retrain
        storage = optuna_storage(self.store)
        window.optuna_study = study_name(self.store, self.project, self.rec.run_id, f"retrain-{name}") \
            if storage else None
        self.rec.progress("model", f"training window '{name}' on {len(frame):,} rows")
        try:
            train, holdout = split_holdout(frame, b.target, b.task, spec.data.holdout, spec.model.seed)
            result = search(train, target=b.target, task=b.task, goal=b.goal, costs=b.costs, positive=b.positive,
                            plan=SearchPlan(seed=spec.model.seed, folds=spec.model.folds, trials=trials),
                            budget_s=max(left, 1.0), clean=spec.data.clean, feature_hook=spec.model.features,
                            hook_root=spec.root, compute=compute, study_storage=storage,
                            study_name=window.optuna_study)
            ev = evaluate(result.model, holdout, b.goal, seed=spec.model.seed, costs=b.costs)
        except LoopmlError as exc:
            window.problem = str(exc)
            window.seconds = time.monotonic() - started
            self._window_decision(window)
            return window
        window.model, window.holdout, window.cv_score = result.model, ev.to_dict(), result.cv_score
        window.operating_point, window.leaderboard = result.operating_point, result.leaderboard()[:10]
        window.train_rows, window.holdout_rows = len(train), len(holdout)
        window.seconds = time.monotonic() - started
        if not ev.met:
            window.problem = f"misses the goal {b.goal.describe()} on its holdout: {ev.gate['text']}"
        self._window_decision(window)
        return window

    def _window_decision(self, w: _Window) -> None:
        goal = self.spec.business.goal
        if w.holdout is not None:
            measured = (f"{goal.metric} {w.holdout['value']:.3f} (95% CI {w.holdout['ci_low']:.3f}–"
                        f"{w.holdout['ci_high']:.3f}) on {w.holdout_rows:,} holdout rows, {w.model.family}")
        else:
            measured = "not trained"
        ok = w.problem is None
        self.rec.decide("model", "goal", "pass" if ok else "fail", "candidate" if ok else "reject",
                        "maintenance" if ok else None,
                        f"window '{w.name}' ({w.rows:,} rows): {measured}" + ("" if ok else f"; {w.problem}"),
                        {"window": w.name, **w.to_dict(), "leaderboard": w.leaderboard,
                         **({"optuna_study": w.optuna_study} if w.optuna_study else {})})

    def _compute_here(self) -> Compute:
        """Where the search trials run: the loop's compute (``compute.dask`` and ``compute.batch``), connected once."""
        if self._compute is None:
            self._compute = compute_for(self.spec)
            if self.spec.compute.dask is not None:
                self.rec.progress("model", f"search trials on {self._compute.describe()}")
        return self._compute

    def _choose(self, trained: list[_Window], skipped: dict[str, str], select: pd.DataFrame | None) -> _Window:
        goal = self.spec.business.goal
        eligible = [w for w in trained if w.problem is None]
        if not eligible:
            budget = all(w.model is None and "budget" in (w.problem or "") for w in trained)
            reasons = "; ".join(f"'{w.name}': {w.problem}" for w in trained)
            if budget:
                raise _Failed(f"the retrain budget of {self.policy.budget_s:g}s is too small: no training window "
                              f"could train ({reasons}); raise maintenance.retrain.budget")
            raise _Failed(f"no training window passes the Model gate ({reasons})")
        if select is not None and len(eligible) > 1:
            for w in eligible:
                w.selection = evaluate(w.model, select, goal, seed=self.spec.model.seed, n_boot=50).value
            best = (max if goal.greater_is_better else min)(eligible, key=lambda w: w.selection)
            scores = ", ".join(f"{w.name} {w.selection:.3f}" for w in eligible)
            why = (f"{goal.metric} on the {len(select)} held-out labeled rows before the comparison rows: {scores}")
        else:
            best = next((w for w in eligible if w.name == "all"), eligible[0])
            why = "the only window that passes the Model gate" if len(eligible) == 1 else "no rows to choose on"
        self._choice = {"window": best.name, "why": why, "skipped": skipped,
                        "windows": {w.name: w.to_dict() for w in trained}}
        return best

    def _compare(self, chosen: _Window, compare: pd.DataFrame) -> Comparison:
        spec = self.spec
        champion = TrainedModel.from_bytes(self.store.read_model(self.champion), root=spec.root)
        self.rec.progress("maintenance", f"comparing champion and challenger on {len(compare)} recent rows")
        try:
            return compare_on_recent(champion, chosen.model, compare, spec.business.goal, seed=spec.model.seed,
                                     gate=self.policy.gate, confidence=self.policy.confidence,
                                     resamples=self.policy.resamples, costs=spec.business.costs)
        except ModelError as exc:
            raise _Failed(f"champion and challenger cannot be compared on the {len(compare)} most recent labeled "
                          f"rows: {exc}") from None

    def _register(self, chosen: _Window, trained: list[_Window], skipped: dict[str, str], pool: pd.DataFrame,
                  base_snapshot: SnapshotRecord, train_new: NewRows, evaluation: NewRows, fresh: FreshRows | None,
                  data_report: dict[str, Any], comparison: Comparison, select: pd.DataFrame | None,
                  compare: pd.DataFrame, lineage: dict[str, Any], sources_used: list[str]) -> ModelVersion:
        """Snapshot the pool, register the chosen model with the decision that chose it, name it challenger."""
        from loopml.process import _feature_hook, _packages

        spec, b = self.spec, self.spec.business
        labels_through = int(train_new.seq.max()) if train_new.from_log.any() \
            else int(lineage.get("labels_through") or 0)
        watermarks = dict(lineage.get("watermarks") or {})
        marks = [m for m, log in zip(train_new.mark, train_new.from_log, strict=True) if not log and m is not None]
        if fresh is not None and fresh.column is not None and marks:
            watermarks[spec.data.sources[0].name] = json_safe(max(marks))
        key = _digest({"base": base_snapshot.data_hash, "pool": frame_hash(pool),
                       "clean": spec.data.clean.model_dump()})
        contract = infer_contract(pool, b.target, b.task)
        snapshot = self.store.find_snapshot(self.project, key) or self.store.save_snapshot(
            self.project, input_key=key, data=frame_to_parquet(pool), data_hash=frame_hash(pool), rows=len(pool),
            columns=len(contract.columns), contract=contract.model_dump(mode="json"),
            report={**data_report, "sources_used": sources_used, "base_snapshot": base_snapshot.id,
                    "fresh": fresh.to_dict() if fresh is not None else None, "watermarks": watermarks})
        plan = SearchPlan(seed=spec.model.seed, folds=spec.model.folds, trials=self.policy.trials or spec.model.trials)
        choice = self._choice
        summary = (f"window '{chosen.name}' chosen ({choice['why']}); its model ({chosen.model.family}, "
                   f"{b.goal.metric} {chosen.holdout['value']:.3f} on its holdout) is registered as the challenger "
                   f"of v{self.champion.version}")
        decision = self.rec.pending("maintenance", "window", "pass", "register", "maintenance", summary,
                                    {**choice, "comparison": comparison.to_dict()})
        pause_for_tests("register")
        mv = self.store.register_model(
            self.project, run_id=self.rec.run_id, snapshot_id=snapshot.id,
            input_key=_digest({"snapshot": snapshot.data_hash, "window": chosen.name, "plan": plan.describe()}),
            model_bytes=chosen.model.to_bytes(), spec_hash=spec_hash(spec), family=chosen.model.family,
            metrics={"holdout": chosen.holdout, "cv_score": chosen.cv_score, "recent": comparison.challenger,
                     "champion_on_recent": comparison.champion, "paired": comparison.paired},
            operating_point=chosen.operating_point or {},
            lineage={"snapshot_id": snapshot.id, "data_hash": snapshot.data_hash, "sources_used": sources_used,
                     "retrained_from": self.champion.version, "window": chosen.name,
                     "labels_through": labels_through, "watermarks": watermarks,
                     "labeled_rows": int(train_new.from_log.sum()), "fresh_rows": int((~train_new.from_log).sum()),
                     "selection_rows": 0 if select is None else len(select), "comparison_rows": len(compare),
                     "held_out_rows": len(evaluation), "train_rows": chosen.train_rows,
                     "holdout_rows": chosen.holdout_rows, "plan": plan.describe(), "spec_hash": spec_hash(spec),
                     "packages": _packages(), "feature_hook": _feature_hook(spec)},
            decision=decision)
        self.rec.keep(self.store.registered_by(mv) or decision)
        # In a shadow or canary release the challenger alias takes live traffic: only a challenger that passed gets it.
        if comparison.promote or self.policy.rollout == "direct":
            self.store.set_alias(self.project, "challenger", mv.version, actor="loopml maintain",
                                 reason=f"retrained from v{self.champion.version} in run {self.rec.run_id} "
                                        f"(window '{chosen.name}')")
        return self.store.model_version(self.project, mv.version)


def _select_and_compare(held: pd.DataFrame, *, several: bool) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Held-out rows split in time: the older half chooses the window, the newer half compares (when needed)."""
    if not several or len(held) < 2 * _MIN_SELECT_ROWS:
        return None, held
    half = len(held) // 2
    return held.iloc[:half].reset_index(drop=True), held.iloc[half:].reset_index(drop=True)


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
