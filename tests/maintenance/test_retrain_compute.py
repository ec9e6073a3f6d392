"""The retrain searches where the loop does: on the spec's Dask cluster, its studies on the store's PostgreSQL."""

import shutil

import optuna
import pytest
import yaml

from loopml.maintenance import maintain_project
from loopml.process import run_project
from loopml.spec import load_spec
from loopml.store import Store
from loopml.store._optuna import optuna_storage

from .conftest import Shop, computers_spec


@pytest.fixture(scope="module")
def local_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=":0")
    try:
        yield cluster
    finally:
        cluster.close()


def _with(root, **sections):
    """The shop's spec with ``sections`` (compute, model, ...) merged into it."""
    doc = yaml.safe_load((root / "loopml.yaml").read_text())
    for name, value in sections.items():
        doc[name] = {**doc.get(name, {}), **value}
    (root / "loopml.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_spec(root)


def _window(result, name="all"):
    return next(d for d in result.decisions if (d.stage, d.gate) == ("model", "goal") and d.evidence["window"] == name)


def test_a_retrain_runs_its_trials_on_the_spec_s_dask_cluster(shop, local_cluster):
    from distributed import Client

    with Client(local_cluster.scheduler_address) as client:
        workers = set(client.scheduler_info()["workers"])
    shop.log(shop.months(13, 16))
    computers_spec(shop.root)
    result = maintain_project(_with(shop.root, compute={"dask": local_cluster.scheduler_address}), shop.store)
    assert result.outcome == "promoted", result.explanation
    board = _window(result).evidence["leaderboard"]
    ran_on = [row["worker"] for row in board if row["trial"] is not None]
    assert len(ran_on) == 3 and set(ran_on) <= workers and None not in ran_on


@pytest.mark.postgres
def test_a_retrain_on_postgresql_keeps_its_optuna_studies_there(tmp_path, shop_template, computers, postgres_url):
    root = tmp_path / "shop"
    shutil.copytree(shop_template, root, ignore=shutil.ignore_patterns(".loopml"))
    store = Store.open(root, url=postgres_url)
    try:
        assert run_project(load_spec(root), store).outcome == "registered"
        shop = Shop(root, store, computers)
        shop.log(shop.months(13, 16))
        # 4 portfolio trials (one per family), then 1 Optuna trial.
        result = maintain_project(_with(root, maintenance={"retrain": {"window": "all", "trials": 5}}), store)
        evidence = _window(result).evidence
        storage = optuna_storage(store)
        names = [n for n in optuna.get_all_study_names(storage) if n.startswith(evidence["optuna_study"] + "/")]
        trials = [t for n in names for t in optuna.load_study(study_name=n, storage=storage).trials]
    finally:
        store.close()
    assert evidence["optuna_study"] == f"shop/run-{result.run_id}/retrain-all"
    tuned = sorted(row["trial"] for row in evidence["leaderboard"] if row["source"] == "optuna")
    assert len(tuned) == 1 and max(t.user_attrs["loopml_trial"] for t in trials) == tuned[0] == 4
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
