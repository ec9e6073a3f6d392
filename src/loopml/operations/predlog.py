"""The prediction log: answered predictions reach the store in group commits, off the request path.

A request hands its rows to :meth:`PredictionLog.append` (no database work, microseconds) and answers;
one writer thread commits everything that arrived in the last ``flush_interval_s`` in ONE transaction.

What is durable when:

- clean stop (SIGTERM, Ctrl-C): uvicorn finishes the requests in flight, then the app's shutdown calls
  :meth:`PredictionLog.close`, which writes every row appended. Nothing answered is lost (close waits for
  a store that is down; only a kill during that wait loses rows).
- hard kill (SIGKILL, the out-of-memory killer, a crash): the rows not yet committed are lost.
  A row appended at time ``t`` is committed by ``t + flush_interval_s + one write`` (when a write takes
  less than ``flush_interval_s``; on a slower store, by ``t + two writes``). So at most the predictions
  answered in the last ``flush_interval_s`` plus one write before the kill are lost.
- store unavailable (database locked, connection lost): the writer keeps the rows and retries with backoff,
  logging a warning; past ``max_pending`` unwritten rows :meth:`~PredictionLog.append` raises
  :class:`LogBackpressure` (the app answers 503) instead of growing without bound or dropping rows.
  A row the store refuses for good (not a transient error) is logged as an error and counted in
  ``rows_failed``, so that one bad row cannot block the log.

:class:`RejectionLog` writes the requests serving refused (422) the same way, by column and kind of
violation (see :func:`rejection_rows`), so that monitoring can count them per window.

>>> log = PredictionLog(store, "benefits-outreach")                        # doctest: +SKIP
>>> log.start()                                                            # doctest: +SKIP
>>> log.append(mv.id, [{"id": "9f0c", "features": {"age": 41}, "prediction": "yes",
...                     "probability": 0.81, "latency_ms": 0.4}])          # doctest: +SKIP
>>> log.record_feedback("9f0c", "no")   # still pending: written first     # doctest: +SKIP
>>> log.close()                                                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from loopml.data.contract import FieldError
from loopml.errors import NotFoundError, SpecError, StoreError
from loopml.store.metadata import Store, row_role

__all__ = ["LogBackpressure", "PredictionLog", "RejectionLog", "rejection_rows"]

logger = logging.getLogger(__name__)

_HOST = socket.gethostname()
_FIRST_RETRY_S = 0.05
_MAX_RETRY_S = 2.0
_MAX_FOREIGN_WAIT_S = 0.5  # how long a 404 waits for a prediction another worker process answered
_REQUIRED = frozenset({"id", "features", "prediction"})


class LogBackpressure(StoreError):
    """Too many predictions wait to be written; the caller should refuse the request (503) and retry later."""


class _GroupWriter:
    """One writer thread committing what callers queued, in group commits; the shared part of both logs.

    A subclass names what it writes (``_name``, ``_what``) and commits a batch in :meth:`_commit`.
    """

    _name = "log"  # in messages: "the prediction log holds ..."
    _what = "rows"  # in messages: "5 predictions were still not written ..."

    def __init__(self, store: Store, project: str, *, flush_interval_s: float, max_batch: int, max_pending: int):
        kind = type(self).__name__
        if not flush_interval_s > 0:
            raise SpecError(f"{kind}: flush_interval_s must be a positive number of seconds; got {flush_interval_s!r}")
        if max_batch < 1:
            raise SpecError(f"{kind}: max_batch must be at least 1 row; got {max_batch!r}")
        if max_pending < max_batch:
            raise SpecError(f"{kind}: max_pending ({max_pending!r}) must be at least max_batch "
                            f"({max_batch!r}), or a full batch could never be appended")
        self._store = store
        self._project = project
        self._interval = float(flush_interval_s)
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._queue: deque[tuple[float, dict[str, Any]]] = deque()  # (monotonic time appended, row)
        self._in_flight = 0
        self._appended = 0
        self._done = 0  # committed, or refused for good
        self._flush_waiters = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._batches_written = 0
        self._rows_written = 0
        self._rows_failed = 0

    # -- what a caller sees ----------------------------------------------------------------------

    @property
    def batches_written(self) -> int:
        """Transactions committed so far (each one group commit)."""
        return self._batches_written

    @property
    def rows_written(self) -> int:
        """Rows committed so far."""
        return self._rows_written

    @property
    def rows_failed(self) -> int:
        """Rows the store refused for good (each logged as an error)."""
        return self._rows_failed

    @property
    def rows_pending(self) -> int:
        """Rows appended and not yet committed (waiting or being written)."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def start(self) -> None:
        """Start the writer thread; calling it again does nothing."""
        with self._cond:
            if self._closing:
                raise StoreError(f"this {self._name} is closed; create a new {type(self).__name__} to log again")
            self._start_locked()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every row appended so far is committed (starting the writer if need be).

        Raises :class:`StoreError` if that takes longer than ``timeout`` seconds (the store is unavailable).
        """
        with self._cond:
            target = self._appended
            if self._done >= target:
                return
            self._start_locked()
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                finished = self._cond.wait_for(lambda: self._done >= target, timeout)
            finally:
                self._flush_waiters -= 1
            if not finished:
                raise StoreError(f"{target - self._done:,} {self._what} were still not written after {timeout:g} s; "
                                 "the store is not accepting writes (the log's warnings say why); they are kept "
                                 "and retried")

    def close(self, timeout: float | None = None) -> None:
        """Write every row appended, then stop the writer; safe to call twice.

        With ``timeout``, raises :class:`StoreError` if the rows are not all written by then.
        """
        with self._cond:
            self._closing = True
            if self._appended > self._done:
                self._start_locked()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise StoreError(f"{self.rows_pending:,} {self._what} were still not written after {timeout:g} s "
                                 "at close; the store is not accepting writes (the log's warnings say why)")

    # -- the queue and the writer ------------------------------------------------------------------

    def _room(self, n: int) -> int | None:
        """Under the lock: None when ``n`` more rows fit under ``max_pending``, else the rows pending now."""
        if self._closing:
            raise StoreError(f"this {self._name} is closed and takes no more {self._what}; "
                             f"create a new {type(self).__name__}")
        pending = len(self._queue) + self._in_flight
        return None if pending + n <= self._max_pending else pending

    def _enqueue(self, stamped: list[dict[str, Any]], at: float) -> None:
        """Under the lock, after :meth:`_room`: queue the rows and wake the writer when it should write."""
        was_empty = not self._queue
        self._queue.extend((at, r) for r in stamped)
        self._appended += len(stamped)
        if was_empty or len(self._queue) >= self._max_batch:
            self._cond.notify_all()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"loopml-{self._name.replace(' ', '-')}",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._queue:
                        if self._closing or self._flush_waiters or len(self._queue) >= self._max_batch:
                            break
                        wait_s = self._queue[0][0] + self._interval - time.monotonic()
                        if wait_s <= 0:
                            break
                        self._cond.wait(wait_s)
                    elif self._closing:
                        return
                    else:
                        self._cond.wait()
                n = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft()[1] for _ in range(n)]
                self._in_flight += n
            self._write(batch)

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Commit ``rows`` in one transaction; retry transient failures, isolate rows refused for good."""
        delay = _FIRST_RETRY_S
        while True:
            try:
                self._commit(rows)
            except Exception as exc:  # the writer must outlive any failure, or flush() would wait forever
                if _transient(exc):
                    logger.warning("%s: writing %d %s failed (%s); they are kept and retried in %.2f s",
                                   self._name, len(rows), self._what, _reason(exc), delay)
                    time.sleep(delay)
                    delay = min(2 * delay, _MAX_RETRY_S)
                    continue
                if len(rows) > 1:
                    # Halve until the refused rows are found, so the good ones still get written.
                    mid = len(rows) // 2
                    self._write(rows[:mid])
                    self._write(rows[mid:])
                    return
                logger.error("%s: the store refuses %s for good, so it is not logged: %s", self._name,
                             _one(self._what, rows[0].get("id")), _reason(exc))
                self._finish(rows, written=False)
                return
            self._finish(rows, written=True)
            return

    def _finish(self, rows: list[dict[str, Any]], *, written: bool) -> None:
        with self._cond:
            if written:
                self._batches_written += 1
                self._rows_written += len(rows)
            else:
                self._rows_failed += len(rows)
            self._done += len(rows)
            self._in_flight -= len(rows)
            self._finished(rows)
            self._cond.notify_all()

    def _finished(self, rows: list[dict[str, Any]]) -> None:
        """Under the lock: ``rows`` are written or refused for good."""


