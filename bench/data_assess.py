"""Benchmark: assess a 1M and a 10M row x 30 column Parquet file with loopml, and with ydata-profiling
in minimal mode on the same file, side by side; print seconds, rows per second, peak memory and ratios.

Run from the repository root (about 20 minutes: ydata-profiling takes about 3 at 1M rows and is stopped
after 10 at 10M; the first run also installs it into ``bench/.venv-ydata``, a minute or two):

    python bench/data_assess.py                  # 1M and 10M rows
    python bench/data_assess.py --rows 1000000   # one size
    python bench/data_assess.py --no-ydata       # loopml only

The data is synthetic, made with a fixed seed (the benchmark is about scale, not findings): 12 normal
columns (a third with 5% missing), 6 log-normal amounts (heavy tails, rare 1000x errors), 4 counts,
6 categoricals (3 to 1,000 levels, one 99% constant), a flag and a binary target; 0.1% duplicate rows.
Each measurement runs in its own process, which reports its peak resident memory (ru_maxrss); the
parent stops a run that passes ``--timeout`` seconds or ``--memory-cap`` GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
YDATA_VENV = HERE / ".venv-ydata"
CHUNK = 1_000_000

# The child programs: each prints one JSON line with its own seconds and peak memory.
LOOPML_RUN = """
import json, resource, sys, time
from loopml.data import assess_file
started = time.perf_counter()
a = assess_file(sys.argv[1], "target", "binary")
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": a.rows, "duplicates": a.duplicate_rows, "label_noise": a.label_noise["share"]}))
"""
YDATA_RUN = """
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from ydata_profiling import ProfileReport
started = time.perf_counter()
df = pd.read_parquet(sys.argv[1])
read = time.perf_counter() - started
ProfileReport(df, minimal=True, progress_bar=False).to_json()
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "read_seconds": read, "rows": len(df),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` synthetic rows to ``path`` in chunks, so the parent stays small."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, CHUNK):
        table = _chunk(rng, min(CHUNK, rows - start), np, pa)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=256_000)
    writer.close()


def _chunk(rng, n: int, np, pa):
    unique = n - n // 1000
    cols, normal = {}, {}
    for i in range(12):
        normal[i] = rng.normal(i, 1 + i, unique)
        cols[f"num_{i:02d}"] = pa.array(normal[i], mask=(rng.random(unique) < 0.05) if i % 4 == 0 else None)
    for i in range(6):
        values = rng.lognormal(0, 1, unique)
        values[rng.random(unique) < 1e-4] *= 1000  # unit errors
        cols[f"amount_{i}"] = values
    for i in range(4):
        cols[f"count_{i}"] = rng.poisson(3 + i, unique).astype("int64")
    for i, levels in enumerate([3, 12, 60, 1000, 2, 5]):
        codes = (rng.random(unique) < 0.01) if levels == 2 else rng.integers(0, levels, unique)
        cols[f"cat_{i}"] = pa.DictionaryArray.from_arrays(pa.array(codes.astype("int32")),
                                                          pa.array([f"c{i}_{j}" for j in range(levels)]))
    cols["flag"] = rng.random(unique) < 0.3
    score = normal[1] * 0.5 - normal[2] * 0.3 + np.log(cols["amount_0"]) + rng.normal(0, 1, unique)
    cols["target"] = pa.DictionaryArray.from_arrays(pa.array((score > 0.4).astype("int32")), pa.array(["no", "yes"]))
    table = pa.table(cols)
    return pa.concat_tables([table, table.take(rng.choice(unique, n - unique, replace=False))])


def ensure_ydata() -> Path | None:
    """The ydata-profiling venv's Python, installing it on first use; None if that fails."""
    python = YDATA_VENV / "bin" / "python"
    if python.exists() and _run_ok([str(python), "-c", "import ydata_profiling, pyarrow"]):
        return python
    print(f"installing ydata-profiling into {YDATA_VENV.relative_to(HERE.parent)} (once) ...", flush=True)
    if not _run_ok([sys.executable, "-m", "venv", str(YDATA_VENV)]):
        return None
    ok = _run_ok([str(python), "-m", "pip", "install", "-q", "ydata-profiling", "pyarrow", "setuptools"], show=True)
    return python if ok else None


def _run_ok(command: list[str], show: bool = False) -> bool:
    done = subprocess.run(command, capture_output=not show, text=True)
    return done.returncode == 0


def measure(python: str, program: str, path: Path, timeout: float, cap_gib: float) -> dict:
    """Run ``program`` on ``path`` in a child; stop it past ``timeout`` s or ``cap_gib`` GiB of memory."""
    child = subprocess.Popen([python, "-c", program, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=HERE.parent)
    started, peak, stopped = time.monotonic(), 0.0, None
    while child.poll() is None:
        peak = max(peak, _rss_mib(child.pid))
        if time.monotonic() - started > timeout:
            stopped = f"did not finish in {timeout:.0f} s"
        elif peak > cap_gib * 1024:
            stopped = f"stopped at the {cap_gib:g} GiB memory cap after {time.monotonic() - started:.0f} s"
        if stopped:
            child.kill()
            child.wait()
            return {"error": stopped, "peak_mib": peak}
        time.sleep(0.2)
    out, err = child.communicate()
    if child.returncode != 0:
        return {"error": f"failed (exit {child.returncode}): {err.strip().splitlines()[-1] if err.strip() else ''}"}
    return json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))


def _rss_mib(pid: int) -> float:
    """The child's current resident memory (Linux); 0 where /proc is not there."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine() -> str:
    memory = "?"
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
        memory = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    import duckdb

    return (f"{os.cpu_count()} CPUs, {memory} memory, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, duckdb {duckdb.__version__}")


def _load() -> str:
    """The 1-minute load average: other work on a shared machine slows every figure."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def _row(rows: int, tool: str, result: dict) -> str:
    if "error" in result:
        peak = f" (resident {result['peak_mib']:,.0f} MiB when stopped)" if result.get("peak_mib") else ""
        return f"{rows:>12,}  {tool:<22} {result['error']}{peak}"
    return (f"{rows:>12,}  {tool:<22} {result['seconds']:>9.1f} {rows / result['seconds']:>12,.0f} "
            f"{result['peak_mib']:>10,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="loopml runs per size (the median is shown)")
    parser.add_argument("--no-ydata", action="store_true")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a loopml run is stopped")
    parser.add_argument("--ydata-timeout", type=float, default=600, help="seconds before a ydata run is stopped")
    parser.add_argument("--memory-cap", type=float, default=18, help="GiB of memory before a run is stopped")
    args = parser.parse_args()

    print(f"machine: {machine()}; load {_load()}")
    ydata = None if args.no_ydata else ensure_ydata()
    if not args.no_ydata:
        print("ydata-profiling: " + (subprocess.run([str(ydata), "-c", "import ydata_profiling as y; "
                                                     "print(y.__version__)"], capture_output=True, text=True)
                                     .stdout.strip() if ydata else "could not be installed"))
    header = f"{'rows':>12}  {'tool':<22} {'seconds':>9} {'rows/s':>12} {'peak MiB':>10}"
    lines = []
    with tempfile.TemporaryDirectory(prefix="loopml-bench-") as folder:
        for rows in args.rows:
            path = Path(folder) / f"data_{rows}.parquet"
            started = time.perf_counter()
            generate(path, rows)
            print(f"generated {rows:,} x 30 in {time.perf_counter() - started:.1f} s "
                  f"({path.stat().st_size / 2**20:,.0f} MiB Parquet)", flush=True)
            runs = [measure(sys.executable, LOOPML_RUN, path, args.timeout, args.memory_cap)
                    for _ in range(args.repeat)]
            ok = [r for r in runs if "error" not in r]
            ours = ({"seconds": statistics.median(r["seconds"] for r in ok),
                     "peak_mib": statistics.median(r["peak_mib"] for r in ok)} if ok else runs[0])
            lines.append(_row(rows, f"loopml assess_file x{len(ok)}", ours))
            seconds = ", ".join(f"{r['seconds']:.1f}" for r in ok)
            print(lines[-1], f"  (runs: {seconds} s; load {_load()})", flush=True)
            if ydata is None:
                continue
            theirs = measure(str(ydata), YDATA_RUN, path, args.ydata_timeout, args.memory_cap)
            lines.append(_row(rows, "ydata-profiling minimal", theirs))
            print(lines[-1], f"  (load {_load()})", flush=True)
            if "error" not in theirs and "error" not in ours:
                lines.append(f"{'':>12}  {'ratio ydata / loopml':<22} {theirs['seconds'] / ours['seconds']:>8.1f}x"
                             f" {'':>12} {theirs['peak_mib'] / ours['peak_mib']:>9.1f}x"
                             f"   (ydata read the file in {theirs['read_seconds']:.1f} s of it)")
                print(lines[-1], flush=True)
    print("\n" + header + "\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
