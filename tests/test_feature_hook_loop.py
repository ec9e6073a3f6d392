"""model.features through the loop: a goal only a hooked feature reaches, reuse, and an edited hook.

The data has a known, injected effect: the label is whether x1 * x2 * x3 exceeds 1, with each x
log-uniform in [0.2, 5]. Trees and a linear model on the raw columns reach about 0.95 accuracy; the
hook adds the product, after which one split separates the classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_spec

from loopml.model import TrainedModel
from loopml.process import run_project
from loopml.spec import load_spec
from loopml.store import Store

HOOK = "interactions:product"
HOOK_SOURCE = "def product(df):\n    df['product'] = df['x1'] * df['x2'] * df['x3']\n    return df\n"


def product_rows(n: int = 800, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(np.exp(rng.uniform(np.log(0.2), np.log(5), size=(n, 3))), columns=["x1", "x2", "x3"]).round(4)
    frame["y"] = np.where(frame["x1"] * frame["x2"] * frame["x3"] > 1, "high", "low")
    return frame


def product_project(folder: Path, *, hook: str | None = HOOK) -> Path:
    """A project folder: the rows, the hook module beside the spec, and a fast spec (goal: accuracy >= 0.98)."""
    product_rows().to_csv(folder / "rows.csv", index=False)
    (folder / "interactions.py").write_text(HOOK_SOURCE)
    model = {"budget": "2m", "seed": 0, "folds": 3, "trials": 2, "max_iterations": 1}
    if hook is not None:
        model["features"] = hook
    return write_spec(folder, project="products",
                      business={"problem": "Is the product of the three readings over 1?", "task": "binary",
                                "target": "y", "positive": "high", "goal": {"metric": "accuracy", "at_least": 0.98}},
                      data={"sources": [{"name": "readings", "path": "rows.csv"}]}, model=model)


def _run(folder: Path):
    spec = load_spec(folder / "loopml.yaml")
    store = Store.open(spec.root)
    try:
        return run_project(spec, store), store
    finally:
        store.close()


@pytest.fixture(scope="module")
def hooked_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("products")
    product_project(folder)
    result, _ = _run(folder)
    return folder, result


def test_a_goal_only_the_hooked_feature_reaches_is_met(hooked_run):
    _, result = hooked_run
    assert result.outcome == "registered", result.explanation
    assert result.model_version.metrics["holdout"]["value"] >= 0.98


def test_without_the_hook_the_same_goal_is_missed(tmp_path):
    product_project(tmp_path, hook=None)
    result, _ = _run(tmp_path)
    assert result.outcome == "goal_not_met"


def test_the_lineage_names_the_hook_and_the_hash_of_its_file(hooked_run):
    import hashlib

    _, result = hooked_run
    assert result.model_version.lineage["feature_hook"] == {
        "hook": HOOK, "sha256": hashlib.sha256(HOOK_SOURCE.encode()).hexdigest()}


def test_the_registered_model_names_the_hook_but_not_the_project_folder(hooked_run):
    folder, result = hooked_run
    store = Store.open(folder)
    try:
        data = store.read_model(result.model_version)
    finally:
        store.close()
    assert TrainedModel.from_bytes(data).feature_hook == HOOK
    assert str(folder) not in data.decode() and folder.name not in data.decode()


def test_a_rerun_reuses_the_model_and_an_edited_hook_trains_again(tmp_path):
    product_project(tmp_path)
    first, _ = _run(tmp_path)
    again, _ = _run(tmp_path)
    reused = [d for d in again.decisions if d.stage == "model" and d.gate == "goal"]
    assert reused[-1].action == "reuse" and again.model_version.version == first.model_version.version
    (tmp_path / "interactions.py").write_text(HOOK_SOURCE + "# the product of all three readings\n")
    edited, _ = _run(tmp_path)
    trained = [d for d in edited.decisions if d.stage == "model" and d.gate == "goal"]
    assert trained[-1].action == "register" and edited.model_version.version == first.model_version.version + 1
    hashes = [r.model_version.lineage["feature_hook"]["sha256"] for r in (first, edited)]
    assert hashes[0] != hashes[1]
