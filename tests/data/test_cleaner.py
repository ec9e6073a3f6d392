import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from loopml.data import read_source
from loopml.data.cleaner import Cleaner, find_label_issues, resolve_imbalance
from loopml.errors import DataError
from loopml.spec import CleanSpec

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"
CLIP = CleanSpec(outliers="clip")


@pytest.fixture(scope="module")
def benefits() -> pd.DataFrame:
    return read_source(BENEFITS).drop(columns=["ui"])


def test_bounds_come_from_the_training_rows_only(benefits):
    train = benefits[benefits["tenure"] <= 10]
    cleaner = Cleaner().fit(train, CLIP)
    bound = cleaner.bounds["tenure"]
    assert bound["high"] <= 10 and bound["high"] == np.ceil(train["tenure"].quantile(0.999))
    serving = benefits.head(3).assign(tenure=[1_000_000, 5, -7])
    assert cleaner.transform(serving)["tenure"].tolist() == [bound["high"], 5, bound["low"]]


def test_integers_stay_integers_and_floats_stay_floats(benefits):
    cleaner = Cleaner().fit(benefits, CLIP)
    out = cleaner.transform(benefits.assign(age=1_000, rr=9.0))
    assert out["age"].dtype == benefits["age"].dtype and (out["age"] == cleaner.bounds["age"]["high"]).all()
    assert out["rr"].dtype == np.float64 and out["rr"].max() == pytest.approx(benefits["rr"].quantile(0.999))
    with_gaps = pd.DataFrame({"n": [float(i) for i in range(99)] + [np.nan]})  # whole numbers stored as float
    assert Cleaner().fit(with_gaps, CLIP).bounds["n"]["integer"] is True


def test_transform_never_changes_its_input_and_copies_only_when_needed(benefits):
    cleaner = Cleaner().fit(benefits, CLIP)
    inside = benefits.head(10)
    assert cleaner.transform(inside) is inside  # nothing to clip: no copy on the serving path
    outside = benefits.head(10).assign(age=500)
    before = outside.copy()
    cleaned = cleaner.transform(outside)
    pd.testing.assert_frame_equal(outside, before)
    assert cleaned["age"].max() < 500


def test_unknown_columns_and_text_are_left_alone(benefits):
    cleaner = Cleaner().fit(benefits, CLIP)
    serving = pd.DataFrame({"age": ["120", "30"], "new": [1e9, 2.0], "state": ["st42", "st1"]})
    out = cleaner.transform(serving)
    assert out["age"].tolist() == [cleaner.bounds["age"]["high"], 30]  # numbers sent as text are clipped
    assert out["new"].tolist() == [1e9, 2.0] and out["state"].tolist() == ["st42", "st1"]
    not_numbers = pd.DataFrame({"age": ["old", "30"]})
    assert cleaner.transform(not_numbers) is not_numbers  # the preprocessor names the bad value


def test_survives_the_json_round_trip(benefits):
    cleaner = Cleaner().fit(benefits, CLIP)
    loaded = Cleaner.from_dict(json.loads(json.dumps(cleaner.to_dict(), allow_nan=False)))
    serving = benefits.sample(200, random_state=0).assign(age=lambda f: f["age"] * 3, rr=-1.0)
    pd.testing.assert_frame_equal(loaded.transform(serving), cleaner.transform(serving))
    assert loaded.describe() == cleaner.describe() and loaded.bounds == cleaner.bounds
    assert any(line.startswith("clip 'age' to [") for line in cleaner.describe())
    assert set(cleaner.bounds) == {"stateur", "statemb", "age", "tenure", "yrdispl", "rr"}


def test_other_outlier_policies_learn_nothing(benefits):
    for plan in (CleanSpec(), CleanSpec(outliers="drop"), None):
        cleaner = Cleaner().fit(benefits, plan)
        assert not cleaner and cleaner.bounds == {} and cleaner.describe() == []


def test_malformed_state_is_refused():
    with pytest.raises(DataError, match="cleaner state is malformed"):
        Cleaner.from_dict({"outliers": "clip", "rows": 3, "bounds": {"x": {"low": 1}}})


def test_imbalance_policy_resolution():
    assert [resolve_imbalance(p, 0.05, "binary") for p in ("auto", "none", "weights", "undersample")] == [
        "weights", "none", "weights", "undersample"]
    assert resolve_imbalance("auto", 0.25, "multiclass") == "none"
    assert resolve_imbalance("oversample", None, "regression") == "none"


def _flipped(classes: int, share: float = 0.15) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A learnable dataset (with a text column) whose labels are flipped on ``share`` of the rows."""
    X, y = make_classification(n_samples=2000, n_features=8, n_informative=5, n_classes=classes, class_sep=2.0,
                               flip_y=0, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]).assign(side=np.where(X[:, 0] > 0, "up", "down"))
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), int(share * len(y)), replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, classes, len(flipped))) % classes
    truth = np.zeros(len(y), dtype=bool)
    truth[flipped] = True
    return frame, np.array(["a", "b", "c"])[y], truth


@pytest.mark.parametrize("classes,task", [(2, "binary"), (3, "multiclass")])
def test_label_issues_find_most_flipped_labels_and_few_right_ones(classes, task):
    X, labels, flipped = _flipped(classes)
    mask = find_label_issues(X, labels, task=task, seed=0)
    assert mask[flipped].mean() > 0.8  # most of the 300 flipped labels
    assert mask[~flipped].sum() < 0.03 * (~flipped).sum()  # few of the 1,700 right ones


def test_label_issues_are_the_same_for_the_same_seed():
    X, labels, _ = _flipped(2)
    np.testing.assert_array_equal(find_label_issues(X, labels, task="binary", seed=3),
                                  find_label_issues(X, labels, task="binary", seed=3))


def test_label_issues_need_a_class_large_enough_to_cross_validate():
    X = pd.DataFrame({"x": range(50)})
    labels = ["a"] * 49 + ["b"]  # one row of 'b': no fold can judge it
    assert not find_label_issues(X, labels, task="binary", seed=0).any()


def test_label_issues_are_refused_for_regression():
    with pytest.raises(DataError, match="label-noise cleaning finds wrong class labels, so it needs task 'binary' "
                                        "or 'multiclass'; found task 'regression': set data.clean.label_noise: keep"):
        find_label_issues(pd.DataFrame({"x": [1.0, 2.0]}), [1.5, 2.5], task="regression", seed=0)


def test_label_issues_need_one_label_per_row():
    with pytest.raises(DataError, match="got 3 feature rows but 2 labels; give one label per row"):
        find_label_issues(pd.DataFrame({"x": [1, 2, 3]}), ["a", "b"], task="binary", seed=0)


def test_missing_labels_are_refused_before_cleaning():
    with pytest.raises(DataError, match="1 label\\(s\\) are missing; drop those rows before cleaning labels"):
        find_label_issues(pd.DataFrame({"x": [1, 2, 3]}), ["a", None, "b"], task="binary", seed=0)
