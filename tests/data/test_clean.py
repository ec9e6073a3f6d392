from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.data import assess, clean, read_source
from loopml.errors import DataError
from loopml.spec import CleanSpec

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"


@pytest.fixture(scope="module")
def benefits() -> pd.DataFrame:
    return read_source(BENEFITS)


def _step(cleaned, name: str) -> dict:
    return next(s for s in cleaned.report["steps"] if s["step"] == name)


def _frame(n=40):
    return pd.DataFrame({"x": np.arange(n), "z": np.linspace(0.0, 1.0, n), "y": ["a", "b"] * (n // 2)})


def test_injected_duplicates_and_missing_targets_are_removed_exactly(benefits):
    copies = benefits.sample(50, random_state=1)
    dirty = pd.concat([benefits, copies], ignore_index=True)
    dirty.loc[benefits.drop(index=copies.index).sample(30, random_state=2).index, "ui"] = None
    cleaned = clean(dirty, "ui", "binary", CleanSpec())
    report = cleaned.report
    assert (report["dropped_missing_target"], report["dropped_duplicates"]) == (30, 50)
    assert [s["rows_dropped"] for s in report["steps"][:2]] == [30, 50]
    assert (report["rows_in"], report["rows_out"]) == (len(benefits) + 50, len(benefits) - 30)
    assert report["rows_out"] == report["rows_in"] - sum(s["rows_dropped"] for s in report["steps"])
    assert cleaned.actions[:2] == ["dropped 30 rows with a missing target", "dropped 50 exact duplicate rows"]
    assert cleaned.frame["ui"].notna().all() and not cleaned.frame.duplicated().any()


def test_fifty_injected_duplicates_give_fifty(benefits):
    dirty = pd.concat([benefits, benefits.sample(50, random_state=1)], ignore_index=True)
    cleaned = clean(dirty, "ui", "binary", CleanSpec())
    assert _step(cleaned, "duplicates") == {"step": "duplicates", "rows_dropped": 50, "columns_dropped": [],
                                            "detail": {"policy": "drop"}}
    assert "dropped 50 exact duplicate rows" in cleaned.actions
    assert len(cleaned.frame) == len(benefits)
    kept = clean(dirty, "ui", "binary", CleanSpec(duplicates="keep"))
    assert len(kept.frame) == len(dirty) and "kept 50 exact duplicate rows (duplicates: keep)" in kept.actions


def test_thirty_missing_targets_give_thirty(benefits):
    dirty = benefits.copy()
    dirty.loc[dirty.sample(30, random_state=3).index, "ui"] = None
    cleaned = clean(dirty, "ui", "binary", CleanSpec())
    assert cleaned.report["dropped_missing_target"] == 30
    assert cleaned.actions[0] == "dropped 30 rows with a missing target"
    assert cleaned.report["rows_out"] == len(benefits) - 30


def test_outliers_drop_removes_the_injected_extreme_value(benefits):
    baseline = clean(benefits, "ui", "binary", CleanSpec(outliers="drop"))
    dirty = benefits.copy()
    dirty.loc[7, "age"] = 10_000  # age has no natural value that far out
    cleaned = clean(dirty, "ui", "binary", CleanSpec(outliers="drop"))
    step = _step(cleaned, "outliers")
    assert step["detail"]["by_column"]["age"] == 1
    assert step["rows_dropped"] == _step(baseline, "outliers")["rows_dropped"] + 1
    assert cleaned.report["dropped_outlier_rows"] == step["rows_dropped"]
    assert cleaned.frame["age"].max() < 100
    assert any("'age' (1)" in a for a in cleaned.actions)
    kept = clean(dirty, "ui", "binary", CleanSpec(outliers="keep"))
    assert kept.frame["age"].max() == 10_000 and _step(kept, "outliers")["rows_dropped"] == 0


def test_outliers_drop_skips_columns_without_a_robust_scale():
    frame = _frame().assign(flag=[0] * 39 + [5])  # MAD 0: no scale to judge 5 by
    cleaned = clean(frame, "y", "binary", CleanSpec(outliers="drop"))
    assert len(cleaned.frame) == 40 and _step(cleaned, "outliers")["detail"]["by_column"] == {}


def test_outliers_clip_leaves_the_frame_to_the_model_stage():
    frame = _frame()
    frame.loc[0, "x"] = 10_000
    cleaned = clean(frame, "y", "binary", CleanSpec(outliers="clip"))
    assert cleaned.frame["x"].max() == 10_000  # clip bounds are learned on training rows, by the model
    assert _step(cleaned, "outliers")["detail"] == {"policy": "clip", "quantiles": [0.001, 0.999]}


def test_leakage_suspects_from_the_assessment_are_dropped(benefits):
    leaky = benefits.assign(approved=(benefits["ui"] == "yes").astype(int))
    before = assess(leaky, "ui", "binary")
    # The suspect list is the assessment's; set here so this test is about what clean does with it.
    before.leakage_suspects = [{"column": "approved", "score": 1.0, "metric": "roc_auc"},
                               {"column": "ui", "score": 1.0, "metric": "roc_auc"}]
    cleaned = clean(leaky, "ui", "binary", CleanSpec(), assessment=before)
    assert "approved" not in cleaned.frame.columns and "ui" in cleaned.frame.columns
    assert _step(cleaned, "leakage")["columns_dropped"] == ["approved"]
    assert "dropped column 'approved': leakage suspect (roc_auc 1.000 alone)" in cleaned.actions
    kept = clean(leaky, "ui", "binary", CleanSpec(leakage="keep"), assessment=before)
    assert "approved" in kept.frame.columns
    assert "approved" not in clean(leaky, "ui", "binary", CleanSpec(), assessment=None).report["dropped_columns"]


def test_id_columns_are_dropped_or_kept(benefits):
    with_id = benefits.assign(person_id=np.arange(len(benefits)) + 1000)
    cleaned = clean(with_id, "ui", "binary", CleanSpec())
    assert cleaned.report["dropped_columns"]["person_id"] == "id-like (unique per row)"
    assert _step(cleaned, "ids")["columns_dropped"] == ["person_id"]
    assert "person_id" in clean(with_id, "ui", "binary", CleanSpec(ids="keep")).frame.columns


def test_unusable_columns_from_the_assessment_are_dropped():
    frame = _frame().assign(when=pd.date_range("2024-01-01", periods=40, freq="D"))
    before = assess(frame, "y", "binary")
    before.unusable_columns = {"when": "datetime: not a feature as it is", "y": "target"}
    cleaned = clean(frame, "y", "binary", CleanSpec(), assessment=before)
    assert list(cleaned.frame.columns) == ["x", "z", "y"]
    assert cleaned.report["dropped_columns"] == {"when": "datetime: not a feature as it is"}


def test_missing_drop_rows_versus_impute():
    frame = _frame()
    frame.loc[[1, 2], "z"] = np.nan
    dropped = clean(frame, "y", "binary", CleanSpec(missing="drop_rows"))
    assert (len(dropped.frame), dropped.report["dropped_missing_rows"]) == (38, 2)
    kept = clean(frame, "y", "binary", CleanSpec(missing="impute"))
    assert kept.frame["z"].isna().sum() == 2 and kept.report["missing_values_left"] == 2
    assert _step(kept, "missing")["detail"] == {"policy": "impute", "missing_by_column": {"z": 2}}
    assert kept.actions[0].startswith("left 2 missing values in 1 column for the model to impute")


def test_all_missing_column_goes_before_rows_are_dropped():
    frame = _frame().assign(empty=np.nan)
    cleaned = clean(frame, "y", "binary", CleanSpec(missing="drop_rows"))
    assert len(cleaned.frame) == 40 and cleaned.report["dropped_columns"] == {"empty": "constant"}


def test_the_input_frame_is_unchanged(benefits):
    dirty = pd.concat([benefits, benefits.head(5)], ignore_index=True).assign(person_id=lambda f: np.arange(len(f)))
    dirty.loc[3, "ui"] = None
    dirty.loc[9, "age"] = 10_000
    copy = dirty.copy(deep=True)
    clean(dirty, "ui", "binary", CleanSpec(missing="drop_rows", outliers="drop"))
    pd.testing.assert_frame_equal(dirty, copy)


def test_benefits_records_imbalance_and_drops_the_constant_column(benefits):
    cleaned = clean(benefits, "ui", "binary", CleanSpec())
    assert cleaned.report["imbalance"]["minority_class"] == "no"
    assert cleaned.report["imbalance"]["applied"] == "none"
    assert "bluecol" not in cleaned.frame.columns and len(cleaned.frame) == 4877
    assert ("smallest class 'no' is 31.6% of rows; classes are not rebalanced "
            "(imbalance: auto; class weights when the smallest class is under 20%)") in cleaned.actions
    weighted = clean(benefits, "ui", "binary", CleanSpec(imbalance="undersample"))
    assert weighted.report["imbalance"]["applied"] == "undersample"


def test_unknown_target_is_a_data_error():
    with pytest.raises(DataError, match=r"target 'label' is not a column of the data; set business.target"):
        clean(_frame(), "label", "binary", CleanSpec())
