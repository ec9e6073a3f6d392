"""Candidate search: the locked holdout split, cross-validated candidates, the binary threshold.

:func:`search` scores a linear baseline and a few LightGBM configurations by the goal metric on
k-fold out-of-fold predictions of the training rows, chooses each binary candidate's decision
threshold on those same predictions (never on the holdout), refits the best on all training rows
and returns it with the evidence: every candidate's score, a learning curve, the operating point.

>>> from sklearn.datasets import load_iris
>>> from loopml.spec import GoalSpec
>>> df = load_iris(as_frame=True).frame
>>> train, holdout = split_holdout(df, "target", "multiclass", 0.2, seed=0)
>>> result = search(train, target="target", task="multiclass", goal=GoalSpec(metric="accuracy", at_least=0.9),
...                 plan=SearchPlan(families=("linear",), folds=3))
>>> result.model.family, result.cv_score > 0.9
('linear', True)
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from loopml.business.metrics import METRICS, score
from loopml.errors import ModelError
from loopml.model._operating import choose_threshold, from_counts
from loopml.model.artifact import TrainedModel, _plain
from loopml.model.features import Preprocessor, _key

__all__ = ["CandidateResult", "SearchPlan", "SearchResult", "search", "split_holdout"]

FAMILIES = ("linear", "lightgbm")
MAX_LGBM_CONFIGS = 8
# Config 1 is a strong default; the rest vary capacity, regularisation and sampling, one idea each.
_LGBM_BASE = {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20, "n_estimators": 300}
_LGBM_CONFIGS: list[dict[str, Any]] = [
    {},
    {"num_leaves": 15, "min_data_in_leaf": 40, "lambda_l2": 1.0},
    {"num_leaves": 63, "min_data_in_leaf": 10},
    {"feature_fraction": 0.7, "bagging_fraction": 0.8, "bagging_freq": 1},
    {"num_leaves": 7, "min_data_in_leaf": 50, "lambda_l2": 5.0},
    {"learning_rate": 0.02, "n_estimators": 800, "feature_fraction": 0.8},
    {"num_leaves": 127, "min_data_in_leaf": 5, "lambda_l2": 1.0, "feature_fraction": 0.8},
    {"extra_trees": True, "feature_fraction": 0.8},
]
_EARLY_STOP_ROUNDS = 30
# LightGBM threads: on small data OpenMP start-up and contention cost more than a second thread gains
# (100 rounds on 3,500 rows: 0.2 s with 1 thread, 0.8-2.3 s with 2 on a shared 2-core machine).
_THREADS_FROM_ROWS = 20_000
_MIN_ROWS_EARLY_STOP = 100  # below this an inner validation split is too small to stop on


# -- the locked holdout --------------------------------------------------------------------------
def split_holdout(df: pd.DataFrame, target: str, task: str, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off the locked holdout (``fraction`` of rows), stratified by class for classification.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10})
    >>> train, holdout = split_holdout(df, "y", "binary", 0.2, seed=0)
    >>> len(train), sorted(holdout["y"])
    (16, ['a', 'a', 'b', 'b'])
    """
    _check_target(df, target)
    stratify = None
    if task != "regression":
        keys = pd.Series([_key(v) for v in df[target].tolist()], index=df.index)
        counts = keys.value_counts()
        if counts.min() < 2:
            raise ModelError(
                f"class '{counts.idxmin()}' of target '{target}' has 1 row; a stratified holdout needs "
                "at least 2 rows per class: collect more rows or merge the class"
            )
        stratify = keys
    train, holdout = train_test_split(df, test_size=fraction, random_state=seed, stratify=stratify)
    return train, holdout


