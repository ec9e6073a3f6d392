import json

import numpy as np
import pytest

from loopml.errors import ModelError
from loopml.model import SearchPlan, TrainedModel, search
from loopml.spec import CleanSpec, GoalSpec

AUC = GoalSpec(metric="roc_auc", at_least=0.6)


@pytest.fixture(scope="module", params=["linear", "lightgbm", "random_forest", "extra_trees"])
def benefits_model(request, benefits_split):
    train, _ = benefits_split
    plan = SearchPlan(families=(request.param,), folds=3, n_estimators=20)
    return search(train, target="ui", task="binary", goal=AUC, positive="yes", plan=plan).model


def test_round_trip_gives_identical_predictions(benefits_model, benefits_split):
    _, holdout = benefits_split
    X = holdout.drop(columns=["ui"])
    loaded = TrainedModel.from_bytes(benefits_model.to_bytes())
    assert np.array_equal(loaded.predict_proba(X), benefits_model.predict_proba(X))
    assert np.array_equal(loaded.predict(X), benefits_model.predict(X))
    assert (loaded.classes, loaded.positive, loaded.threshold) == (["no", "yes"], "yes", benefits_model.threshold)


def test_model_file_is_json_with_a_format_header(benefits_model):
    d = json.loads(benefits_model.to_bytes().decode("utf-8"))
    assert d["format"] == "loopml.model/1" and d["family"] == benefits_model.family
    key = {"lightgbm": "booster", "linear": "coef", "random_forest": "roots", "extra_trees": "roots"}
    assert key[benefits_model.family] in d["state"]
    assert "calibration" in d  # None, or the calibrator's numbers


def test_predictions_are_original_labels_decided_by_the_threshold(benefits_model, benefits_split):
    _, holdout = benefits_split
    X = holdout.drop(columns=["ui"])
    p = benefits_model.predict_proba(X)
    assert p.shape == (len(X), 2) and np.allclose(p.sum(axis=1), 1.0)
    expected = np.where(p[:, 1] >= benefits_model.threshold, "yes", "no")
    assert np.array_equal(benefits_model.predict(X), expected)


def test_pickle_bytes_are_refused():
    pickled = b"\x80\x05\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s."  # pickle of {"a": 1}
    with pytest.raises(ModelError, match="refusing to load: pickle-family files can run code on load"):
        TrainedModel.from_bytes(pickled)


def test_non_json_bytes_are_refused():
    with pytest.raises(ModelError, match="not a loopml model: the bytes are not UTF-8 JSON"):
        TrainedModel.from_bytes(b"PK\x03\x04 a zip file")


def test_foreign_json_is_refused_by_its_format():
    with pytest.raises(ModelError, match="format is 'onnx/1'; expected 'loopml.model/1'"):
        TrainedModel.from_bytes(json.dumps({"format": "onnx/1"}).encode())


def test_regression_model_has_no_probabilities(diabetes):
    plan = SearchPlan(families=("linear",), folds=3)
    model = search(diabetes, target="target", task="regression", goal=GoalSpec(metric="rmse", at_most=60),
                   plan=plan).model
    with pytest.raises(ModelError, match="predict_proba needs a classification model"):
        model.predict_proba(diabetes)


@pytest.fixture(scope="module")
def clipped_model(benefits_split):
    train, _ = benefits_split
    plan = SearchPlan(families=("lightgbm",), folds=3, n_estimators=50)
    return search(train, target="ui", task="binary", goal=AUC, positive="yes", plan=plan,
                  clean=CleanSpec(outliers="clip")).model


def test_a_model_with_a_cleaner_round_trips_with_identical_predictions(clipped_model, benefits_split):
    _, holdout = benefits_split
    X = holdout.drop(columns=["ui"]).assign(age=lambda f: np.where(f.index % 3 == 0, 10_000, f["age"]))
    loaded = TrainedModel.from_bytes(clipped_model.to_bytes())
    assert loaded.cleaner.bounds == clipped_model.cleaner.bounds
    assert np.array_equal(loaded.predict_proba(X), clipped_model.predict_proba(X))
    assert np.array_equal(loaded.predict(X), clipped_model.predict(X))
    assert json.loads(clipped_model.to_bytes())["cleaner"]["outliers"] == "clip"


def test_the_cleaner_is_applied_before_the_preprocessor(clipped_model, benefits_split):
    _, holdout = benefits_split
    X = holdout.drop(columns=["ui"]).head(20)
    high = clipped_model.cleaner.bounds["age"]["high"]
    far, at_bound = X.assign(age=10_000), X.assign(age=high)
    assert np.array_equal(clipped_model.predict_proba(far), clipped_model.predict_proba(at_bound))
    assert X["age"].max() < 10_000  # the caller's frame is not changed


def test_an_old_model_file_without_a_cleaner_still_loads(benefits_model, benefits_split):
    _, holdout = benefits_split
    X = holdout.drop(columns=["ui"])
    old = benefits_model.to_dict()
    assert old.pop("cleaner") is None
    loaded = TrainedModel.from_bytes(json.dumps(old).encode())
    assert loaded.cleaner is None
    assert np.array_equal(loaded.predict_proba(X), benefits_model.predict_proba(X))


def test_a_malformed_cleaner_is_a_model_error(clipped_model):
    d = clipped_model.to_dict()
    d["cleaner"] = {"outliers": "clip"}
    with pytest.raises(ModelError, match="loopml model file: cleaner state is malformed"):
        TrainedModel.from_bytes(json.dumps(d).encode())


def test_a_malformed_forest_is_a_model_error_at_load(benefits_split):
    train, _ = benefits_split
    model = search(train.sample(500, random_state=0), target="ui", task="binary", goal=AUC, positive="yes",
                   plan=SearchPlan(families=("random_forest",), folds=2, n_estimators=5)).model
    d = model.to_dict()
    d["state"] = {**d["state"], "left": d["state"]["right"] | {"shape": [3]}}
    with pytest.raises(ModelError, match="loopml model file: a packed array is malformed"):
        TrainedModel.from_bytes(json.dumps(d).encode())


def test_a_malformed_calibration_is_a_model_error(benefits_model):
    d = benefits_model.to_dict()
    d["calibration"] = {"method": "isotonic", "x": [[0.0, 1.0]]}
    with pytest.raises(ModelError, match="calibration state is malformed: isotonic needs x and y"):
        TrainedModel.from_bytes(json.dumps(d).encode())
    d["calibration"] = {"method": "beta"}
    with pytest.raises(ModelError, match="calibration method must be sigmoid or isotonic"):
        TrainedModel.from_bytes(json.dumps(d).encode())
