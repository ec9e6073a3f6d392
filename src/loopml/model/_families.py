"""The model families the search fits, each on exactly the rows it is given.

- ``linear``: logistic regression (classification) or ridge (regression) on the ``"linear"`` encoding;
- ``lightgbm``: gradient boosting on the ``"tree"`` encoding; in cross-validation every fold boosts at
  once and stops at the round count whose pooled out-of-fold score (the search's metric) is best
  (:func:`cross_fit_lgbm`); a single fit may early-stop on a seeded inner split instead;
- ``random_forest`` / ``extra_trees``: scikit-learn's forests on the ``"tree"`` encoding, stored as arrays.

Each family has a strong default (the portfolio) and an Optuna search space. The cleaner and the
preprocessor learn from the fitting rows as they are (before any resampling); only the estimator
sees rebalanced rows (class weights, or under/oversampling of the fitting rows only).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.data.cleaner import Cleaner
from loopml.errors import ModelError
from loopml.model._operating import choose_threshold
from loopml.model.artifact import KIND, raw_scores
from loopml.model.features import Preprocessor

if TYPE_CHECKING:
    import optuna

    from loopml.spec import CleanSpec

FAMILIES = ("linear", "lightgbm", "random_forest", "extra_trees")
LABELS = {"linear": "linear", "lightgbm": "LightGBM", "random_forest": "random forest", "extra_trees": "extra trees"}
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
_LGBM_TUNED_ROUNDS = 3000  # the tuned configurations' round cap; early stopping ends most far sooner
_EARLY_STOP_ROUNDS = 30
# Forests: 100 trees, leaves of a few rows and at most 2,048 leaves a tree keep the stored model to
# a few MB (every node is in the JSON) while scoring within a hair of fully grown trees.
_FOREST_BASE = {"n_estimators": 100, "max_features": "sqrt", "max_leaf_nodes": 2048}
_FOREST_DEFAULTS = {"random_forest": {"min_samples_leaf": 2}, "extra_trees": {"min_samples_leaf": 3}}
# What Optuna tries first, as values of the search space: the regimes the portfolio's defaults leave
# out. Weak signals (AUC near 0.65) need small trees and slow, regularised boosting, perhaps with
# categorical splits that send few levels one way (benefits' 51 states, bench split, 5 folds: AUC
# 0.6630 -> 0.6680 with at most 4; on 3 folds of the whole file no gain); smooth targets want fast,
# heavily L2-regularised boosting (computers' RMSE: 155 for the default, 149 there). The tuner starts
# there and lets the scores say which regime fits.
_WARM_STARTS: dict[str, list[dict[str, Any]]] = {
    "lightgbm": [{"learning_rate": 0.02, "num_leaves": 7, "min_data_in_leaf": 50, "feature_fraction": 0.7,
                  "bagging_fraction": 0.8, "lambda_l2": 5.0, "max_cat_threshold": 32},
                 {"learning_rate": 0.02, "num_leaves": 4, "min_data_in_leaf": 20, "feature_fraction": 0.8,
                  "bagging_fraction": 0.9, "lambda_l2": 1.0, "max_cat_threshold": 4},
                 {"learning_rate": 0.3, "num_leaves": 15, "min_data_in_leaf": 20, "feature_fraction": 0.9,
                  "bagging_fraction": 1.0, "lambda_l2": 100.0, "max_cat_threshold": 32},
                 {"learning_rate": 0.03, "num_leaves": 15, "min_data_in_leaf": 2, "feature_fraction": 0.7,
                  "bagging_fraction": 1.0, "lambda_l2": 1.0, "max_cat_threshold": 4}],
    "random_forest": [{"max_features": 0.3, "min_samples_leaf": 5, "max_leaf_nodes": 64}],
    "extra_trees": [{"max_features": 0.5, "min_samples_leaf": 5, "max_leaf_nodes": 64}],
}
# Threads: on small data OpenMP/joblib start-up and contention cost more than a second thread gains
# (LightGBM, 100 rounds on 3,500 rows: 0.2 s with 1 thread, 0.8-2.3 s with 2 on a shared 2-core machine).
_THREADS_FROM_ROWS = 20_000
_MIN_ROWS_EARLY_STOP = 100  # below this an inner validation split is too small to stop on
# Cross-validated boosting looks at the pooled out-of-fold score every few rounds and stops once it
# has not improved for a while; the pooled score of all validation rows is smooth enough to stop on.
_CHECK_EVERY = 5
_PATIENCE = 50


# -- what one search shares ------------------------------------------------------------------------
@dataclass
class Setup:
    """What every fit and score in one search shares."""

    task: str
    k: int
    seed: int
    goal: Any
    costs: Any
    classes: list
    positive: Any
    target: str
    imbalance: str  # none | weights | undersample | oversample (resolved from the spec's policy)
    clean: CleanSpec | None = None  # the spec whose learned part each fit applies
    n_estimators: int | None = None  # the plan's cap on trees / boosting rounds
    notes: list[str] = field(default_factory=list)

    def threshold(self, y: np.ndarray, scores: np.ndarray) -> tuple[float | None, bool | None]:
        if self.task != "binary":
            return None, None
        return choose_threshold(y, scores, metric=self.goal.metric, goal_with=dict(self.goal.with_), costs=self.costs)

    def cap(self, n: int) -> int:
        return n if self.n_estimators is None else min(n, self.n_estimators)


# -- defaults and search spaces --------------------------------------------------------------------
def default_params(setup: Setup, family: str, config: int = 0) -> dict[str, Any]:
    """The portfolio's configuration ``config`` of ``family`` (LightGBM has several)."""
    if family == "linear":
        return linear_params(setup)
    if family == "lightgbm":
        params = {**_LGBM_BASE, **_LGBM_CONFIGS[config]}
        params["n_estimators"] = setup.cap(params["n_estimators"])
        return params
    if family in _FOREST_DEFAULTS:
        params = {**_FOREST_BASE, **_FOREST_DEFAULTS[family]}
        params["n_estimators"] = setup.cap(params["n_estimators"])
        return params
    raise ModelError(f"unknown model family {family!r}; one of {', '.join(FAMILIES)}")