# -- the plan ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchPlan:
    """Which candidates :func:`search` tries, and how it cross-validates them.

    >>> SearchPlan().widen().describe()
    'linear baseline + 4 LightGBM configurations, 5-fold cross-validation, seed 0'
    """

    families: tuple[str, ...] = ("linear", "lightgbm")
    lgbm_configs: int = 1
    folds: int = 5
    seed: int = 0
    n_estimators: int | None = None  # cap on boosting rounds (fast tests, tight budgets)

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ModelError(f"families must be a non-empty subset of {FAMILIES}; got {self.families!r} instead")
        if not 1 <= self.lgbm_configs <= MAX_LGBM_CONFIGS:
            raise ModelError(f"lgbm_configs must be in 1..{MAX_LGBM_CONFIGS}; got {self.lgbm_configs!r} instead")
        if self.folds < 2:
            raise ModelError(f"folds must be at least 2; got {self.folds!r} instead")
        if self.n_estimators is not None and self.n_estimators < 1:
            raise ModelError(f"n_estimators must be positive or None; got {self.n_estimators!r} instead")

    @property
    def can_widen(self) -> bool:
        """Whether :meth:`widen` would try more candidates than this plan does."""
        return "lightgbm" not in self.families or self.lgbm_configs < MAX_LGBM_CONFIGS

    def widen(self) -> SearchPlan:
        """The next, wider plan: 1 → 4 → 8 LightGBM configurations (adds LightGBM if absent)."""
        families = self.families if "lightgbm" in self.families else (*self.families, "lightgbm")
        return replace(self, families=families, lgbm_configs=4 if self.lgbm_configs < 4 else MAX_LGBM_CONFIGS)

    def describe(self) -> str:
        parts = []
        if "linear" in self.families:
            parts.append("linear baseline")
        if "lightgbm" in self.families:
            parts.append(f"{self.lgbm_configs} LightGBM configuration{'s' if self.lgbm_configs > 1 else ''}")
        cap = f", at most {self.n_estimators} trees" if self.n_estimators else ""
        return f"{' + '.join(parts)}, {self.folds}-fold cross-validation{cap}, seed {self.seed}"

    def candidates(self) -> list[tuple[str, dict[str, Any]]]:
        """(family, params) for each candidate, in the order they are tried."""
        out: list[tuple[str, dict[str, Any]]] = []
        if "linear" in self.families:
            out.append(("linear", {}))
        if "lightgbm" in self.families:
            for config in _LGBM_CONFIGS[: self.lgbm_configs]:
                params = {**_LGBM_BASE, **config}
                if self.n_estimators is not None:
                    params["n_estimators"] = min(params["n_estimators"], self.n_estimators)
                out.append(("lightgbm", params))
        return out


# -- results -------------------------------------------------------------------------------------
@dataclass
class CandidateResult:
    """One candidate's cross-validated score at its own threshold."""

    family: str
    params: dict[str, Any]
    cv_score: float
    threshold: float | None
    constraint_met: bool | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """The chosen model and the evidence behind it."""

    model: TrainedModel
    candidates: list[CandidateResult]
    metric: str
    cv_score: float
    learning_curve: list[dict[str, Any]]
    operating_point: dict[str, Any]
    seconds: float = 0.0
    skipped: int = 0  # candidates not tried because the budget ran out
    # Out-of-fold target codes and scores of the chosen candidate, for diagnosis.
    oof_target: np.ndarray | None = field(default=None, repr=False, compare=False)
    oof_scores: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "cv_score": self.cv_score,
            "model": {"family": self.model.family, "params": self.model.params, "threshold": self.model.threshold},
            "candidates": [c.to_dict() for c in self.candidates],
            "learning_curve": self.learning_curve,
            "operating_point": self.operating_point,
            "seconds": self.seconds,
            "skipped": self.skipped,
        }