class PredictionLog(_GroupWriter):
    """Appends answered predictions to the store in group commits from one writer thread.

    The writer wakes when the oldest waiting row is ``flush_interval_s`` old, or as soon as ``max_batch`` rows
    wait, and writes up to ``max_batch`` rows in one transaction. On SIGKILL at most the rows appended in the
    last ``flush_interval_s`` plus one write are lost (see the module docstring); :meth:`close` loses none.

    >>> log = PredictionLog(store, "benefits-outreach", flush_interval_s=0.05)   # doctest: +SKIP
    >>> log.start(); log.append(mv.id, rows); log.flush()                        # doctest: +SKIP
    >>> log.batches_written, log.rows_written                                    # doctest: +SKIP
    (1, 3)
    """

    _name = "prediction log"
    _what = "predictions"

    def __init__(self, store: Store, project: str, *, flush_interval_s: float = 0.05, max_batch: int = 5000,
                 max_pending: int = 200_000, worker: str | None = None):
        super().__init__(store, project, flush_interval_s=flush_interval_s, max_batch=max_batch,
                         max_pending=max_pending)
        self._pending_ids: set[str] = set()  # queued or being written
        self._worker = worker

    @property
    def worker(self) -> str:
        """What each row records as its ``worker``: the name given, else this process as "host:pid"."""
        # Read at each append, not at creation: a log made before a fork stamps the child's pid.
        return self._worker or f"{_HOST}:{os.getpid()}"

    def append(self, model_version_id: int, rows: list[dict[str, Any]]) -> None:
        """Queue ``rows`` (as :meth:`Store.log_predictions` takes them) for the next group commit; never blocks.

        A row may name its ``role`` (``champion``, ``canary`` or ``shadow`` with ``shadow_of``), checked here so
        that a bad one fails its caller rather than the writer. Raises :class:`LogBackpressure` when the rows
        would take the log past ``max_pending`` unwritten rows.
        """
        if not rows:
            return
        for r in rows:
            if not _REQUIRED <= r.keys():
                raise StoreError(f"a prediction to log lacks {', '.join(sorted(_REQUIRED - r.keys()))}; each row "
                                 f"needs id, features and prediction (got keys: {', '.join(sorted(r)) or 'none'})")
            row_role(r)
        at, now = time.monotonic(), datetime.now(UTC)
        # Stamped now: the row records when the prediction was answered, not when the batch was written.
        stamped = [{**r, "model_version_id": model_version_id, "created_at": now, "worker": self.worker} for r in rows]
        with self._cond:
            pending = self._room(len(rows))
            if pending is not None:
                raise LogBackpressure(
                    f"the prediction log holds {pending:,} row{'' if pending == 1 else 's'} not yet written to the "
                    f"store and {len(rows):,} more would pass its limit of {self._max_pending:,}; the store is slow "
                    "or unavailable. Retry shortly (or raise max_pending if the store keeps up but bursts are large)")
            self._pending_ids.update(r["id"] for r in rows)
            self._enqueue(stamped, at)

    def record_feedback(self, prediction_id: str, label: Any) -> None:
        """Attach the true label to a logged prediction, writing it first if it is still in the log.

        Raises :class:`NotFoundError` for an id never logged and :class:`ConflictError` for a second label.
        An id this log does not hold gets one more look after ``2 * flush_interval_s`` (at most 0.5 s), so that
        feedback for a prediction another worker process answered a moment ago is not refused.
        """
        with self._cond:
            pending = prediction_id in self._pending_ids
        if pending:
            self.flush()
        try:
            self._store.record_feedback(self._project, prediction_id, label)
        except NotFoundError:
            if pending:
                raise
            # With several workers, another process's log may still hold it: give that log one interval.
            time.sleep(min(2 * self._interval, _MAX_FOREIGN_WAIT_S))
            self._store.record_feedback(self._project, prediction_id, label)

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        # skip_existing: a retry after a commit whose answer was lost must not fail on its own rows.
        self._store.log_predictions(self._project, rows[0]["model_version_id"], rows, skip_existing=True)

    def _finished(self, rows: list[dict[str, Any]]) -> None:
        self._pending_ids.difference_update(r["id"] for r in rows)


