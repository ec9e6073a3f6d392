"""Evaluation on the locked holdout, diagnosis of a missed goal, and serving latency.

:func:`evaluate` scores the model once on the holdout (with its own threshold) and bootstraps a
95% confidence interval. :func:`diagnose` reads the search evidence when the goal is missed and
says where the loop goes back: more rows (Data), a wider search (Model) or a new goal (Business).

>>> from sklearn.datasets import load_diabetes
>>> from loopml.spec import GoalSpec
>>> from loopml.model.search import SearchPlan, search, split_holdout
>>> df = load_diabetes(as_frame=True).frame
>>> train, holdout = split_holdout(df, "target", "regression", 0.2, seed=0)
>>> goal = GoalSpec(metric="rmse", at_most=60)
>>> result = search(train, target="target", task="regression", goal=goal, plan=SearchPlan(families=("linear",)))
>>> ev = evaluate(result.model, holdout, goal, n_boot=200)
>>> ev.ci_low <= ev.value <= ev.ci_high
True
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.business.metrics import METRICS, metric_names_for, score
from loopml.errors import ModelError
from loopml.model._operating import COUNT_METRICS, best_under, class_costs, decide, from_counts, miss_cost
from loopml.model.artifact import TrainedModel
from loopml.model.features import _key
from loopml.model.search import SearchPlan, SearchResult, goal_score

__all__ = ["Diagnosis", "Evaluation", "diagnose", "evaluate", "predict_latency_ms"]

_WITHIN_REACH = 0.05  # absolute for scores in [0, 1]; relative to the goal for regression
_MORE_ROWS_WORTH = 4  # more rows are worth collecting when the extrapolated need is within 4× the rows used


# -- evaluation ----------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """The goal metric on the locked holdout with its 95% bootstrap interval, and every other metric."""

    metric: str
    value: float
    ci_low: float
    ci_high: float
    met: bool
    constraints: dict[str, dict[str, Any]]
    metrics: dict[str, float | None]
    rows: int
    # Mean cost per holdout row of the model's decisions under the business costs; None without costs.
    expected_cost: float | None = None
    # What the goal gate compared: on (point | ci_bound), value, op, threshold, and its words in ``text``.
    gate: dict[str, Any] = field(default_factory=dict)

    @property
    def gate_value(self) -> float:
        """The goal-metric value the gate judged: the point estimate, or the pessimistic end of the 95% CI."""
        return float(self.gate.get("value", self.value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(model: TrainedModel, holdout: pd.DataFrame, goal: Any, *, seed: int = 0, n_boot: int = 1000,
             costs: Any = None) -> Evaluation:
    """Score ``model`` on ``holdout`` against ``goal`` (a :class:`loopml.spec.GoalSpec`).

    With ``costs`` (a :class:`loopml.spec.CostsSpec`), :attr:`Evaluation.expected_cost` is the mean cost per
    row of the model's decisions; a multiclass model with ``class_costs`` counts those without ``costs``.
    ``met`` is True when the goal metric meets the goal and every ``with`` constraint holds (at its point
    value). The goal metric judged is the point estimate, or with ``goal.gate_on == "ci_bound"`` the
    pessimistic end of its 95% interval: ``ci_low`` for ``at_least``, ``ci_high`` for ``at_most``.
    """
    if model.target not in holdout.columns:
        raise ModelError(f"holdout lacks the target column '{model.target}'")
    if goal.metric not in METRICS or model.task not in METRICS[goal.metric].tasks:
        raise ModelError(f"goal metric '{goal.metric}' does not fit task '{model.task}'")
    y = _encode(model, holdout[model.target])
    X = holdout.drop(columns=[model.target])
    scores = model.predict(X) if model.task == "regression" else model.predict_proba(X)
    if model.task == "binary":
        scores = scores[:, 1]
    k = len(model.classes)

    def value_of(name: str) -> float | None:
        try:
            return goal_score(name, model.task, y, scores, model.threshold, k, weights=model.class_costs)
        except ValueError:  # e.g. roc_auc on a holdout holding one class only
            return None

    value = value_of(goal.metric)
    if value is None:
        raise ModelError(f"cannot compute {goal.metric} on this holdout ({len(y)} rows); it needs both classes")
    boot = _bootstrap(goal.metric, model.task, y, scores, model.threshold, k, seed=seed, n_boot=n_boot,
                      weights=model.class_costs)
    ci_low, ci_high = (float(v) for v in np.nanpercentile(boot, [2.5, 97.5]))
    constraints = {}
    for name, need in goal.with_.items():
        v = value_of(name)
        constraints[name] = {"value": v, "required": float(need), "met": v is not None and v >= need}
    gate = _gate(goal, value, ci_low, ci_high)
    return Evaluation(
        metric=goal.metric, value=value, ci_low=ci_low, ci_high=ci_high,
        met=gate["met"] and all(c["met"] for c in constraints.values()),
        constraints=constraints, metrics={name: value_of(name) for name in metric_names_for(model.task)},
        rows=len(y), gate=gate,
        expected_cost=_expected_cost(model, y, scores, costs),
    )


def _expected_cost(model: TrainedModel, y: np.ndarray, scores: np.ndarray, costs: Any) -> float | None:
    """Mean cost per row of the model's own decisions under ``costs`` (or, multiclass, its class_costs).

    Binary: false_positive per false alarm and false_negative per miss. Multiclass: per_class[true
    class] per miss (1 for a class not named). None when there are no costs to count.
    """
    if model.task == "binary" and costs is not None and getattr(costs, "false_positive", None) is not None:
        pred = scores >= (0.5 if model.threshold is None else model.threshold)
        fp, fn = int((pred & (y == 0)).sum()), int((~pred & (y == 1)).sum())
        return (fp * costs.false_positive + fn * costs.false_negative) / len(y)
    if model.task == "multiclass":
        per_class = getattr(costs, "per_class", None)
        weights = class_costs(model.classes, per_class) if per_class else model.class_costs
        return None if weights is None else miss_cost(y, decide(scores, model.class_costs), weights)
    return None


def _gate(goal: Any, value: float, ci_low: float, ci_high: float) -> dict[str, Any]:
    """The goal metric's gate: which value is judged, against what, and the verdict in words.

    >>> from loopml.spec import GoalSpec
    >>> _gate(GoalSpec(metric="recall", at_least=0.7, gate_on="ci_bound"), 0.73, 0.702, 0.76)["text"]
    'lower 95% bound 0.702 >= 0.7'
    """
    on = getattr(goal, "gate_on", "point")
    if on == "point":
        judged, words = value, "point estimate"
    elif on == "ci_bound":  # the pessimistic end: the goal must hold even if the holdout was lucky
        judged, words = (ci_low, "lower 95% bound") if goal.greater_is_better else (ci_high, "upper 95% bound")
    else:
        raise ModelError(f"goal.gate_on: found {on!r}; allowed: 'point', 'ci_bound'")
    met = bool(goal.is_met(judged))
    op = (">=" if met else "<") if goal.greater_is_better else ("<=" if met else ">")
    return {"on": on, "value": float(judged), "threshold": float(goal.threshold), "met": met,
            "text": f"{words} {judged:.3f} {op} {goal.threshold:g}"}


def _encode(model: TrainedModel, y: pd.Series) -> np.ndarray:
    """Holdout target in the model's codes (binary 1 = positive, multiclass index into classes)."""
    if y.isna().any():
        raise ModelError(f"holdout target '{model.target}' has {int(y.isna().sum())} missing value(s)")
    if model.task == "regression":
        return y.to_numpy(dtype=float)
    code = {_key(c): i for i, c in enumerate(model.classes)}
    keys = [_key(v) for v in y.tolist()]
    unknown = sorted(set(keys) - set(code))
    if unknown:
        raise ModelError(f"holdout target has label(s) {unknown} the model never saw; classes: {model.classes}")
    return np.array([code[k] for k in keys])


