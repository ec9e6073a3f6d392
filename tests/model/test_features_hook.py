"""The user's feature hook: imported from the spec's folder, checked, and named in every error."""

import hashlib

import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.model import SearchPlan, search
from loopml.model.features import apply_feature_hook, feature_hook_sha256, load_feature_hook
from loopml.spec import GoalSpec

FRAME = pd.DataFrame({"x": [1.0, 2.0, 3.0]})


def _hook(tmp_path, body: str) -> str:
    """Write ``body`` as a module named after the test (names must differ: imported modules are cached)."""
    name = "hook_" + tmp_path.name.replace("-", "_")
    (tmp_path / f"{name}.py").write_text(body)
    return name


def test_the_hook_adds_columns_on_a_copy(tmp_path):
    module = _hook(tmp_path, "def add(df):\n    df['x2'] = df['x'] ** 2\n    return df\n")
    out = apply_feature_hook(FRAME, f"{module}:add", tmp_path)
    assert out["x2"].tolist() == [1.0, 4.0, 9.0]
    assert list(FRAME.columns) == ["x"]  # the caller's frame is untouched


def test_a_missing_module_is_named(tmp_path):
    with pytest.raises(ModelError, match="feature hook 'no_such_hook_module:add': cannot import module "
                                         "'no_such_hook_module' from"):
        apply_feature_hook(FRAME, "no_such_hook_module:add", tmp_path)


def test_a_missing_function_is_named(tmp_path):
    module = _hook(tmp_path, "def other(df):\n    return df\n")
    with pytest.raises(ModelError, match=f"module '{module}' has no function 'add'"):
        apply_feature_hook(FRAME, f"{module}:add", tmp_path)


def test_a_wrong_return_type_is_named(tmp_path):
    module = _hook(tmp_path, "def add(df):\n    return df['x'].tolist()\n")
    with pytest.raises(ModelError, match=f"feature hook '{module}:add' must return a pandas DataFrame; "
                                         "it returned list"):
        apply_feature_hook(FRAME, f"{module}:add", tmp_path)


def test_a_wrong_row_count_is_named(tmp_path):
    module = _hook(tmp_path, "def add(df):\n    return df.dropna().iloc[:2]\n")
    with pytest.raises(ModelError, match=f"feature hook '{module}:add' must keep every row; "
                                         "it returned 2 rows for 3"):
        apply_feature_hook(FRAME, f"{module}:add", tmp_path)


def test_an_exception_inside_the_hook_is_wrapped_with_its_name(tmp_path):
    module = _hook(tmp_path, "def add(df):\n    return df['nope']\n")
    with pytest.raises(ModelError, match=f"feature hook '{module}:add' raised KeyError"):
        apply_feature_hook(FRAME, f"{module}:add", tmp_path)


def test_a_malformed_hook_is_refused():
    with pytest.raises(ModelError, match="must be 'module:function'"):
        apply_feature_hook(FRAME, "just_a_module", ".")


def test_an_edited_hook_file_is_imported_afresh(tmp_path):
    module = _hook(tmp_path, "def add(df):\n    df['y'] = 1\n    return df\n")
    assert apply_feature_hook(FRAME, f"{module}:add", tmp_path)["y"].tolist() == [1, 1, 1]
    (tmp_path / f"{module}.py").write_text("def add(df):\n    df['y'] = 22\n    return df\n")
    assert apply_feature_hook(FRAME, f"{module}:add", tmp_path)["y"].tolist() == [22, 22, 22]


def test_each_project_gets_its_own_module_of_the_same_name(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, value in ((first, 1), (second, 2)):
        folder.mkdir()
        (folder / "same_name_hook.py").write_text(f"def add(df):\n    df['y'] = {value}\n    return df\n")
    assert apply_feature_hook(FRAME, "same_name_hook:add", first)["y"].iloc[0] == 1
    assert apply_feature_hook(FRAME, "same_name_hook:add", second)["y"].iloc[0] == 2


def test_a_module_that_fails_to_import_is_named(tmp_path):
    module = _hook(tmp_path, "raise RuntimeError('no config')\n")
    with pytest.raises(ModelError, match=f"feature hook '{module}:add': importing module '{module}' raised "
                                         "RuntimeError: no config"):
        load_feature_hook(f"{module}:add", tmp_path)


def test_the_hook_hash_follows_the_file(tmp_path):
    module = _hook(tmp_path, "def add(df):\n    return df\n")
    before = feature_hook_sha256(f"{module}:add", tmp_path)
    (tmp_path / f"{module}.py").write_text("def add(df):\n    return df.assign(z=0)\n")
    assert feature_hook_sha256(f"{module}:add", tmp_path) != before
    assert before == hashlib.sha256(b"def add(df):\n    return df\n").hexdigest()


def test_the_hash_of_a_missing_hook_module_names_it(tmp_path):
    with pytest.raises(ModelError, match="feature hook 'nowhere_hook:add': no module 'nowhere_hook' in .+ or the "
                                         "installed packages; put nowhere_hook.py beside loopml.yaml"):
        feature_hook_sha256("nowhere_hook:add", tmp_path)


def test_search_applies_the_hook_before_anything_is_learned(tmp_path, iris):
    module = _hook(tmp_path, "def add(df):\n    df['petal_ratio'] = df['petal length (cm)'] / "
                             "df['petal width (cm)']\n    return df\n")
    model = search(iris, target="target", task="multiclass", goal=GoalSpec(metric="accuracy", at_least=0.5),
                   plan=SearchPlan(families=("linear",), folds=3), feature_hook=f"{module}:add",
                   hook_root=tmp_path).model
    assert "petal_ratio" in model.preprocessor.columns and model.feature_hook == f"{module}:add"


def test_search_with_a_hook_needs_its_folder(iris):
    with pytest.raises(ModelError, match="feature hook 'somewhere:add' needs hook_root, the folder its module is "
                                         "imported from"):
        search(iris, target="target", task="multiclass", goal=GoalSpec(metric="accuracy", at_least=0.5),
               plan=SearchPlan(families=("linear",), folds=3), feature_hook="somewhere:add")
