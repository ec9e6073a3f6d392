"""The compiled serving path: the pipeline's predictions, from dicts, without a DataFrame per request."""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.data.contract import ContractViolation, DataContract, infer_contract
from loopml.errors import LoopmlError
from loopml.model import SearchPlan, TrainedModel, search, split_holdout
from loopml.model._calibration import fit as fit_calibration
from loopml.model._families import Setup, default_params, fit_estimator, prepare
from loopml.operations.compiled import _PIPELINE_FROM_ROWS, CompiledModel, CompiledPrediction, RowPrediction
from loopml.spec import CleanSpec, GoalSpec

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"
GAPS = ("age", "tenure", "stateur", "state", "sex", "married")  # numbers, categories and a boolean
TASKS = {"binary": ("ui", "yes"), "multiclass": ("joblost", None), "regression": ("rr", None)}
FAMILIES = ("linear", "lightgbm", "random_forest", "extra_trees")
CALIBRATED = ("sigmoid", "isotonic")


@pytest.fixture(scope="module")
def benefits() -> pd.DataFrame:
    """The benefits survey, ``married`` as true/false, and 8% of six columns blanked (seeded)."""
    frame = pd.read_csv(BENEFITS)
    frame["married"] = (frame["married"] == "yes").astype(object)
    frame[["age", "tenure"]] = frame[["age", "tenure"]].astype(float)
    rng = np.random.default_rng(0)
    for name in GAPS:
        frame.loc[rng.uniform(size=len(frame)) < 0.08, name] = None
    return frame


def _fit(frame: pd.DataFrame, task: str, target: str, positive, families=FAMILIES) -> tuple[dict, pd.DataFrame]:
    """Each family fitted as the search refits its choice (clip bounds, preprocessor), an equal-weight
    ensemble of them and, for classification, the ensemble calibrated both ways; plus the holdout features."""
    train, holdout = split_holdout(frame, target, task, 0.2, seed=0)
    X = train.drop(columns=[target])
    if task == "regression":
        classes, k, y = None, 0, train[target].to_numpy(dtype=float)
    else:
        classes = sorted(set(train[target]) - {positive}) + ([positive] if positive else [])
        k, y = len(classes), train[target].map({c: i for i, c in enumerate(classes)}).to_numpy()
    setup = Setup(task=task, k=k, seed=0, goal=GoalSpec(metric="accuracy", at_least=0.5), costs=None,
                  classes=classes, positive=positive, target=target, imbalance="none",
                  clean=CleanSpec(outliers="clip"), n_estimators=30)
    prepared = prepare(setup, X, y)
    common = {"task": task, "target": target, "preprocessor": prepared.pre, "classes": classes, "positive": positive,
              "cleaner": prepared.cleaner}
    members = []
    for family in families:
        state, params, _ = fit_estimator(setup, family, default_params(setup, family), prepared, early_stop=False)
        members.append({"family": family, "params": params, "state": state, "weight": 1 / len(families)})
    models = {m["family"]: TrainedModel(family=m["family"], state=m["state"], params=m["params"], **common)
              for m in members}
    if len(members) > 1:
        models["ensemble"] = TrainedModel(family="ensemble", state={"members": members}, **common)
    if task != "regression" and "ensemble" in models:
        scores = models["ensemble"].predict_proba(X)
        for method in CALIBRATED:
            calibrated = TrainedModel.from_bytes(models["ensemble"].to_bytes())
            calibrated.calibration = fit_calibration(method, y, scores[:, 1] if task == "binary" else scores, task)
            calibrated.threshold = 0.3 if task == "binary" else None  # an operating point away from 0.5
            models[method] = calibrated
    return models, holdout.drop(columns=[target])


@pytest.fixture(scope="module")
def trained(benefits):
    """Per task: the contract (of all rows, as a snapshot's), the fitted models and the holdout features."""
    out = {}
    for task, (target, positive) in TASKS.items():
        models, holdout = _fit(benefits, task, target, positive)
        out[task] = (infer_contract(benefits, target=target, task=task), models, holdout)
    return out


def _cases() -> list[tuple[str, str]]:
    names = [*FAMILIES, "ensemble"]
    return [(task, name) for task in TASKS for name in names + (list(CALIBRATED) if task != "regression" else [])]


def _compiled_on(compiled: CompiledModel, X: pd.DataFrame) -> CompiledPrediction:
    """The compiled path on every row of ``X``, in batches small enough that it does not hand them to pandas."""
    records = X.to_dict("records")
    parts = [compiled.predict_records(records[i:i + _PIPELINE_FROM_ROWS])
             for i in range(0, len(records), _PIPELINE_FROM_ROWS)]

    def join(name: str) -> np.ndarray | None:
        return None if getattr(parts[0], name) is None else np.concatenate([getattr(p, name) for p in parts])

    return CompiledPrediction(join("labels"), join("probability"), join("probabilities"), parts[0].classes)


