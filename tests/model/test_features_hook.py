"""The user's feature hook: imported from the spec's folder, checked, and named in every error."""

import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.model.features import apply_feature_hook

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
