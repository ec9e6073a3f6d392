"""Where work runs: in this process, or on the workers of a Dask cluster.

The search hands a batch of independent tasks (cross-validation trials) to a :class:`Compute`; each
finished task comes back as a :class:`Done`, its value and the worker that ran it. The batch size
for Optuna (``batch``: trials asked before their scores are told) belongs to the compute, and it,
not the place the trials run, decides the model: ``InProcess(batch=4)`` and ``DaskCluster(address,
batch=4)`` give the same model for the same seed and data.

>>> compute = InProcess()
>>> [d.value for d in compute.map(lambda shared, x: shared + x, [(1,), (2,)], compute.share(10))]
[11, 12]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.compute._base import Compute, Done, InProcess, parse_memory
from loopml.compute.dask import DaskCluster, connect
from loopml.compute.lightgbm_dask import DaskFit, fit_lightgbm_dask

if TYPE_CHECKING:
    from loopml.spec import ProjectSpec

__all__ = ["Compute", "DaskCluster", "DaskFit", "Done", "InProcess", "compute_for", "connect", "fit_lightgbm_dask",
           "optuna_batch", "parse_memory"]


def optuna_batch(spec: ProjectSpec) -> int:
    """Optuna trials asked at once for ``spec``: ``compute.batch``, else 4 on a cluster and 1 in-process."""
    from loopml.compute.dask import DEFAULT_BATCH

    return spec.compute.batch or (DEFAULT_BATCH if spec.compute.dask else 1)


def compute_for(spec: ProjectSpec) -> Compute:
    """Where ``spec``'s search trials run: in this process, or on the cluster ``compute.dask`` names (connected)."""
    batch = optuna_batch(spec)
    if spec.compute.dask is None:
        return InProcess(batch=batch)
    return connect(spec.compute.dask, batch=batch, root=spec.root)
