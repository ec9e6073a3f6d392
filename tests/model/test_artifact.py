import json

import numpy as np
import pytest

from loopml.errors import ModelError
from loopml.model import SearchPlan, TrainedModel, search
from loopml.spec import CleanSpec, CostsSpec, GoalSpec

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


@pytest.fixture(scope="module")
def costed_model(iris):
    costs = CostsSpec(per_class={"versicolor": 5})
    return search(iris, target="target", task="multiclass", goal=GoalSpec(metric="accuracy", at_least=0.5),
                  costs=costs, plan=SearchPlan(families=("linear",), folds=3)).model


def test_per_class_costs_round_trip_with_identical_decisions(costed_model, iris):
    X = iris.drop(columns=["target"])
    loaded = TrainedModel.from_bytes(costed_model.to_bytes())
    assert loaded.class_costs == costed_model.class_costs == [1.0, 5.0, 1.0]
    assert json.loads(costed_model.to_bytes())["class_costs"] == [1.0, 5.0, 1.0]
    assert np.array_equal(loaded.predict(X), costed_model.predict(X))


@pytest.mark.parametrize("costs, message", [
    ([1.0, 5.0], "class_costs need one positive cost per class \\(3\\); got \\[1.0, 5.0\\]"),
    ([1.0, 0.0, 1.0], "class_costs need one positive cost per class"),
    ({"versicolor": 5}, "class_costs must be a list of numbers, one per class"),
])
def test_malformed_class_costs_are_a_model_error(costed_model, costs, message):
    d = costed_model.to_dict()
    d["class_costs"] = costs
    with pytest.raises(ModelError, match=message):
        TrainedModel.from_bytes(json.dumps(d).encode())


def test_class_costs_on_a_binary_model_are_refused(benefits_model):
    d = benefits_model.to_dict()
    d["class_costs"] = [1.0, 2.0]
    with pytest.raises(ModelError, match="class_costs weigh multiclass decisions; this model's task is 'binary'"):
        TrainedModel.from_bytes(json.dumps(d).encode())


@pytest.fixture(scope="module")
def hooked(tmp_path_factory, iris):
    """A model trained with a feature hook (the petal area) in a project folder of its own."""
    root = tmp_path_factory.mktemp("hooked_project")
    (root / "artifact_hook.py").write_text(
        "def area(df):\n    df['petal_area'] = df['petal length (cm)'] * df['petal width (cm)']\n    return df\n")
    model = search(iris, target="target", task="multiclass", goal=GoalSpec(metric="accuracy", at_least=0.5),
                   plan=SearchPlan(families=("linear",), folds=3), feature_hook="artifact_hook:area",
                   hook_root=root).model
    return root, model


def test_a_hooked_model_records_the_hook_but_never_the_project_folder(hooked):
    root, model = hooked
    text = model.to_bytes().decode()
    assert json.loads(text)["feature_hook"] == "artifact_hook:area"
    assert "petal_area" in model.preprocessor.columns
    assert str(root) not in text and root.name not in text


def test_a_hooked_model_loaded_with_its_root_predicts_as_trained(hooked, iris):
    root, model = hooked
    X = iris.drop(columns=["target"])
    loaded = TrainedModel.from_bytes(model.to_bytes(), root=root)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_a_hooked_model_loaded_without_a_root_names_the_hook_and_the_fix(hooked, iris):
    _, model = hooked
    loaded = TrainedModel.from_bytes(model.to_bytes())
    with pytest.raises(ModelError, match="this model applies the feature hook 'artifact_hook:area', which is imported "
                                         "from the project folder, and it was loaded without one: load it with "
                                         "TrainedModel.from_bytes\\(data, root=PROJECT_FOLDER\\)"):
        loaded.predict(iris.drop(columns=["target"]))


def test_a_malformed_feature_hook_in_a_file_is_a_model_error(hooked):
    d = hooked[1].to_dict()
    d["feature_hook"] = "no colon"
    with pytest.raises(ModelError, match="feature_hook must be 'module:function'; got 'no colon'"):
        TrainedModel.from_bytes(json.dumps(d).encode())
