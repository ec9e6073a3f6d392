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

from loopml.compute._base import Compute, Done, InProcess, parse_memory
from loopml.compute.dask import DaskCluster, connect
from loopml.compute.lightgbm_dask import DaskFit, fit_lightgbm_dask

__all__ = ["Compute", "DaskCluster", "DaskFit", "Done", "InProcess", "connect", "fit_lightgbm_dask", "parse_memory"]
