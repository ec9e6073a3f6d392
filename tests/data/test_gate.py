import numpy as np
import pandas as pd

from loopml.data import assess, check_data
from loopml.spec import QualityLimits


def _assessment(labels, task="binary", **kwargs):
    return assess(pd.DataFrame({"x": range(len(labels)), "y": labels}), "y", task, **kwargs)


def test_passes_with_enough_rows_and_classes():
    check = check_data(_assessment(["a", "b"] * 150), min_rows=200, task="binary")
    assert check.passed
    assert check.evidence == {
        "rows": 300, "min_rows": 200, "classes": 2, "minority_count": 150, "min_class_rows": 10,
        "missing_cells_share": 0.0, "max_missing_share": 0.5, "duplicate_share": 0.0, "max_duplicate_share": 0.2,
        "label_noise_share": 0.0, "max_label_noise": 0.3,
    }
    assert check.reasons == ["300 rows after cleaning (need 200); 2 classes, the smallest has 150 rows"]


def test_too_few_rows_says_how_many():
    check = check_data(_assessment(["a", "b"] * 617), min_rows=2000, task="binary")
    assert not check.passed
    assert check.reasons == [
        "1,234 rows after cleaning, need at least 2,000 (data.min_rows); collect more rows or lower data.min_rows"
    ]


def test_one_class_fails():
    check = check_data(_assessment(["yes"] * 300), min_rows=200, task="binary")
    assert not check.passed
    assert check.reasons[0].startswith("target 'y' has 1 class ('yes'), need at least 2")


def test_a_rare_class_fails():
    labels = ["a"] * 150 + ["b"] * 146 + ["c"] * 4
    check = check_data(_assessment(labels, "multiclass"), min_rows=200, task="multiclass")
    assert not check.passed
    assert check.reasons == [
        "too few rows in class 'c' (4 rows), need at least 10 per class (data.limits.min_class_rows); "
        "collect more rows of that class or merge rare classes"
    ]


def test_min_class_rows_comes_from_the_limits():
    labels = ["a"] * 170 + ["b"] * 30
    limits = QualityLimits(min_class_rows=50)
    check = check_data(_assessment(labels), min_rows=100, task="binary", limits=limits)
    assert check.reasons == [
        "too few rows in class 'b' (30 rows), need at least 50 per class (data.limits.min_class_rows); "
        "collect more rows of that class or merge rare classes"
    ]
    # The limits an assessment was made with are the default.
    assert check_data(_assessment(labels, limits=limits), min_rows=100, task="binary").reasons == check.reasons


def test_regression_only_counts_rows():
    check = check_data(_assessment([0.5, 1.5] * 100, "regression"), min_rows=200, task="regression")
    assert check.passed
    assert {k: check.to_dict()["evidence"][k] for k in ("rows", "min_rows")} == {"rows": 200, "min_rows": 200}


def test_a_regression_target_of_text_fails_with_the_assessments_reason():
    check = check_data(_assessment(["a", "b"] * 100, "regression"), min_rows=100, task="regression")
    assert not check.passed
    assert check.reasons[0].startswith("target 'y' holds str values, but task 'regression' needs numbers")


def test_missing_cells_over_the_limit():
    frame = pd.DataFrame({"x": [float(i) if i % 4 else None for i in range(400)],
                          "z": [None] * 300 + list(range(100)), "y": ["a", "b"] * 200})
    check = check_data(assess(frame, "y", "binary"), min_rows=100, task="binary",
                       limits=QualityLimits(max_missing_share=0.2))
    assert not check.passed
    assert check.reasons == [
        "missing values 33.3% of cells exceeds data.limits.max_missing_share 20% (worst column: z 75.0%); "
        "impute, drop the worst columns or collect more complete rows"
    ]
    assert check.evidence["missing_cells_share"] == round(400 / 1200, 6)


def test_duplicates_over_the_limit():
    labels = pd.DataFrame({"x": list(range(200)) + list(range(50)), "y": ["a", "b"] * 125})
    check = check_data(assess(labels, "y", "binary"), min_rows=100, task="binary",
                       limits=QualityLimits(max_duplicate_share=0.1))
    assert check.reasons == [
        "duplicate rows 20.0% of rows exceeds data.limits.max_duplicate_share 10% (50 rows); "
        "set data.clean.duplicates to drop or fix the source that repeats rows"
    ]


def test_label_noise_over_the_limit():
    a = _assessment(["a", "b"] * 300)
    a.label_noise = {"share": 0.341, "rows": 205, "checked_rows": 600, "method": "test", "examples": [1, 2]}
    check = check_data(a, min_rows=100, task="binary")
    assert check.evidence["label_noise_share"] == 0.341
    assert check.reasons == [
        "label noise 34.1% of rows exceeds data.limits.max_label_noise 30% (205 of 600 checked rows disagree "
        "with confident predictions); review the labelling (the assessment lists example rows) or add features "
        "that explain the labels"
    ]


def test_every_limit_at_once_gives_one_reason_each():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": np.where(rng.random(300) < 0.7, np.nan, 1.0), "y": ["a"] * 295 + ["b"] * 5})
    a = assess(frame, "y", "binary")
    a.label_noise = {"share": 0.5, "rows": 150, "checked_rows": 300, "method": "test", "examples": []}
    check = check_data(a, min_rows=100, task="binary", limits=QualityLimits(max_missing_share=0.3))
    keys = ["min_class_rows", "max_missing_share", "max_duplicate_share", "max_label_noise"]
    assert [next(k for k in keys if f"data.limits.{k}" in r) for r in check.reasons] == keys
