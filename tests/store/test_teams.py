"""A team on one PostgreSQL store: concurrent alias moves, concurrent opens and runs, upgrades in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import write_spec

from loopml.errors import ConflictError
from loopml.operations.registry import promote, rollback
from loopml.store import Store
from loopml.store import schema as t
from loopml.store.metadata import _REGISTER_LOCK_KEY

from .old_stores import at_revision, head

PROJECT = "p"


def _register(store: Store, n: int) -> None:
    """``n`` versions of PROJECT (tiny JSON models on one snapshot)."""
    snap = store.save_snapshot(PROJECT, input_key="k", data=b"rows", data_hash="h", rows=10, columns=2,
                               contract={}, report={})
    for i in range(1, n + 1):
        store.register_model(PROJECT, run_id=None, snapshot_id=snap.id, input_key=f"m{i}",
                             model_bytes=json.dumps({"v": i}).encode(), spec_hash="s", family="linear", metrics={},
                             operating_point={}, lineage={})


def _blocked(engine: sa.Engine, n: int, timeout_s: float = 30) -> None:
    """Wait until ``n`` sessions of this database wait on a row or index lock."""
    deadline = time.monotonic() + timeout_s
    with engine.connect() as conn:
        while conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND wait_event_type = 'Lock'")).scalar() < n:
            assert time.monotonic() < deadline, f"fewer than {n} transactions queued on the lock"
            time.sleep(0.02)


def _chain(store: Store) -> list[tuple[int | None, int | None]]:
    return [(h["previous_version"], h["version"]) for h in store.alias_history(PROJECT)]


@pytest.fixture
def pg(tmp_path: Path, postgres_url: str):
    """Three versions of PROJECT in a fresh PostgreSQL store, v1 the champion; and the database's URL."""
    store = Store.open(tmp_path, url=postgres_url)
    _register(store, 3)
    store.set_alias(PROJECT, "champion", 1, actor="ana", reason="first")
    yield store, postgres_url
    store.close()


@pytest.mark.postgres
def test_two_promotions_at_once_leave_one_champion_and_an_honest_audit(pg, tmp_path):
    store, url = pg
    holder = sa.create_engine(url)
    stores = [Store.open(tmp_path, url=url) for _ in range(2)]
    try:
        with holder.connect() as conn, ThreadPoolExecutor(2) as pool:
            tx = conn.begin()
            # Hold the champion row so that both promotions read v1 and then queue on the lock.
            conn.execute(sa.select(t.aliases).where(t.aliases.c.alias == "champion").with_for_update())
            futures = [pool.submit(promote, s, PROJECT, v, reason=f"v{v} is better", actor=f"user{v}")
                       for s, v in zip(stores, (2, 3), strict=True)]
            _blocked(store.engine, 2)
            tx.commit()
            outcomes = [f.exception() or f.result() for f in futures]
    finally:
        for s in stores:
            s.close()
        holder.dispose()

    [won] = [o for o in outcomes if not isinstance(o, Exception)]
    [lost] = [o for o in outcomes if isinstance(o, Exception)]
    loser = 5 - won.version
    assert isinstance(lost, ConflictError)
    assert str(lost) == (f"the champion of project 'p' moved to v{won.version} while this change was made (it "
                         "expected v1); nothing changed. Check `loopml models list` and try again")
    assert store.alias(PROJECT, "champion").version == won.version
    assert _chain(store) == [(None, 1), (1, won.version)]
    [decision] = store.registry_decisions(PROJECT)
    assert (decision.evidence["from"], decision.evidence["to"]) == (1, won.version)
    assert all(f"v{loser}" not in d.summary for d in store.decisions(PROJECT))


@pytest.mark.postgres
def test_moves_that_queue_on_the_alias_row_each_keep_their_history_row(pg, tmp_path):
    store, url = pg
    holder = sa.create_engine(url)
    stores = [Store.open(tmp_path, url=url) for _ in range(2)]
    try:
        with holder.connect() as conn, ThreadPoolExecutor(2) as pool:
            tx = conn.begin()
            conn.execute(sa.select(t.aliases).where(t.aliases.c.alias == "champion").with_for_update())
            # No expectation, as `loopml run` moves it: both moves happen, one after the other.
            futures = [pool.submit(s.set_alias, PROJECT, "champion", v, actor="run", reason=f"run {v}")
                       for s, v in zip(stores, (2, 3), strict=True)]
            _blocked(store.engine, 2)
            tx.commit()
            previous = [f.result() for f in futures]
    finally:
        for s in stores:
            s.close()
        holder.dispose()

    chain = _chain(store)
    assert len(chain) == 3 and chain[0] == (None, 1)
    assert chain[1][1] == chain[2][0]  # the later move replaced the earlier one's version, not v1
    assert sorted(mv.version for mv in previous) == sorted([1, chain[1][1]])
    assert store.alias(PROJECT, "champion").version == chain[2][1]


