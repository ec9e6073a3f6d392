"""The project spec: a valid file loads; every kind of mistake names the key, what was found, what is allowed."""

from pathlib import Path

import pytest
import yaml
from conftest import write_spec

from loopml.errors import SpecError
from loopml.spec import load_spec, parse_duration, spec_hash


def _edit(project_dir: Path, change) -> Path:
    path = project_dir / "loopml.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_valid_spec_loads_with_defaults(project_dir):
    spec = load_spec(project_dir / "loopml.yaml")
    assert spec.business.goal.describe() == "recall >= 0.6 with precision >= 0.72"
    assert spec.model.budget == 120.0
    assert spec.operations.serve.host == "127.0.0.1"


def test_folder_is_accepted_for_the_spec(project_dir):
    assert load_spec(project_dir).project == "benefits-test"


def test_unknown_top_level_key_suggests_the_right_one(project_dir):
    path = _edit(project_dir, lambda d: d.update(buisness=d.pop("business")))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "buisness: unknown key; did you mean 'business'?" in str(info.value)
    assert "business: required key is missing" in str(info.value)


def test_unknown_nested_key_suggests_the_right_one(project_dir):
    path = _edit(project_dir, lambda d: d["business"]["goal"].update(at_lest=0.7))
    with pytest.raises(SpecError, match=r"business\.goal\.at_lest: unknown key; did you mean 'at_least'\?"):
        load_spec(path)


def test_wrong_type_names_key_and_value(project_dir):
    path = _edit(project_dir, lambda d: d["model"].update(seed="zero"))
    with pytest.raises(SpecError, match=r"model\.seed: found 'zero' \(str\)"):
        load_spec(path)


def test_goal_metric_must_fit_the_task(project_dir):
    path = _edit(project_dir, lambda d: d["business"]["goal"].update(metric="rmse"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "business.goal.metric: found 'rmse', which does not fit task 'binary'" in message
    assert "allowed: accuracy, average_precision" in message


def test_task_outside_the_allowed_values(project_dir):
    path = _edit(project_dir, lambda d: d["business"].update(task="classification"))
    with pytest.raises(SpecError, match=r"business\.task: found 'classification'; allowed: 'binary', 'multiclass'"):
        load_spec(path)


def test_goal_needs_exactly_one_bound(project_dir):
    path = _edit(project_dir, lambda d: d["business"]["goal"].update(at_most=0.9))
    with pytest.raises(SpecError, match="give exactly one of 'at_least' or 'at_most'"):
        load_spec(path)


def test_operating_point_constraint_must_be_a_decision_metric(project_dir):
    path = _edit(project_dir, lambda d: d["business"]["goal"].update({"with": {"roc_auc": 0.9}}))
    with pytest.raises(SpecError, match=r"business\.goal\.with: found 'roc_auc'; allowed: accuracy"):
        load_spec(path)


def test_missing_data_file_is_named(project_dir):
    (project_dir / "benefits.csv").unlink()
    with pytest.raises(SpecError, match=r"data\.sources\.0\.path: file 'benefits\.csv' not found"):
        load_spec(project_dir / "loopml.yaml")


def test_target_not_in_data_suggests_a_column(project_dir):
    path = _edit(project_dir, lambda d: d["business"].update(target="UI"))
    with pytest.raises(SpecError, match=r"business\.target: column 'UI' is not in benefits\.csv; did you mean 'ui'\?"):
        load_spec(path)


def test_positive_class_must_be_a_value_of_the_target(project_dir):
    path = _edit(project_dir, lambda d: d["business"].update(positive="Yes"))
    with pytest.raises(SpecError, match=r"business\.positive: 'Yes' is not a value of target 'ui'; values: no, yes"):
        load_spec(path)


def test_binary_task_needs_two_target_values(project_dir):
    path = _edit(project_dir, lambda d: d["business"].update(target="state", positive=None))
    with pytest.raises(SpecError, match=r"business\.task: 'binary' needs a target with 2 values; 'state' has \d+"):
        load_spec(path)


def test_invalid_yaml_is_reported(tmp_path):
    (tmp_path / "loopml.yaml").write_text("project: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "loopml.yaml")


def test_missing_spec_file_says_how_to_make_one(tmp_path):
    with pytest.raises(SpecError, match="no such spec file; create one with `loopml init DATAFILE`"):
        load_spec(tmp_path / "loopml.yaml")


def test_spec_that_is_not_a_mapping(tmp_path):
    (tmp_path / "loopml.yaml").write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="expected a mapping with keys project, business, data; found list"):
        load_spec(tmp_path / "loopml.yaml")


def test_every_problem_is_listed_at_once(project_dir):
    def change(d):
        d["model"]["seed"] = "x"
        d["operations"] = {"serve": {"prot": 80}}
    with pytest.raises(SpecError) as info:
        load_spec(_edit(project_dir, change))
    assert len(info.value.problems) == 2
    assert "2 problems in the spec" in str(info.value)


@pytest.mark.parametrize("text,seconds", [(90, 90.0), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0)])
def test_budget_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_budget_is_explained(project_dir):
    path = _edit(project_dir, lambda d: d["model"].update(budget="soon"))
    with pytest.raises(SpecError,
                       match=r"model\.budget: expected a duration such as 90, '90s', '5m' or '1h', found 'soon'"):
        load_spec(path)


def test_spec_hash_ignores_formatting(project_dir, tmp_path):
    a = load_spec(project_dir)
    doc = yaml.safe_load((project_dir / "loopml.yaml").read_text())
    (project_dir / "loopml.yaml").write_text("# a comment\n" + yaml.safe_dump(doc, sort_keys=True))
    assert spec_hash(load_spec(project_dir)) == spec_hash(a)
    write_spec(project_dir, model={"budget": 60, "seed": 1})
    assert spec_hash(load_spec(project_dir)) != spec_hash(a)


def test_goal_gate_on_a_wrong_value_lists_the_allowed_ones(project_dir):
    path = _edit(project_dir, lambda d: d["business"]["goal"].update(gate_on="lower_bound"))
    with pytest.raises(SpecError,
                       match=r"business\.goal\.gate_on: found 'lower_bound'; allowed: 'point' or 'ci_bound'"):
        load_spec(path)


def test_goal_gated_on_the_confidence_bound_says_so(project_dir):
    assert load_spec(project_dir).business.goal.gate_on == "point"
    spec = load_spec(_edit(project_dir, lambda d: d["business"]["goal"].update(gate_on="ci_bound")))
    assert spec.business.goal.describe() == "recall >= 0.6 (on the lower 95% bound) with precision >= 0.72"


def test_label_noise_cleaning_is_keep_or_drop(project_dir):
    assert load_spec(project_dir).data.clean.label_noise == "keep"
    path = _edit(project_dir, lambda d: d["data"].update(clean={"label_noise": "relabel"}))
    with pytest.raises(SpecError, match=r"data\.clean\.label_noise: found 'relabel'; allowed: 'keep' or 'drop'"):
        load_spec(path)
