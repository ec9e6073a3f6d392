"""Hot swap: follow the registry alias and replace the served model without stopping the server.

A background task asks the store where the alias points every ``reload_interval_s``; when it moved,
the new version is loaded and prepared in a thread (off the request path) and then becomes current
in one reference assignment. A request reads the current model once, when it starts, so requests
in flight finish on the model they started with.

In a shadow or canary release a second holder follows the ``challenger`` alias (it may point at
nothing). :func:`canary_routed` picks the requests a canary answers; a :class:`ShadowScorer` has the
challenger score what the champion answered, in a thread of its own, after the answer is sent.

>>> holder = ModelHolder(store, "benefits-outreach", "champion", load=load)   # doctest: +SKIP
>>> await holder.refresh()          # True: a new version is now served        # doctest: +SKIP
>>> holder.current.served.model_version.version                                 # doctest: +SKIP
2
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    ``on_swap(new, old)`` runs on the event loop right after the swap. An ``optional`` alias (the
    challenger) may point at nothing: when it is removed the holder lets its model go (``new`` is None),
    where a required one keeps serving what it has.
    """

    def __init__(self, store: Store, project: str, alias: str, *, load: Callable[[], Live],
                 on_swap: Callable[[Live | None, Live | None], None] = lambda new, old: None,
                 current: Live | None = None, optional: bool = False):
        self.store = store
        self.project = project
        self.alias = alias
        self.current = current
        self.optional = optional
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
            if target is None and self.optional:
                return self._let_go("was removed")
            if target is None:
                if self.current is None:
                    raise ModelError(f"project '{self.project}' has no {self.alias} yet; run `loopml run` first")
                return False  # the alias was removed: keep serving what we have rather than nothing
            if not self._wanted(target, force):
                return False
            try:
                new = await run_in_threadpool(self._load)
            except Exception:
                if self.optional:  # the alias names another version now: the one held takes no more traffic
                    self._let_go(f"moved to version {target.version}, which could not be loaded")
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

    def _let_go(self, why: str) -> bool:
        # Called under the lock: an optional alias serves nothing unless it points at a version that loaded.
        old, self.current = self.current, None
        self._failed_id = None
        self.error = f"the {self.alias} alias of '{self.project}' {why}"
        if old is None:
            return False
        self._on_swap(None, old)
        logger.warning("loopml serve: the %s alias of '%s' %s; version %d no longer takes traffic",
                       self.alias, self.project, why, old.version)
        return True

    def _wanted(self, target: ModelVersion, force: bool) -> bool:
        if self.current is not None and target.id == self.current.served.model_version.id:
            return False
        return force or target.id != self._failed_id


def canary_routed(prediction_id: str, share: float) -> bool:
    """Whether the canary answers the request whose (first) prediction id is ``prediction_id``.

    A hash of the id, not a random draw: the same id always routes the same way, so the log can be
    checked afterwards (a row's role is recomputable from its id), and ids spread evenly over the share.

    >>> canary_routed("9f0c2d", 0.0), canary_routed("9f0c2d", 1.0)
    (False, True)
    """
    digest = hashlib.blake2b(prediction_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2.0**64


@dataclass
class _Job:
    live: Live
    records: list[dict[str, Any]]
    ids: list[str]


class ShadowScorer:
    """The challenger scores what the champion answered, in one thread of its own, never on a request's path.

    :meth:`submit` only queues (microseconds, never blocks, never raises); the thread takes what waits, up to
    ``max_batch`` records of one challenger, and calls ``score(live, records, answered_ids)`` (which predicts
    and logs the shadow rows). A batch that fails is retried request by request, so one record the challenger
    refuses costs only its own request's shadow; a failure is logged once per version and counted in
    ``failed``. Past ``max_pending`` queued records new ones are dropped and counted in ``dropped``: under
    overload the shadow gives way, never the answers.

    >>> shadow = ShadowScorer(lambda live, records, ids: None)   # doctest: +SKIP
    >>> shadow.start(); shadow.submit(challenger, records, ids)   # doctest: +SKIP
    """

    def __init__(self, score: Callable[[Live, list[dict[str, Any]], list[str]], None], *,
                 max_pending: int = 10_000, max_batch: int = 512):
        self._score = score
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._pending = 0
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._warned: set[int] = set()
        self.scored = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="loopml-shadow", daemon=True)
                self._thread.start()

    def submit(self, live: Live, records: list[dict[str, Any]], ids: list[str]) -> bool:
        """Queue ``records`` (answered as ``ids``) for the challenger ``live``; False when dropped."""
        with self._cond:
            if self._closing or self._pending + len(records) > self._max_pending:
                self.dropped += len(records)
                return False
            self._queue.append(_Job(live, records, ids))
            self._pending += len(records)
            self._cond.notify()
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is scored; False when ``timeout`` seconds were not enough."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Score what is queued (for at most ``timeout`` seconds; the rest is dropped), then stop the thread."""
        self.drain(timeout)
        with self._cond:
            self._closing = True
            left = self._pending
            self.dropped += left
            self._queue.clear()
            self._pending = 0
            self._cond.notify_all()
            thread = self._thread
        if left:
            logger.warning("loopml serve: %d shadow records were not scored before the server stopped", left)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if self._closing:
                    return
                jobs = [self._queue.popleft()]
                rows = len(jobs[0].records)
                while self._queue and self._queue[0].live is jobs[0].live \
                        and rows + len(self._queue[0].records) <= self._max_batch:
                    jobs.append(self._queue.popleft())
                    rows += len(jobs[-1].records)
                self._pending -= rows
                self._busy = True
            try:
                self._batch(jobs)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _batch(self, jobs: list[_Job]) -> None:
        live = jobs[0].live
        try:
            self._score(live, [r for j in jobs for r in j.records], [i for j in jobs for i in j.ids])
            self.scored += sum(len(j.records) for j in jobs)
            return
        except Exception as exc:  # the shadow must outlive any failure of the challenger
            if len(jobs) == 1:
                self._failed(live, jobs[0], exc)
                return
        for job in jobs:  # one request's records may be what failed: score each request alone
            try:
                self._score(live, job.records, job.ids)
                self.scored += len(job.records)
            except Exception as exc:
                self._failed(live, job, exc)

    def _failed(self, live: Live, job: _Job, exc: Exception) -> None:
        self.failed += len(job.records)
        if live.version not in self._warned:  # once per version: a broken challenger must not flood the log
            self._warned.add(live.version)
            logger.warning("loopml serve: shadow version %d failed on %d record(s) the champion answered (%s: %s); "
                           "the answers are not affected; further failures are only counted",
                           live.version, len(job.records), type(exc).__name__, exc)

