"""Training on a snapshot larger than memory: search a sample in memory, then LightGBM on every training row.

A parts snapshot (Parquet part files) is never read whole here. Each row is held out by a seeded draw
of (seed, part, row position), so the locked holdout needs no shuffle of the data. The usual
:func:`~loopml.model.search.search` runs on an in-memory random sample of the training rows (its
trials on the cluster's workers); the chosen LightGBM configuration is then trained on all training
rows across the workers with LightGBM's Dask integration, each partition encoded by the cleaner and
preprocessor the search learned on the sample. The result is an ordinary model artifact.

>>> training = train_in_partitions(parts, target="churned", task="binary", goal=goal, costs=None,
...                                positive="yes", plan=SearchPlan(trials=4), budget_s=None, clean=None,
...                                cluster=cluster, seed=0, holdout_fraction=0.2,
...                                sample_rows=sample_rows_for(parts, 2_000_000_000))  # doctest: +SKIP
>>> training.model.family, training.train_rows, training.evaluation.value  # doctest: +SKIP
('lightgbm', 8000312, 0.912)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.errors import ModelError
from loopml.model.artifact import TrainedModel
from loopml.model.evaluate import Evaluation, evaluate
from loopml.model.features import _key, call_feature_hook, load_feature_hook
from loopml.model.search import SearchPlan, SearchResult, search

if TYPE_CHECKING:
    from loopml.compute import DaskCluster
    from loopml.spec import CleanSpec

__all__ = ["LargeTraining", "sample_rows_for", "train_in_partitions"]

_MAX_ROUNDS = 3000  # the all-rows refit's boosting rounds never exceed the search's own round cap
_MIN_SAMPLE = 1000  # fewer sampled rows than this cannot cross-validate a search worth the name
_HEADROOM = 4  # a sampled row costs about 4 times its size while the search folds and encodes it
_TARGET, _WEIGHT = "__target__", "__weight__"  # columns of the encoded training frame besides the features


@dataclass
class LargeTraining:
    """The model trained on every training row, the sample search behind it, and its holdout evaluation.

    ``result`` is the search on the sample (its model is the sample-trained one the final fit
    started from); ``model`` is the final artifact; ``notes`` say what was sampled and decided.
    """

    result: SearchResult
    model: TrainedModel
    evaluation: Evaluation
    train_rows: int
    holdout_rows: int
    sample_rows: int
    fit_rows: int = 0  # the rows the final model was trained on: every training row, or the sample's
    partitions: int = 0
    workers: int = 0
    notes: list[str] = field(default_factory=list)
    sample: pd.DataFrame | None = field(default=None, repr=False)  # the training rows the search saw


def sample_rows_for(parts: list[Path], memory_limit: int) -> int:
    """How many rows fit in ``memory_limit`` bytes with room to search them: memory / (bytes per row × 4).

    Bytes per row are the in-memory size of the first rows of the first part.

    >>> sample_rows_for(parts, 2_000_000_000)  # doctest: +SKIP
    1250000
    """
    import pyarrow.parquet as pq

    counts = _part_rows(parts)
    head = next(pq.ParquetFile(parts[0]).iter_batches(batch_size=min(counts[0], 10_000))).to_pandas()
    per_row = max(1.0, float(head.memory_usage(deep=True).sum()) / max(len(head), 1))
    return max(_MIN_SAMPLE, int(memory_limit / (per_row * _HEADROOM)))


def train_in_partitions(parts: list[Path], *, target: str, task: str, goal: Any, costs: Any, positive: Any,
                        plan: SearchPlan, budget_s: float | None, clean: CleanSpec | None, cluster: DaskCluster,
                        seed: int, holdout_fraction: float, sample_rows: int,
                        progress: Callable[[int, float, float | None], None] | None = None,
                        replay: list[dict[str, Any]] | None = None, feature_hook: str | None = None,
                        hook_root: Path | None = None, study_storage: str | None = None,
                        study_name: str | None = None) -> LargeTraining:
    """Search a sample of the parts' training rows, train the chosen LightGBM on all of them, evaluate on the holdout.

    ``parts``: Parquet files holding the cleaned columns, target included. ``holdout_fraction`` of
    each part's rows (a seeded per-row draw) is the locked holdout; at most ``sample_rows`` training
    rows are searched in memory. The other arguments are those of :func:`~loopml.model.search.search`.
    """
    counts = _part_rows(parts)
    _check_columns(parts, target)
    if not 0 < holdout_fraction < 1:
        raise ModelError(f"holdout_fraction must be between 0 and 1; got {holdout_fraction!r}")
    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 2:
        raise ModelError(f"sample_rows must be a whole number of at least 2 rows; got {sample_rows!r}")
    held = [int(_holdout_mask(n, seed, i, holdout_fraction).sum()) for i, n in enumerate(counts)]
    train_counts = [n - h for n, h in zip(counts, held, strict=True)]
    train_rows, holdout_rows = sum(train_counts), sum(held)
    if not train_rows or not holdout_rows:
        raise ModelError(f"the {sum(counts):,} rows give {train_rows:,} training and {holdout_rows:,} holdout rows "
                         f"with holdout_fraction {holdout_fraction:g}; both need rows: add rows or change the fraction")
    notes = [f"the locked holdout is a seeded per-row draw of {holdout_fraction:.0%} of every part's rows "
             f"({holdout_rows:,} rows), not stratified by class"]

    sample = _gather(cluster, parts, "train", _quotas(train_counts, sample_rows), seed, holdout_fraction)
    notes.append(f"the search ran in memory on a random sample of {len(sample):,} of the {train_rows:,} training "
                 f"rows (sample_rows {sample_rows:,})" if len(sample) < train_rows
                 else f"the search ran in memory on all {train_rows:,} training rows (they fit in sample_rows)")
    kwargs = {"target": target, "task": task, "goal": goal, "costs": costs, "positive": positive, "plan": plan,
              "clean": clean, "feature_hook": feature_hook, "hook_root": hook_root, "compute": cluster}
    result = search(sample, budget_s=budget_s, progress=progress, replay=replay, study_storage=study_storage,
                    study_name=study_name, **kwargs)
    if len(sample) < train_rows:  # only LightGBM trains on more rows than the sample
        result = _lightgbm_result(result, sample, kwargs, notes)

    model, fitted_rows = result.model, len(sample)
    if result.model.family == "lightgbm" and len(sample) < train_rows:
        model, fitted_rows = _fit_all_rows(result, cluster, parts, train_rows, len(sample), seed, holdout_fraction,
                                           plan.n_estimators, notes)
        notes.append("the threshold and calibration are the sample search's, chosen on its out-of-fold scores; "
                     "the holdout stays locked")
        if result.label_issues.get("dropped"):
            notes.append("rows whose label is likely wrong were found and dropped in the sample only; the all-rows "
                         "fit keeps every training row")
    elif result.model.family != "lightgbm":
        notes.append(f"the chosen model ({result.model.family}) is not LightGBM and no LightGBM trial ran, so the "
                     f"model is the one trained on the {len(sample):,} sampled rows")

    if holdout_rows <= sample_rows:
        holdout = _gather(cluster, parts, "holdout", [-1] * len(parts), seed, holdout_fraction)
    else:
        holdout = _gather(cluster, parts, "holdout", _quotas(held, sample_rows), seed, holdout_fraction)
        notes.append(f"the holdout ({holdout_rows:,} rows) is larger than sample_rows, so it is evaluated on a "
                     f"random sample of {len(holdout):,} of its rows")
    evaluation = evaluate(model, holdout, goal, seed=seed, costs=costs)
    return LargeTraining(result=result, model=model, evaluation=evaluation, train_rows=train_rows,
                         holdout_rows=holdout_rows, sample_rows=len(sample), fit_rows=fitted_rows,
                         partitions=len(parts), workers=cluster.workers, notes=notes, sample=sample)


def locked_holdout(parts: list[Path], *, seed: int, fraction: float, max_rows: int | None = None) -> pd.DataFrame:
    """The locked holdout of a parts snapshot as :func:`train_in_partitions` drew it, read here part by part.

    With ``max_rows`` below the holdout's size, the same seeded sample of that many rows the run evaluated on.

    >>> locked_holdout(store.snapshot_parts(snapshot), seed=0, fraction=0.2, max_rows=50_000)  # doctest: +SKIP
    """
    counts = _part_rows(parts)
    held = [int(_holdout_mask(n, seed, i, fraction).sum()) for i, n in enumerate(counts)]
    quotas = [-1] * len(parts) if max_rows is None or sum(held) <= max_rows else _quotas(held, max_rows)
    return pd.concat([_read_side(str(p), i, q, side="holdout", seed=seed, fraction=fraction)
                      for i, (p, q) in enumerate(zip(parts, quotas, strict=True))], ignore_index=True)


# -- reading the parts -----------------------------------------------------------------------------
def _part_rows(parts: list[Path]) -> list[int]:
    """Rows of each part, from its Parquet footer; an empty list, a missing or empty part is an error."""
    import pyarrow.parquet as pq

    if not isinstance(parts, (list, tuple)) or not parts:
        raise ModelError(f"expected a non-empty list of Parquet part files to train on; got {parts!r}: "
                         "store the snapshot with Store.save_snapshot_parts")
    counts = []
    for part in parts:
        if not Path(part).is_file():
            raise ModelError(f"snapshot part {part} does not exist; re-run the Data stage to write it again")
        n = pq.ParquetFile(part).metadata.num_rows
        if n == 0:
            raise ModelError(f"snapshot part {part} holds no rows; every part needs rows: drop it from the list")
        counts.append(int(n))
    return counts


def _check_columns(parts: list[Path], target: str) -> None:
    import pyarrow.parquet as pq

    for part in parts:
        names = pq.read_schema(part).names
        if target not in names:
            raise ModelError(f"target column '{target}' is not in snapshot part {Path(part).name}; columns: "
                             f"{', '.join(names)}; check business.target")


def _holdout_mask(rows: int, seed: int, part: int, fraction: float) -> np.ndarray:
    """Which rows of part ``part`` are held out: a draw seeded by (seed, part), one number per row position."""
    return np.random.default_rng([seed % 2**32, part, 0]).random(rows) < fraction


def _quotas(counts: list[int], total: int) -> list[int]:
    """At most ``total`` rows spread over the parts in proportion to ``counts`` (largest remainders first).

    >>> _quotas([10, 30], 20), _quotas([3, 4], 100)
    ([5, 15], [3, 4])
    """
    if total >= sum(counts):
        return list(counts)
    exact = [total * n / sum(counts) for n in counts]
    out = [math.floor(x) for x in exact]
    for i in sorted(range(len(counts)), key=lambda i: out[i] - exact[i])[: total - sum(out)]:
        out[i] += 1
    return out


def _read_side(path: str, part: int, quota: int, *, side: str, seed: int, fraction: float) -> pd.DataFrame:
    """The training or holdout rows of one part, in file order; ``quota`` >= 0 keeps a seeded sample of that many."""
    frame = pd.read_parquet(path)
    mask = _holdout_mask(len(frame), seed, part, fraction)
    rows = np.flatnonzero(mask if side == "holdout" else ~mask)
    if 0 <= quota < len(rows):
        rows = np.sort(np.random.default_rng([seed % 2**32, part, 1]).choice(rows, size=quota, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def _side(parts: list[Path], side: str, quotas: list[int], seed: int, fraction: float) -> Any:
    """One side (training or holdout rows) of the parts as a dask frame, one partition per part."""
    import dask.dataframe as dd

    return dd.from_map(_read_side, [str(p) for p in parts], list(range(len(parts))), quotas, side=side, seed=seed,
                       fraction=fraction, meta=_meta(parts[0]), enforce_metadata=False)


def _gather(cluster: DaskCluster, parts: list[Path], side: str, quotas: list[int], seed: int,
            fraction: float) -> pd.DataFrame:
    """Rows read on the workers and brought here as one pandas frame (a sample, or a side that fits)."""
    frame = cluster.client.compute(_side(parts, side, quotas, seed, fraction), sync=True)
    return frame.reset_index(drop=True)


def _meta(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return next(pq.ParquetFile(path).iter_batches(batch_size=1)).to_pandas().iloc[:0]


# -- the final fit ---------------------------------------------------------------------------------
def _lightgbm_result(result: SearchResult, sample: pd.DataFrame, kwargs: dict[str, Any],
                     notes: list[str]) -> SearchResult:
    """``result``, or when its model is not LightGBM, the best LightGBM trial replayed on the same sample.

    Only LightGBM trains across the cluster; the replay gives that trial its own calibration,
    threshold and out-of-fold evidence, while the leaderboard stays the whole search's.
    """
    chosen = result.model.family
    if chosen == "lightgbm":
        return result
    lgbm = [i for i, t in enumerate(result.trials) if t["family"] == "lightgbm" and t.get("score") is not None]
    if not lgbm:
        return result
    best = (max if _higher_is_better(result) else min)(lgbm, key=lambda i: result.trials[i]["score"])
    single = search(sample, replay=[result.trials[best]], **kwargs)
    notes.append(f"the sample search chose {chosen} ({result.selection_metric} {_fmt(_chosen_score(result))} out of "
                 f"fold); only LightGBM trains on all rows, so its best trial #{best} "
                 f"({result.selection_metric} {_fmt(result.trials[best]['score'])}) is the final model")
    ensemble = {**result.ensemble, "used": False} if result.ensemble else result.ensemble
    return replace(result, model=single.model, cv_score=single.cv_score, operating_point=single.operating_point,
                   learning_curve=single.learning_curve, oof_target=single.oof_target, oof_scores=single.oof_scores,
                   ensemble=ensemble, imbalance=single.imbalance)


def _higher_is_better(result: SearchResult) -> bool:
    from loopml.model._ensemble import SELECTION

    return bool(SELECTION.get(result.selection_metric, True))


def _chosen_score(result: SearchResult) -> float | None:
    if result.ensemble.get("used"):
        return result.ensemble.get("ensemble_score")
    return result.ensemble.get("single_score") if result.ensemble else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class _Encoder:
    """The sample model's feature hook, cleaner and preprocessor, applied to one partition on a worker."""

    def __init__(self, model: TrainedModel):
        self.hook, self.root = model.feature_hook, model.root
        self.cleaner, self.pre = model.cleaner, model.preprocessor
        self.task, self.target = model.task, model.target
        self.codes = {_key(c): i for i, c in enumerate(model.classes)}

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[frame[self.target].notna()]
        X = frame.drop(columns=[self.target])
        if self.hook is not None:
            X = call_feature_hook(load_feature_hook(self.hook, self.root), X, self.hook)
        if self.cleaner:
            X = self.cleaner.transform(X)
        Z = self.pre.transform(X, "tree").astype("float32")
        out = pd.DataFrame(Z, columns=[f"f{i}" for i in range(Z.shape[1])])
        y = frame[self.target]
        out[_TARGET] = y.to_numpy(dtype=float) if self.task == "regression" else \
            np.array([self.codes.get(_key(v), -1) for v in y.tolist()], dtype=np.int64)
        return out

    def meta(self) -> pd.DataFrame:
        width = len(self.pre.feature_names("tree"))
        out = pd.DataFrame({f"f{i}": pd.Series(dtype="float32") for i in range(width)})
        out[_TARGET] = pd.Series(dtype=float if self.task == "regression" else np.int64)
        return out


