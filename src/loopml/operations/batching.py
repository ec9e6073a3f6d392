"""Dynamic micro-batching: concurrent single-record requests share one model call.

A :class:`MicroBatcher` wraps a batch function (records → one result per record, such as
:meth:`~loopml.operations.compiled.CompiledModel.predict_records`). Each request awaits
:meth:`MicroBatcher.submit`; the batcher runs one batch at a time in its own worker thread, so the
event loop stays free. A request that finds the batcher idle runs at once, alone: without
concurrency nothing waits (and when a single record is known to take under ``inline_ms``, it runs
on the event loop itself, since handing it to the thread would cost more than it frees the loop).
Requests that arrive while a batch runs queue up; the next batch takes up to ``max_batch`` of them:
those queued, those already on the sockets (one turn of the event loop), and, with ``max_wait_ms``,
those arriving within that window. By default there is no window (as Triton's dynamic batcher): on a
2-core machine a 1 ms window cost latency and gained no CPU per request. The queue is
bounded: when ``max_queue`` requests wait, :meth:`~MicroBatcher.submit` raises :class:`Overloaded`
at once, and the app answers 503 with ``Retry-After``. An error in a batch call is raised to every
request of that batch, so validate each record before submitting it (one bad record must not fail
the batch it would share).

>>> import asyncio
>>> async def demo():
...     batcher = MicroBatcher(lambda records: [r["x"] * 2 for r in records], max_batch=8)
...     results = await asyncio.gather(*(batcher.submit({"x": i}) for i in range(5)))
...     await batcher.close()
...     return results, batcher.stats.rows
>>> asyncio.run(demo())
([0, 2, 4, 6, 8], 5)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from loopml.errors import LoopmlError, ModelError

__all__ = ["BatchStats", "MicroBatcher", "Overloaded"]

R = TypeVar("R")
T = TypeVar("T")
_EWMA = 0.2  # weight of the latest batch in the running batch time (for Retry-After)


class Overloaded(LoopmlError):
    """The batcher cannot take the request now: its queue is full, or it is closing.

    ``retry_after`` is whole seconds for the HTTP ``Retry-After`` header of the 503 answer.
    """

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class BatchStats:
    """Counters since the batcher was made: batch calls, records predicted, requests refused, the largest batch."""

    batches: int
    rows: int
    rejected: int
    largest: int
    queued: int


class MicroBatcher(Generic[R, T]):
    """Collects concurrent :meth:`submit` calls into batches of one ``predict`` call each.

    ``predict(records)`` returns a sequence with one result per record, in order (a
    :class:`~loopml.operations.compiled.CompiledPrediction` is one); it runs in the batcher's single
    worker thread, one batch at a time. ``max_batch``: the most records per call. ``max_wait_ms``:
    how long a batch that already has company waits to fill (a lone request never waits); raise it
    (1-2 ms) when each call has a high fixed cost, such as a GPU model.
    ``max_queue``: the most requests waiting; one more raises :class:`Overloaded`. ``inline_ms``: a
    batch of one record runs on the event loop when single records have taken less than this (a
    running average of measured calls; the first one always runs in the thread); 0 never does.

    Use it from one event loop (it is not thread-safe); ``predict`` must be safe to run in a thread.

    >>> batcher = MicroBatcher(compiled.predict_records, max_batch=32)   # doctest: +SKIP
    >>> row = await batcher.submit({"age": 41, "sex": "female"})         # doctest: +SKIP
    """

    def __init__(self, predict: Callable[[list[R]], Sequence[T]], *, max_batch: int = 64, max_wait_ms: float = 0.0,
                 max_queue: int = 1024, inline_ms: float = 0.25):
        if not callable(predict):
            raise LoopmlError(f"MicroBatcher needs a callable that predicts a list of records; got "
                              f"{type(predict).__name__}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise LoopmlError(f"max_batch must be a positive number of records; got {max_batch!r}")
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) or not 0 <= max_wait_ms <= 1000:
            raise LoopmlError(f"max_wait_ms must be between 0 and 1000 milliseconds; got {max_wait_ms!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise LoopmlError(f"max_queue must be a positive number of requests; got {max_queue!r}")
        if isinstance(inline_ms, bool) or not isinstance(inline_ms, (int, float)) or not 0 <= inline_ms <= 10:
            raise LoopmlError(f"inline_ms must be between 0 and 10 milliseconds; got {inline_ms!r}")
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.inline_s = inline_ms / 1000
        self._queue: deque[tuple[R, asyncio.Future[T]]] = deque()
        self._full: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._batch_s = 0.001  # running average of a batch call (Retry-After)
        self._single_s: float | None = None  # running average of a one-record call; None until measured
        self._batches = self._rows = self._rejected = self._largest = 0

    @property
    def stats(self) -> BatchStats:
        return BatchStats(self._batches, self._rows, self._rejected, self._largest, len(self._queue))

    async def submit(self, record: R) -> T:
        """``record``'s own result from a shared batch call; raises what the batch call raised.

        Raises :class:`Overloaded` at once, without queueing, when ``max_queue`` requests already
        wait or the batcher is closed.
        """
        if self._closed:
            self._rejected += 1
            raise Overloaded("the model server is shutting down; send the request again shortly", retry_after=1)
        if len(self._queue) >= self.max_queue:
            self._rejected += 1
            seconds = max(1, math.ceil(self._batch_s * len(self._queue) / self.max_batch))
            raise Overloaded(f"the model server is at capacity: {len(self._queue):,} requests are waiting "
                             f"(max_queue {self.max_queue:,}); retry in {seconds} s or send fewer requests at once",
                             retry_after=seconds)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((record, future))
        if self._full is None:
            self._full = asyncio.Event()
        if len(self._queue) >= self.max_batch:
            self._full.set()
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        return await future

    async def close(self) -> None:
        """Refuse new requests, finish those queued, and stop the worker thread."""
        self._closed = True
        if self._runner is not None:
            await asyncio.shield(self._runner)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    # -- the one runner task ---------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopml-batch")
        try:
            while self._queue:
                if 1 < len(self._queue) < self.max_batch:
                    await self._fill()
                batch = self._take()
                if len(batch) == 1 and self._single_s is not None and self._single_s < self.inline_s:
                    self._finish(batch, _outcome(self._predict, [batch[0][0]]))
                elif batch:
                    await self._call(loop, batch)
        except BaseException:  # the runner itself is cancelled (the loop is stopping): no request may hang
            while self._queue:
                self._queue.popleft()[1].cancel()
            raise
        finally:
            self._runner = None

    async def _fill(self) -> None:
        """Wait up to ``max_wait_s`` for the queue to reach ``max_batch`` (others are already waiting)."""
        await asyncio.sleep(0)  # one turn of the loop: requests already on the sockets join the batch
        if len(self._queue) >= self.max_batch or self.max_wait_s == 0:
            return
        assert self._full is not None
        self._full.clear()
        try:
            async with asyncio.timeout(self.max_wait_s):
                await self._full.wait()
        except TimeoutError:
            pass

    def _take(self) -> list[tuple[R, asyncio.Future[T]]]:
        batch: list[tuple[R, asyncio.Future[T]]] = []
        while self._queue and len(batch) < self.max_batch:
            record, future = self._queue.popleft()
            if not future.done():  # its request was cancelled (the client went away): skip it
                batch.append((record, future))
        return batch

    async def _call(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[R, asyncio.Future[T]]]) -> None:
        try:
            outcome = await loop.run_in_executor(self._executor, _outcome, self._predict, [r for r, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        self._finish(batch, outcome)

    def _finish(self, batch: list[tuple[R, asyncio.Future[T]]], outcome: tuple[list[T] | BaseException, float]) -> None:
        """Resolve every request of ``batch`` with its own result, or all of them with the batch's error."""
        results, seconds = outcome
        self._batch_s += _EWMA * (seconds - self._batch_s)
        if len(batch) == 1:
            self._single_s = seconds if self._single_s is None else self._single_s + _EWMA * (seconds - self._single_s)
        self._batches += 1
        self._rows += len(batch)
        self._largest = max(self._largest, len(batch))
        for i, (_, future) in enumerate(batch):
            if future.done():  # cancelled while its batch ran
                continue
            if isinstance(results, BaseException):
                future.set_exception(results)
            else:
                future.set_result(results[i])


def _outcome(predict: Callable[[list[Any]], Sequence[Any]], records: list[Any]) -> tuple[list[Any] | Exception, float]:
    """(one result per record, or the error the call raised; the seconds it took), off the event loop."""
    started = time.perf_counter()
    try:
        results = predict(records)
        if len(results) != len(records):
            raise ModelError(f"the batch function returned {len(results)} results for {len(records)} records; "
                             "it must return one result per record, in order")
        out: list[Any] | Exception = [results[i] for i in range(len(records))]
    except Exception as exc:  # every request of the batch gets the batch's error
        out = exc
    return out, time.perf_counter() - started
