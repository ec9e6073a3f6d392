"""Fixtures for the serving tests: a real model in a real store, served by uvicorn on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn

from loopml.data.contract import DataContract, infer_contract
from loopml.data.snapshot import frame_hash, frame_to_parquet
from loopml.model.artifact import TrainedModel
from loopml.model.search import SearchPlan, search, split_holdout
from loopml.operations import create_app
from loopml.spec import GoalSpec
from loopml.store import ModelVersion, Store

PROJECT = "benefits-outreach"
TARGET = "ui"
_DATA = Path(__file__).parents[2] / "examples/benefits"


@dataclass(frozen=True)
class Served:
    """What the session serves: the store, the registered model and rows it has not seen."""

    project: str
    root: Path
    store: Store
    model: TrainedModel
    contract: DataContract
    version: ModelVersion
    holdout: pd.DataFrame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass(frozen=True)
class Process:
    """A server in its own process: its base URL and the process (the uvicorn supervisor with workers)."""

    url: str
    proc: subprocess.Popen


@contextmanager
def spawned(args: list[str], env: dict[str, str], *, ready_path: str = "/ready",
            timeout_s: float = 90) -> Iterator[Process]:
    """Run ``python ARGS`` (with ``--port PORT`` appended) until it answers ``ready_path``; stop it with SIGINT.

    ``env`` is added to this process's environment.
    """
    port = free_port()
    proc = subprocess.Popen([sys.executable, *args, "--port", str(port)], env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited early with code {proc.returncode}")
            try:
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer {ready_path} within {timeout_s} s")
            time.sleep(0.1)
        yield Process(url=url, proc=proc)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # uvicorn's graceful stop, as Ctrl-C
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def toy_frame(n: int = 90, seed: int = 0) -> pd.DataFrame:
    """Small synthetic rows: x (numeric), c (category), kind (3 classes), amount (numeric), flag (2 classes)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "c": rng.choice(["p", "q"], size=n),
                         "kind": np.where(x < -0.4, "a", np.where(x < 0.4, "b", "c")),
                         "amount": 2 * x + rng.normal(scale=0.1, size=n),
                         "flag": np.where(x + rng.normal(scale=0.5, size=n) > 0, "hi", "lo")})


def _benefits() -> pd.DataFrame:
    csv = _DATA / "benefits.csv"
    if csv.exists():
        frame = pd.read_csv(csv)
    elif (_DATA / "benefits.parquet").exists():
        frame = pd.read_parquet(_DATA / "benefits.parquet")
    else:
        pytest.skip(f"the benefits example data is missing under {_DATA}")
    return frame.dropna(subset=[TARGET]).reset_index(drop=True)


def register(store: Store, project: str, train: pd.DataFrame, *, target: str, task: str, goal: GoalSpec,
             positive=None, key: str = "k") -> tuple[TrainedModel, DataContract, ModelVersion]:
    """Search a linear model on ``train``, register it with its contract and make it champion.

    ``key`` names the snapshot and the version; give each version of one project its own.
    """
    result = search(train, target=target, task=task, goal=goal, positive=positive,
                    plan=SearchPlan(families=("linear",), folds=3))
    contract = infer_contract(train, target=target, task=task)
    snapshot = store.save_snapshot(project, input_key=key, data=frame_to_parquet(train), data_hash=frame_hash(train),
                                   rows=len(train), columns=train.shape[1], contract=contract.model_dump(mode="json"),
                                   report={})
    version = store.register_model(project, run_id=None, snapshot_id=snapshot.id, input_key=key,
                                   model_bytes=result.model.to_bytes(), spec_hash="test", family=result.model.family,
                                   metrics={}, operating_point=result.operating_point, lineage={})
    store.set_alias(project, "champion", version.version, actor="test", reason="fixture")
    return result.model, contract, version


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Iterator[Served]:
    """A linear model trained on the benefits data, registered with its contract as champion."""
    train, holdout = split_holdout(_benefits(), TARGET, "binary", 0.2, seed=0)
    goal = GoalSpec(metric="recall", at_least=0.8, **{"with": {"precision": 0.6}})
    root = tmp_path_factory.mktemp("project")
    store = Store.open(root)
    model, contract, version = register(store, PROJECT, train, target=TARGET, task="binary", goal=goal,
                                        positive="yes")
    yield Served(project=PROJECT, root=root, store=store, model=model, contract=contract, version=version,
                 holdout=holdout.drop(columns=[TARGET]).reset_index(drop=True))
    store.close()


@pytest.fixture(scope="session")
def base_url(served: Served) -> Iterator[str]:
    with running(create_app(served.store, PROJECT)) as url:
        yield url


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


@pytest.fixture(name="register", scope="session")
def _register_fixture():
    """``register(store, project, train, ...)``: train and make champion another model."""
    return register


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(name="toy_frame", scope="session")
def _toy_frame_fixture():
    """``toy_frame(n, seed)``: small synthetic rows (see :func:`toy_frame`)."""
    return toy_frame


@pytest.fixture(scope="session")
def spawn():
    """``spawn(args, env)``: a context manager running a server in its own process (see :func:`spawned`)."""
    return spawned


@pytest.fixture(scope="session")
def run_app():
    """``running(app)``: a context manager serving another app on its own port."""
    return running