def linear_params(setup: Setup, strength: float = 1.0) -> dict[str, Any]:
    if setup.task == "regression":
        return {"estimator": "Ridge", "alpha": float(strength)}
    return {"estimator": "LogisticRegression", "C": float(strength),
            "class_weight": "balanced" if setup.imbalance == "weights" else None}


def _space(setup: Setup, family: str) -> dict[str, Any]:
    """Optuna distributions of ``family``'s tuned parameters."""
    from optuna.distributions import FloatDistribution as F
    from optuna.distributions import IntDistribution as I

    if family == "linear":
        return {"alpha": F(1e-3, 1e3, log=True)} if setup.task == "regression" else {"C": F(1e-3, 1e2, log=True)}
    if family == "lightgbm":
        return {"learning_rate": F(0.01, 0.3, log=True), "num_leaves": I(4, 256, log=True),
                "min_data_in_leaf": I(2, 100, log=True), "feature_fraction": F(0.4, 1.0),
                "bagging_fraction": F(0.4, 1.0), "lambda_l2": F(1e-3, 1000.0, log=True),
                # LightGBM's cap on the levels one categorical split sends one way (its default: 32)
                "max_cat_threshold": I(1, 64, log=True)}
    return {"max_features": F(0.1, 1.0), "min_samples_leaf": I(1, 32, log=True),
            "max_leaf_nodes": I(8, _FOREST_BASE["max_leaf_nodes"], log=True)}


def warm_starts(family: str) -> list[dict[str, Any]]:
    """Values of ``family``'s search space that tuning tries before sampling: the regime its default leaves out.

    >>> warm_starts("random_forest")
    [{'max_features': 0.3, 'min_samples_leaf': 5, 'max_leaf_nodes': 64}]
    >>> warm_starts("linear")
    []
    """
    return [dict(values) for values in _WARM_STARTS.get(family, [])]


def suggest(setup: Setup, family: str, trial: optuna.trial.Trial) -> dict[str, Any]:
    """The full parameters of ``family`` for an Optuna trial of its search space."""
    from optuna.distributions import IntDistribution

    values = {name: (trial.suggest_int if isinstance(dist, IntDistribution) else trial.suggest_float)(
        name, dist.low, dist.high, log=dist.log) for name, dist in _space(setup, family).items()}
    if family == "linear":
        return linear_params(setup, values["alpha" if setup.task == "regression" else "C"])
    if family == "lightgbm":
        return {**values, "bagging_freq": 1, "n_estimators": setup.cap(_LGBM_TUNED_ROUNDS)}
    return {**default_params(setup, family), **values}