# -- the search ----------------------------------------------------------------------------------
def search(
    train: pd.DataFrame,
    *,
    target: str,
    task: str,
    goal: Any,
    costs: Any = None,
    positive: Any = None,
    plan: SearchPlan,
    budget_s: float | None = None,
) -> SearchResult:
    """Cross-validate the plan's candidates on ``train``; refit the best (by the goal metric) on all of it.

    ``goal`` is a :class:`loopml.spec.GoalSpec`, ``costs`` a :class:`loopml.spec.CostsSpec` or None.
    Once ``budget_s`` seconds have passed no further candidate is started (the first two always run).
    """
    started = time.perf_counter()
    metric = METRICS.get(goal.metric)
    if metric is None or task not in metric.tasks:
        raise ModelError(f"goal metric '{goal.metric}' does not fit task '{task}'")
    _check_target(train, target)
    y, classes, positive = _encode_target(train[target], task, positive)
    X = train.drop(columns=[target])
    setup = _Setup(task=task, k=len(classes), seed=plan.seed, goal=goal, costs=costs, classes=classes,
                   positive=positive, target=target, balanced=_is_imbalanced(y, task))

    results: list[tuple[CandidateResult, np.ndarray]] = []
    todo = plan.candidates()
    for i, (family, params) in enumerate(todo):
        params = _linear_params(setup) if family == "linear" else params
        if i >= 2 and budget_s is not None and time.perf_counter() - started > budget_s:
            break
        t0 = time.perf_counter()
        scores, rounds = _cross_val(setup, family, params, X, y, plan.folds)
        if family == "lightgbm":
            # The refit uses the typical early-stopped length seen across folds.
            params = {**params, "n_estimators": int(np.median(rounds))} if rounds else params
        threshold, met = setup.threshold(y, scores)
        cv = setup.score(y, scores, threshold)
        results.append((CandidateResult(family, params, cv, threshold, met, round(time.perf_counter() - t0, 3)), scores))

    def rank(item: tuple[CandidateResult, np.ndarray]) -> tuple:
        c = item[0]
        return (c.constraint_met is not False, c.cv_score if goal.greater_is_better else -c.cv_score)

    best, best_scores = max(results, key=rank)  # max keeps the first of equals: the simpler family
    model, _ = _fit(setup, best.family, best.params, X, y, early_stop=False)
    model.threshold = best.threshold
    return SearchResult(
        model=model,
        candidates=[c for c, _ in results],
        metric=goal.metric,
        cv_score=best.cv_score,
        learning_curve=_learning_curve(setup, best.family, best.params, X, y),
        operating_point=_operating_point(setup, y, best_scores, best),
        seconds=round(time.perf_counter() - started, 3),
        skipped=len(todo) - len(results),
        oof_target=y,
        oof_scores=best_scores,
    )


@dataclass
class _Setup:
    """What every fit and score in one search shares."""

    task: str
    k: int
    seed: int
    goal: Any
    costs: Any
    classes: list
    positive: Any
    target: str
    balanced: bool  # weight classes inversely to their frequency

    def threshold(self, y: np.ndarray, scores: np.ndarray) -> tuple[float | None, bool | None]:
        if self.task != "binary":
            return None, None
        return choose_threshold(y, scores, metric=self.goal.metric, goal_with=dict(self.goal.with_), costs=self.costs)

    def score(self, y: np.ndarray, scores: np.ndarray, threshold: float | None) -> float:
        return goal_score(self.goal.metric, self.task, y, scores, threshold, self.k)


def goal_score(name: str, task: str, y: np.ndarray, scores: np.ndarray, threshold: float | None, k: int) -> float:
    """Metric ``name`` of encoded targets ``y`` and model scores (P(positive), n×k probabilities or values)."""
    if task == "regression":
        return score(name, y, y_pred=scores)
    if task == "binary":
        return score(name, y, y_pred=(scores >= (0.5 if threshold is None else threshold)).astype(int), y_proba=scores)
    return score(name, y, y_pred=scores.argmax(axis=1), y_proba=scores, labels=list(range(k)))


def _check_target(df: pd.DataFrame, target: str) -> None:
    if target not in df.columns:
        raise ModelError(f"target column '{target}' is not in the data; columns: {', '.join(map(str, df.columns))}")
    missing = int(df[target].isna().sum())
    if missing:
        raise ModelError(f"target '{target}' has {missing} missing value(s); the Data stage should drop those rows")


