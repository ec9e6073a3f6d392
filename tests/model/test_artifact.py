import json

import numpy as np
import pytest

from loopml.errors import ModelError
from loopml.model import SearchPlan, TrainedModel, search
from loopml.spec import GoalSpec

AUC = GoalSpec(metric="roc_auc", at_least=0.6)


@pytest.fixture(scope="module", params=["linear", "lightgbm"])
def benefits_model(request, benefits_split):
    train, _ = benefits_split
    plan = SearchPlan(families=(request.param,), folds=3, n_estimators=50)
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
    assert d["format"] == "loopml.model/1"
    key = "booster" if benefits_model.family == "lightgbm" else "coef"
    assert key in d["state"]


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
