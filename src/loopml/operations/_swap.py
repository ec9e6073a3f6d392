"""Hot swap: follow the registry alias and replace the served model without stopping the server.

A background task asks the store where the alias points every ``reload_interval_s``; when it moved,
the new version is loaded and prepared in a thread (off the request path) and then becomes current
in one reference assignment. A request reads the current model once, when it starts, so requests
in flight finish on the model they started with.

>>> holder = ModelHolder(store, "benefits-outreach", "champion", load=load)   # doctest: +SKIP
>>> await holder.refresh()          # True: a new version is now served        # doctest: +SKIP
>>> holder.current.served.model_version.version                                 # doctest: +SKIP
2
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from loopml.errors import ModelError
from loopml.store.metadata import ModelVersion, Store

if TYPE_CHECKING:
    from loopml.operations.batching import MicroBatcher
    from loopml.operations.compiled import CompiledModel
    from loopml.operations.serve import ServedModel

logger = logging.getLogger("loopml.operations.serve")


@dataclass(frozen=True)
class Live:
    """A served model with what was prepared for it: the compiled predictor and its micro-batcher, if any."""

    served: ServedModel
    fast: CompiledModel
    batcher: MicroBatcher | None = None  # only for a compiled model (see serve._prepare)

    @property
    def version(self) -> int:
        return self.served.model_version.version


class ModelHolder:
    """The model one app serves now, and the loop that swaps it when the alias moves.

    ``load()`` loads and prepares the version the alias points at (it runs in a thread);
    ``on_swap(new, old)`` runs on the event loop right after the swap.
    """

    def __init__(self, store: Store, project: str, alias: str, *, load: Callable[[], Live],
                 on_swap: Callable[[Live, Live | None], None] = lambda new, old: None,
                 current: Live | None = None):
        self.store = store
        self.project = project
        self.alias = alias
        self.current = current
        self.error = "the model is still loading"
        self._load = load
        self._on_swap = on_swap
        self._failed_id: int | None = None  # a version that failed to load is retried only when forced
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> bool:
        """Swap in the version the alias points at, if it is not the one served; True when swapped.

        Raises what loading raised (the current model stays served); ``force`` retries a version
        that failed before.
        """
        async with self._lock:
            target = await run_in_threadpool(self.store.alias, self.project, self.alias)
            if target is None:
                if self.current is None:
                    raise ModelError(f"project '{self.project}' has no {self.alias} yet; run `loopml run` first")
                return False  # the alias was removed: keep serving what we have rather than nothing
            if not self._wanted(target, force):
                return False
            try:
                new = await run_in_threadpool(self._load)
            except Exception:
                self._failed_id = target.id
                raise
            old, self.current = self.current, new
            self._failed_id = None
            self.error = ""
        self._on_swap(new, old)
        if old is not None:
            logger.warning("loopml serve: %s of '%s' moved; now serving version %d (was %d)",
                           self.alias, self.project, new.version, old.version)
        return True

    async def watch(self, interval_s: float, on_error: Callable[[Exception], None]) -> None:
        """Refresh every ``interval_s`` until cancelled; a failure is reported and the loop goes on."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watcher must outlive a bad version or a store hiccup
                on_error(exc)

    def _wanted(self, target: ModelVersion, force: bool) -> bool:
        if self.current is not None and target.id == self.current.served.model_version.id:
            return False
        return force or target.id != self._failed_id
