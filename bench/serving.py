"""Benchmark: single-row HTTP serving, loopml (`loopml serve`) against MLflow (`mlflow models serve`).

One model is trained on a dataset of the shared bench suite (``shared/bench/public``, its fixed split),
registered in a throw-away loopml project, and served twice over loopback, one server at a time:

- loopml: ``loopml serve`` (FastAPI + uvicorn, one worker): every request is validated against the
  data contract and logged to the project's prediction log (SQLite), as in production;
- MLflow: the same registered version exported with ``loopml models export N --mlflow`` (a pyfunc whose
  ``predict`` validates against the same contract and calls loopml: the same model, the same numbers),
  served by ``mlflow models serve --env-manager local`` (one worker). MLflow and loopml are installed
  into ``bench/.venv-mlflow`` on first use (a few minutes), so loopml's own environment stays as it is.

Both get the same load: wrk (a C load generator in its own process, when installed:
`apt-get install wrk`; else an async httpx client in this process, which on 2 cores takes CPU from the
server) sends one row per request, cycling through the holdout rows, with 1 and then 16 requests in
flight, for a fixed time after a warm-up; each run is bounded in time and in count. The table gives
p50/p99 latency, throughput and errors, the loopml/MLflow ratios, and the in-process single-row
predict time as the floor no server can beat. Everything shares this machine's cores (client, server,
and whatever else runs), so read the figures together with the load average printed beside them.

Run from the repository root:

    python bench/serving.py                  # 10 s per run (about 2 minutes after the first install)
    python bench/serving.py --quick          # smoke check: 3 s per run
    python bench/serving.py --no-mlflow      # loopml only
    python bench/serving.py --client httpx   # the Python client instead of wrk
    python bench/serving.py --json serving.json --dataset hdma --family linear

The shared bench folder is ``shared/bench`` beside the repository's folder unless ``--bench-dir`` or
``$LOOPML_BENCH_DIR`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from automl_common import default_bench_dir, load_split  # noqa: E402

MLFLOW_VENV = HERE / ".venv-mlflow"
PROJECT = "serving-bench"
CONCURRENCY = (1, 16)
MAX_REQUESTS = 1_000_000  # per run: a bound on memory whatever the duration
# The targets loopml's serving is held to (printed beside the measured figures).
TARGET_P50_MS, TARGET_P99_MS, TARGET_RATIO = 2.0, 10.0, 5.0
GOAL = {"binary": ("roc_auc", 0.5), "multiclass": ("roc_auc_ovr", 0.5), "regression": ("rmse", None)}
CLIENT = "httpx"  # the load generator; set from --client
CLIENT_TEXT = {"wrk": "wrk (its own process; warm-up by httpx)", "httpx": "httpx (async) in this process"}
QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


# -- MLflow's venv -------------------------------------------------------------------------------
def mlflow_python() -> Path:
    """The MLflow venv's interpreter, creating it and installing MLflow and this checkout of loopml when missing."""
    python = MLFLOW_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {MLFLOW_VENV.relative_to(REPO)} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
    check = [str(python), "-c", "import mlflow.pyfunc, loopml.operations; print(mlflow.__version__)"]
    if subprocess.run(check, capture_output=True).returncode != 0:
        # Editable: the MLflow server runs this checkout's loopml; rerun after loopml's dependencies change.
        print("installing mlflow and loopml (editable, from this checkout) into "
              f"{MLFLOW_VENV.name} (a few minutes) ...", file=sys.stderr, flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow", "-e", str(REPO)], check=True)
        done = subprocess.run(check, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{MLFLOW_VENV.name} cannot import mlflow and loopml after installing them:\n"
                             f"{done.stderr.strip().splitlines()[-1]}\nfix the environment or delete "
                             f"{MLFLOW_VENV.relative_to(REPO)} to start afresh")
    return python


def version_of(python: Path, module: str) -> str:
    done = subprocess.run([str(python), "-c", f"import {module}; print({module}.__version__)"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


# -- the model and its project -------------------------------------------------------------------
def build_project(bench_dir: Path, dataset: str, family: str, folder: Path) -> dict[str, Any]:
    """Train ``family`` on the dataset's training rows and register it as champion of a project in ``folder``."""
    import yaml

    from loopml.data.contract import infer_contract
    from loopml.data.snapshot import frame_hash, frame_to_parquet
    from loopml.model import SearchPlan, search
    from loopml.spec import GoalSpec
    from loopml.store import Store

    meta, X_tr, X_te, y_tr, _y_te, _split, _score = load_split(bench_dir, "public", dataset)
    target, task = meta["target"], meta["task"]
    metric, at_least = GOAL[task]
    goal = GoalSpec(metric=metric, at_least=at_least) if at_least is not None else GoalSpec(metric=metric,
                                                                                           at_most=1e300)
    train = X_tr.copy()
    train[target] = y_tr.to_numpy()
    positive = meta.get("positive_class") if task == "binary" else None
    started = time.perf_counter()
    result = search(train, target=target, task=task, goal=goal, positive=positive,
                    plan=SearchPlan(families=(family,), trials=1, ensemble=False, folds=3))
    fit_s = time.perf_counter() - started
    contract = infer_contract(train, target=target, task=task)

    train.to_parquet(folder / "train.parquet")
    goal_doc = {"metric": metric, **({"at_least": at_least} if at_least is not None else {"at_most": 1e300})}
    business = {"problem": f"serving benchmark on {dataset}", "task": task, "target": target, "goal": goal_doc}
    if positive is not None:
        business["positive"] = positive
    spec = {"project": PROJECT, "business": business,
            "data": {"sources": [{"name": dataset, "path": "train.parquet"}]}}
    (folder / "loopml.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

    store = Store.open(folder)
    try:
        snapshot = store.save_snapshot(PROJECT, input_key="bench", data=frame_to_parquet(train),
                                       data_hash=frame_hash(train), rows=len(train), columns=train.shape[1],
                                       contract=contract.model_dump(mode="json"), report={})
        mv = store.register_model(PROJECT, run_id=None, snapshot_id=snapshot.id, input_key="bench",
                                  model_bytes=result.model.to_bytes(), spec_hash="bench", family=result.model.family,
                                  metrics={"cv_score": result.cv_score}, operating_point=result.operating_point,
                                  lineage={"train_rows": len(train), "holdout_rows": len(X_te)})
        store.set_alias(PROJECT, "champion", mv.version, actor="bench/serving.py", reason="benchmark")
    finally:
        store.close()
    rows = [_json_row(r) for r in X_te.to_dict("records")]
    return {"model": result.model, "contract": contract, "rows": rows, "frame": X_te, "task": task,
            "train_rows": len(train), "fit_s": fit_s, "version": mv.version}


def _json_row(record: dict) -> dict:
    # JSON has no NaN: a missing value is null, and numpy scalars become plain numbers.
    out = {}
    for key, value in record.items():
        value = value.item() if hasattr(value, "item") else value
        out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out


def floor_ms(model: Any, contract: Any, rows: list[dict], frame: Any, iterations: int) -> dict[str, float]:
    """In-process single-row times: predict alone, and contract validation + predict (what a request adds to)."""
    import numpy as np

    singles = [frame.iloc[[i % len(frame)]] for i in range(min(iterations, 200))]
    predict = model.predict_proba if model.task != "regression" else model.predict
    for one in singles[:20]:
        predict(one)  # warm caches (the LightGBM booster, numpy)
    alone, validated = [], []
    for i in range(iterations):
        one = singles[i % len(singles)]
        t0 = time.perf_counter()
        predict(one)
        alone.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        predict(contract.validate_records([rows[i % len(rows)]]))
        validated.append(time.perf_counter() - t0)
    return {"predict_p50_ms": float(np.percentile(alone, 50) * 1e3),
            "predict_p99_ms": float(np.percentile(alone, 99) * 1e3),
            "validate_predict_p50_ms": float(np.percentile(validated, 50) * 1e3),
            "validate_predict_p99_ms": float(np.percentile(validated, 99) * 1e3)}


# -- servers -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], ready_url: str, *, env: dict[str, str] | None = None, log: Path,
          timeout_s: float = 120) -> subprocess.Popen:
    """Start a server in its own process group and wait until ``ready_url`` answers 200."""
    import httpx

    with log.open("wb") as sink:
        # A session of its own: the server and any worker it forks share one process group, ours to stop.
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} before it was ready; see {log}:\n"
                               + log.read_text(errors="replace")[-2000:])
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop(proc)
    raise RuntimeError(f"{' '.join(cmd[:3])} was not ready within {timeout_s:.0f} s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the process group this script started for ``proc`` (its pid is the group id), by id only."""
    if proc.poll() is None or _group_alive(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
    if _group_alive(proc.pid):  # a worker that outlived its parent
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# -- load ----------------------------------------------------------------------------------------
async def drive(url: str, bodies: list[bytes], concurrency: int, duration_s: float, max_requests: int) -> dict:
    """``concurrency`` requests in flight for ``duration_s`` (at most ``max_requests``): latencies and errors."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = itertools.count()
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                i = next(counter)
                if i >= max_requests:
                    return
                t0 = time.perf_counter()
                try:
                    response = await client.post(url, content=bodies[i % len(bodies)], headers=headers)
                    failure = None if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    failure = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if failure:
                    errors[failure] = errors.get(failure, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return _summary(latencies, errors, elapsed, concurrency)


def drive_wrk(url: str, bodies: list[bytes], concurrency: int, duration_s: float, workdir: Path) -> dict:
    """The same load from wrk (a C load generator, so the client does not take the server's CPU)."""
    script = workdir / "bodies.lua"
    # Long-bracket strings hold JSON as is; the request function cycles through the holdout rows.
    items = ",\n".join(f"[==[{b.decode()}]==]" for b in bodies)
    script.write_text(f"local bodies = {{\n{items}\n}}\nlocal i = 0\n"
                      "request = function()\n  i = i + 1\n"
                      '  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, '
                      "bodies[(i % #bodies) + 1])\nend\n", encoding="utf-8")
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(duration_s, 1):.0f}s", "--latency", "-s", str(script),
           url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60).stdout
    return {"concurrency": concurrency, **_parse_wrk(out)}


def _parse_wrk(out: str) -> dict:
    import re

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    requests = int(done.group(1))
    seconds = float(done.group(2)) / (1e3 if done.group(3) == "ms" else 1.0)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors: dict[str, int] = {}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors["HTTP non-2xx"] = int(non2xx.group(1))
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sockets:
        for kind, n in zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True):
            if n:
                errors[f"socket {kind}"] = n
    return {"requests": requests, "seconds": round(seconds, 2), "rps": requests / seconds if seconds else 0.0,
            "p50_ms": ms(p50.group(1)) if p50 else math.nan, "p99_ms": ms(p99.group(1)) if p99 else math.nan,
            "errors": sum(errors.values()), "error_kinds": errors}


def _summary(latencies: list[float], errors: dict[str, int], elapsed: float, concurrency: int) -> dict:
    import numpy as np

    ms = np.asarray(latencies) * 1e3 if latencies else np.asarray([math.nan])
    return {"concurrency": concurrency, "requests": len(latencies), "seconds": round(elapsed, 2),
            "rps": len(latencies) / elapsed if elapsed else 0.0, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": sum(errors.values()), "error_kinds": errors}


def measure(name: str, url: str, bodies: list[bytes], duration_s: float, warmup_s: float,
            workdir: Path) -> list[dict]:
    results = []
    for concurrency in CONCURRENCY:
        asyncio.run(drive(url, bodies, concurrency, warmup_s, MAX_REQUESTS))  # connections, caches, JIT paths
        if CLIENT == "wrk":
            result = {"server": name, **drive_wrk(url, bodies, concurrency, duration_s, workdir)}
        else:
            result = {"server": name, **asyncio.run(drive(url, bodies, concurrency, duration_s, MAX_REQUESTS))}
        print(f"  {name:8} c={concurrency:<3} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:7.2f} ms  "
              f"p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}", flush=True)
        results.append(result)
    return results


# -- the two servers -----------------------------------------------------------------------------
def run_loopml(folder: Path, rows: list[dict], duration_s: float, warmup_s: float) -> list[dict]:
    port = free_port()
    cmd = [sys.executable, "-m", "loopml", "serve", "--spec", str(folder / "loopml.yaml"), "--host", "127.0.0.1",
           "--port", str(port)]
    proc = start(cmd, f"http://127.0.0.1:{port}/ready", log=folder / "loopml-serve.log")
    try:
        bodies = [json.dumps({"row": r}).encode() for r in rows]
        return measure("loopml", f"http://127.0.0.1:{port}/predict", bodies, duration_s, warmup_s, folder)
    finally:
        stop(proc)


def export_to_mlflow(python: Path, folder: Path, version: int) -> dict:
    uri = (folder / "mlruns").as_uri()
    done = subprocess.run([str(python), "-m", "loopml", "models", "export", str(version), "--mlflow", uri,
                           "--spec", str(folder / "loopml.yaml"), "--actor", "bench/serving.py", "--json"],
                          capture_output=True, text=True, env={**os.environ, **QUIET_MLFLOW}, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"loopml models export failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def run_mlflow(python: Path, model_uri: str, folder: Path, rows: list[dict], duration_s: float,
               warmup_s: float) -> list[dict]:
    port = free_port()
    cmd = [str(python), "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    # As in an activated venv: MLflow starts its server as `uvicorn ...`, found on PATH.
    env = {**QUIET_MLFLOW, "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = start(cmd, f"http://127.0.0.1:{port}/ping", env=env, log=folder / "mlflow-serve.log")
    try:
        bodies = [json.dumps({"dataframe_records": [r]}).encode() for r in rows]
        return measure("MLflow", f"http://127.0.0.1:{port}/invocations", bodies, duration_s, warmup_s, folder)
    finally:
        stop(proc)


# -- report --------------------------------------------------------------------------------------
def table(results: list[dict]) -> str:
    lines = ["| server | concurrency | requests | req/s | p50 ms | p99 ms | errors |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['server']} | {r['concurrency']} | {r['requests']:,} | {r['rps']:,.0f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
    return "\n".join(lines)


def verdicts(results: list[dict]) -> list[str]:
    by = {(r["server"], r["concurrency"]): r for r in results}
    one, many = by.get(("loopml", 1)), by.get(("loopml", CONCURRENCY[-1]))
    lines = []

    def line(label: str, value: str, ok: bool | None) -> None:
        lines.append(f"  {label:<44} {value:<22} {'-' if ok is None else 'met' if ok else 'MISSED'}")

    if one:
        line(f"loopml p50 at concurrency 1 < {TARGET_P50_MS:g} ms", f"{one['p50_ms']:.2f} ms",
             one["p50_ms"] < TARGET_P50_MS)
        line(f"loopml p99 at concurrency 1 < {TARGET_P99_MS:g} ms", f"{one['p99_ms']:.2f} ms",
             one["p99_ms"] < TARGET_P99_MS)
    mlflow_many = by.get(("MLflow", CONCURRENCY[-1]))
    if many and mlflow_many and mlflow_many["rps"]:
        ratio = many["rps"] / mlflow_many["rps"]
        line(f"throughput at concurrency {CONCURRENCY[-1]} >= {TARGET_RATIO:g}x MLflow's", f"{ratio:.2f}x",
             ratio >= TARGET_RATIO)
    else:
        line(f"throughput at concurrency {CONCURRENCY[-1]} >= {TARGET_RATIO:g}x MLflow's", "no MLflow run", None)
    errors = sum(r["errors"] for r in results)
    line("zero errors", f"{errors} errors", errors == 0)
    return lines


def ratios(results: list[dict]) -> str:
    by = {(r["server"], r["concurrency"]): r for r in results}
    parts = []
    for c in CONCURRENCY:
        a, b = by.get(("loopml", c)), by.get(("MLflow", c))
        if a and b and b["rps"] and a["p50_ms"]:
            parts.append(f"concurrency {c}: throughput {a['rps'] / b['rps']:.2f}x MLflow's; MLflow's p50 "
                         f"{b['p50_ms'] / a['p50_ms']:.2f}x loopml's, its p99 {b['p99_ms'] / a['p99_ms']:.2f}x")
    return "loopml against MLflow: " + ("; ".join(parts) if parts else "no MLflow run to compare")


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (default 10; --quick 3)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds before each run (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 3 s runs, 1 s warm-up")
    parser.add_argument("--dataset", default="benefits", help="a dataset of the bench suite (default benefits)")
    parser.add_argument("--family", default="lightgbm", help="the model family trained (default lightgbm)")
    parser.add_argument("--bench-dir", type=Path, default=None,
                        help="the shared bench folder (default: $LOOPML_BENCH_DIR, else ../shared/bench)")
    parser.add_argument("--no-mlflow", action="store_true", help="serve with loopml only")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away project folder and server logs")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results to this file")
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto",
                        help="load generator: wrk (C, apt-get install wrk) or httpx (async, in this process); "
                             "auto: wrk when installed")
    args = parser.parse_args(argv)
    global CLIENT
    CLIENT = ("wrk" if shutil.which("wrk") else "httpx") if args.client == "auto" else args.client
    if CLIENT == "wrk" and not shutil.which("wrk"):
        parser.error("--client wrk: wrk is not installed (apt-get install wrk), or use --client httpx")
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    bench_dir = (args.bench_dir or default_bench_dir()).resolve()
    if not (bench_dir / "public" / "manifest.json").is_file():
        parser.error(f"no public/manifest.json in {bench_dir}: pass --bench-dir or set LOOPML_BENCH_DIR")

    python = None if args.no_mlflow else mlflow_python()
    folder = Path(tempfile.mkdtemp(prefix="loopml-serving-bench-"))
    try:
        print(f"training {args.family} on {args.dataset} ...", flush=True)
        built = build_project(bench_dir, args.dataset, args.family, folder)
        floor = floor_ms(built["model"], built["contract"], built["rows"], built["frame"],
                         300 if args.quick else 2000)
        load = os.getloadavg()
        print(f"{args.dataset} ({built['task']}), {built['model'].family} model on {built['train_rows']:,} training "
              f"rows (fit {built['fit_s']:.1f} s); {len(built['rows']):,} holdout rows sent one per request; "
              f"{duration:g} s per run after {warmup:g} s warm-up; client: {CLIENT_TEXT[CLIENT]}; "
              f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)
        print(f"floor, in-process single row: predict p50 {floor['predict_p50_ms']:.2f} ms, p99 "
              f"{floor['predict_p99_ms']:.2f} ms; contract validation + predict p50 "
              f"{floor['validate_predict_p50_ms']:.2f} ms, p99 {floor['validate_predict_p99_ms']:.2f} ms", flush=True)
        results = run_loopml(folder, built["rows"], duration, warmup)
        mlflow_version = None
        if python is not None:
            exported = export_to_mlflow(python, folder, built["version"])
            mlflow_version = version_of(python, "mlflow")
            print(f"MLflow {mlflow_version}: serving {exported['artifact_uri']} (exported with `loopml models "
                  "export`: a pyfunc calling loopml on the same model)", flush=True)
            results += run_mlflow(python, exported["artifact_uri"], folder, built["rows"], duration, warmup)
        print()
        print(table(results))
        print()
        print(ratios(results))
        print("targets:")
        print("\n".join(verdicts(results)))
        if args.json:
            args.json.write_text(json.dumps({
                "dataset": args.dataset, "family": built["model"].family, "duration_s": duration,
                "warmup_s": warmup, "client": CLIENT, "cores": os.cpu_count(), "load_average": load,
                "mlflow": mlflow_version,
                "floor": floor, "results": results}, indent=1), encoding="utf-8")
        return 0 if results and all(r["errors"] == 0 for r in results) else 1
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
