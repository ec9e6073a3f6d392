"""business.costs and model.features in the spec: what fits which task, and what a mistake says."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import write_spec

from loopml.errors import SpecError
from loopml.spec import load_spec

CHILE = Path(__file__).parent / "model" / "chile.parquet"


@pytest.fixture
def chile_dir(tmp_path: Path) -> Path:
    """A project folder with a multiclass target: vote in A, N, U, Y (the 1988 Chilean plebiscite)."""
    pd.read_parquet(CHILE).head(400).to_csv(tmp_path / "chile.csv", index=False)
    return tmp_path


def _multiclass(folder: Path, costs=None, **model) -> Path:
    business = {"problem": "How will a voter vote?", "task": "multiclass", "target": "vote",
                "goal": {"metric": "accuracy", "at_least": 0.5}}
    if costs is not None:
        business["costs"] = costs
    return write_spec(folder, business=business, data={"sources": [{"name": "poll", "path": "chile.csv"}]},
                      model={"trials": 2, "folds": 3, **model})


def _binary(folder: Path, costs) -> Path:
    business = {"problem": "Who applies?", "task": "binary", "target": "ui", "positive": "yes",
                "goal": {"metric": "recall", "at_least": 0.6}, "costs": costs}
    return write_spec(folder, business=business)


def test_per_class_costs_load_for_a_multiclass_task(chile_dir):
    spec = load_spec(_multiclass(chile_dir, {"per_class": {"A": 8, "U": 2}}))
    assert spec.business.costs.per_class == {"A": 8.0, "U": 2.0}


def test_per_class_costs_are_refused_for_a_binary_task(project_dir):
    with pytest.raises(SpecError, match=r"business\.costs\.per_class: per-class costs need task 'multiclass', "
                                        r"found task 'binary'; use costs: \{false_positive: COST"):
        load_spec(_binary(project_dir, {"per_class": {"yes": 5}}))


def test_false_positive_and_negative_are_refused_for_a_multiclass_task(chile_dir):
    with pytest.raises(SpecError, match=r"business\.costs\.false_positive: false_positive and false_negative need "
                                        r"task 'binary', found task 'multiclass'; use costs: \{per_class: "):
        load_spec(_multiclass(chile_dir, {"false_positive": 1, "false_negative": 5}))


def test_a_class_the_target_does_not_hold_is_named_with_a_suggestion(chile_dir):
    with pytest.raises(SpecError, match=r"business\.costs\.per_class\.a: 'a' is not a class of target 'vote'; "
                                        r"did you mean 'A'\? classes: A, N, U, Y"):
        load_spec(_multiclass(chile_dir, {"per_class": {"a": 8}}))


def test_a_class_far_from_every_class_lists_the_classes(chile_dir):
    with pytest.raises(SpecError, match=r"business\.costs\.per_class\.abstain: 'abstain' is not a class of target "
                                        r"'vote'; classes: A, N, U, Y"):
        load_spec(_multiclass(chile_dir, {"per_class": {"abstain": 8}}))


def test_an_empty_per_class_mapping_is_refused(chile_dir):
    with pytest.raises(SpecError, match=r"business\.costs\.per_class: found an empty mapping; name at least one "
                                        r"class"):
        load_spec(_multiclass(chile_dir, {"per_class": {}}))


def test_a_cost_must_be_positive(chile_dir):
    with pytest.raises(SpecError, match=r"business\.costs\.per_class\.A: found -1 \(int\); input should be "
                                        r"greater than 0"):
        load_spec(_multiclass(chile_dir, {"per_class": {"A": -1}}))


def test_both_kinds_of_costs_at_once_are_refused(chile_dir):
    with pytest.raises(SpecError, match=r"business\.costs: found per_class and false_negative; give "
                                        r"false_positive and false_negative \(task binary\) or per_class \(task "
                                        r"multiclass\), not both"):
        load_spec(_multiclass(chile_dir, {"per_class": {"A": 3}, "false_negative": 2}))


def test_half_of_the_binary_costs_is_refused(project_dir):
    with pytest.raises(SpecError, match=r"business\.costs: found only false_negative; give both false_positive and "
                                        r"false_negative"):
        load_spec(_binary(project_dir, {"false_negative": 120}))


def test_costs_are_refused_for_regression(project_dir):
    business = {"problem": "How old?", "task": "regression", "target": "age",
                "goal": {"metric": "rmse", "at_most": 5}, "costs": {"false_positive": 1, "false_negative": 2}}
    with pytest.raises(SpecError, match=r"business\.costs: costs weigh wrong class decisions and task 'regression' "
                                        r"makes none; remove 'costs'"):
        load_spec(write_spec(project_dir, business=business))


def test_a_class_named_twice_is_refused(chile_dir):
    frame = pd.read_parquet(CHILE).head(400)
    frame["vote"] = frame["vote"].map({"A": 0, "N": 1, "U": 2, "Y": 3})
    frame.to_csv(chile_dir / "chile.csv", index=False)
    with pytest.raises(SpecError, match=r"business\.costs\.per_class: class 2 is named twice \(as 2, '2'\)"):
        load_spec(_multiclass(chile_dir, {"per_class": {2: 5, "2": 3}}))


def test_numeric_classes_are_named_by_their_number(chile_dir):
    frame = pd.read_parquet(CHILE).head(400)
    frame["vote"] = frame["vote"].map({"A": 0, "N": 1, "U": 2, "Y": 3})
    frame.to_csv(chile_dir / "chile.csv", index=False)
    assert load_spec(_multiclass(chile_dir, {"per_class": {0: 8}})).business.costs.per_class == {"0": 8.0}


def test_a_feature_hook_module_missing_from_the_project_folder_is_named(chile_dir):
    with pytest.raises(SpecError, match=r"model\.features: module 'my_features' not found: no my_features\.py in "
                                        r".+/ and no installed module of that name; put the file beside loopml\.yaml"):
        load_spec(_multiclass(chile_dir, features="my_features:add"))


def test_a_feature_hook_beside_the_spec_loads(chile_dir):
    (chile_dir / "spec_hook_ok.py").write_text("def add(df):\n    return df\n")
    assert load_spec(_multiclass(chile_dir, features="spec_hook_ok:add")).model.features == "spec_hook_ok:add"