def _assert_same(compiled: CompiledModel, model: TrainedModel, X: pd.DataFrame) -> None:
    assert len(X) > _PIPELINE_FROM_ROWS  # the whole holdout, so batching matters
    got = _compiled_on(compiled, X)
    if model.task == "regression":
        assert np.abs(got.labels - model.predict(X)).max() <= 1e-6
        return
    assert np.array_equal(got.labels, model.predict(X))
    if model.task == "binary":
        assert np.abs(got.probability - model.predict_proba(X)[:, 1]).max() <= 1e-6
    else:
        assert np.abs(got.probabilities - model.predict_proba(X)).max() <= 1e-6


# -- the compiled path equals the pipeline ---------------------------------------------------------
@pytest.mark.parametrize(("task", "name"), _cases(), ids=[f"{t}-{n}" for t, n in _cases()])
def test_compiled_predictions_equal_the_pipeline_on_the_whole_holdout(trained, task, name):
    contract, models, holdout = trained[task]
    compiled = CompiledModel.from_model(models[name], contract)
    assert compiled.compiled, compiled.reason
    _assert_same(compiled, models[name], holdout)


def test_the_holdout_reaches_clipping_missing_values_and_rare_levels(trained):
    contract, models, holdout = trained["binary"]
    model = models["linear"]
    low, high = model.cleaner.bounds["stateur"]["low"], model.cleaner.bounds["stateur"]["high"]
    assert ((holdout["stateur"] < low) | (holdout["stateur"] > high)).any()  # clipped at serving
    assert holdout[list(GAPS)].isna().any().all()
    state = next(c for c in model.preprocessor.categorical if c["name"] == "state")
    assert "target" in state and "__missing__" in state["levels"]  # target-encoded for linear; gaps are a level


def test_a_searched_model_compiles_and_agrees(benefits):
    train, holdout = split_holdout(benefits, "ui", "binary", 0.2, seed=0)
    result = search(train, target="ui", task="binary", goal=GoalSpec(metric="roc_auc", at_least=0.6), positive="yes",
                    plan=SearchPlan(trials=3, folds=3, n_estimators=30), clean=CleanSpec(outliers="clip"))
    compiled = CompiledModel.from_model(result.model, infer_contract(benefits, target="ui", task="binary"))
    assert compiled.compiled, compiled.reason
    _assert_same(compiled, result.model, holdout.drop(columns=["ui"]))


def test_a_model_reading_free_text_compiles_and_agrees(benefits):
    frame = benefits[["age", "tenure", "state", "joblost", "sex", "ui"]].copy()
    frame["note"] = [f"{s} worker aged {a:g}, from {st}, {t:g} years in the job, lost it to {j}"
                     for s, a, st, t, j in zip(frame["sex"], frame["age"], frame["state"], frame["tenure"],
                                               frame["joblost"], strict=True)]
    models, holdout = _fit(frame, "binary", "ui", "yes", families=("linear", "lightgbm"))
    assert models["ensemble"].preprocessor.texts  # TF-IDF, then SVD
    compiled = CompiledModel.from_model(models["ensemble"], infer_contract(frame, target="ui", task="binary"))
    assert compiled.compiled, compiled.reason
    _assert_same(compiled, models["ensemble"], holdout)


def test_per_class_costs_decide_as_in_the_pipeline(trained):
    contract, models, holdout = trained["multiclass"]
    model = TrainedModel.from_bytes(models["isotonic"].to_bytes())
    model.class_costs = [1.0, 4.0, 8.0, 1.0]  # missing a rare class costs more
    compiled = CompiledModel.from_model(model, contract)
    assert compiled.compiled, compiled.reason
    _assert_same(compiled, model, holdout)
    labels = _compiled_on(compiled, holdout).labels
    assert not np.array_equal(labels, models["isotonic"].predict(holdout))  # the costs changed decisions


def test_records_become_a_prediction_per_row_of_plain_values(trained):
    contract, models, holdout = trained["multiclass"]
    compiled = CompiledModel.from_model(models["sigmoid"], contract)
    rows = compiled.predict_records(holdout.head(3).to_dict("records")).rows()
    first = rows[0]
    assert isinstance(first, RowPrediction) and isinstance(first.label, str) and len(rows) == 3
    assert set(first.probabilities) == {str(c) for c in models["sigmoid"].classes}
    assert math.isclose(sum(first.probabilities.values()), 1.0) and first.probability == max(
        first.probabilities.values())


