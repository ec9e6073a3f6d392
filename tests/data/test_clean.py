from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.data import clean, read_source
from loopml.errors import DataError
from loopml.spec import CleanSpec

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"


def _frame(n=40):
    return pd.DataFrame({"x": np.arange(n), "z": np.linspace(0.0, 1.0, n), "y": ["a", "b"] * (n // 2)})


def test_drops_duplicates_and_missing_targets():
    frame = pd.concat([_frame(), _frame().head(3)], ignore_index=True)
    frame.loc[5, "y"] = None
    cleaned = clean(frame, "y", "binary", CleanSpec())
    assert cleaned.report["rows_in"] == 43 and cleaned.report["rows_out"] == 39
    assert (cleaned.report["dropped_missing_target"], cleaned.report["dropped_duplicates"]) == (1, 3)
    assert cleaned.actions[:2] == ["dropped 1 row with a missing target", "dropped 3 exact duplicate rows"]
    assert cleaned.frame.index.tolist() == list(range(39))


def test_keep_duplicates_keeps_them():
    frame = pd.concat([_frame(), _frame().head(3)], ignore_index=True)
    cleaned = clean(frame, "y", "binary", CleanSpec(duplicates="keep"))
    assert len(cleaned.frame) == 43
    assert "kept 3 exact duplicate rows (duplicates: keep)" in cleaned.actions


def test_clip_pulls_in_an_injected_outlier_and_keeps_integers():
    frame = _frame()
    frame.loc[0, "x"] = 10_000
    cleaned = clean(frame, "y", "binary", CleanSpec(outliers="clip"))
    q1, q3 = frame["x"].quantile([0.25, 0.75])
    assert cleaned.frame["x"].max() == int(q3 + 3 * (q3 - q1))
    assert cleaned.frame["x"].dtype == frame["x"].dtype
    assert cleaned.report["clipped"] == {"x": 1}
    assert frame.loc[0, "x"] == 10_000  # the input is not changed


def test_outliers_keep_leaves_values():
    frame = _frame()
    frame.loc[0, "x"] = 10_000
    assert clean(frame, "y", "binary", CleanSpec()).frame["x"].max() == 10_000


def test_missing_drop_rows_versus_impute():
    frame = _frame()
    frame.loc[[1, 2], "z"] = np.nan
    dropped = clean(frame, "y", "binary", CleanSpec(missing="drop_rows"))
    assert (len(dropped.frame), dropped.report["dropped_missing_rows"]) == (38, 2)
    kept = clean(frame, "y", "binary", CleanSpec(missing="impute"))
    assert kept.frame["z"].isna().sum() == 2
    assert "left 2 missing values for the model to impute (missing: impute)" in kept.actions


def test_drops_constant_and_id_columns_with_reasons():
    frame = _frame().assign(kind="same", order_id=lambda f: [f"o{i}" for i in range(len(f))])
    cleaned = clean(frame, "y", "binary", CleanSpec())
    assert cleaned.report["dropped_columns"] == {"kind": "constant", "order_id": "id-like (unique per row)"}
    assert list(cleaned.frame.columns) == ["x", "z", "y"]
    assert "dropped column 'kind': constant" in cleaned.actions


def test_benefits_records_imbalance_and_drops_the_constant_column():
    cleaned = clean(read_source(BENEFITS), "ui", "binary", CleanSpec())
    assert cleaned.report["imbalance"]["minority_class"] == "no"
    assert "bluecol" not in cleaned.frame.columns and len(cleaned.frame) == 4877
    assert "smallest class 'no' is 31.6% of rows; the model uses class weights (imbalance: auto)" in cleaned.actions


def test_unknown_target_is_a_data_error():
    with pytest.raises(DataError, match=r"target 'label' is not a column of the data; set business.target"):
        clean(_frame(), "label", "binary", CleanSpec())
