"""A model trained with a feature hook, served over real HTTP: the hook runs on every request.

The contract checks the raw columns a client sends (before the hook). A hook that fails on rows the
contract accepted is a fault of the server's code, not of the request: the answer is a JSON 500 whose
detail names the hook, and the failure is logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_feature_hook_loop import HOOK, HOOK_SOURCE, product_project, product_rows

from loopml.operations import create_app, load_served_model
from loopml.process import run_project
from loopml.spec import load_spec
from loopml.store import Store

# The project's hook refuses readings that are not positive (the contract lets them through: it
# checks types, not ranges), so one request makes it fail at serving.
STRICT_HOOK = ("def product(df):\n"
               "    if (df[['x1', 'x2', 'x3']] <= 0).any().any():\n"
               "        raise ValueError('readings must be positive')\n") + HOOK_SOURCE.split("\n", 1)[1]


@pytest.fixture(scope="module")
def hooked_store(tmp_path_factory) -> Iterator[tuple[Path, Store]]:
    folder = tmp_path_factory.mktemp("served_products")
    product_project(folder)
    (folder / "interactions.py").write_text(STRICT_HOOK)
    spec = load_spec(folder / "loopml.yaml")
    store = Store.open(spec.root)
    result = run_project(spec, store)
    assert result.outcome == "registered", result.explanation
    yield folder, store
    store.close()


@pytest.fixture(scope="module")
def hooked_client(hooked_store, run_app) -> Iterator[httpx.Client]:
    _, store = hooked_store
    with run_app(create_app(store, "products")) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_the_store_knows_its_project_folder_and_serving_loads_the_hook_from_it(hooked_store):
    folder, store = hooked_store
    assert store.root == folder.resolve()
    served = load_served_model(store, "products")
    assert served.model.feature_hook == HOOK and served.model.root == folder.resolve()


def test_a_served_prediction_applies_the_hook(hooked_client, hooked_store):
    rows = product_rows(60, seed=1)
    truth = rows.pop("y")
    r = hooked_client.post("/predict", json={"rows": rows.to_dict("records")})
    assert r.status_code == 200, r.text
    served = [p["prediction"] for p in r.json()["predictions"]]
    # Without the product no model reaches this; with it every row but a near-tie is right.
    assert np.mean(np.asarray(served) == truth.to_numpy()) >= 0.98
    model = load_served_model(hooked_store[1], "products").model
    assert served == model.predict(rows).tolist()


def test_the_contract_checks_the_columns_the_client_sends_before_the_hook(hooked_client):
    r = hooked_client.post("/predict", json={"row": {"x1": 1.0, "x2": 2.0}})
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert (problem["row"], problem["column"]) == (0, "x3")


def test_a_hook_failing_at_serving_answers_a_json_500_naming_the_hook(hooked_client):
    r = hooked_client.post("/predict", json={"row": {"x1": -1.0, "x2": 2.0, "x3": 1.0}})
    assert r.status_code == 500
    (problem,) = r.json()["detail"]
    assert problem["reason"].startswith(f"feature hook '{HOOK}' raised ValueError: readings must be positive")