def as_prior(setup: Setup, family: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """``params`` (a portfolio trial) as values of the search space, for Optuna to learn from; None if outside."""
    if family == "linear":
        values = {"alpha": params.get("alpha")} if setup.task == "regression" else {"C": params.get("C")}
    elif family == "lightgbm":
        values = {"learning_rate": params.get("learning_rate"), "num_leaves": params.get("num_leaves"),
                  "min_data_in_leaf": params.get("min_data_in_leaf"),
                  "feature_fraction": params.get("feature_fraction", 1.0),
                  "bagging_fraction": params.get("bagging_fraction", 1.0) if params.get("bagging_freq") else 1.0,
                  "lambda_l2": max(params.get("lambda_l2", 0.0), 1e-3),  # 0 is the log scale's floor
                  "max_cat_threshold": params.get("max_cat_threshold", 32)}
        if params.get("extra_trees"):
            return None
    else:
        values = {"max_features": params.get("max_features"), "min_samples_leaf": params.get("min_samples_leaf"),
                  "max_leaf_nodes": params.get("max_leaf_nodes")}
    space = _space(setup, family)
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not space[n].low <= v <= space[n].high
           for n, v in values.items()):
        return None
    return values


# -- the fitting rows, prepared once ---------------------------------------------------------------
@dataclass
class Prepared:
    """One set of fitting rows after the learned cleaning and the preprocessor, in both encodings."""

    cleaner: Cleaner | None
    pre: Preprocessor
    Z: dict[str, np.ndarray]
    y: np.ndarray


def prepare(setup: Setup, X: pd.DataFrame, y: np.ndarray) -> Prepared:
    """Fit the cleaner and the preprocessor on exactly ``X`` and encode it (target codes out of fold)."""
    cleaner = Cleaner().fit(X, setup.clean) if setup.clean is not None else None
    cleaner = cleaner or None  # one that changes nothing is not stored with the model
    if cleaner:
        X = cleaner.transform(X)
    pre = Preprocessor()
    labels = y.astype(float) if setup.task == "regression" else y.astype(int)
    linear = pre.fit_transform(X, labels, kind="linear")
    return Prepared(cleaner, pre, {"linear": linear, "tree": pre.transform(X, "tree")}, y)


