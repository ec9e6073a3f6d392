"""Target encoding, dropped columns and the JSON round trip of a preprocessor with every kind of column."""

import json

import numpy as np
import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.model import Preprocessor, SearchPlan, search
from loopml.spec import GoalSpec


def _singletons(n: int = 100) -> tuple[pd.DataFrame, np.ndarray]:
    """Every level once (but "L0" twice, so the column is not an id), labels alternating 0/1."""
    levels = [f"L{i}" for i in range(n - 1)] + ["L0"]
    return pd.DataFrame({"shop": levels}), np.arange(n) % 2


def test_out_of_fold_encoding_never_uses_the_rows_own_label():
    X, y = _singletons()
    pre = Preprocessor()
    Z = pre.fit_transform(X, y, kind="linear")
    assert pre.feature_names("linear") == ["shop__target"]
    once = X["shop"].to_numpy() != "L0"
    # Stratified folds keep 40/40 classes in every fitting part, so the prior is 0.5 exactly; a level
    # seen only in the row itself is unseen out of fold and must get exactly that prior, whatever its label.
    assert set(Z[once, 0]) == {0.5}
    # The serving mapping learned from all rows does carry each level's label (shrunk towards 0.5).
    final = pre.transform(X, "linear")[:, 0]
    assert np.allclose(final[once], 0.5 + (y[once] - 0.5) / 11)


def test_unseen_level_at_serving_gets_the_prior():
    X, y = _singletons()
    pre = Preprocessor().fit(X, y)
    served = pre.transform(pd.DataFrame({"shop": ["never seen", None]}), "linear")
    assert served[:, 0].tolist() == [0.5, 0.5]


def test_multiclass_gets_one_column_per_class_and_regression_the_mean():
    X = pd.DataFrame({"shop": [f"s{i % 40}" for i in range(200)]})
    labels = np.array(["a", "b", "c", "d"])[np.arange(200) % 4]
    pre = Preprocessor()
    Z = pre.fit_transform(X, labels, kind="linear")
    assert pre.feature_names("linear") == ["shop__target=a", "shop__target=b", "shop__target=c", "shop__target=d"]
    assert np.allclose(Z.sum(axis=1), 1.0)  # class shares out of fold are still a distribution

    values = np.arange(200, dtype=float) % 40  # each shop has one value: its mean is learnable
    reg = Preprocessor()
    Z = reg.fit_transform(X, values, kind="linear")
    assert reg.feature_names("linear") == ["shop__target"]
    assert np.corrcoef(Z[:, 0], values)[0, 1] > 0.95
    assert reg.transform(pd.DataFrame({"shop": ["new"]}), "linear")[0, 0] == pytest.approx(values.mean())


def test_low_cardinality_or_no_target_means_one_hot_and_trees_keep_codes():
    X, y = _singletons()
    assert Preprocessor().fit(X).feature_names("linear")[-1] == "shop=__rare__"  # no y: no target encoding
    few = pd.DataFrame({"sex": ["f", "m"] * 50})
    assert Preprocessor().fit(few, y).feature_names("linear") == ["sex=f", "sex=m", "sex=__rare__"]
    assert Preprocessor().fit(X, y).feature_names("tree") == ["shop"]


def test_target_length_must_match_the_rows():
    with pytest.raises(ModelError, match="y has 3 values for 100 rows of X"):
        Preprocessor().fit(_singletons()[0], [0, 1, 0])


def test_id_like_and_constant_columns_are_dropped_with_the_reason():
    rng = np.random.default_rng(0)
    n = 120
    X = pd.DataFrame({
        "customer_id": rng.permutation(10_000)[:n],  # unique integers named as an id
        "row": np.arange(n) + 1000,  # unique integers numbering the rows
        "code": [f"K{i:05d}" for i in rng.permutation(n)],  # unique short labels
        "const": ["same"] * n,
        "empty": [np.nan] * n,
        "income": rng.permutation(np.arange(0, 10 * n, 10)) + rng.integers(0, 9, n) * 10_000,  # unique, but a measure
        "x": rng.normal(size=n),
    })
    pre = Preprocessor().fit(X)
    assert pre.dropped == {
        "customer_id": "id-like: a different integer in every training row",
        "row": "id-like: a different integer in every training row",
        "code": "id-like: a different value in every training row",
        "const": "constant: every training row holds 'same'",
        "empty": "constant: every training row holds missing",
    }
    assert pre.columns == ["income", "x"]
    assert pre.transform(X[["income", "x"]], "tree").shape == (n, 2)  # dropped columns are not needed at serving


def test_nothing_usable_left_is_a_clear_error():
    with pytest.raises(ModelError, match="no usable feature column is left: 'k' \\(constant"):
        Preprocessor().fit(pd.DataFrame({"k": [1] * 30}))


def _everything(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    words = np.array("quick slow tasty bland fresh stale warm cold friendly rude cheap pricey".split())
    X = pd.DataFrame({
        "age": np.where(rng.random(n) < 0.1, np.nan, rng.normal(40, 10, n)),
        "sex": rng.choice(["f", "m"], n),
        "shop": [f"shop{i}" for i in rng.integers(0, 60, n)],
        "seen": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
        "note": [" ".join(rng.choice(words, 8)) + f" visit {i}" for i in range(n)],
    })
    return X, rng.integers(0, 2, n)


def test_json_round_trip_gives_identical_transforms_for_every_kind_of_column():
    X, y = _everything()
    pre = Preprocessor().fit(X, y)
    assert [len(block) for block in (pre.numeric, pre.dates, pre.texts, pre.categorical)] == [1, 1, 1, 2]
    text = json.dumps(pre.to_dict(), allow_nan=False)
    again = Preprocessor.from_dict(json.loads(text))
    serving = X.assign(seen=X["seen"].dt.strftime("%Y-%m-%dT%H:%M:%S"))  # dates arrive as text in JSON
    for kind in ("tree", "linear"):
        Z = pre.transform(X, kind)
        assert Z.shape[1] == len(pre.feature_names(kind))
        assert np.array_equal(Z, again.transform(X, kind))
        assert np.array_equal(Z, again.transform(serving, kind))
    assert again.to_dict() == pre.to_dict()


def test_older_state_without_the_new_blocks_still_loads():
    old = {"min_count": 5, "numeric": [{"name": "x", "median": 1.0, "mean": 1.0, "std": 1.0, "indicator": False}],
           "categorical": [{"name": "c", "levels": ["a"]}]}
    pre = Preprocessor.from_dict(old)
    assert pre.transform(pd.DataFrame({"x": [3.0], "c": ["a"]}), "linear").tolist() == [[2.0, 1.0, 0.0]]


def test_linear_models_on_benefits_still_train(benefits):
    train = benefits.sample(1500, random_state=0)
    result = search(train, target="ui", task="binary", positive="yes", goal=GoalSpec(metric="roc_auc", at_least=0.5),
                    plan=SearchPlan(families=("linear",), folds=3))
    assert result.model.family == "linear"
    assert result.cv_score > 0.6
    assert "bluecol" in result.model.preprocessor.dropped  # one value in every row of the survey
