"""One dataset through loopml's Model stage: fit on the fixed split's training rows, score the holdout.

Run by ``bench/automl.py`` in loopml's own interpreter, one process per dataset:

    python bench/automl_loopml_runner.py BENCH_DIR SUITE DATASET BUDGET_S

Prints one ``AUTOML_RESULT {json}`` line: the holdout scores (``score.py``'s definitions), the seconds
``search`` took, the chosen family and the number of candidates tried.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automl_common import emit, load_split  # noqa: E402

# The bench manifest's metric -> loopml's goal metric name (src/loopml/business/metrics.py).
METRIC = {"roc_auc": "roc_auc", "roc_auc_ovr": "roc_auc_ovr", "rmse": "rmse"}


def main(bench_dir: str, suite: str, name: str, budget: str) -> None:
    started = time.perf_counter()
    from loopml.business.metrics import METRICS
    from loopml.model import SearchPlan, search
    from loopml.spec import GoalSpec

    meta, X_tr, X_te, y_tr, y_te, _split, score = load_split(Path(bench_dir), suite, name)
    target, task = meta["target"], meta["task"]
    metric = METRIC[meta["metric"]]
    # A goal no model can miss: the benchmark compares scores, not the gate.
    goal = (GoalSpec(metric=metric, at_least=0.0) if METRICS[metric].greater_is_better
            else GoalSpec(metric=metric, at_most=1e300))
    train = X_tr.copy()
    train[target] = y_tr.to_numpy()
    positive = meta.get("positive_class") if task == "binary" else None

    t0 = time.perf_counter()
    result = search(train, target=target, task=task, goal=goal, positive=positive,
                    plan=SearchPlan(seed=0), budget_s=float(budget))
    fit_s = time.perf_counter() - t0
    model = result.model

    if task == "binary":
        classes = list(model.classes)
        p_pos = model.predict_proba(X_te)[:, classes.index(model.positive)]
        scores = score.score_binary(y_te, p_pos, meta["positive_class"])
    elif task == "multiclass":
        classes = sorted(set(y_tr.tolist()) | set(y_te.tolist()))
        proba = model.predict_proba(X_te)
        order = [list(model.classes).index(c) for c in classes]
        scores = score.score_multiclass(y_te, proba[:, order], classes)
    else:
        scores = score.score_regression(y_te, model.predict(X_te))

    emit({
        "tool": "loopml", "dataset": name, "task": task, "metric": meta["metric"],
        "score": scores[meta["metric"]], "scores": scores,
        "fit_s": round(fit_s, 2), "total_s": round(time.perf_counter() - started, 2),
        "model": model.family, "candidates": len(result.candidates), "skipped": result.skipped,
        "cv_score": result.cv_score,
    })


if __name__ == "__main__":
    main(*sys.argv[1:5])
