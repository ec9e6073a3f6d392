"""A real Dask cluster on loopback: a scheduler and 2 worker processes, shared by the compute tests."""

import pytest

from loopml.compute import connect


@pytest.fixture(scope="package")
def local_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=":0")  # a free port: another cluster may hold 8787
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def dask_cluster(local_cluster):
    """A connection to the shared cluster, closed after the test (the cluster keeps running)."""
    with connect(local_cluster.scheduler_address) as cluster:
        yield cluster
