"""LightGBM on data larger than one machine: ``lightgbm.DaskLGBMClassifier`` / ``DaskLGBMRegressor``.

Each worker holds its partitions; LightGBM's own network joins the workers into one distributed
training (data-parallel histograms). The model that comes back is an ordinary local LightGBM model.

>>> fit = fit_lightgbm_dask(cluster, "big/*.parquet", target="churned", task="binary")  # doctest: +SKIP
>>> fit.rows, fit.workers, fit.model.predict_proba(X)[:, 1]                              # doctest: +SKIP
(10000000, 2, array([...]))
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.compute.dask import DaskCluster
from loopml.errors import ModelError

__all__ = ["DaskFit", "fit_lightgbm_dask"]

_DEFAULTS = {"n_estimators": 200, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20,
             "verbose": -1}


@dataclass
class DaskFit:
    """The trained local model and what the distributed training took."""

    model: Any  # lightgbm.LGBMClassifier or LGBMRegressor
    rows: int
    features: list[str]
    workers: int
    partitions: int
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)


def fit_lightgbm_dask(cluster: DaskCluster, data: Any, *, target: str, task: str,
                      params: dict[str, Any] | None = None, seed: int = 0, weight: str | None = None,
                      categorical: list[str] | None = None) -> DaskFit:
    """Train LightGBM across the cluster's workers on ``data``: a Parquet/CSV path or glob, a dask or pandas frame.

    Feature columns must be numeric or boolean (encode text first); ``task`` is binary, multiclass
    or regression. ``weight`` names a column of row weights (not a feature); ``categorical`` names
    feature columns holding category codes. The result depends on how rows are spread over workers,
    so two clusters of different sizes may give slightly different trees; the in-process search
    remains the reference.
    """
    from loopml.compute.dask import require_dask

    require_dask("LightGBM on Dask")
    import dask.dataframe as dd
    import lightgbm as lgb

    if task not in ("binary", "multiclass", "regression"):
        raise ModelError(f"task must be binary, multiclass or regression; got {task!r}")
    started = time.perf_counter()
    frame = _as_dask(data, cluster.workers, dd)
    if frame.npartitions < cluster.workers:  # a worker without a partition would sit out the training
        frame = frame.repartition(npartitions=cluster.workers)
    if target not in frame.columns:
        raise ModelError(f"target column '{target}' is not in the data; columns: {', '.join(map(str, frame.columns))}")
    if weight is not None and weight not in frame.columns:
        raise ModelError(f"weight column '{weight}' is not in the data; columns: {', '.join(map(str, frame.columns))}")
    features = [str(c) for c in frame.columns if c not in (target, weight)]
    unknown = [c for c in categorical or [] if c not in features]
    if unknown:
        raise ModelError(f"categorical column(s) {', '.join(unknown)} are not feature columns of the data; "
                         f"features: {', '.join(features[:20])}")
    bad = [c for c in features if not (pd.api.types.is_numeric_dtype(frame[c].dtype)
                                       or pd.api.types.is_bool_dtype(frame[c].dtype))]
    if bad:
        raise ModelError(f"LightGBM on Dask needs numeric or boolean feature columns; {', '.join(bad[:10])} "
                         "are not: encode them before training, or train in-process")
    client = cluster.client
    frame = client.persist(frame.dropna(subset=[target]))  # read once; LightGBM passes over it many times
    X, y = frame[features].astype("float32"), frame[target]
    rows = int(client.compute(y.size, sync=True))
    settings = {**_DEFAULTS, **(params or {}), "random_state": seed}
    cls = lgb.DaskLGBMRegressor if task == "regression" else lgb.DaskLGBMClassifier
    estimator = cls(client=client, **settings)
    with client.as_current(), warnings.catch_warnings():  # LightGBM waits on partitions via the current client
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")  # its own default, not ours
        estimator.fit(X, y, sample_weight=None if weight is None else frame[weight],
                      categorical_feature=[features.index(c) for c in categorical] if categorical else "auto")
    return DaskFit(model=estimator.to_local(), rows=rows, features=features, workers=cluster.workers,
                   partitions=int(X.npartitions), seconds=round(time.perf_counter() - started, 3), params=settings)


def _as_dask(data: Any, workers: int, dd: Any) -> Any:
    if isinstance(data, (str, Path)):
        text = str(data)
        if text.endswith((".parquet", ".pq")) or Path(text).is_dir():
            return dd.read_parquet(text)
        if text.endswith((".csv", ".csv.gz", ".tsv")):
            return dd.read_csv(text, sep="\t" if text.endswith(".tsv") else ",", blocksize="64MB")
        raise ModelError(f"{text}: cannot tell the format; use .parquet, .csv, .csv.gz or .tsv")
    if isinstance(data, pd.DataFrame):
        return dd.from_pandas(data, npartitions=max(workers, 1))
    if hasattr(data, "npartitions"):
        return data
    raise ModelError(f"data must be a file path, a pandas or a dask DataFrame; got {type(data).__name__}")
