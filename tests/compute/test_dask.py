"""Search trials on a real 2-worker Dask cluster: where they ran, the same model as in-process, clear errors."""

import socket

import pandas as pd
import pytest

from loopml.compute import DaskCluster, InProcess, connect
from loopml.errors import ComputeError
from loopml.model import SearchPlan, search
from loopml.spec import GoalSpec

# 4 portfolio trials, then 5 Optuna trials: two batches of 4 and 1 on the cluster.
PLAN = SearchPlan(trials=9, folds=3, n_estimators=60)
GOAL = GoalSpec(metric="roc_auc", at_least=0.6)


@pytest.fixture(scope="module")
def benefits_train(benefits_csv) -> pd.DataFrame:
    return pd.read_csv(benefits_csv).head(2500)


@pytest.fixture(scope="module")
def on_dask(local_cluster, benefits_train):
    with connect(local_cluster.scheduler_address) as cluster:
        workers = cluster.worker_addresses()
        result = search(benefits_train, target="ui", task="binary", goal=GOAL, positive="yes", plan=PLAN,
                        compute=cluster)
    return result, workers


def test_trials_run_on_both_workers_and_each_records_its_worker(on_dask):
    result, workers = on_dask
    ran_on = [t["worker"] for t in result.trials]
    assert len(ran_on) == 9 and set(ran_on) == set(workers) and len(workers) == 2
    assert [c.worker for c in result.candidates] == ran_on
    assert {row["worker"] for row in result.leaderboard() if row["trial"] is not None} == set(workers)


def test_the_same_model_as_in_process_with_the_same_batch(on_dask, benefits_train):
    result, _ = on_dask
    here = search(benefits_train, target="ui", task="binary", goal=GOAL, positive="yes", plan=PLAN,
                  compute=InProcess(batch=4))
    assert [(t["family"], t["params"], t["score"]) for t in here.trials] == \
        [(t["family"], t["params"], t["score"]) for t in result.trials]
    assert here.model.to_bytes() == result.model.to_bytes()
    assert all("worker" not in t for t in here.trials)


def test_the_default_in_process_search_is_unchanged_by_a_cluster_for_the_portfolio(dask_cluster, benefits_train):
    plan = SearchPlan(trials=4, folds=3, n_estimators=60, ensemble=False)
    there = search(benefits_train, target="ui", task="binary", goal=GOAL, positive="yes", plan=plan,
                   compute=dask_cluster)
    here = search(benefits_train, target="ui", task="binary", goal=GOAL, positive="yes", plan=plan)
    assert [t["score"] for t in here.trials] == [t["score"] for t in there.trials]
    assert here.model.to_bytes() == there.model.to_bytes()


def test_a_batch_of_tasks_returns_results_in_order_with_worker_addresses(dask_cluster):
    done = dask_cluster.map(pow, [(i,) for i in range(6)], dask_cluster.share(2))
    assert [d.value for d in done] == [2**i for i in range(6)]
    assert {d.worker for d in done} <= set(dask_cluster.worker_addresses())
    assert isinstance(dask_cluster, DaskCluster) and dask_cluster.workers == 2 and dask_cluster.batch == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_scheduler_answering_names_the_address_and_the_fix():
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(ComputeError, match=rf"no Dask scheduler answered at {address} within 1s .*`dask scheduler`"):
        connect(address, timeout_s=1)


def test_a_scheduler_without_workers_says_how_to_start_one():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as empty:
        with pytest.raises(ComputeError, match=r"has no worker after 1s; start one with `dask worker tcp://"):
            connect(empty.scheduler_address, timeout_s=1)


def test_a_missing_scheduler_file_is_named(tmp_path):
    with pytest.raises(ComputeError, match=r"scheduler file .*sched.json does not exist; start a scheduler"):
        connect("sched.json", root=tmp_path)


def test_an_address_that_is_neither_url_nor_file_is_refused():
    with pytest.raises(ComputeError, match=r"found 'localhost:8786'; expected a scheduler address like tcp://"):
        connect("localhost:8786")


def test_a_batch_out_of_range_is_refused():
    with pytest.raises(ComputeError, match=r"batch must be a whole number of trials in 1..64; got 0"):
        InProcess(batch=0)