def _encode_target(y: pd.Series, task: str, positive: Any) -> tuple[np.ndarray, list, Any]:
    """Target as codes (binary 0/1 with 1 = positive, multiclass 0..k-1) or floats; plus classes and positive."""
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_bool_dtype(y.dtype):
            raise ModelError(f"a regression target must be numeric; '{y.name}' has dtype {y.dtype}")
        return y.to_numpy(dtype=float), [], None
    keys = np.array([_key(v) for v in y.tolist()], dtype=object)
    first: dict[str, Any] = {}
    for k, v in zip(keys, y.tolist()):
        first.setdefault(k, _plain(v))
    labels = list(first)
    if task == "binary":
        if len(labels) != 2:
            raise ModelError(f"a binary target needs exactly 2 classes; '{y.name}' has {len(labels)}: {labels[:10]}")
        if positive is not None:
            pos = _key(positive)
            if pos not in first:
                raise ModelError(f"positive class {positive!r} is not a value of '{y.name}'; found {labels}")
        else:  # the minority class is the one worth finding
            counts = pd.Series(keys).value_counts()
            pos = sorted(labels, key=lambda k: (-counts[k], k))[-1]
        neg = next(k for k in labels if k != pos)
        return (keys == pos).astype(int), [first[neg], first[pos]], first[pos]
    if len(labels) < 3:
        raise ModelError(f"a multiclass target needs at least 3 classes; '{y.name}' has {len(labels)}, use task 'binary'")
    try:
        ordered = sorted(labels, key=lambda k: first[k])
    except TypeError:  # mixed label types: order by their string form
        ordered = sorted(labels)
    code = {k: i for i, k in enumerate(ordered)}
    return np.array([code[k] for k in keys]), [first[k] for k in ordered], None


def _is_imbalanced(y: np.ndarray, task: str) -> bool:
    """Whether the minority class is under 20% of rows (then classes are weighted, "balanced")."""
    return task != "regression" and np.bincount(y).min() / len(y) < 0.2


def _balanced_weights(y: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(y, minlength=k)
    return (len(y) / (k * np.maximum(counts, 1)))[y]


def _folds(setup: _Setup, y: np.ndarray, folds: int):
    if setup.task == "regression":
        return KFold(n_splits=min(folds, len(y)), shuffle=True, random_state=setup.seed).split(y)
    smallest = int(np.bincount(y).min())
    if smallest < 2:
        raise ModelError(f"a class has {smallest} training row(s); cross-validation needs at least 2 per class")
    return StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=setup.seed).split(y, y)


def _cross_val(setup: _Setup, family: str, params: dict, X: pd.DataFrame, y: np.ndarray, folds: int) -> tuple[np.ndarray, list[int]]:
    """Out-of-fold scores, and the early-stopped number of rounds of each fold (LightGBM)."""
    oof = np.zeros((len(y), setup.k)) if setup.task == "multiclass" else np.zeros(len(y))
    rounds: list[int] = []
    for fit_idx, val_idx in _folds(setup, y, folds):
        model, n = _fit(setup, family, params, X.iloc[fit_idx], y[fit_idx], early_stop=True)
        oof[val_idx] = model._scores(X.iloc[val_idx])
        if n:
            rounds.append(n)
    return oof, rounds


def _fit(setup: _Setup, family: str, params: dict, X: pd.DataFrame, y: np.ndarray, *,
         early_stop: bool) -> tuple[TrainedModel, int | None]:
    """Fit one candidate; returns the model and, for LightGBM, its number of boosting rounds."""
    pre = Preprocessor().fit(X)
    weights = _balanced_weights(y, setup.k) if setup.balanced else None
    if family == "linear":
        state, params, rounds = _fit_linear(setup, pre.transform(X, "linear"), y, weights), _linear_params(setup), None
    else:
        state, rounds = _fit_lgbm(setup, params, pre, X, y, weights, early_stop)
    model = TrainedModel(task=setup.task, target=setup.target, family=family, preprocessor=pre, state=state,
                         classes=setup.classes, positive=setup.positive, params=params)
    return model, rounds


def _linear_params(setup: _Setup) -> dict[str, Any]:
    if setup.task == "regression":
        return {"estimator": "Ridge", "alpha": 1.0}
    return {"estimator": "LogisticRegression", "C": 1.0, "class_weight": "balanced" if setup.balanced else None}


