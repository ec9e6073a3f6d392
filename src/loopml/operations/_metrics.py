"""Prometheus metrics of the serving app, and the ASGI middleware that counts every request.

Each app has its own registry (two apps in one process do not mix counts). With several workers
(``PROMETHEUS_MULTIPROC_DIR`` set, as ``loopml serve --workers N`` does), ``/metrics`` sums the
counters of all live workers, so a scrape that lands on any worker sees the whole server.

A scrape also shows the monitor's gauges (``loopml_monitor_alert{kind}`` and the others of
:func:`~loopml.operations.monitor.update_monitor_gauges`), read from the store at most every
``monitor_interval_s`` seconds, in a thread, so the event loop never waits on the store.

>>> metrics = ServingMetrics()
>>> metrics.predicted_rows.labels(model_version="1").inc(3)
>>> b"loopml_predicted_rows_total" in metrics.render()[0]
True
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess

from loopml.operations._gauges import update_monitor_gauges
from loopml.operations._http import ASGIApp, Message, Receive, Scope, Send
from loopml.store import Store

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Serving latencies are milliseconds: fine buckets there, coarse ones for slow batches.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

logger = logging.getLogger(__name__)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ServingMetrics:
    """The metrics one app exports; ``render()`` gives the Prometheus text and its content type.

    ``monitor_interval_s``: the least time between two reads of the monitor's gauges from the store;
    ``monitor_wait_s``: how long a scrape waits for a read before it answers with the values it has.
    """

    monitor_interval_s: float = 5.0
    monitor_wait_s: float = 2.0

    def __init__(self) -> None:
        self._monitor_next = 0.0  # monotonic time from which the next scrape reads the store again
        self._monitor_read: asyncio.Future[None] | None = None
        self._monitor_error: str | None = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("loopml_requests", "HTTP requests answered, by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("loopml_request_duration_seconds", "Time from request to the end of the answer.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter(
            "loopml_request_errors", "Requests answered with an error, by route and kind: bad_request (4xx), "
            "unauthorized (401/403), too_large (413), unavailable (503: busy or no model) or server (5xx).",
            ["route", "kind"], registry=r)
        self.predicted_rows = Counter("loopml_predicted_rows", "Rows predicted, by the model version that answered.",
                                      ["model_version"], registry=r)
        self.model_version = Gauge("loopml_model_version", "The model version being served (0: none loaded).",
                                   registry=r, multiprocess_mode="liveall")
        self.inflight = Gauge("loopml_inflight_requests", "Requests being served now (probes excluded).",
                              registry=r, multiprocess_mode="livesum")
        self.reloads = Counter("loopml_model_reloads", "Model swaps after the alias moved, by outcome.",
                               ["outcome"], registry=r)
        self.rejected_requests = Counter(
            "loopml_rejected_requests", "Requests /predict refused (422) by column and kind of problem (type, "
            "missing_column, unknown_category, ..., body); a request with several problems counts under each. "
            "column: a contract column, other (a column it does not know) or empty (the request as a whole).",
            ["column", "kind"], registry=r)
        self.rejected_rows = Counter("loopml_rejected_rows", "Rows of refused requests that had this problem, by "
                                     "column and kind (as loopml_rejected_requests).", ["column", "kind"], registry=r)

    def render(self) -> tuple[bytes, str]:
        if multiprocess_mode():
            registry = CollectorRegistry()
            _multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def refresh_monitor(self, store: Store, project: str) -> None:
        """Read the monitor's gauges from the store when the last read is ``monitor_interval_s`` old.

        Never raises: a store that fails is logged (once per cause) and the gauges keep their values; a
        read slower than ``monitor_wait_s`` finishes in the background and the scrape answers at once.

        >>> await app.state.metrics.refresh_monitor(store, "benefits-outreach")   # doctest: +SKIP
        """
        now = time.monotonic()
        running = self._monitor_read is not None and not self._monitor_read.done()
        if not running and now >= self._monitor_next:
            # Set before the first await: a scrape arriving meanwhile does not read the store a second time.
            self._monitor_next = now + self.monitor_interval_s
            self._monitor_read = asyncio.ensure_future(asyncio.to_thread(self._read_monitor, store, project))
        if self._monitor_read is not None and not self._monitor_read.done():
            await asyncio.wait([self._monitor_read], timeout=self.monitor_wait_s)

    def _read_monitor(self, store: Store, project: str) -> None:
        try:
            update_monitor_gauges(self.registry, store, project)
        except Exception as exc:  # the store's failure must not fail the scrape
            problem = f"{type(exc).__name__}: {exc}"
            if problem != self._monitor_error:
                logger.warning("loopml serve: /metrics could not read the monitor's gauges from the store; they "
                               "keep their last values until it can: %s", problem)
            self._monitor_error = problem
            return
        if self._monitor_error is not None:
            logger.info("loopml serve: /metrics reads the monitor's gauges from the store again")
            self._monitor_error = None

    def count_rejections(self, rows: list[dict], columns: frozenset[str]) -> None:
        """Count one refused request's rows (as :func:`~loopml.operations.predlog.rejection_rows` makes them).

        A column outside ``columns`` (the contract's) is counted as ``other``: clients cannot grow the labels.
        """
        for r in rows:
            column = r["column"] or ""
            labels = {"column": column if not column or column in columns else "other", "kind": r["kind"]}
            self.rejected_requests.labels(**labels).inc()
            self.rejected_rows.labels(**labels).inc(r["rows"] or 0)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)
        kind = _error_kind(status)
        if kind is not None:
            self.errors.labels(route=route, kind=kind).inc()

    @staticmethod
    def worker_exited() -> None:
        """Drop this worker's live gauges from the shared files (call at shutdown)."""
        if multiprocess_mode():
            _multiprocess.mark_process_dead(os.getpid())


class MetricsMiddleware:
    """Counts every request (refused ones included) under its route; unknown paths count as ``other``."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics, routes: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            # A fixed set of label values: a scanner's random paths must not grow the metrics without bound.
            route = scope["path"] if scope["path"] in self.routes else "other"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe(route, method, status, time.perf_counter() - start)


def _error_kind(status: int) -> str | None:
    if status < 400:
        return None
    if status in (401, 403):
        return "unauthorized"
    if status == 413:
        return "too_large"
    if status == 503:
        return "unavailable"
    return "server" if status >= 500 else "bad_request"
