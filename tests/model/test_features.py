import json

import numpy as np
import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.model import Preprocessor


def _train() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [20.0, 30.0, np.nan, 40.0, 50.0, 60.0],
        "state": ["a"] * 5 + ["b"],  # "b" is seen once: rare
    })


def test_unseen_category_and_missing_numeric_are_handled_at_transform_time():
    pre = Preprocessor().fit(_train())
    row = pre.transform(pd.DataFrame({"age": [None], "state": ["never seen"]}), "tree")
    names = pre.feature_names("tree")
    assert names == ["age", "age__missing", "state"]
    assert row.tolist() == [[40.0, 1.0, 1.0]]  # median, missing flag, the "__rare__" code


def test_rare_and_unseen_levels_share_the_rare_column():
    pre = Preprocessor().fit(_train())
    Z = pre.transform(pd.DataFrame({"age": [30.0, 30.0, 30.0], "state": ["a", "b", "zz"]}), "linear")
    rare = pre.feature_names("linear").index("state=__rare__")
    assert Z[:, rare].tolist() == [0.0, 1.0, 1.0]


def test_missing_numeric_without_training_gaps_is_imputed_without_indicator():
    pre = Preprocessor().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    assert pre.feature_names("tree") == ["x"]
    assert pre.transform(pd.DataFrame({"x": [np.nan]}), "tree").tolist() == [[2.0]]


def test_linear_encoding_standardises_numeric_columns():
    pre = Preprocessor().fit(_train())
    Z = pre.transform(_train(), "linear")
    assert Z[:, 0].mean() == pytest.approx(0.0, abs=1e-12)
    assert Z[:, 0].std() == pytest.approx(1.0)


def test_categorical_values_compare_as_strings():
    pre = Preprocessor().fit(pd.DataFrame({"code": ["12"] * 5 + ["7"] * 5}))
    served = pre.transform(pd.DataFrame({"code": [12, "12", 7.0]}), "tree")
    assert served[:, 0].tolist() == [0.0, 0.0, 1.0]


def test_bool_columns_are_categorical():
    pre = Preprocessor().fit(pd.DataFrame({"flag": [True] * 5 + [False] * 5}))
    assert pre.categorical_indices("tree") == [0]
    assert pre.feature_names("linear") == ["flag=False", "flag=True", "flag=__rare__"]


def test_categorical_indices_point_at_the_code_columns(benefits):
    X = benefits.drop(columns=["ui"])
    pre = Preprocessor().fit(X)
    names = pre.feature_names("tree")
    labels = set(X.select_dtypes(exclude="number").columns) - set(pre.dropped)
    assert {names[i] for i in pre.categorical_indices("tree")} == labels
    assert pre.categorical_indices("linear") == []


def test_json_round_trip_transforms_identically(benefits):
    X = benefits.drop(columns=["ui"])
    pre = Preprocessor().fit(X)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    for kind in ("tree", "linear"):
        assert np.array_equal(pre.transform(X, kind), again.transform(X, kind))


def test_missing_feature_column_is_named():
    pre = Preprocessor().fit(_train())
    with pytest.raises(ModelError, match="lacks the feature column\\(s\\) state"):
        pre.transform(pd.DataFrame({"age": [1.0]}), "tree")


def test_text_in_a_numeric_column_is_refused():
    pre = Preprocessor().fit(_train())
    with pytest.raises(ModelError, match="column 'age' must be numeric; found 'old'"):
        pre.transform(pd.DataFrame({"age": ["old"], "state": ["a"]}), "tree")


def test_numbers_sent_as_text_are_accepted():
    pre = Preprocessor().fit(_train())
    row = pre.transform(pd.DataFrame({"age": ["25.5"], "state": ["a"]}), "tree")
    assert row[0, 0] == 25.5


def test_durations_are_refused_at_fit():
    X = pd.DataFrame({"took": pd.to_timedelta([1, 2, 3], unit="D")})
    with pytest.raises(ModelError, match="column 'took' has dtype timedelta64"):
        Preprocessor().fit(X)


def test_unknown_kind_is_refused():
    with pytest.raises(ModelError, match="kind must be 'tree' or 'linear'; got 'forest'"):
        Preprocessor().fit(_train()).transform(_train(), "forest")


def test_integer_column_names_survive_the_json_round_trip():
    X = pd.DataFrame({0: [1.0, 2.0, 3.0], 1: ["a", "b", "a"]})
    pre = Preprocessor.from_dict(json.loads(json.dumps(Preprocessor(min_count=1).fit(X).to_dict())))
    assert pre.transform(X, "tree").tolist() == [[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]]
