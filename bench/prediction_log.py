"""Benchmark: how fast the prediction log writes, and how many bytes a logged prediction takes.

Writes ``--rows`` predictions of the benefits example (17 feature columns, a label and a probability,
as ``loopml serve`` logs them) through :class:`loopml.operations.predlog.PredictionLog`: its group
commits of up to 5,000 rows from one writer thread, appended as fast as the caller can. Then reports
rows per second from the first append to the last commit, and on PostgreSQL the bytes per row of the
predictions table with its indexes (``pg_total_relation_size``). Run from the repository root:

    python bench/prediction_log.py                                      # SQLite in a temp folder
    python bench/prediction_log.py --db postgresql+psycopg://127.0.0.1/test_bench
    python bench/prediction_log.py --workers 2 --db ...                 # two processes log at once

The PostgreSQL database must exist; the bench adds its rows under a project of its own and removes them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from loopml.operations.predlog import PredictionLog
from loopml.store import Store
from loopml.store import schema as t

_DATA = Path(__file__).resolve().parents[1] / "examples" / "benefits" / "benefits.csv"


def _version(store: Store, project: str) -> int:
    snap = store.save_snapshot(project, input_key="bench", data=b"bench", data_hash="h", rows=1, columns=1,
                               contract={}, report={})
    return store.register_model(project, run_id=None, snapshot_id=snap.id, input_key="bench",
                                model_bytes=json.dumps({"bench": project}).encode(), spec_hash="bench",
                                family="linear", metrics={}, operating_point={}, lineage={}).id


def _log(root: str, url: str | None, project: str, mv_id: int, rows: int, out) -> None:
    records = pd.read_csv(_DATA).drop(columns=["ui"]).to_dict("records")
    store = Store.open(root, url=url)
    log = PredictionLog(store, project)
    start = time.perf_counter()
    for i in range(0, rows, 100):  # 100 rows per append: one request's batch, or a busy second's singles
        log.append(mv_id, [{"id": uuid.uuid4().hex, "features": records[(i + j) % len(records)], "prediction": "yes",
                            "probability": 0.5, "latency_ms": 0.5} for j in range(min(100, rows - i))])
    log.close()
    out.put((time.perf_counter() - start, log.rows_written, log.batches_written))
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a PostgreSQL URL (default: SQLite in a temp folder)")
    parser.add_argument("--rows", type=int, default=200_000, help="predictions per worker")
    parser.add_argument("--workers", type=int, default=1, help="processes logging at once")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="loopml-bench-log-")
    project = f"bench-{uuid.uuid4().hex[:8]}"
    store = Store.open(root, url=args.db)
    mv_id = _version(store, project)
    before = _table_bytes(store)
    out = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(target=_log, args=(root, args.db, project, mv_id,
                                                                             args.rows, out))
             for _ in range(args.workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    rows = sum(r[1] for r in results)
    print(f"{store.engine.dialect.name}: {args.workers} worker(s), {rows:,} rows in {sum(r[2] for r in results)} "
          f"commits; per worker {', '.join(f'{r[1] / r[0]:,.0f}' for r in results)} rows/s; together "
          f"{rows / wall:,.0f} rows/s (wall {wall:.1f} s, including process start)")
    if store.engine.dialect.name == "postgresql":
        print(f"predictions table with indexes: {(_table_bytes(store) - before) / rows:,.0f} bytes per row logged")
        with store.engine.begin() as conn:
            conn.execute(t.predictions.delete().where(t.predictions.c.project == project))
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM FULL predictions"))  # the next run measures an empty table again
    store.close()


def _table_bytes(store: Store) -> int:
    if store.engine.dialect.name != "postgresql":
        return 0
    with store.engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_total_relation_size('predictions')")).scalar()


if __name__ == "__main__":
    main()
