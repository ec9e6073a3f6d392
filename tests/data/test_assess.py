import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.data import assess, read_source
from loopml.errors import DataError

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"


def test_benefits_numbers():
    a = assess(read_source(BENEFITS), target="ui", task="binary")
    assert (a.rows, a.columns, a.target_missing, a.missing_share) == (4877, 17, 0, {})
    assert a.target_balance["yes"] == pytest.approx(0.684, abs=1e-3)
    assert a.minority_count == a.target_counts["no"] == 1542
    assert a.constant_columns == ["bluecol"]
    assert a.column_kinds["state"] == "categorical" and a.column_kinds["rr"] == "numeric"


def test_column_kinds():
    n = 30
    frame = pd.DataFrame(
        {
            "customer_id": range(n),
            "income": np.linspace(1, 2, n),
            "flag": [True, False] * (n // 2),
            "seen": pd.date_range("2024-01-01", periods=n),
            "note": [f"customer {i} called about a late payment and asked for help" for i in range(n)],
            "ticket": [f"T{i:05d}" for i in range(n)],
            "city": ["Lyon", "Nice", "Metz"] * (n // 3),
            "y": ["a", "b"] * (n // 2),
        }
    )
    assert assess(frame, "y", "binary").column_kinds == {
        "customer_id": "id",
        "income": "numeric",
        "flag": "boolean",
        "seen": "datetime",
        "note": "text",
        "ticket": "id",
        "city": "categorical",
    }


def test_missing_duplicates_and_target_missing():
    frame = pd.DataFrame({"x": [1.0, 1.0, None, 4.0], "y": ["a", "a", "b", None]})
    a = assess(frame, "y", "binary")
    assert a.missing_share == {"x": 0.25, "y": 0.25}
    assert a.missing_cells_share == 0.25
    assert (a.duplicate_rows, a.target_missing) == (1, 1)
    assert a.target_balance == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 3)}


def test_regression_summary_and_json_safe_dict():
    a = assess(pd.DataFrame({"x": [1, 2, 3], "y": [1.0, 2.0, 3.0]}), "y", "regression")
    assert a.target_summary == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert json.loads(json.dumps(a.to_dict()))["target_summary"]["max"] == 3.0


def test_unknown_target_lists_the_columns():
    with pytest.raises(DataError, match=r"target 'label' is not a column of the data; .* one of: x, y"):
        assess(pd.DataFrame({"x": [1], "y": [2]}), "label", "binary")


def test_regression_needs_a_numeric_target():
    with pytest.raises(DataError, match=r"target 'y' holds str values, but task 'regression' needs numbers"):
        assess(pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}), "y", "regression")
