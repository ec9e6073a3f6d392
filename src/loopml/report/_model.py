"""The stage report's model section: what the run recorded, and what is computed from its model on the holdout.

The leaderboard and the learning curve (extrapolated to the goal) come from the run's goal decision; the
precision–recall curve (regression: the residuals), permutation importance, the reliability curve and
every metric's 95% bootstrap interval are computed from the stored model on the rebuilt locked holdout.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.business.metrics import metric_names_for
from loopml.model._operating import decide
from loopml.report.charts import Marker, XYSeries, bar_list, xy_chart
from loopml.report.page import svg

if TYPE_CHECKING:
    from loopml.model.artifact import TrainedModel
    from loopml.store import ModelVersion

__all__ = ["evaluate_on_holdout", "model_section"]

_LEADERBOARD_ROWS = 10
_IMPORTANCE_ROWS = 2000  # holdout rows shuffled per column
_IMPORTANCE_SHOWN = 15
_SCATTER_POINTS = 600
_CURVE_POINTS = 200
_CALIBRATION_BINS = 10
_BOOTSTRAP = 500
_FAR = 100  # an extrapolation past 100x the rows used is no estimate of rows to collect
_CHART_WIDTH = 560


def evaluate_on_holdout(model: TrainedModel, holdout: pd.DataFrame, business: dict[str, Any],
                        mv: ModelVersion) -> dict[str, Any]:
    """What the charts and the model card need, computed from ``model`` on its locked ``holdout``.

    The holdout's codes and scores, every metric of the task with a 95% bootstrap interval (the goal
    metric keeps the interval ``mv`` stored), and permutation importance.
    """
    from loopml.model.evaluate import _bootstrap, _encode
    from loopml.model.search import goal_score

    y = _encode(model, holdout[model.target])
    X = holdout.drop(columns=[model.target])
    if model.task == "regression":
        scores = np.asarray(model.predict(X), dtype=float)
    else:
        scores = model.predict_proba(X)
        scores = scores[:, 1] if model.task == "binary" else scores
    k = len(model.classes)
    stored = ((mv.metrics or {}).get("holdout") or {})
    metrics = []
    for name in metric_names_for(model.task):
        try:
            value = goal_score(name, model.task, y, scores, model.threshold, k, weights=model.class_costs)
            boot = _bootstrap(name, model.task, y, scores, model.threshold, k, seed=0, n_boot=_BOOTSTRAP,
                              weights=model.class_costs)
            low, high = (float(v) for v in np.nanpercentile(boot, [2.5, 97.5]))
        except ValueError:
            continue
        if name == stored.get("metric"):  # the run's own interval (more resamples) for the goal metric
            low, high = stored.get("ci_low", low), stored.get("ci_high", high)
        metrics.append({"name": name, "value": float(value), "low": low, "high": high,
                        "goal": name == business.get("metric")})
    return {"task": model.task, "y": y, "scores": scores, "threshold": model.threshold, "rows": len(y),
            "metrics": metrics, "importance": _importance(model, X, y), "classes": [str(c) for c in model.classes],
            "class_costs": model.class_costs}


def _threshold_free(task: str, y: np.ndarray, scores: np.ndarray, k: int) -> float:
    from sklearn.metrics import r2_score, roc_auc_score

    if task == "regression":
        return float(r2_score(y, scores))
    if task == "binary":
        return float(roc_auc_score(y, scores))
    return float(roc_auc_score(y, scores, multi_class="ovr", labels=list(range(k))))


def _importance(model: TrainedModel, X: pd.DataFrame, y: np.ndarray) -> dict[str, float] | None:
    """Each column's share of the drop in the task's threshold-free score when it alone is shuffled."""
    rows = min(len(X), _IMPORTANCE_ROWS)
    X, y = X.iloc[:rows].reset_index(drop=True), y[:rows]
    k = len(model.classes)

    def scored(frame: pd.DataFrame) -> float:
        if model.task == "regression":
            return _threshold_free("regression", y, np.asarray(model.predict(frame), dtype=float), k)
        proba = model.predict_proba(frame)
        return _threshold_free(model.task, y, proba[:, 1] if model.task == "binary" else proba, k)

    try:
        base = scored(X)
    except ValueError:  # one class only in the holdout
        return None
    rng = np.random.default_rng(0)
    drops = {}
    for name in X.columns:
        shuffled = X.copy()
        shuffled[name] = rng.permutation(shuffled[name].to_numpy())
        drops[name] = max(base - scored(shuffled), 0.0)
    total = sum(drops.values())
    return None if total <= 0 else {c: v / total for c, v in sorted(drops.items(), key=lambda kv: -kv[1])}


def model_section(evidence: dict[str, Any], business: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """The leaderboard, the learning curve, the precision–recall or residual plot, importance and calibration."""
    charts = [c for c in (_learning_curve(evidence, business), _decision_chart(evaluation, business),
                          _importance_chart(evaluation), _calibration(evaluation)) if c is not None]
    board = evidence.get("leaderboard") or []
    point = evidence.get("operating_point") or {}
    return {"leaderboard": [{"rank": r.get("rank"), "family": r.get("family"), "params": r.get("params", ""),
                             "score": r.get("score"), "cv_score": r.get("cv_score"), "seconds": r.get("seconds"),
                             "source": r.get("source", "")} for r in board[:_LEADERBOARD_ROWS]],
            "selection_metric": evidence.get("selection_metric", ""), "metric": business.get("metric"),
            "family": evidence.get("family"), "plan": evidence.get("plan"), "notes": evidence.get("notes") or [],
            "trials": len(evidence.get("trials") or []), "charts": charts,
            "operating_point": {k: point.get(k) for k in ("threshold", "precision", "recall", "expected_cost_per_row")
                                if point.get(k) is not None},
            "searched": bool(evidence), "registered": "diagnosis" not in evidence}  # a missed goal is diagnosed


def _learning_curve(evidence: dict[str, Any], business: dict[str, Any]) -> dict[str, Any] | None:
    curve = evidence.get("learning_curve") or ((evidence.get("diagnosis") or {}).get("evidence") or {}) \
        .get("learning_curve") or []
    if not curve:
        return None
    rows = [float(p["rows"]) for p in curve]
    scores = [float(p["score"]) for p in curve]
    goal, greater = business.get("threshold"), business.get("greater_is_better", True)
    series = [XYSeries("out of fold, on a share of the training rows", rows, scores, mode="both")]
    vlines: list[tuple[float, str]] = []
    met = goal is not None and (scores[-1] >= goal if greater else scores[-1] <= goal)
    needed = None
    if len(curve) >= 2:
        slope, intercept = np.polyfit(np.log(rows), scores, 1)
        needed = None if met else _rows_for(goal, slope, intercept, greater)
        end = max(rows) * 4
        if needed is not None and max(rows) < needed <= max(rows) * 16:
            end = needed * 1.25
            vlines.append((needed, f"goal at ~{needed:,.0f} rows"))
        xs = list(np.geomspace(min(rows), end, 24))
        series.append(XYSeries("fit a + b·log(rows), extrapolated", xs, [float(intercept + slope * math.log(x))
                                                                        for x in xs], dashed=True))
    caption = ("the chosen model's goal metric out of fold on 25%, 50% and 100% of the training rows; "
               + _curve_words(met, needed, max(rows), extrapolated=len(curve) >= 2))
    chart = xy_chart(series, title=f"Learning curve: {business.get('metric')} by training rows",
                     x_label="training rows (log scale)", y_label=str(business.get("metric")), log_x=True,
                     hlines=[(goal, f"goal {goal:g}")] if goal is not None else (), vlines=vlines, width=_CHART_WIDTH)
    return {"svg": svg(chart), "caption": caption}


def _curve_words(met: bool, needed: float | None, most: float, *, extrapolated: bool) -> str:
    """What the learning curve says about collecting rows, in words."""
    if met:
        return "with every training row the curve meets the goal"
    if not extrapolated:
        return "too few points to extrapolate"
    if needed is None:
        return "extrapolated, the curve does not reach the goal"
    if needed <= most:
        return "the fitted curve meets the goal within the rows used"
    if needed > _FAR * most:
        return f"extrapolated, the goal needs over {_FAR:,}× the rows used: more rows will not reach it"
    return f"extrapolated, the goal needs about {needed:,.0f} rows ({needed / most:.1f}× the rows used)"


def _rows_for(goal: float | None, slope: float, intercept: float, greater: bool) -> float | None:
    """Rows where score = intercept + slope·log(rows) reaches ``goal``, when the curve heads towards it."""
    if goal is None or slope == 0 or (slope > 0) != greater:
        return None
    log_rows = (goal - intercept) / slope
    return float(math.exp(min(log_rows, 40.0)))


def _decision_chart(evaluation: dict[str, Any], business: dict[str, Any]) -> dict[str, Any] | None:
    if not evaluation:
        return None
    y, scores, task = evaluation["y"], evaluation["scores"], evaluation["task"]
    if task == "binary":
        return _precision_recall(y, scores, evaluation["threshold"], business)
    if task == "regression":
        return _residuals(y, scores, business)
    predicted = decide(scores, evaluation["class_costs"])  # the model's own decisions, costs included
    recall = [float(np.mean(predicted[y == i] == i)) if (y == i).any() else float("nan")
              for i in range(scores.shape[1])]
    chart = bar_list(evaluation["classes"], recall, title="Recall per class on the holdout", percent=True,
                     x_label="share of the class's rows predicted as it", width=_CHART_WIDTH)
    return {"svg": svg(chart), "caption": "how much of each class the model finds on the locked holdout"}


def _precision_recall(y: np.ndarray, p: np.ndarray, threshold: float | None,
                      business: dict[str, Any]) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, p)
    keep = np.unique(np.linspace(0, len(recall) - 1, min(len(recall), _CURVE_POINTS)).astype(int))
    t = 0.5 if threshold is None else threshold
    pred = p >= t
    tp, fp, fn = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 1)).sum())
    at = (tp / (tp + fn) if tp + fn else 0.0, tp / (tp + fp) if tp + fp else 1.0)
    lines = _goal_lines(business)
    chart = xy_chart([XYSeries("precision–recall on the holdout", recall[keep].tolist(), precision[keep].tolist())],
                     title="Precision and recall on the locked holdout", x_label="recall", y_label="precision",
                     marker=Marker(at[0], at[1], f"threshold {t:.3g}"), hlines=lines["precision"],
                     vlines=lines["recall"], width=_CHART_WIDTH)
    return {"svg": svg(chart), "caption": f"the chosen operating point: threshold {t:.3g} gives recall {at[0]:.3f} "
                                          f"and precision {at[1]:.3f} on {len(y):,} holdout rows"
                                          + ("" if lines["any"] else f"; the goal ({business.get('goal_text')}) is "
                                             "not on these axes")}


def _goal_lines(business: dict[str, Any]) -> dict[str, Any]:
    """The goal's requirements on recall (vertical) and precision (horizontal), as reference lines."""
    needs = dict(business.get("with") or {})
    if business.get("metric") in ("recall", "precision") and business.get("threshold") is not None:
        needs[business["metric"]] = business["threshold"]
    recall = [(needs["recall"], f"recall ≥ {needs['recall']:g}")] if "recall" in needs else []
    precision = [(needs["precision"], f"precision ≥ {needs['precision']:g}")] if "precision" in needs else []
    return {"recall": recall, "precision": precision, "any": bool(recall or precision)}