@pytest.mark.postgres
def test_two_first_champions_at_once_one_retries_and_history_is_complete(tmp_path, postgres_url):
    store = Store.open(tmp_path, url=postgres_url)
    _register(store, 3)
    holder = sa.create_engine(postgres_url)
    stores = [Store.open(tmp_path, url=postgres_url) for _ in range(2)]
    try:
        with holder.connect() as conn, ThreadPoolExecutor(2) as pool:
            tx = conn.begin()
            # An uncommitted first champion: there is no row to lock, so both inserts queue on the key.
            first = store.model_version(PROJECT, 1).id
            conn.execute(t.aliases.insert().values(project=PROJECT, alias="champion", model_version_id=first))
            conn.execute(t.alias_history.insert().values(project=PROJECT, alias="champion", model_version_id=first,
                                                         actor="ana", reason="first"))
            seen_none = pool.submit(promote, stores[0], PROJECT, 2, reason="no champion yet", actor="bo")
            anyway = pool.submit(stores[1].set_alias, PROJECT, "champion", 3, actor="run", reason="run 3")
            _blocked(store.engine, 2)
            tx.commit()
            with pytest.raises(ConflictError) as info:
                seen_none.result()
            anyway.result()
        assert str(info.value) == ("the champion of project 'p' moved to v1 while this change was made (it expected "
                                   "no version); nothing changed. Check `loopml models list` and try again")
        assert _chain(store) == [(None, 1), (1, 3)]
        assert store.registry_decisions(PROJECT) == []
    finally:
        for s in (*stores, store):
            s.close()
        holder.dispose()


@pytest.mark.postgres
def test_two_registrations_of_one_project_at_once_get_the_next_two_numbers(tmp_path, postgres_url):
    store = Store.open(tmp_path, url=postgres_url)
    snap = store.save_snapshot(PROJECT, input_key="k", data=b"rows", data_hash="h", rows=10, columns=2, contract={},
                               report={})
    holder = sa.create_engine(postgres_url)
    stores = [Store.open(tmp_path, url=postgres_url) for _ in range(2)]

    def register(i: int) -> int:
        return stores[i].register_model(PROJECT, run_id=None, snapshot_id=snap.id, input_key=f"m{i}",
                                        model_bytes=json.dumps({"v": i}).encode(), spec_hash="s", family="linear",
                                        metrics={}, operating_point={}, lineage={}).version

    try:
        with holder.connect() as conn, ThreadPoolExecutor(2) as pool:
            # Hold the project's numbering lock, so that both registrations are under way before either numbers.
            conn.execute(sa.text("SELECT pg_advisory_lock(:key, hashtext(:project))"),
                         {"key": _REGISTER_LOCK_KEY, "project": PROJECT})
            futures = [pool.submit(register, i) for i in range(2)]
            _blocked(store.engine, 2)
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key, hashtext(:project))"),
                         {"key": _REGISTER_LOCK_KEY, "project": PROJECT})
            assert sorted(f.result() for f in futures) == [1, 2]
    finally:
        for s in (*stores, store):
            s.close()
        holder.dispose()


def test_a_promotion_from_a_stale_view_changes_nothing(store):
    _register(store, 3)
    store.set_alias(PROJECT, "champion", 1, actor="ana", reason="first")
    seen = store.alias(PROJECT, "champion")
    promote(store, PROJECT, 2, reason="v2 is better", actor="bo")
    with pytest.raises(ConflictError) as info:
        store.set_alias(PROJECT, "champion", 3, actor="cy", reason="v3 is better", expect=seen)
    assert str(info.value) == ("the champion of project 'p' moved to v2 while this change was made (it expected "
                               "v1); nothing changed. Check `loopml models list` and try again")
    assert _chain(store) == [(None, 1), (1, 2)]
    assert rollback(store, PROJECT, reason="v2 misbehaves", actor="bo").version == 1


@pytest.mark.postgres
def test_processes_opening_a_new_database_at_once_all_find_it_upgraded(tmp_path, postgres_url):
    code = ("import sys; from loopml.store import Store; "
            "print(Store.open(sys.argv[1], url=sys.argv[2]).schema_version())")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), postgres_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    done = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-500:] for _, err in done]
    assert len({out.strip() for out, _ in done}) == 1


def test_threads_opening_one_store_at_once_all_succeed(tmp_path):
    # Alembic's context is process-global: without the store's lock, concurrent upgrades corrupt each other.
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: Store.open(tmp_path), range(4)))
    assert {s.schema_version() for s in stores} == {stores[0].schema_version()}
    for s in stores:
        s.close()


# -- two `loopml run`s of different projects on one PostgreSQL store, at once ------------------------