class RejectionLog(_GroupWriter):
    """Appends the requests serving refused (422) to the store, by column and kind, off the request path.

    The same writer as :class:`PredictionLog`: group commits every ``flush_interval_s``, retries while the
    store is unavailable, at most ``max_pending`` rows waiting. One difference: a full log never turns a
    refusal into a 503 (the client's 422 says what to fix, whatever the store's state); the rows that do not
    fit are dropped, counted in :attr:`rows_dropped` and logged (once per overflow), while serving's
    ``/metrics`` still counts every refusal.

    >>> log = RejectionLog(store, "benefits-outreach"); log.start()                   # doctest: +SKIP
    >>> log.append(rejection_rows(violation.errors, request_rows=3, model_version_id=mv.id))  # doctest: +SKIP
    True
    """

    _name = "rejection log"
    _what = "rejections"

    def __init__(self, store: Store, project: str, *, flush_interval_s: float = 0.05, max_batch: int = 5000,
                 max_pending: int = 50_000):
        super().__init__(store, project, flush_interval_s=flush_interval_s, max_batch=max_batch,
                         max_pending=max_pending)
        self._rows_dropped = 0
        self._overflowing = False

    @property
    def rows_dropped(self) -> int:
        """Rows not logged because the log was full (the store is slow or unavailable)."""
        return self._rows_dropped

    def append(self, rows: list[dict[str, Any]]) -> bool:
        """Queue ``rows`` (as :meth:`rejection_rows` builds them) for the next group commit; never blocks or raises.

        Returns False when they were dropped because the log holds ``max_pending`` rows not yet written.
        """
        if not rows:
            return True
        at, now = time.monotonic(), datetime.now(UTC)
        stamped = [{**r, "created_at": r.get("created_at") or now} for r in rows]
        with self._cond:
            if self._closing:
                return False  # the app is stopping: nothing left to log into
            pending = self._room(len(rows))
            if pending is not None:
                self._rows_dropped += len(rows)
                if not self._overflowing:
                    self._overflowing = True
                    logger.warning("rejection log: %d rows wait for the store (limit %d); refused requests are "
                                   "counted in /metrics but not logged until it catches up", pending, self._max_pending)
                return False
            self._overflowing = False
            self._enqueue(stamped, at)
            return True

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        self._store.log_rejections(self._project, rows, skip_existing=True)