def _residuals(y: np.ndarray, predicted: np.ndarray, business: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    take = np.sort(rng.choice(len(y), min(len(y), _SCATTER_POINTS), replace=False))
    residual = y - predicted
    metric, goal = business.get("metric"), business.get("threshold")
    lines: list[tuple[float, str]] = []
    if metric in ("rmse", "mae") and goal is not None:
        lines = [(goal, f"goal {metric} {goal:g}"), (-goal, f"−{goal:g}")]
    chart = xy_chart([XYSeries("holdout rows", predicted[take].tolist(), residual[take].tolist(), mode="points")],
                     title="Residuals on the locked holdout", x_label="predicted", y_label="actual − predicted",
                     hlines=lines, width=_CHART_WIDTH)
    rmse = float(np.sqrt(np.mean(residual ** 2)))
    return {"svg": svg(chart), "caption": f"{len(take):,} of {len(y):,} holdout rows; rmse {rmse:.4g}, "
                                          f"{np.mean(np.abs(residual) <= goal):.1%} of rows within ±{goal:g}"
            if lines else f"{len(take):,} of {len(y):,} holdout rows; rmse {rmse:.4g}"}


def _importance_chart(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    importance = evaluation.get("importance") if evaluation else None
    if not importance:
        return None
    shown = list(importance.items())[:_IMPORTANCE_SHOWN]
    chart = bar_list([c for c, _ in shown], [v for _, v in shown], title="Feature importance", percent=True,
                     x_label="share of the score lost when the column is shuffled", width=_CHART_WIDTH)
    metric = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "regression": "r2"}[evaluation["task"]]
    return {"svg": svg(chart), "caption": f"permutation importance on the holdout: each column's share of the drop in "
                                          f"{metric} when that column alone is shuffled"}


def _calibration(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    if not evaluation:
        return None
    y, scores, task = evaluation["y"], evaluation["scores"], evaluation["task"]
    if task == "binary":
        predicted, observed = scores, y.astype(float)
        what, x_label, y_label = "P(positive)", "mean predicted probability", "observed share positive"
    elif task == "multiclass":
        predicted, observed = scores.max(axis=1), (scores.argmax(axis=1) == y).astype(float)
        what, x_label, y_label = "the top class's probability", "mean confidence", "observed accuracy"
    else:
        predicted, observed = scores, y.astype(float)
        what, x_label, y_label = "the predicted value", "mean predicted", "mean actual"
    edges = np.unique(np.quantile(predicted, np.linspace(0, 1, _CALIBRATION_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, max(len(edges) - 2, 0))
    xs, ys, counts = [], [], []
    for b in range(max(len(edges) - 1, 1)):
        inside = bins == b
        if inside.any():
            xs.append(float(predicted[inside].mean()))
            ys.append(float(observed[inside].mean()))
            counts.append(int(inside.sum()))
    gap = float(np.sum(np.abs(np.array(xs) - np.array(ys)) * np.array(counts)) / max(sum(counts), 1))
    chart = xy_chart([XYSeries("holdout, per bin of equal rows", xs, ys, mode="both")],
                     title="Calibration: predicted against observed", x_label=x_label, y_label=y_label,
                     diagonal=True, width=_CHART_WIDTH)
    unit = "" if task == "regression" else " (expected calibration error)"
    return {"svg": svg(chart), "caption": f"{what} in {len(xs)} bins of about {len(y) // max(len(xs), 1):,} holdout "
                                          f"rows each; mean gap to the diagonal {gap:.3g}{unit}"}
