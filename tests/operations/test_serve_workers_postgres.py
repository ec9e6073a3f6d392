"""`loopml serve --workers 2` on a PostgreSQL store: a promotion reaches both workers, both logs merge."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from loopml.operations.monitor import monitor_project
from loopml.operations.registry import promote
from loopml.spec import GoalSpec, load_spec
from loopml.store import ModelVersion, Store

PROJECT = "workers"
WINDOW = 25


@dataclass(frozen=True)
class Team:
    root: Path
    spec: Path
    store: Store
    v1: ModelVersion
    v2: ModelVersion
    rows: list[dict]


@pytest.fixture(params=["postgresql", "sqlite"])
def team(request, tmp_path: Path, register, toy_frame) -> Iterator[Team]:
    """Two versions of a small model in a store on PostgreSQL (or SQLite), v1 the champion, and its spec."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    store = Store.open(tmp_path, url=url)
    frame = toy_frame(150).drop(columns=["kind", "amount"])
    goal = GoalSpec(metric="accuracy", at_least=0.5)
    v1 = register(store, PROJECT, frame.head(90), target="flag", task="binary", goal=goal, key="k1")[2]
    v2 = register(store, PROJECT, frame, target="flag", task="binary", goal=goal, key="k2")[2]
    store.set_alias(PROJECT, "champion", v1.version, actor="test", reason="start on v1")
    frame.to_parquet(tmp_path / "train.parquet")
    doc = {"project": PROJECT,
           "business": {"problem": "served by two workers", "task": "binary", "target": "flag", "positive": "hi",
                        "goal": {"metric": "accuracy", "at_least": 0.5}},
           "data": {"sources": [{"name": "train", "path": "train.parquet"}]},
           "operations": {"monitor": {"window": WINDOW}}}
    spec = tmp_path / "loopml.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    rows = [{"x": float(x), "c": c} for x, c in zip(frame["x"].head(4), frame["c"].head(4), strict=True)]
    yield Team(tmp_path, spec, store, v1, v2, rows)
    store.close()


def _until_both(url: str, rows: list[dict], version: int, timeout_s: float = 60) -> list[httpx.Response]:
    """Requests on new connections until two workers have answered with ``version``; every answer."""
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + timeout_s

    def one(i: int) -> httpx.Response:
        body = {"row": rows[i % len(rows)]} if i % 2 else {"rows": rows}
        return httpx.post(f"{url}/predict", json=body, timeout=30)

    with ThreadPoolExecutor(4) as pool:
        while len({r.headers["x-loopml-worker"] for r in answers if r.json()["model_version"] == version}) < 2:
            assert time.monotonic() < deadline, f"both workers did not answer with v{version} in {timeout_s} s"
            answers += pool.map(one, range(len(answers), len(answers) + 8))
    return answers


def test_a_promotion_reaches_both_workers_and_their_logs_merge(team, spawn):
    cli = ["-c", "from loopml.cli import main; main()", "serve", "--spec", str(team.spec), "--workers", "2",
           "--reload-interval", "0.2"]
    env = {"LOOPML_DB": team.store.engine.url.render_as_string(hide_password=False)}
    with spawn(cli, env, ready_path="/health") as server:
        before = _until_both(server.url, team.rows, team.v1.version)
        promote(team.store, PROJECT, team.v2.version, reason="v2 trained on more rows", actor="ana")
        after = _until_both(server.url, team.rows, team.v2.version)
        # Once both have swapped, no worker answers with v1 again.
        settled = [httpx.post(f"{server.url}/predict", json={"row": team.rows[0]}, timeout=30) for _ in range(16)]
    assert server.proc.returncode == 0
    answers = before + after + settled
    assert {r.status_code for r in answers} == {200}
    assert {r.json()["model_version"] for r in settled} == {team.v2.version}
    by_worker: dict[str, set[int]] = {}
    for r in answers:
        by_worker.setdefault(r.headers["x-loopml-worker"], set()).add(r.json()["model_version"])
    assert by_worker == dict.fromkeys(by_worker, {team.v1.version, team.v2.version}) and len(by_worker) == 2

    # Every answered prediction is in the one log, under the worker (host:pid) that answered it.
    host = socket.gethostname()
    answered = {f"{host}:{pid}": sum(len(r.json()["predictions"]) for r in answers if r.headers["x-loopml-worker"]
                                     == pid) for pid in by_worker}
    assert team.store.predictions_per_worker(PROJECT) == answered

    # Monitoring reads the workers' rows as one log: each window's rows are the sum over the workers.
    windows = monitor_project(load_spec(team.spec, check_data=False), team.store).windows
    full = [w for w in windows if w.rows == WINDOW]
    assert full and sum(w.rows for w in windows) <= sum(answered.values())
    for w in full:
        assert sum(team.store.predictions_per_worker(PROJECT, first_seq=w.first_seq, last_seq=w.last_seq).values()) \
            == w.rows
    assert len(team.store.predictions_per_worker(PROJECT, first_seq=full[0].first_seq,
                                                 last_seq=full[-1].last_seq)) == 2