def _bootstrap(name: str, task: str, y: np.ndarray, scores: np.ndarray, threshold: float | None, k: int,
               *, seed: int, n_boot: int, weights: list[float] | None = None) -> np.ndarray:
    """``n_boot`` bootstrap replicates of metric ``name``, vectorised where the metric allows it."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if task == "binary" and name in COUNT_METRICS:
        # A row bootstrap of a confusion matrix is a multinomial draw over its cells: O(n_boot), not O(n·n_boot).
        pred = (scores >= (0.5 if threshold is None else threshold)).astype(int)
        cells = np.bincount(2 * y + pred, minlength=4) / n  # tn, fp, fn, tp
        tn, fp, fn, tp = rng.multinomial(n, cells, size=n_boot).T
        return from_counts(name, tp, fp, fn, tn)
    if task == "multiclass" and name in ("accuracy", "balanced_accuracy", "f1_macro"):
        cm = rng.multinomial(n, np.bincount(k * y + decide(scores, weights), minlength=k * k) / n, size=n_boot)
        return _from_confusion(name, cm.reshape(n_boot, k, k).astype(float))
    out = []
    for start in range(0, n_boot, max(1, 2_000_000 // n)):  # chunks of row-count matrices bound the memory
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=min(n_boot - start, max(1, 2_000_000 // n))).astype(float)
        out.append(_weighted(name, task, y, scores, threshold, k, W, weights))
    return np.concatenate(out)


def _from_confusion(name: str, cm: np.ndarray) -> np.ndarray:
    """Multiclass metric from a stack of confusion matrices (rows: true, columns: predicted)."""
    diag = np.diagonal(cm, axis1=1, axis2=2)
    true, pred = cm.sum(axis=2), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "accuracy":
            return diag.sum(axis=1) / cm.sum(axis=(1, 2))
        if name == "balanced_accuracy":  # mean recall over the classes present
            return np.nanmean(np.where(true > 0, diag / true, np.nan), axis=1)
        f1 = np.where(true + pred > 0, 2 * diag / (true + pred), np.nan)  # f1_macro over classes seen
        return np.nanmean(f1, axis=1)


def _weighted(name: str, task: str, y: np.ndarray, scores: np.ndarray, threshold: float | None, k: int,
              W: np.ndarray, weights: list[float] | None = None) -> np.ndarray:
    """Metric per row-count vector (one row of ``W`` per bootstrap resample)."""
    n = W.shape[1]
    if task == "regression":
        err = y - scores
        if name == "rmse":
            return np.sqrt(W @ err**2 / n)
        if name == "mae":
            return W @ np.abs(err) / n
        if name == "r2":
            total = W @ y**2 - (W @ y) ** 2 / n
            return 1 - (W @ err**2) / np.where(total > 0, total, np.nan)
    if name == "log_loss":
        proba = np.column_stack([1 - scores, scores]) if task == "binary" else scores
        eps = np.finfo(float).eps
        return W @ -np.log(np.clip(proba[np.arange(n), y], eps, 1 - eps)) / n
    if name == "roc_auc":
        return _weighted_auc(y, scores, W)
    if name == "roc_auc_ovr":  # sklearn's macro one-vs-rest: the unweighted mean of per-class AUCs
        return np.mean([_weighted_auc((y == c).astype(int), scores[:, c], W) for c in range(k)], axis=0)
    if name == "average_precision":
        return _weighted_ap(y, scores, W)
    # A metric added to the registry later: resample explicitly and call it (slower, still right).
    rows = np.arange(n)
    out = []
    for w in W.astype(int):
        idx = np.repeat(rows, w)
        try:
            out.append(goal_score(name, task, y[idx], scores[idx], threshold, k, weights=weights))
        except ValueError:
            out.append(np.nan)
    return np.array(out)


def _weighted_auc(y: np.ndarray, p: np.ndarray, W: np.ndarray) -> np.ndarray:
    """ROC AUC per weight vector: the weighted Mann-Whitney statistic, ties counted half."""
    order = np.argsort(p, kind="stable")
    ps, ys, Ws = p[order], y[order], W[:, order]
    starts = np.r_[0, np.nonzero(np.diff(ps))[0] + 1]  # tie groups of equal scores
    pos = np.add.reduceat(Ws * ys, starts, axis=1)
    neg = np.add.reduceat(Ws * (1 - ys), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower
    with np.errstate(divide="ignore", invalid="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _weighted_ap(y: np.ndarray, p: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Average precision per weight vector: sum over distinct thresholds of recall gained × precision."""
    order = np.argsort(-p, kind="stable")
    ps, ys, Ws = p[order], y[order], W[:, order]
    starts = np.r_[0, np.nonzero(np.diff(ps))[0] + 1]
    tp = np.cumsum(np.add.reduceat(Ws * ys, starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(Ws * (1 - ys), starts, axis=1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / tp[:, -1:]
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        return (np.diff(recall, axis=1, prepend=0.0) * precision).sum(axis=1)


# -- diagnosis -----------------------------------------------------------------------------------
@dataclass
class Diagnosis:
    """Why the goal was missed and where the loop goes back.

    ``cause`` is ``"more_data"`` (→ ``"data"``), ``"model_capacity"`` (→ ``"model"``) or
    ``"infeasible"`` (→ ``"business"``); ``reachable`` is what the data did reach.
    """

    cause: str
    next_stage: str
    evidence: dict[str, Any]
    explanation: str
    reachable: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(result: SearchResult, evaluation: Evaluation, goal: Any, *, plan: SearchPlan,
             rows_available: int, train: pd.DataFrame | None = None,
             assessment: dict[str, Any] | None = None) -> Diagnosis:
    """Explain a missed goal and say where the loop goes back, checking the causes in order.

    1. the data: a leakage suspect the model still uses, label noise over 10% of rows, or a minority
       class under 10% that the model rarely finds (recall < 0.5) without resampling → Data;
    2. the learning curve still rising, with the goal extrapolated within 4× the rows used → Data;
    3. with ``train`` given: every family on the same plateau and a small train/validation gap →
       missing signal → Data (another source or new features); a large gap → overfitting → Model;
    4. a gap within reach (< 0.05, or 5% of the goal for regression) and a plan that can widen → Model;
    5. otherwise the goal is out of reach of this data → Business, with what is reachable.

    ``Diagnosis.evidence["checks"]`` holds every check's numbers, found or not.
    """
    if evaluation.met:
        raise ModelError("the goal is met on the holdout; there is nothing to diagnose")
    checks = _data_checks(result, assessment or {}) + _fit_checks(result, train)
    found = next((c for c in checks if c["found"] and c["order"] == 1), None)
    if found is not None:
        return Diagnosis(cause=found["check"], next_stage=found["next_stage"],
                         evidence={"checks": checks, "cv_score": result.cv_score, "holdout_value": evaluation.value},
                         explanation=found["explanation"], reachable=_reachable(result, evaluation, goal))
    diagnosis = _curve_diagnosis(result, evaluation, goal, plan=plan, rows_available=rows_available)
    diagnosis.evidence["checks"] = checks
    if diagnosis.cause != "infeasible":
        return diagnosis
    # Regularising closes a gap of a few points at most; a larger one is not the overfit's doing.
    later = next((c for c in checks if c["found"] and (c["check"] != "overfitting"
                                                         or diagnosis.evidence["gap"] < 2 * _WITHIN_REACH)), None)
    if later is None:
        return diagnosis
    return Diagnosis(cause=later["check"], next_stage=later["next_stage"], evidence=diagnosis.evidence,
                     explanation=later["explanation"], reachable=diagnosis.reachable)


_NOISE_LIMIT = 0.10  # "above a few percent"; weak-signal data alone shows ~7% confident disagreement
_MINORITY_SHARE = 0.10
_OVERFIT_GAP = 0.10  # train minus validation, on the task's threshold-free metric
_PLATEAU = 0.02


def _data_checks(result: SearchResult, assessment: dict[str, Any]) -> list[dict[str, Any]]:
    """Data problems the model's miss may come from: leakage, label noise, imbalance."""
    checks: list[dict[str, Any]] = []
    used = set(result.model.preprocessor.columns)
    leaks = [s for s in assessment.get("leakage_suspects") or [] if s["column"] in used]
    checks.append({"check": "leakage", "order": 1, "found": bool(leaks), "next_stage": "data",
                   "evidence": {"suspects": leaks},
                   "explanation": "the model uses leakage suspects " + ", ".join(
                       f"'{s['column']}' ({s['metric']} {s['score']:.3f} alone)" for s in leaks)
                   + ": back to Data to drop them (data.clean.leakage: drop)."})
    noise = assessment.get("label_noise") or {}
    share = float(noise.get("share") or 0.0)
    cleaned = getattr(result, "label_issues", None) or {}
    noisy = (f"an estimated {share:.1%} of labels disagree confidently with out-of-fold predictions "
             f"(over {_NOISE_LIMIT:.0%})")
    if cleaned.get("policy") == "drop":
        # The training rows are cleaned; the holdout's wrong labels remain and cap its score, so this is a late cause.
        order, text = 3, (f"{noisy}; the search dropped {cleaned.get('dropped', 0):,} likely mislabeled training rows "
                          "(data.clean.label_noise: drop), but the locked holdout keeps its labels and the wrong ones "
                          "cap the score it can show: fix the labels at the source.")
    else:
        order, text = 1, (f"{noisy}: back to Data to drop the training rows whose labels are likely wrong "
                          "(data.clean.label_noise: drop), or fix the labels at the source.")
    checks.append({"check": "label_noise", "order": order, "found": share > _NOISE_LIMIT, "next_stage": "data",
                   "evidence": {"share": share, "rows": noise.get("rows"), "limit": _NOISE_LIMIT,
                                "dropped_training_rows": cleaned.get("dropped", 0)},
                   "explanation": text})
    if result.model.task != "regression" and result.oof_target is not None and result.oof_scores is not None:
        y = np.asarray(result.oof_target)
        counts = np.bincount(y.astype(int))
        minority = int(np.argmin(counts))
        minority_share = float(counts[minority] / counts.sum())
        predicted = _oof_labels(result)
        recall = float(np.mean(predicted[y == minority] == minority)) if counts[minority] else 0.0
        policy = (getattr(result, "imbalance", None) or {}).get("applied", "none")
        found = minority_share < _MINORITY_SHARE and recall < 0.5 and policy not in ("undersample", "oversample")
        checks.append({"check": "imbalance", "order": 1, "found": found, "next_stage": "data",
                       "evidence": {"minority_share": minority_share, "minority_recall": recall,
                                    "imbalance_applied": policy},
                       "explanation": f"the smallest class is {minority_share:.1%} of rows and the model finds "
                                      f"only {recall:.0%} of it out of fold (imbalance handling: {policy}): back "
                                      "to Data cleaning to resample it (data.clean.imbalance: oversample)."})
    return checks


def _oof_labels(result: SearchResult) -> np.ndarray:
    scores = np.asarray(result.oof_scores, dtype=float)
    if scores.ndim == 2:
        return decide(scores, result.model.class_costs)
    threshold = result.model.threshold if result.model.threshold is not None else 0.5
    return (scores >= threshold).astype(int)


def _fit_checks(result: SearchResult, train: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Missing signal (every family on one low plateau) and overfitting (train far above validation)."""
    if train is None or result.oof_target is None or result.oof_scores is None:
        return []
    metric, train_score, cv_score = _proxy_scores(result, train)
    gap = train_score - cv_score
    scores = [c.cv_score for c in result.candidates if c.cv_score == c.cv_score]
    spread = (max(scores) - min(scores)) if len(scores) > 1 else float("inf")
    evidence = {"metric": metric, "train_score": train_score, "cv_score": cv_score, "gap": gap,
                "family_spread": spread, "families": len(scores)}
    return [
        # Trees fit their training rows almost perfectly whatever the signal, so the plateau across
        # families, not the training score, is what says the columns lack signal.
        {"check": "missing_signal", "order": 3, "found": spread < _PLATEAU,
         "next_stage": "data", "evidence": evidence,
         "explanation": f"every family plateaus at about the same goal score (spread {spread:.3f} across "
                        f"{len(scores)} candidates; {metric} {cv_score:.3f} out of fold): the columns lack the "
                        "signal; back to Data for another source or new features."},
        # Forests (and ensembles holding them) fit their training rows almost exactly by design, so the
        # gap says "overfit" only for the families whose training score means something.
        {"check": "overfitting", "order": 3,
         "found": gap > _OVERFIT_GAP and result.model.family in ("linear", "lightgbm"), "next_stage": "model",
         "evidence": evidence,
         "explanation": f"the model scores {metric} {train_score:.3f} on its training rows but {cv_score:.3f} out "
                        f"of fold (gap {gap:.3f}): it overfits; back to Model with stronger regularisation."},
    ]


def _proxy_scores(result: SearchResult, train: pd.DataFrame) -> tuple[str, float, float]:
    """The task's threshold-free metric on the training rows (in sample) and out of fold."""
    model = result.model
    y_oof = np.asarray(result.oof_target)
    oof = np.asarray(result.oof_scores, dtype=float)
    if model.task == "regression":
        fitted = model.predict(train)
        return "r2", float(score("r2", train[model.target].to_numpy(dtype=float), y_pred=fitted)), \
            float(score("r2", y_oof, y_pred=oof))
    labels = [str(c) for c in model.classes]
    y_train = np.array([labels.index(str(v)) for v in train[model.target]])
    proba = model.predict_proba(train)
    if model.task == "binary":
        return "roc_auc", float(score("roc_auc", y_train, y_proba=proba[:, 1])), \
            float(score("roc_auc", y_oof, y_proba=oof if oof.ndim == 1 else oof[:, 1]))
    idx = list(range(len(labels)))
    return "roc_auc_ovr", float(score("roc_auc_ovr", y_train, y_proba=proba, labels=idx)), \
        float(score("roc_auc_ovr", y_oof, y_proba=oof, labels=idx))


def _curve_diagnosis(result: SearchResult, evaluation: Evaluation, goal: Any, *, plan: SearchPlan,
                     rows_available: int) -> Diagnosis:
    gib = goal.greater_is_better

    def ahead(a: float, b: float) -> float:  # how much better a is than b, in the goal's direction
        return (a - b) if gib else (b - a)

    shortfalls = {goal.metric: ahead(goal.threshold, evaluation.gate_value)}  # the value the gate judged
    shortfalls.update({f"{name} (constraint)": c["required"] - (c["value"] if c["value"] is not None else 0.0)
                       for name, c in evaluation.constraints.items()})
    gap = max(0.0, *shortfalls.values())
    regression = result.model.task == "regression"
    reach_gap = gap / abs(goal.threshold) if regression and goal.threshold else gap

    curve = result.learning_curve
    # "Still rising": the full-size point beats every smaller one (not just 50%), so one noisy dip
    # in a short curve does not send the loop off to collect data.
    rise = min((ahead(curve[-1]["score"], p["score"]) for p in curve[:-1]), default=0.0)
    rising = rise > 0 and rise > 0.25 * gap
    can_widen = plan.can_widen
    reachable = _reachable(result, evaluation, goal)

    evidence = {
        "holdout_value": evaluation.value, "goal": goal.threshold, "gap": gap, "shortfalls": shortfalls,
        "cv_score": result.cv_score, "learning_curve": curve, "curve_rise": rise,
        "plan": plan.describe(), "rows_used": int(len(result.oof_target)) if result.oof_target is not None else None,
        "rows_available": rows_available,
    }
    name, fmt = goal.metric, (lambda v: f"{v:.4g}")
    rows_used = evidence["rows_used"] or (curve[-1]["rows"] if curve else rows_available)
    needed = _rows_needed(curve, goal) if rising else None
    evidence["rows_needed"] = needed
    curve_change = f"{rise:+.3g} at full size, under a quarter of the gap" if curve else "no learning curve"
    points = " → ".join(f"{fmt(p['score'])} at {p['rows']:,}" for p in curve)
    if rising and needed is not None and needed <= _MORE_ROWS_WORTH * rows_used:
        text = (f"the learning curve still rises ({name} {points} rows); extrapolated, the goal needs about "
                f"{needed:,} rows, {needed / rows_used:.1f}× the {rows_used:,} used: "
                "more rows should help: back to Data.")
        cause, stage = "more_data", "data"
    elif can_widen and reach_gap < _WITHIN_REACH and not rising:
        text = (f"the gap {fmt(gap)} is within reach and the learning curve has levelled off ({curve_change}); "
                f"a wider search than {plan.describe()} may close it: back to Model.")
        cause, stage = "model_capacity", "model"
    else:
        if rising:
            need_text = f"about {needed:,} rows" if needed is not None else "more rows than any extrapolation reaches"
            why = (f"the learning curve still rises ({name} {points} rows) but, extrapolated, the goal needs "
                   f"{need_text}, over {_MORE_ROWS_WORTH}× the {rows_used:,} used")
        elif not can_widen:
            why = f"the learning curve has levelled off ({curve_change}) and the search is already at its widest"
        else:
            why = (f"the learning curve has levelled off ({curve_change}) and the gap {fmt(gap)} is too large "
                   "for a wider search")
        text = f"the best {name} seen is {fmt(reachable['best'])}; {why}: revise the goal to what the data can reach."
        for constraint, best in reachable.get("trade_off", {}).items():
            if best is not None:
                text += f" At {name} >= {goal.threshold:g} the best {constraint} out of fold is {fmt(best)}."
            else:
                text += f" No operating point reaches {name} >= {goal.threshold:g} out of fold."
        cause, stage = "infeasible", "business"
    return Diagnosis(cause=cause, next_stage=stage, evidence=evidence, explanation=text, reachable=reachable)


def _rows_needed(curve: list[dict[str, Any]], goal: Any) -> int | None:
    """Rows at which the learning curve, fitted as score = a + b·log(rows), reaches the goal."""
    if len(curve) < 2:
        return None
    sign = 1.0 if goal.greater_is_better else -1.0
    rows = np.log([p["rows"] for p in curve])
    scores = sign * np.array([p["score"] for p in curve], dtype=float)
    slope, intercept = np.polyfit(rows, scores, 1)
    if slope <= 0:
        return None
    log_needed = (sign * goal.threshold - intercept) / slope
    return int(np.exp(min(log_needed, 40.0)))


def _reachable(result: SearchResult, evaluation: Evaluation, goal: Any) -> dict[str, Any]:
    """The best goal-metric values seen, and at a constrained operating point what the OOF data allows."""
    pick = max if goal.greater_is_better else min
    best_cv = pick(c.cv_score for c in result.candidates)
    out: dict[str, Any] = {"metric": goal.metric, "best_cv": best_cv, "holdout": evaluation.value,
                           "best": pick(best_cv, evaluation.value)}
    if goal.with_ and goal.metric in COUNT_METRICS and result.oof_scores is not None:
        y, p = result.oof_target, result.oof_scores
        # The best goal metric while every constraint holds, and each constraint's best while the goal holds.
        out["at_constraints"] = best_under(y, p, maximise=goal.metric, subject_to=dict(goal.with_))
        out["trade_off"] = {name: best_under(y, p, maximise=name, subject_to={goal.metric: goal.threshold})
                            for name in goal.with_}
    return out


# -- latency -------------------------------------------------------------------------------------
def predict_latency_ms(model: TrainedModel, X: pd.DataFrame, *, n: int = 200) -> dict[str, float]:
    """p50 and p99 milliseconds of single-row prediction, rows taken from ``X`` in turn.

    >>> from loopml.model.features import Preprocessor
    >>> pre = Preprocessor().fit(pd.DataFrame({"x": [0.0, 1.0]}))
    >>> m = TrainedModel(task="regression", target="y", family="linear", preprocessor=pre,
    ...                  state={"coef": [1.0], "intercept": 0.0})
    >>> sorted(predict_latency_ms(m, pd.DataFrame({"x": [0.5]}), n=10))
    ['n', 'p50', 'p99']
    """
    if len(X) == 0:
        raise ModelError("predict_latency_ms needs at least one row in X")
    call = model.predict if model.task == "regression" else model.predict_proba
    rows = [X.iloc[[i % len(X)]] for i in range(n)]
    call(rows[0])  # warm-up: the first call builds the booster from its JSON string
    times = []
    for row in rows:
        t0 = time.perf_counter()
        call(row)
        times.append((time.perf_counter() - t0) * 1000)
    p50, p99 = np.percentile(times, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "n": n}
