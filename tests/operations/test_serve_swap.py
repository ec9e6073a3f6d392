"""Hot swap: when the alias moves, the server swaps models under load without failing a request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from loopml.operations import create_app
from loopml.operations.registry import rollback
from loopml.spec import GoalSpec
from loopml.store import ModelVersion, Store

PROJECT = "swap"


@dataclass(frozen=True)
class Versions:
    store: Store
    v1: ModelVersion
    v2: ModelVersion
    broken: ModelVersion  # its artifact file was altered after registration: it cannot be loaded
    rows: list[dict]


@pytest.fixture(scope="module")
def versions(tmp_path_factory, register, toy_frame) -> Iterator[Versions]:
    store = Store.open(tmp_path_factory.mktemp("swap"))
    frame = toy_frame(150).drop(columns=["kind", "amount"])
    goal = GoalSpec(metric="accuracy", at_least=0.5)
    fitted = [register(store, PROJECT, part, target="flag", task="binary", goal=goal, key=f"k{i}")[2]
              for i, part in enumerate((frame.head(60), frame, frame.tail(90)))]
    broken = fitted[2]
    (Path(store.artifacts.root) / broken.artifact_path).write_bytes(b'{"format": "altered"}')
    rows = [{"x": float(x), "c": c} for x, c in zip(frame["x"].head(5), frame["c"].head(5), strict=True)]
    yield Versions(store, fitted[0], fitted[1], broken, rows)
    store.close()


def _promote(store: Store, mv: ModelVersion) -> None:
    store.set_alias(PROJECT, "champion", mv.version, actor="test", reason="promote")


def _metric(url: str, line_start: str) -> float:
    lines = [ln for ln in httpx.get(f"{url}/metrics").text.splitlines() if ln.startswith(line_start)]
    return float(lines[0].split()[-1]) if lines else 0.0


def _under_load(url: str, versions: Versions, change, expect: ModelVersion) -> dict[str, list]:
    """Single rows and batches sent without pause while ``change()`` moves the alias; every answer seen."""
    stop = threading.Event()
    seen: dict[str, list[tuple[int, int | None, str | None]]] = {"row": [], "rows": []}

    def load(kind: str) -> None:
        body = {"row": versions.rows[0]} if kind == "row" else {"rows": versions.rows}
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                r = client.post("/predict", json=body)
                version = r.json().get("model_version") if r.status_code == 200 else None
                seen[kind].append((r.status_code, version, r.headers.get("x-loopml-model-version")))

    threads = [threading.Thread(target=load, args=(kind,)) for kind in seen]
    for thread in threads:
        thread.start()
    try:
        _wait(lambda: all(len(s) >= 20 for s in seen.values()), "the load to start")
        change()
        _wait(lambda: all(s[-1][1] == expect.version for s in seen.values()), "the new version to answer")
        counts = {k: len(s) for k, s in seen.items()}
        _wait(lambda: all(len(s) >= counts[k] + 20 for k, s in seen.items()), "more answers after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    return seen


def _moved_once(seen: dict[str, list], old: ModelVersion, new: ModelVersion) -> None:
    for kind, answers in seen.items():
        assert {status for status, _, _ in answers} == {200}, kind
        versions_seen = [version for _, version, _ in answers]
        # Each client moves from the old version to the new one once, and never back.
        first_new = versions_seen.index(new.version)
        assert set(versions_seen[:first_new]) == {old.version}, kind
        assert set(versions_seen[first_new:]) == {new.version}, kind
        assert all(header == str(version) for _, version, header in answers), kind


def test_a_promotion_under_load_fails_no_request(versions, run_app):
    _promote(versions.store, versions.v1)
    with run_app(create_app(versions.store, PROJECT, reload_interval_s=0.1)) as url:
        seen = _under_load(url, versions, lambda: _promote(versions.store, versions.v2), versions.v2)
        ready = httpx.get(f"{url}/ready").json()
        swaps = _metric(url, 'loopml_model_reloads_total{outcome="swapped"}')
        gauge = _metric(url, "loopml_model_version ")
        record = httpx.get(f"{url}/openapi.json").json()["components"]["schemas"]["Record"]

    _moved_once(seen, versions.v1, versions.v2)
    assert ready == {"status": "ready", "model_version": versions.v2.version}
    assert (swaps, gauge) == (1, versions.v2.version)
    assert record["description"] == f"One record for model version {versions.v2.version}: column → value."



def test_a_rollback_under_load_fails_no_request(versions, run_app):
    _promote(versions.store, versions.v1)
    _promote(versions.store, versions.v2)
    with run_app(create_app(versions.store, PROJECT, reload_interval_s=0.1)) as url:
        seen = _under_load(url, versions, lambda: rollback(versions.store, PROJECT, reason="v2 misbehaves",
                                                            actor="test"), versions.v1)
    _moved_once(seen, versions.v2, versions.v1)
    assert versions.store.alias(PROJECT, "champion").version == versions.v1.version

def test_admin_reload_swaps_at_once(versions, run_app):
    _promote(versions.store, versions.v1)
    auth = {"Authorization": "Bearer admin"}
    with run_app(create_app(versions.store, PROJECT, reload_interval_s=0, admin_token="admin")) as url:
        _promote(versions.store, versions.v2)
        time.sleep(0.3)
        assert httpx.get(f"{url}/ready").json()["model_version"] == versions.v1.version  # no background check
        r = httpx.post(f"{url}/admin/reload", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"model_version": versions.v2.version, "swapped": True}
        assert httpx.post(f"{url}/admin/reload", headers=auth).json()["swapped"] is False
        assert httpx.post(f"{url}/predict", json={"row": versions.rows[0]}).json()["model_version"] \
            == versions.v2.version


def test_a_version_that_cannot_load_is_not_swapped_in(versions, run_app):
    _promote(versions.store, versions.v2)
    with run_app(create_app(versions.store, PROJECT, reload_interval_s=0.1, admin_token="admin")) as url:
        _promote(versions.store, versions.broken)
        _wait(lambda: _metric(url, 'loopml_model_reloads_total{outcome="failed"}') >= 1, "the failed reload")
        r = httpx.post(f"{url}/predict", json={"row": versions.rows[0]})
        assert r.status_code == 200 and r.json()["model_version"] == versions.v2.version
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer admin"})
        assert r.status_code == 409
        assert r.json()["detail"].startswith(f"reload failed (still serving version {versions.v2.version}): ")
        assert httpx.get(f"{url}/ready").json()["model_version"] == versions.v2.version
        failed = _metric(url, 'loopml_model_reloads_total{outcome="failed"}')
        time.sleep(0.5)
        # The background check does not retry a version that failed: it waits for the alias to move again.
        assert _metric(url, 'loopml_model_reloads_total{outcome="failed"}') == failed
        _promote(versions.store, versions.v1)
        _wait(lambda: httpx.get(f"{url}/ready").json()["model_version"] == versions.v1.version, "the next swap")


def _wait(condition, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