def _with_weights(frame: pd.DataFrame, weights: dict[int, float]) -> pd.DataFrame:
    return frame.assign(**{_WEIGHT: frame[_TARGET].map(weights).astype(float)})


def _fit_all_rows(result: SearchResult, cluster: DaskCluster, parts: list[Path], train_rows: int, sample_rows: int,
                  seed: int, fraction: float, cap: int | None, notes: list[str]) -> tuple[TrainedModel, int]:
    """The chosen LightGBM configuration trained on every training row across the workers, as a model artifact."""
    from loopml.compute import fit_lightgbm_dask

    sampled = result.model
    encoder = _Encoder(sampled)
    encoded = _side(parts, "train", [-1] * len(parts), seed, fraction).map_partitions(encoder, meta=encoder.meta())
    client = cluster.client
    encoded = client.persist(encoded)  # encoded once: counted here, then boosted over many times
    weight = None
    if sampled.task != "regression":
        counts = client.compute(encoded[_TARGET].value_counts(), sync=True)
        unseen = int(counts.get(-1, 0))
        if unseen:
            raise ModelError(f"{unseen:,} training row(s) hold a class of '{sampled.target}' the sample of "
                             f"{sample_rows:,} rows never held (classes seen: {sampled.classes}); raise "
                             "compute.memory_limit so the sample is larger, or merge the rare class in the Data stage")
        policy = result.imbalance.get("applied", "none")
        if policy != "none":
            k, total = len(sampled.classes), int(counts.sum())
            weights = {int(c): total / (k * int(n)) for c, n in counts.items()}
            encoded = encoded.map_partitions(_with_weights, weights,
                                             meta=encoder.meta().assign(**{_WEIGHT: pd.Series(dtype=float)}))
            weight = _WEIGHT
            if policy != "weights":
                notes.append(f"the sample search rebalanced classes by {policy}; on all rows balanced class "
                             "weights do that instead (resampling a distributed frame would move every row)")
    params = {k: v for k, v in sampled.params.items() if k not in ("imbalance", "n_estimators")}
    rounds = _rounds(int(sampled.params["n_estimators"]), train_rows, sample_rows, cap)
    names = [f"f{i}" for i in sampled.preprocessor.categorical_indices("tree")]
    fit = fit_lightgbm_dask(cluster, encoded, target=_TARGET, task=sampled.task, seed=seed, weight=weight,
                            categorical=names, params={**params, "n_estimators": rounds, "deterministic": True,
                                                       "force_row_wise": True})
    notes.append(f"LightGBM trained on all {fit.rows:,} training rows across {fit.workers} Dask workers "
                 f"({fit.partitions} partitions, {fit.seconds:.1f}s) with the chosen configuration and {rounds} "
                 f"rounds (the sample refit's {sampled.params['n_estimators']} scaled by the square root of "
                 f"{train_rows:,} / {sample_rows:,} rows, at most {cap or _MAX_ROUNDS})")
    model = TrainedModel(task=sampled.task, target=sampled.target, family="lightgbm",
                         preprocessor=sampled.preprocessor, state={"booster": fit.model.booster_.model_to_string()},
                         classes=sampled.classes, positive=sampled.positive, threshold=sampled.threshold,
                         params={**sampled.params, "n_estimators": rounds},
                         cleaner=sampled.cleaner, calibration=sampled.calibration, class_costs=sampled.class_costs,
                         feature_hook=sampled.feature_hook, root=sampled.root)
    return model, fit.rows


def _rounds(sample_rounds: int, train_rows: int, sample_rows: int, cap: int | None) -> int:
    """The sample refit's rounds for all training rows: more rows, more rounds, by the square root of the ratio.

    The same rule as the in-process refit (whose rounds grow by sqrt(k/(k-1)) from a fold to all rows);
    never above the plan's cap on trees (``cap``) or :data:`_MAX_ROUNDS`.

    >>> _rounds(100, 400_000, 100_000, None), _rounds(100, 400_000, 100_000, 150)
    (200, 150)
    """
    rounds = round(sample_rounds * math.sqrt(train_rows / sample_rows))
    return int(max(sample_rounds, min(rounds, cap or _MAX_ROUNDS, _MAX_ROUNDS)))