def test_the_compiled_path_builds_no_dataframe(trained):
    contract, models, holdout = trained["binary"]
    compiled = CompiledModel.from_model(models["ensemble"], contract)
    record = holdout.head(1).to_dict("records")
    called: set[str] = set()

    def profile(frame, event, arg):
        if event == "call" and "/pandas/" in frame.f_code.co_filename:
            called.add(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        compiled.predict_records(record)
    finally:
        sys.setprofile(None)
    assert not called  # not one pandas function runs for a request


def test_single_row_prediction_is_far_faster_than_the_pipeline(trained):
    contract, models, holdout = trained["binary"]
    model = models["lightgbm"]
    compiled = CompiledModel.from_model(model, contract)
    record = holdout.head(1).to_dict("records")

    def pipeline():
        X = contract.validate_records(record)
        return model.predict(X), model.predict_proba(X)

    def median_s(f, n):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    assert median_s(lambda: compiled.predict_records(record), 300) * 5 < median_s(pipeline, 100)


# -- what is served by the pipeline instead --------------------------------------------------------
def test_a_model_reading_dates_falls_back_to_the_pipeline(benefits):
    frame = benefits[["age", "state", "sex", "ui"]].copy()
    frame["displaced"] = [f"19{70 + y:02d}-0{1 + y % 9}-15" for y in benefits["yrdispl"]]
    models, holdout = _fit(frame, "binary", "ui", "yes", families=("linear",))
    compiled = CompiledModel.from_model(models["linear"], infer_contract(frame, target="ui", task="binary"))
    assert not compiled.compiled
    assert compiled.reason == "date column 'displaced' is parsed by pandas"
    _assert_same(compiled, models["linear"], holdout)


def test_a_model_with_a_feature_hook_falls_back_to_the_pipeline(trained):
    contract, models, _ = trained["binary"]
    model = TrainedModel.from_bytes(models["linear"].to_bytes())
    model.feature_hook = "features:add_ratio"
    compiled = CompiledModel.from_model(model, contract)
    assert not compiled.compiled
    assert compiled.reason == "the model applies the feature hook 'features:add_ratio', a function of a DataFrame"


def test_a_model_setting_an_attribute_the_compiler_does_not_know_falls_back(trained):
    contract, models, holdout = trained["multiclass"]
    model = TrainedModel.from_bytes(models["linear"].to_bytes())
    model.abstain_below = 0.4  # a decision rule added to models later, unknown to the compiler
    compiled = CompiledModel.from_model(model, contract)
    assert compiled.reason == "the model sets abstain_below, which the compiled path does not apply"
    _assert_same(compiled, model, holdout)


def test_a_model_column_the_contract_lacks_falls_back(trained):
    contract, models, _ = trained["binary"]
    narrow = DataContract(target="ui", task="binary", columns=[c for c in contract.columns if c.name != "age"],
                          target_classes=contract.target_classes)
    compiled = CompiledModel.from_model(models["linear"], narrow)
    assert compiled.reason == "the model reads column 'age', which the data contract lacks"


# -- bad input -------------------------------------------------------------------------------------
def _good(holdout: pd.DataFrame) -> dict:
    return holdout.head(1).to_dict("records")[0]


BAD = {
    "missing column": lambda r: [{k: v for k, v in r.items() if k != "age"}],
    "unknown column": lambda r: [{**r, "agee": 3}],
    "the target": lambda r: [{**r, "ui": "yes"}],
    "text for a number": lambda r: [{**r, "stateur": "abc"}],
    "true for a number": lambda r: [{**r, "statemb": True}],
    "null where training had none": lambda r: [{**r, "statemb": None}],
    "infinity": lambda r: [{**r, "stateur": math.inf}],
    "unknown category": lambda r: [{**r, "joblost": "fired"}],
    "fraction for an integer": lambda r: [{**r, "statemb": 1.5}],
    "number for a boolean": lambda r: [{**r, "married": 1}],
    "not a record": lambda r: [r, "not a record", r],
    "every problem of every row": lambda r: [{**r, "age": "x"}, r, {**r, "sex": "other", "zz": 1}],
    "no records": lambda r: [],
    "not a list": lambda r: r,
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_records_get_exactly_the_contracts_errors(trained, case):
    contract, models, holdout = trained["binary"]
    records = BAD[case](_good(holdout))
    with pytest.raises(ContractViolation) as expected:
        contract.validate_records(records)
    compiled = CompiledModel.from_model(models["lightgbm"], contract)
    assert compiled.validate(records) == expected.value.errors
    with pytest.raises(ContractViolation) as got:
        compiled.predict_records(records)
    assert got.value.errors == expected.value.errors and str(got.value) == str(expected.value)


def test_good_records_have_no_problems(trained):
    contract, models, holdout = trained["binary"]
    compiled = CompiledModel.from_model(models["linear"], contract)
    assert compiled.validate(holdout.head(50).to_dict("records")) == []


def test_a_contract_of_another_task_is_refused(trained):
    contract, _, _ = trained["binary"]
    _, models, _ = trained["regression"]
    with pytest.raises(LoopmlError, match=r"the data contract is for a binary model but the model is regression; "
                                          r"load the contract of the snapshot this model was trained on"):
        CompiledModel.from_model(models["linear"], contract)


def test_from_model_names_what_it_needs(trained):
    contract, models, _ = trained["binary"]
    with pytest.raises(LoopmlError, match=r"needs a TrainedModel; got dict"):
        CompiledModel.from_model({}, contract)
    with pytest.raises(LoopmlError, match=r"needs a DataContract; got dict"):
        CompiledModel.from_model(models["linear"], {})


def test_a_prediction_indexes_to_plain_values():
    p = CompiledPrediction(np.array([1.5, 2.5]), None, None)
    assert len(p) == 2 and p[1] == RowPrediction(2.5, None, None) and isinstance(p[1].label, float)
