"""One maintenance pass at a time: a lock in the store, with a heartbeat.

The lock is a row of the store's ``locks`` table, so every process that shares the store (one host or
many, SQLite or PostgreSQL) sees it. Its holder writes a heartbeat every few seconds from a thread. A
second pass waits up to ``wait_s`` for it, then gives up with :class:`MaintenanceBusy`. A holder whose
heartbeat is older than ``stale_after_s``, or whose process on this host no longer exists (killed,
crashed), is taken over, and the takeover is reported so the pass can record it.

>>> with maintenance_lock(store, "benefits-outreach", wait_s=60, stale_after_s=120) as lock:  # doctest: +SKIP
...     lock.attach_run(run_id)
...     lock.ensure_held()          # before the last, irreversible step
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loopml.errors import ConflictError
from loopml.store import Store

__all__ = ["LOCK_NAME", "HeldLock", "MaintenanceBusy", "maintenance_lock"]

LOCK_NAME = "maintain"
_POLL_S = 0.25


class MaintenanceBusy(ConflictError):
    """Another maintenance pass holds the lock and did not release it within the wait."""

    exit_code = 4


@dataclass
class HeldLock:
    """The lock this process holds; ``took_over`` is the dead or stale holder it replaced, if any."""

    store: Store
    project: str
    owner: str
    took_over: dict[str, Any] | None = None
    lost: bool = False
    _run_id: int | None = field(default=None, repr=False)

    def attach_run(self, run_id: int) -> None:
        """Name the run this holder does (shown to a pass that has to wait)."""
        self._run_id = run_id
        self.beat()

    def beat(self) -> bool:
        """Write the heartbeat; False (and ``lost``) when the lock was taken over meanwhile."""
        if not self.store.heartbeat_lock(self.project, LOCK_NAME, self.owner, run_id=self._run_id):
            self.lost = True
        return not self.lost

    def ensure_held(self) -> None:
        """Raise :class:`ConflictError` unless this process still holds the lock (check before promoting)."""
        if self.lost or not self.beat():
            raise ConflictError(f"this maintenance pass of project '{self.project}' lost its lock to another pass "
                                "(its heartbeat was late by more than maintenance.lock.stale_after); it stops before "
                                "changing the champion. Raise maintenance.lock.stale_after if passes are this slow")


@contextmanager
def maintenance_lock(store: Store, project: str, *, wait_s: float, stale_after_s: float,
                     poll_s: float = _POLL_S) -> Iterator[HeldLock]:
    """Hold the project's maintenance lock for the ``with`` block; wait up to ``wait_s`` for it."""
    host, pid = socket.gethostname(), os.getpid()
    owner = f"{host}:{pid}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_s
    took_over: dict[str, Any] | None = None
    while True:
        holder = store.try_lock(project, LOCK_NAME, owner=owner, pid=pid, host=host)
        if holder is None:
            break
        if not holder:  # released between our insert and our read: try again at once
            continue
        why = _stale(holder, stale_after_s, host)
        if why and store.take_over_lock(project, LOCK_NAME, previous_owner=holder["owner"], owner=owner, pid=pid,
                                        host=host):
            took_over = {**holder, "why": why}
            break
        if time.monotonic() >= deadline:
            raise MaintenanceBusy(_busy_message(project, holder, wait_s))
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.01)))
    held = HeldLock(store, project, owner, took_over)
    stop = threading.Event()
    beats = threading.Thread(target=_beat, args=(held, stop, max(0.2, stale_after_s / 4)), daemon=True,
                             name="loopml-maintain-heartbeat")
    beats.start()
    try:
        yield held
    finally:
        stop.set()
        beats.join()
        store.release_lock(project, LOCK_NAME, owner)


def _beat(held: HeldLock, stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        try:
            if not held.beat():
                return
        except Exception:  # a store hiccup must not kill the thread; the next beat tries again
            continue


def _stale(holder: dict[str, Any], stale_after_s: float, host: str) -> str | None:
    """Why the holder can be taken over (its process is gone, or its heartbeat is old), or None."""
    if holder.get("host") == host and holder.get("pid") and not _alive(holder["pid"]):
        return f"its process {holder['pid']} on this host ({host}) no longer exists"
    beat = holder.get("heartbeat_at") or holder.get("acquired_at")
    if beat is not None:
        age = (datetime.now(UTC) - beat).total_seconds()
        if age > stale_after_s:
            return (f"its last heartbeat was {age:.0f}s ago, more than maintenance.lock.stale_after "
                    f"{stale_after_s:g}s")
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _busy_message(project: str, holder: dict[str, Any], wait_s: float) -> str:
    parts = [f"process {holder.get('pid')} on {holder.get('host')}"]
    if holder.get("run_id"):
        parts.append(f"run {holder['run_id']}")
    if holder.get("acquired_at"):
        parts.append(f"since {holder['acquired_at']:%Y-%m-%d %H:%M:%S} UTC")
    if holder.get("heartbeat_at"):
        parts.append(f"last heartbeat {(datetime.now(UTC) - holder['heartbeat_at']).total_seconds():.0f}s ago")
    return (f"another maintenance pass of project '{project}' holds the lock ({', '.join(parts)}); waited "
            f"{wait_s:g}s. Two passes never retrain at once: run `loopml maintain` again when it is done, or wait "
            "longer with --wait or maintenance.lock.wait")
