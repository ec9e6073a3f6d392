"""One dataset through FLAML: fit on the fixed split's training rows, score the holdout.

Run by ``bench/automl.py`` in FLAML's own venv (``bench/.venv-flaml``), one process per dataset:

    bench/.venv-flaml/bin/python bench/automl_flaml_runner.py BENCH_DIR SUITE DATASET BUDGET_S

Fits ``AutoML(time_budget=BUDGET_S, metric=..., task=..., seed=0, n_jobs=2, verbose=0)`` and prints one
``AUTOML_RESULT {json}`` line: the holdout scores (``score.py``'s definitions), the seconds ``fit`` took
and the learner FLAML chose with its hyperparameters (``best_config``). Input as FLAML expects it:
classification targets as strings, and pandas' string columns as ``object`` (FLAML encodes
``object``/``category`` columns as categorical).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automl_common import emit, load_split  # noqa: E402

# The bench manifest's metric -> FLAML's metric name; its task -> FLAML's task.
METRIC = {"roc_auc": "roc_auc", "roc_auc_ovr": "roc_auc_ovr", "rmse": "rmse"}
TASK = {"binary": "classification", "multiclass": "classification", "regression": "regression"}


def _as_flaml_frame(X):
    import pandas as pd

    X = X.copy()
    for col in X.columns:
        if pd.api.types.is_string_dtype(X[col].dtype) and not isinstance(X[col].dtype, pd.CategoricalDtype):
            X[col] = X[col].astype(object)
    return X


def main(bench_dir: str, suite: str, name: str, budget: str) -> None:
    started = time.perf_counter()
    warnings.filterwarnings("ignore")
    import numpy as np
    from flaml import AutoML

    meta, X_tr, X_te, y_tr, y_te, _split, score = load_split(Path(bench_dir), suite, name)
    task = meta["task"]
    X_tr, X_te = _as_flaml_frame(X_tr), _as_flaml_frame(X_te)
    if task != "regression":
        y_tr = y_tr.astype(str).astype(object)
        y_te = y_te.astype(str).astype(object)

    automl = AutoML()
    t0 = time.perf_counter()
    automl.fit(X_tr, y_tr, task=TASK[task], metric=METRIC[meta["metric"]], time_budget=float(budget),
               seed=0, n_jobs=2, verbose=0)
    fit_s = time.perf_counter() - t0

    if task == "binary":
        classes = [str(c) for c in automl.classes_]
        p_pos = automl.predict_proba(X_te)[:, classes.index(str(meta["positive_class"]))]
        scores = score.score_binary(y_te, p_pos, str(meta["positive_class"]))
    elif task == "multiclass":
        labels = [str(c) for c in automl.classes_]
        classes = sorted(set(y_tr.tolist()) | set(y_te.tolist()))
        proba = np.asarray(automl.predict_proba(X_te))
        scores = score.score_multiclass(y_te, proba[:, [labels.index(c) for c in classes]], classes)
    else:
        scores = score.score_regression(y_te, automl.predict(X_te))

    import flaml

    emit({
        "tool": "flaml", "dataset": name, "task": task, "metric": meta["metric"],
        "score": scores[meta["metric"]], "scores": scores,
        "fit_s": round(fit_s, 2), "total_s": round(time.perf_counter() - started, 2),
        "model": automl.best_estimator, "config": _plain(automl.best_config),
        "trials": len(automl.config_history), "version": flaml.__version__,
    })


def _plain(config: dict) -> dict:
    """FLAML's chosen hyperparameters as JSON values (numpy scalars become Python numbers)."""
    return {k: v.item() if hasattr(v, "item") else v for k, v in (config or {}).items()}


if __name__ == "__main__":
    main(*sys.argv[1:5])
