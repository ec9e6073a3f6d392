"""Tasks on the workers of a Dask cluster (``compute: {dask: ADDRESS}`` or ``loopml run --cluster ADDRESS``).

The shared data (the search's prepared folds) is scattered to every worker once; each task is a
future whose result comes back with the address of the worker that ran it. Workers need loopml
installed in the same version as here: they import the functions they run.

>>> cluster = connect("tcp://127.0.0.1:8786")          # doctest: +SKIP
>>> [d.worker for d in cluster.map(pow, [(2,), (3,)], cluster.share(2))]  # doctest: +SKIP
['tcp://127.0.0.1:40411', 'tcp://127.0.0.1:35807']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loopml.compute._base import Done, _check_batch
from loopml.errors import ComputeError

__all__ = ["DaskCluster", "connect", "looks_like_address", "require_dask"]

DEFAULT_BATCH = 4  # Optuna trials asked at once on a cluster: fixed, so the model does not depend on its size
_ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_FIX = ("start a scheduler with `dask scheduler` and workers with `dask worker ADDRESS`, or fix compute.dask in "
        "the spec (or --cluster)")


def require_dask(what: str) -> None:
    """Raise :class:`~loopml.errors.ComputeError` saying how to install dask when it is missing."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ComputeError(f"{what} needs dask and distributed, which are not installed ({exc}); "
                           "install them with: pip install 'loopml[dask]'") from exc


def looks_like_address(value: str) -> bool:
    """Whether ``value`` is a scheduler address (``tcp://host:port``, ``tls://host:port``) or a scheduler file.

    >>> looks_like_address("tcp://10.0.0.5:8786"), looks_like_address("scheduler.json"), looks_like_address("host")
    (True, True, False)
    """
    return bool(_ADDRESS.match(value)) or value.endswith(".json")


class DaskCluster:
    """A connection to a Dask scheduler; tasks run on its workers (see :func:`connect`)."""

    def __init__(self, client: Any, address: str, *, batch: int = DEFAULT_BATCH):
        self.client, self.address, self.batch = client, address, _check_batch(batch)
        self._shared: list[Any] = []

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info()["workers"]))

    def worker_addresses(self) -> list[str]:
        return sorted(self.client.scheduler_info()["workers"])

    def share(self, value: Any) -> Any:
        """Ship ``value`` to every worker once; tasks of :meth:`map` get it as their first argument."""
        future = self.client.scatter(value, broadcast=True, hash=False)
        self._shared.append(future)
        return future

    def map(self, fn: Callable[..., Any], items: Sequence[tuple], shared: Any) -> list[Done]:
        """``fn(shared, *args)`` for each ``args`` as futures on the workers; results in the order given."""
        futures = [self.client.submit(_on_worker, fn, shared, *args, pure=False) for args in items]
        return [Done(value, worker) for value, worker in self.client.gather(futures)]

    def close(self) -> None:
        """Release the shared data and disconnect (the cluster keeps running)."""
        for future in self._shared:
            future.release()
        self._shared.clear()
        self.client.close()

    def describe(self) -> str:
        return f"Dask at {self.address} ({self.workers} workers), Optuna in batches of {self.batch}"

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(address: str, *, batch: int | None = None, timeout_s: float = 10.0,
            root: Path | None = None) -> DaskCluster:
    """Connect to the Dask scheduler at ``address`` (``tcp://host:port``, or a scheduler file) and wait for a worker.

    Raises :class:`~loopml.errors.ComputeError` naming the address and the fix when no scheduler
    answers within ``timeout_s`` seconds, or it has no worker. A relative scheduler file is found from ``root``.
    """
    address = str(address).strip()
    if not looks_like_address(address):
        raise ComputeError(f"compute.dask: found {address!r}; expected a scheduler address like tcp://host:8786 or a "
                           "scheduler file (.json) written by `dask scheduler --scheduler-file FILE`")
    require_dask(f"compute.dask ({address})")
    from distributed import Client

    try:
        if _ADDRESS.match(address):
            client = Client(address, timeout=timeout_s, set_as_default=False)
        else:
            path = Path(address) if root is None else Path(root) / address
            if not path.is_file():
                raise ComputeError(f"compute.dask: scheduler file {path} does not exist; {_FIX}")
            client = Client(scheduler_file=str(path), timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ComputeError(f"no Dask scheduler answered at {address} within {timeout_s:g}s "
                           f"({type(exc).__name__}); {_FIX}") from exc
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        client.close()
        raise ComputeError(f"the Dask scheduler at {address} has no worker after {timeout_s:g}s; start one with "
                           f"`dask worker {address}`") from exc
    return DaskCluster(client, address, batch=DEFAULT_BATCH if batch is None else batch)


def _on_worker(fn: Callable[..., Any], shared: Any, *args: Any) -> tuple[Any, str]:
    from distributed import get_worker

    return fn(shared, *args), get_worker().address