def _fit_linear(setup: _Setup, Z: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from threadpoolctl import threadpool_limits

    # One BLAS thread: on matrices this small threads cost more than they gain (4x slower on 2 cores).
    with threadpool_limits(1, user_api="blas"):
        if setup.task == "regression":
            est = Ridge(alpha=1.0).fit(Z, y)
            return {"coef": est.coef_.tolist(), "intercept": float(est.intercept_)}
        with warnings.catch_warnings():
            # A not-quite-converged baseline is still a fair baseline; its CV score says how good it is.
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = LogisticRegression(C=1.0, max_iter=2000).fit(Z, y, sample_weight=weights)
    return {"coef": est.coef_.tolist(), "intercept": est.intercept_.tolist()}


def _fit_lgbm(setup: _Setup, params: dict, pre: Preprocessor, X: pd.DataFrame, y: np.ndarray,
              weights: np.ndarray | None, early_stop: bool) -> tuple[dict[str, Any], int]:
    import lightgbm as lgb

    Z = pre.transform(X, "tree")
    config = {k: v for k, v in params.items() if k != "n_estimators"}
    objective = {"binary": {"objective": "binary"}, "multiclass": {"objective": "multiclass", "num_class": setup.k},
                 "regression": {"objective": "regression"}}[setup.task]
    lgb_params = {**objective, **config, "seed": setup.seed, "deterministic": True, "force_row_wise": True,
                  "num_threads": 1 if len(y) < _THREADS_FROM_ROWS else 2, "verbose": -1}
    cats = pre.categorical_indices("tree")
    rounds = int(params["n_estimators"])
    if early_stop and len(y) >= _MIN_ROWS_EARLY_STOP:
        # Stop on a seeded 10% inner split of the fitting rows: the fold's own validation rows stay unseen.
        inner = np.random.default_rng(setup.seed).permutation(len(y))
        val, fit = inner[: len(y) // 10], inner[len(y) // 10 :]
        w = (lambda idx: None) if weights is None else (lambda idx: weights[idx])
        dtrain = lgb.Dataset(Z[fit], label=y[fit], weight=w(fit), categorical_feature=cats)
        dval = lgb.Dataset(Z[val], label=y[val], weight=w(val), categorical_feature=cats, reference=dtrain)
        booster = lgb.train(lgb_params, dtrain, num_boost_round=rounds, valid_sets=[dval],
                            callbacks=[lgb.early_stopping(_EARLY_STOP_ROUNDS, verbose=False)])
        rounds = booster.best_iteration or rounds
    else:
        booster = lgb.train(lgb_params, lgb.Dataset(Z, label=y, weight=weights, categorical_feature=cats),
                            num_boost_round=rounds)
    return {"booster": booster.model_to_string(num_iteration=rounds)}, rounds


def _learning_curve(setup: _Setup, family: str, params: dict, X: pd.DataFrame, y: np.ndarray) -> list[dict[str, Any]]:
    """Goal-metric OOF score (3-fold, same threshold rule) on 25%, 50% and 100% of the training rows."""
    points = []
    for fraction in (0.25, 0.5, 1.0):
        idx = np.arange(len(y))
        if fraction < 1.0:
            strat = None if setup.task == "regression" else y
            try:
                idx, _ = train_test_split(idx, train_size=fraction, random_state=setup.seed, stratify=strat)
            except ValueError:
                continue  # too few rows of some class for this fraction
        if len(idx) < 30 or (setup.task != "regression" and np.bincount(y[idx], minlength=setup.k).min() < 3):
            continue
        idx = np.sort(idx)
        scores, _ = _cross_val(setup, family, params, X.iloc[idx], y[idx], folds=3)
        threshold, _ = setup.threshold(y[idx], scores)
        points.append({"rows": int(len(idx)), "score": setup.score(y[idx], scores, threshold)})
    return points


def _operating_point(setup: _Setup, y: np.ndarray, scores: np.ndarray, best: CandidateResult) -> dict[str, Any]:
    if setup.task != "binary":
        return {"threshold": None}
    pred = scores >= best.threshold
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    point = {
        "threshold": best.threshold,
        "precision": float(from_counts("precision", tp, fp, fn, tn)),
        "recall": float(from_counts("recall", tp, fp, fn, tn)),
        "constraint_met": best.constraint_met,
    }
    if setup.costs is not None:
        cost = fp * setup.costs.false_positive + fn * setup.costs.false_negative
        point["expected_cost_per_row"] = cost / len(y)
    return point