def _project(folder: Path, name: str, rows: pd.DataFrame) -> Path:
    folder.mkdir()
    rows.to_csv(folder / "benefits.csv", index=False)
    return write_spec(folder, project=name, model={"budget": "2m", "seed": 0, "folds": 3, "trials": 2,
                                                   "max_iterations": 1},
                      business={"problem": "Who applies?", "task": "binary", "target": "ui", "positive": "yes",
                                "goal": {"metric": "roc_auc", "at_least": 0.5}})


@pytest.mark.postgres
def test_two_runs_of_different_projects_at_once_keep_their_own_records(tmp_path, postgres_url, benefits_csv):
    data = pd.read_csv(benefits_csv).head(800)
    # The same rows in both: their snapshots are one artifact, stored at once by both runs.
    specs = [_project(tmp_path / name, name, data) for name in ("alpha", "beta")]
    env = {**os.environ, "LOOPML_DB": postgres_url, "LOOPML_ARTIFACTS": str(tmp_path / "shared-artifacts")}
    cli = [sys.executable, "-c", "from loopml.cli import main; main()", "run", "--json", "--spec"]
    procs = [subprocess.Popen([*cli, str(spec)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for spec in specs]
    done = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-800:] for _, err in done]
    results = [json.loads(out) for out, _ in done]

    store = Store.open(tmp_path, url=postgres_url)
    try:
        for name, result in zip(("alpha", "beta"), results, strict=True):
            [run] = store.runs(name)
            assert (run["id"], run["status"]) == (result["run_id"], "registered")
            [mv] = store.model_versions(name)
            assert (mv.version, mv.run_id, mv.aliases) == (1, run["id"], ("champion",))
            decisions = store.decisions(name)
            assert decisions and {d.run_id for d in decisions} == {run["id"]}
            assert store.registered_by(mv).run_id == run["id"]
            assert [h["version"] for h in store.alias_history(name)] == [1]
        snapshots = {store.snapshot(store.model_version(n, 1).snapshot_id).artifact_path for n in ("alpha", "beta")}
        assert len(snapshots) == 1  # one file, one artifact row, both projects' snapshots point at it
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.artifacts)
                                .where(t.artifacts.c.path.in_(snapshots))).scalar() == 1
    finally:
        store.close()


# -- upgrades in place ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_0006_store_upgrades_and_its_predictions_have_no_worker(dialect, tmp_path, request):
    url = request.getfixturevalue("postgres_url") if dialect == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    old = at_revision(url, "0006")
    at = "2024-05-01 12:00:00"
    with old.begin() as conn:
        for sql in (
            f"INSERT INTO artifacts (id, project, kind, path, sha256, size, created_at) VALUES (1, 'p', 'model', "
            f"'models/b.json', '{'b' * 64}', 2, '{at}')",
            f"INSERT INTO snapshots (id, project, input_key, data_hash, artifact_id, rows, columns, contract, report, "
            f"created_at) VALUES (1, 'p', 'k', 'd', 1, 10, 3, '{{}}', '{{}}', '{at}')",
            "INSERT INTO model_versions (id, project, version, input_key, snapshot_id, artifact_id, spec_hash, family, "
            f"metrics, operating_point, lineage, status, created_at) VALUES (1, 'p', 1, 'm', 1, 1, 's', 'linear', "
            f"'{{}}', '{{}}', '{{}}', 'registered', '{at}')",
            "INSERT INTO predictions (id, project, model_version_id, features, prediction, created_at, role) "
            f"VALUES ('a1', 'p', 1, '{{}}', '\"yes\"', '{at}', 'champion')",
        ):
            conn.exec_driver_sql(sql)
    old.dispose()
    store = Store.open(tmp_path, url=url)
    try:
        assert store.schema_version() == head()
        store.log_predictions("p", 1, [{"id": "b2", "features": {}, "prediction": "no", "worker": "web-1:42"}])
        assert store.predictions_per_worker("p") == {None: 1, "web-1:42": 1}
        assert store.predictions_per_worker("p", first_seq=2) == {"web-1:42": 1}
    finally:
        store.close()


def test_predictions_from_two_logs_are_counted_per_worker_and_together(store):
    from loopml.operations.predlog import PredictionLog

    _register(store, 1)
    mv = store.model_version(PROJECT, 1)
    logs = [PredictionLog(store, PROJECT, worker=name) for name in ("web-1:41", "web-2:41")]
    threads = [threading.Thread(target=log.append, args=(mv.id, [
        {"id": f"{i}-{n}", "features": {"x": n}, "prediction": "yes"} for n in range(5 + i)]))
        for i, log in enumerate(logs)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for log in logs:
        log.close()
    assert store.predictions_per_worker(PROJECT) == {"web-1:41": 5, "web-2:41": 6}
    assert store.prediction_count(PROJECT) == 11