# A refused request adds at most this many (column, kind) rows: a client inventing column names cannot
# make one request cost the store more than that.
MAX_REJECTION_GROUPS = 50
_EXAMPLE_CHARS = 300


def rejection_rows(errors: list[FieldError], *, request_rows: int | None, model_version_id: int | None,
                   request_id: str | None = None) -> list[dict[str, Any]]:
    """The rows :meth:`RejectionLog.append` takes for one refused request: one per column and kind of violation.

    ``errors`` are the contract's :class:`~loopml.data.contract.FieldError` (a request-wide one has column
    ""); ``rows`` counts the records with that problem, ``example`` keeps the first reason, truncated.

    >>> from loopml.data.contract import FieldError
    >>> [(r["column"], r["kind"], r["rows"]) for r in rejection_rows(
    ...     [FieldError(0, "age", "expected an integer, found str 'x'"), FieldError(2, "age", "expected ...")],
    ...     request_rows=3, model_version_id=1)]
    [('age', 'type', 2)]
    """
    request_id = request_id or uuid.uuid4().hex
    groups: dict[tuple[str | None, str], list[Any]] = {}
    for e in errors:
        key = (e.column or None, e.kind)
        group = groups.get(key)
        if group is None:
            if len(groups) >= MAX_REJECTION_GROUPS:
                key = (None, "more")  # past the bound, the rest are counted together
                group = groups.setdefault(key, [set(), f"more than {MAX_REJECTION_GROUPS} kinds of problem"])
            else:
                group = groups[key] = [set(), e.reason[:_EXAMPLE_CHARS]]
        group[0].add(e.row)
    return [{"id": uuid.uuid4().hex, "request_id": request_id, "model_version_id": model_version_id,
             "column": column, "kind": kind, "rows": len([r for r in rows if r >= 0]),
             "request_rows": request_rows, "example": example}
            for (column, kind), (rows, example) in groups.items()]


def _transient(exc: Exception) -> bool:
    # Locked database, lost or refused connection, exhausted pool: the same write can succeed later.
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError))


def _one(what: str, row_id: Any) -> str:
    return f"{what.removesuffix('s')} {row_id}"


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
