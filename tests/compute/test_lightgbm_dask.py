"""LightGBM trained across the 2 workers of a real Dask cluster on real data, as the larger-than-memory fit."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from loopml.compute import fit_lightgbm_dask
from loopml.errors import ModelError

COMPUTERS = "tests/bench_data/computers.parquet"


@pytest.fixture(scope="module")
def computers() -> pd.DataFrame:
    frame = pd.read_parquet(COMPUTERS)
    return frame[[c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]]


def test_a_regressor_trained_on_both_workers_predicts_like_a_model(dask_cluster, computers, tmp_path):
    path = tmp_path / "computers.parquet"
    computers.to_parquet(path, row_group_size=1000)
    fit = fit_lightgbm_dask(dask_cluster, str(path), target="price", task="regression",
                            params={"n_estimators": 60})
    assert (fit.rows, fit.workers) == (len(computers), 2) and fit.partitions >= 2
    X = computers.drop(columns=["price"]).astype("float32")
    error = np.sqrt(np.mean((fit.model.predict(X) - computers["price"]) ** 2))
    assert error < 0.6 * computers["price"].std()


def test_a_classifier_from_a_pandas_frame(dask_cluster, computers):
    frame = computers.assign(dear=(computers["price"] > computers["price"].median()).astype(int)).drop(
        columns=["price"])
    fit = fit_lightgbm_dask(dask_cluster, frame, target="dear", task="binary", params={"n_estimators": 40})
    scores = fit.model.predict_proba(frame.drop(columns=["dear"]).astype("float32"))[:, 1]
    assert roc_auc_score(frame["dear"], scores) > 0.85


def test_text_features_are_refused_with_the_fix(dask_cluster):
    frame = pd.DataFrame({"x": ["a", "b"] * 20, "y": [0.0, 1.0] * 20})
    with pytest.raises(ModelError, match=r"needs numeric or boolean feature columns; x are not: encode them"):
        fit_lightgbm_dask(dask_cluster, frame, target="y", task="regression")


def test_a_missing_target_an_unknown_task_and_unreadable_data_are_named(dask_cluster, computers):
    with pytest.raises(ModelError, match=r"target column 'cost' is not in the data; columns: price, speed"):
        fit_lightgbm_dask(dask_cluster, computers, target="cost", task="regression")
    with pytest.raises(ModelError, match=r"task must be binary, multiclass or regression; got 'ranking'"):
        fit_lightgbm_dask(dask_cluster, computers, target="price", task="ranking")
    with pytest.raises(ModelError, match=r"data.json: cannot tell the format; use .parquet, .csv, .csv.gz or .tsv"):
        fit_lightgbm_dask(dask_cluster, "data.json", target="price", task="regression")
    with pytest.raises(ModelError, match=r"data must be a file path, a pandas or a dask DataFrame; got list"):
        fit_lightgbm_dask(dask_cluster, [1, 2], target="price", task="regression")
