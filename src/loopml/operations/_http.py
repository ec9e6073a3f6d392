"""Pure ASGI guards of the serving app: a body size limit and a bound on requests in flight.

Both answer at once with a JSON error instead of letting a request eat memory or wait in a queue:
a body over ``max_body_bytes`` gets 413 before it is buffered, and a request past ``max_inflight``
gets 503 with ``Retry-After: 1``.

>>> from fastapi import FastAPI
>>> app = FastAPI()
>>> app.add_middleware(BodyLimit, max_body_bytes=8 << 20)
>>> app.add_middleware(InflightLimit, max_inflight=64, exempt=frozenset({"/health"}))
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from loopml.operations._bodies import json_bytes, problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WORKER_HEADER = "x-loopml-worker"


async def send_json(send: Send, status: int, content: Any, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer a request straight from a middleware, without calling the app."""
    body = json_bytes(content)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int, found: str) -> dict[str, Any]:
    return {"detail": [problem(
        f"the body is {found} bytes, over the limit of {limit:,} bytes per request; send smaller batches "
        "(or Arrow/Parquet, which are smaller than JSON)")]}


class BodyLimit:
    """413 for a body over ``max_body_bytes``: by its Content-Length before reading, or while it streams in."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            # Close the connection: the rest of the body is not read, so the stream cannot be reused.
            await send_json(send, 413, _too_large(self.limit, f"{declared:,}"), [(b"connection", b"close")])
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the app's body read; FastAPI and Starlette turn it into the 413 response.
                    raise HTTPException(413, detail=_too_large(self.limit, f"more than {self.limit:,}")["detail"],
                                        headers={"connection": "close"})
            return message

        await self.app(scope, counted, send)


class InflightLimit:
    """503 with ``Retry-After: 1`` at once when ``max_inflight`` requests are already being served.

    Paths in ``exempt`` (the probes and /metrics) are never refused, so an overloaded server still says
    it is alive. ``on_change(+1 | -1)`` follows the count (the in-flight gauge); ``on_shed()`` counts refusals.
    """

    def __init__(self, app: ASGIApp, max_inflight: int, exempt: frozenset[str],
                 on_change: Callable[[int], None] | None = None):
        self.app = app
        self.limit = max_inflight
        self.exempt = exempt
        self.on_change = on_change or (lambda _: None)
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            await send_json(send, 503, {"detail": (
                f"the server is busy: {self.limit} requests are in flight, the most this worker takes; "
                "retry after 1 second")}, [(b"retry-after", b"1")])
            return
        # One event loop per worker: the counter needs no lock.
        self.inflight += 1
        self.on_change(1)
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            self.on_change(-1)


class WorkerHeader:
    """Adds ``X-Loopml-Worker: <pid>`` to every response, so a client sees which worker answered."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.header = (WORKER_HEADER.encode(), str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, tagged)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (h11/httptools) refuses a malformed length before we see it
    return None
