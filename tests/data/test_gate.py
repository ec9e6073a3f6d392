import pandas as pd

from loopml.data import assess, check_data


def _assessment(labels, task="binary"):
    return assess(pd.DataFrame({"x": range(len(labels)), "y": labels}), "y", task)


def test_passes_with_enough_rows_and_classes():
    check = check_data(_assessment(["a", "b"] * 150), min_rows=200, task="binary")
    assert check.passed
    assert check.evidence == {"rows": 300, "min_rows": 200, "classes": 2, "minority_count": 150, "min_class_rows": 10}
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
        "too few rows in class 'c' (4 rows), need at least 10 per class; "
        "collect more rows of that class or merge rare classes"
    ]


def test_regression_only_counts_rows():
    check = check_data(_assessment([0.5, 1.5] * 100, "regression"), min_rows=200, task="regression")
    assert check.passed and check.to_dict()["evidence"] == {"rows": 200, "min_rows": 200}