def encode(prepared: Prepared, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Rows ``prepared`` did not learn from, through its cleaner and preprocessor."""
    if prepared.cleaner:
        X = prepared.cleaner.transform(X)
    return {kind: prepared.pre.transform(X, kind) for kind in ("linear", "tree")}


# -- fitting ---------------------------------------------------------------------------------------
def rebalance(setup: Setup, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The training rows ``idx`` (positions into ``y``) randomly under- or oversampled to balance the classes.

    Only ever called on the rows a model fits on, so validation folds and the holdout keep their
    real class balance and the threshold is chosen on it.
    """
    if setup.imbalance not in ("undersample", "oversample"):
        return idx
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    sampler = (RandomUnderSampler if setup.imbalance == "undersample" else RandomOverSampler)(random_state=setup.seed)
    sampler.fit_resample(idx.reshape(-1, 1), y[idx])
    return idx[np.sort(sampler.sample_indices_)]


def balanced_weights(y: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(y, minlength=k)
    return (len(y) / (k * np.maximum(counts, 1)))[y]


def fit_estimator(setup: Setup, family: str, params: dict[str, Any], prepared: Prepared, *,
                  early_stop: bool, store: bool = True) -> tuple[dict[str, Any], dict[str, Any], int | None]:
    """Fit ``family`` on the prepared rows: (state, params as fitted, LightGBM's boosting rounds).

    ``store=False``: the state only needs to predict (out-of-fold scores), not to be written as JSON.
    """
    y = prepared.y
    Z = prepared.Z[KIND[family]]
    weights = balanced_weights(y, setup.k) if setup.imbalance == "weights" and setup.task != "regression" else None
    rounds = None
    if family == "linear":
        rows = rebalance(setup, np.arange(len(y)), y)
        state = _fit_linear(setup, Z[rows], y[rows], None if weights is None else weights[rows], params)
    elif family == "lightgbm":
        state, rounds = _fit_lgbm(setup, params, prepared.pre, Z, y, weights, early_stop)
    else:
        state = _fit_forest(setup, family, params, Z, y, weights, store)
    if setup.task != "regression":
        params = {**params, "imbalance": setup.imbalance}
    return state, params, rounds


def _fit_linear(setup: Setup, Z: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                params: dict[str, Any]) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from threadpoolctl import threadpool_limits

    # One BLAS thread: on matrices this small threads cost more than they gain (4x slower on 2 cores).
    with threadpool_limits(1, user_api="blas"):
        if setup.task == "regression":
            est = Ridge(alpha=float(params.get("alpha", 1.0))).fit(Z, y)
            return {"coef": est.coef_.tolist(), "intercept": float(est.intercept_)}
        seen = np.unique(y)
        if len(seen) < 2:
            raise ModelError(f"the fitting rows hold only class '{setup.classes[int(seen[0])]}'; a classifier "
                             "needs at least two classes in every fold (use fewer folds or no time_column)")
        with warnings.catch_warnings():
            # A not-quite-converged baseline is still a fair baseline; its CV score says how good it is.
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = LogisticRegression(C=float(params.get("C", 1.0)), max_iter=2000).fit(Z, y, sample_weight=weights)
    coef, intercept = est.coef_, est.intercept_
    if setup.task == "multiclass" and len(seen) < setup.k:  # a class absent from these rows: never predicted
        full_coef, full_icpt = np.zeros((setup.k, Z.shape[1])), np.full(setup.k, -30.0)
        full_coef[seen], full_icpt[seen] = coef, intercept
        coef, intercept = full_coef, full_icpt
    return {"coef": coef.tolist(), "intercept": intercept.tolist()}


def _threads(rows: int) -> int:
    return 1 if rows < _THREADS_FROM_ROWS else 2


def _fit_lgbm(setup: Setup, params: dict, pre: Preprocessor, Z: np.ndarray, y: np.ndarray,
              weights: np.ndarray | None, early_stop: bool) -> tuple[dict[str, Any], int]:
    import lightgbm as lgb

    lgb_params = _lgb_params(setup, params, len(y))
    cats = pre.categorical_indices("tree")
    rounds = int(params["n_estimators"])
    if early_stop and len(y) >= _MIN_ROWS_EARLY_STOP:
        # Stop on a seeded 10% inner split of the fitting rows: the fold's own validation rows stay unseen.
        inner = np.random.default_rng(setup.seed).permutation(len(y))
        val, fit = inner[: len(y) // 10], inner[len(y) // 10 :]
        fit = rebalance(setup, fit, y)  # early stopping judges on the real class balance
        w = (lambda idx: None) if weights is None else (lambda idx: weights[idx])
        dtrain = lgb.Dataset(Z[fit], label=y[fit], weight=w(fit), categorical_feature=cats)
        dval = lgb.Dataset(Z[val], label=y[val], weight=w(val), categorical_feature=cats, reference=dtrain)
        booster = lgb.train(lgb_params, dtrain, num_boost_round=rounds, valid_sets=[dval],
                            callbacks=[lgb.early_stopping(_EARLY_STOP_ROUNDS, verbose=False)])
        rounds = booster.best_iteration or rounds
    else:
        rows = rebalance(setup, np.arange(len(y)), y)
        w = None if weights is None else weights[rows]
        booster = lgb.train(lgb_params, lgb.Dataset(Z[rows], label=y[rows], weight=w, categorical_feature=cats),
                            num_boost_round=rounds)
    return {"booster": booster.model_to_string(num_iteration=rounds)}, rounds


def cross_fit_lgbm(setup: Setup, params: dict[str, Any], folds: list[tuple[Prepared, np.ndarray, np.ndarray]],
                   selection: str) -> tuple[list[np.ndarray], int]:
    """LightGBM boosted on every fold at once; each fold's validation scores at the best common round count.

    ``folds``: (the fold's prepared fitting rows, its validation rows in the ``"tree"`` encoding, their
    target codes). Every ``_CHECK_EVERY`` rounds the validation scores of all folds are pooled and
    ranked by ``selection`` (the search's metric, e.g. roc_auc); boosting stops ``_PATIENCE`` rounds
    after the best, or at ``params["n_estimators"]``. Each fold fits on all its rows (no inner split),
    and the rounds are chosen by the metric the search ranks by, not by the training loss: on a
    ranking goal the best AUC often comes long after the best log loss.
    """
    import lightgbm as lgb

    from loopml.model._ensemble import better, selection_score

    # Predicting without num_threads wakes every core's OpenMP thread: on a busy 2-core machine one
    # verbagg trial took 41 s instead of 3 s.
    threads = _threads(len(folds[0][0].y))
    boosters = []
    for prepared, _, _ in folds:
        booster = lgb.Booster({**_lgb_params(setup, params, len(prepared.y)), "metric": "None"},
                              _lgb_train_set(setup, prepared))
        boosters.append(booster)
    raw = [np.zeros((len(Z_val), setup.k) if setup.task == "multiclass" else len(Z_val)) for _, Z_val, _ in folds]
    y_all = np.concatenate([y_val for _, _, y_val in folds])
    cap = int(params["n_estimators"])
    best_value, best_round, done = float("nan"), cap, 0
    for r in range(1, cap + 1):
        for booster in boosters:
            booster.update()
        if r % _CHECK_EVERY and r != cap:
            continue
        # Only the trees added since the last look: the validation scores are kept as running raw sums.
        for i, (booster, (_, Z_val, _)) in enumerate(zip(boosters, folds, strict=True)):
            raw[i] = raw[i] + booster.predict(Z_val, start_iteration=done, num_iteration=r - done, raw_score=True,
                                              num_threads=threads)
        done = r
        value = selection_score(selection, y_all, _from_raw(setup.task, np.concatenate(raw)), setup.task)
        if better(selection, value, best_value):
            best_value, best_round = value, r
        elif r - best_round >= _PATIENCE:
            break
    scores = [np.asarray(b.predict(Z_val, num_iteration=best_round, num_threads=threads), dtype=float)
              for b, (_, Z_val, _) in zip(boosters, folds, strict=True)]
    return scores, best_round


def _from_raw(task: str, raw: np.ndarray) -> np.ndarray:
    """LightGBM's raw scores as its predictions: probabilities (sigmoid, softmax) or regression values."""
    if task == "binary":
        return 1.0 / (1.0 + np.exp(-raw))
    if task == "multiclass":
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return raw


def _lgb_params(setup: Setup, params: dict[str, Any], rows: int) -> dict[str, Any]:
    objective = {"binary": {"objective": "binary"}, "multiclass": {"objective": "multiclass", "num_class": setup.k},
                 "regression": {"objective": "regression"}}[setup.task]
    config = {k: v for k, v in params.items() if k != "n_estimators"}
    return {**objective, **config, "seed": setup.seed, "deterministic": True, "force_row_wise": True,
            "num_threads": _threads(rows), "verbose": -1}


def _lgb_train_set(setup: Setup, prepared: Prepared) -> Any:
    """All the prepared fitting rows as a LightGBM dataset, rebalanced or class-weighted as the setup says."""
    import lightgbm as lgb

    y = prepared.y
    rows = rebalance(setup, np.arange(len(y)), y)
    weights = balanced_weights(y, setup.k)[rows] if setup.imbalance == "weights" and setup.task != "regression" \
        else None
    return lgb.Dataset(prepared.Z["tree"][rows], label=y[rows], weight=weights,
                       categorical_feature=prepared.pre.categorical_indices("tree"))


def _fit_forest(setup: Setup, family: str, params: dict[str, Any], Z: np.ndarray, y: np.ndarray,
                weights: np.ndarray | None, store: bool) -> Any:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    from loopml.model._forest import export_forest

    classifier = setup.task != "regression"
    classes = {("random_forest", True): RandomForestClassifier, ("random_forest", False): RandomForestRegressor,
               ("extra_trees", True): ExtraTreesClassifier, ("extra_trees", False): ExtraTreesRegressor}
    cls = classes[(family, classifier)]
    rows = rebalance(setup, np.arange(len(y)), y)
    if classifier and np.unique(y[rows]).size < 2:
        raise ModelError(f"the fitting rows hold only class '{setup.classes[int(y[rows][0])]}'; a classifier "
                         "needs at least two classes in every fold (use fewer folds or no time_column)")
    kw = {k: params[k] for k in ("n_estimators", "max_features", "min_samples_leaf", "max_leaf_nodes") if k in params}
    est = cls(**kw, random_state=setup.seed, n_jobs=_threads(len(rows)))
    est.fit(Z[rows], y[rows], sample_weight=None if weights is None else weights[rows])
    return export_forest(est, task=setup.task, k=setup.k, packed=store)


def predict(setup: Setup, family: str, state: dict[str, Any], Z: dict[str, np.ndarray]) -> np.ndarray:
    """Raw scores of a fitted ``state`` on encoded rows (P(positive), n×k probabilities, or values)."""
    return raw_scores(family, state, Z[KIND[family]], setup.task, {})
