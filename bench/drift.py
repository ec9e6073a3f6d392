"""Benchmark: loopml's drift report against Evidently's data drift preset, on the same Parquet tables.

Builds reference and current tables of 20 columns (15 numeric of varied shapes, some with missing values;
5 categorical of 3 to 50 categories), with drift injected in 5 known columns, at 100k and 1M rows, plus a
no-drift pair at 1M (the current table drawn afresh from the reference's distribution). The tables are
written once to Parquet (in the system's temp folder, reused by later runs); each tool reads them in its
own process, one at a time, and times its drift computation after reading. Evidently is not a loopml
dependency: the first run installs it into ``bench/.venv-evidently``.

Run from the repository root:

    python bench/drift.py                     # 100k and 1M rows, both tools (a few minutes)
    python bench/drift.py --quick             # 100k rows only
    python bench/drift.py --no-evidently      # loopml only
    python bench/drift.py --json drift.json   # also write the raw results

The table gives each tool's seconds, Evidently's over loopml's, and the columns each flagged; the lines
after it check the targets: loopml at least 20x faster at 1M rows, exactly the 5 drifted columns flagged,
none on the no-drift pair. Both tools run with their defaults (Evidently picks Wasserstein distance and
Jensen-Shannon distance with threshold 0.1 at these sizes; loopml adds PSI and a corrected test). loopml
measures the columns of tables this big in threads, one per core (up to 8); each result also records the
process's CPU seconds, so the raw JSON shows how much of a speed-up is threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
EVIDENTLY_VENV = HERE / ".venv-evidently"
# Evidently 0.7 imports pandas internals that pandas 3 removed; pyarrow reads the Parquet files.
EVIDENTLY_REQUIREMENTS = ["evidently>=0.7", "pandas<3", "pyarrow"]

from automl_common import peer_python, run_tool  # noqa: E402

RESULT_PREFIX = "DRIFT_RESULT "
SEED = 0
NUMERIC = [f"num_{i:02d}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
DRIFTED = ["num_01", "num_04", "num_09", "cat_1", "cat_3"]
SPEED_TARGET = 20.0
TARGET_ROWS = 1_000_000


# -- the tables ----------------------------------------------------------------------------------
def _table(rows: int, seed: int, drift: bool):
    """One table of 20 columns; ``drift`` shifts the 5 columns of DRIFTED, each in its own way."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    shift = 1.0 if drift else 0.0
    cols = {
        "num_00": rng.normal(0, 1, rows),
        "num_01": rng.normal(0.3 * shift, 1, rows),                           # mean shift, 0.3 sd
        "num_02": rng.lognormal(3, 0.8, rows),
        "num_03": rng.exponential(2.0, rows),
        "num_04": rng.normal(10, 2 * (1 + 0.5 * shift), rows),               # spread x1.5
        "num_05": rng.uniform(0, 100, rows),
        "num_06": rng.poisson(3, rows).astype(float),
        "num_07": np.where(rng.random(rows) < 0.4, 0.0, rng.gamma(2, 50, rows)),  # zero-inflated
        "num_08": rng.standard_t(4, rows),
        "num_09": rng.lognormal(8 + 0.25 * shift, 1.0, rows),                # incomes up by 28%
        "num_10": np.concatenate([rng.normal(-2, 0.5, rows // 2), rng.normal(2, 0.5, rows - rows // 2)]),
        "num_11": rng.beta(2, 5, rows),
        "num_12": rng.integers(18, 90, rows).astype(float),
        "num_13": rng.normal(50, 15, rows),
        "num_14": rng.weibull(1.5, rows),
    }
    for name in ("num_03", "num_13"):  # 1% missing, as real feeds have
        cols[name][rng.random(rows) < 0.01] = np.nan
    for name, k, moved in (("cat_0", 3, 0.0), ("cat_1", 5, 0.15), ("cat_2", 10, 0.0), ("cat_3", 20, 0.0),
                           ("cat_4", 50, 0.0)):
        p = 1.0 / np.arange(1, k + 1)  # Zipf-like shares
        p /= p.sum()
        labels = np.array([f"{name}_v{j}" for j in range(k)] + [f"{name}_new"])
        p = np.append(p, 0.0)
        if drift and moved:  # cat_1: 15 points of share move from the commonest category to the rarest
            p[0] -= moved
            p[k - 1] += moved
        if drift and name == "cat_3":  # cat_3: a category the reference never saw takes 15% of rows
            p = np.append(p[:-1] * 0.85, 0.15)
        cols[name] = pd.array(labels[rng.choice(len(labels), rows, p=p)], dtype="string")
    return pd.DataFrame(cols)


def tables(folder: Path, rows: int) -> dict[str, Path]:
    """Reference, drifted current and no-drift current of ``rows`` rows as Parquet; made once."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / f"{kind}_{rows}_seed{SEED}.parquet" for kind in ("reference", "drift", "same")}
    for kind, path in paths.items():
        if not path.exists():
            print(f"writing {path} ...", file=sys.stderr, flush=True)
            seed = {"reference": SEED, "drift": SEED + 1, "same": SEED + 2}[kind]
            frame = _table(rows, seed, drift=kind == "drift")
            frame.to_parquet(path.with_suffix(".tmp"), index=False)
            path.with_suffix(".tmp").rename(path)
    return paths


# -- the runners (each in its own process) -------------------------------------------------------
def run_loopml(reference: str, current: str) -> dict:
    import pandas as pd

    from loopml.operations.drift import drift_report

    started = time.perf_counter()
    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    read_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    report = drift_report(ref, cur)
    return {"compute_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "read_s": read_s,
            "flagged": sorted(report.drifted)}


def run_evidently(reference: str, current: str) -> dict:
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    read_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    compute_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    flagged, methods = [], set()
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        methods.add(config["method"])
        # A p-value drifts below its threshold; a distance at or above it.
        is_p = "p_value" in config["method"]
        value, threshold = metric["value"], config["threshold"]
        if (value < threshold) if is_p else (value >= threshold):
            flagged.append(config["column"])
    return {"compute_s": compute_s, "cpu_s": cpu_s, "read_s": read_s, "flagged": sorted(flagged),
            "methods": sorted(methods), "version": evidently.__version__}


def _runner_main(tool: str, reference: str, current: str) -> None:
    result = (run_loopml if tool == "loopml" else run_evidently)(reference, current)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def evidently_python() -> Path:
    """The Evidently venv's interpreter, creating the venv and installing Evidently when missing."""
    return peer_python(EVIDENTLY_VENV, EVIDENTLY_REQUIREMENTS,
                       "import evidently, pyarrow; from evidently.presets import DataDriftPreset")


def run_one(python: Path | str, tool: str, reference: Path, current: Path) -> dict:
    """One tool on one pair of tables in its own process; its result, or ``{"error": ...}``."""
    cmd = [str(python), str(Path(__file__).resolve()), "--runner", tool, str(reference), str(current)]
    return run_tool(cmd, prefix=RESULT_PREFIX, timeout_s=3600)

# -- the table -----------------------------------------------------------------------------------
def _flags(result: dict) -> str:
    return "error: " + result["error"] if "error" in result else (", ".join(result["flagged"]) or "none")


def _ratio(row: dict) -> float | None:
    lo, ev = row["loopml"], row["evidently"]
    if "compute_s" not in lo or "compute_s" not in ev or lo["compute_s"] <= 0:
        return None
    return ev["compute_s"] / lo["compute_s"]


def table(rows: list[dict]) -> str:
    head = ["pair", "rows", "loopml s", "Evidently s", "Evidently / loopml", "loopml flagged", "Evidently flagged"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---|---|"]
    for row in rows:
        lo, ev = row["loopml"], row["evidently"]
        ratio = _ratio(row)
        lines.append("| " + " | ".join([
            row["pair"], f"{row['rows']:,}",
            f"{lo['compute_s']:.2f}" if "compute_s" in lo else "–",
            f"{ev['compute_s']:.2f}" if "compute_s" in ev else "–",
            "–" if ratio is None else f"{ratio:.1f}x",
            _flags(lo), _flags(ev),
        ]) + " |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    """One line per target: what was asked, what each tool did."""
    out = []
    for row in rows:
        want = sorted(DRIFTED) if row["pair"] == "drift" else []
        for tool in ("loopml", "evidently"):
            r = row[tool]
            if "flagged" not in r:
                continue
            ok = r["flagged"] == want
            wanted = f"exactly {', '.join(want)}" if want else "none"
            out.append(f"{'met ' if ok else 'MISS'}  {tool:9} {row['pair']:5} {row['rows']:>9,} rows: flags {wanted}")
        if row["rows"] >= TARGET_ROWS and _ratio(row) is not None:
            ratio = _ratio(row)
            out.append(f"{'met ' if ratio >= SPEED_TARGET else 'MISS'}  loopml    {row['pair']:5} {row['rows']:>9,} "
                       f"rows: >= {SPEED_TARGET:g}x faster than Evidently (is {ratio:.1f}x)")
    return out


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k rows only")
    parser.add_argument("--no-evidently", action="store_true", help="run loopml only")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "loopml-bench-drift",
                        help="where the Parquet tables are written and reused (default: the temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results to this file")
    args = parser.parse_args(argv)

    python = None if args.no_evidently else evidently_python()
    pairs = [("drift", 100_000)] + ([] if args.quick else [("drift", TARGET_ROWS), ("same", TARGET_ROWS)])
    results = []
    for pair, rows in pairs:
        paths = tables(args.data_dir, rows)
        loopml = run_one(sys.executable, "loopml", paths["reference"], paths[pair])
        evidently = ({"error": "skipped"} if python is None
                     else run_one(python, "evidently", paths["reference"], paths[pair]))
        results.append({"pair": pair, "rows": rows, "loopml": loopml, "evidently": evidently})
        for tool, r in (("loopml", loopml), ("Evidently", evidently)):
            what = f"{r['compute_s']:.2f} s, flagged {_flags(r)}" if "compute_s" in r else _flags(r)
            print(f"  {pair:5} {rows:>9,} rows  {tool:9} {what}", flush=True)

    version = next((r["evidently"].get("version") for r in results if "version" in r["evidently"]), None)
    print(f"\nEvidently {version or '(not run)'}; drift injected in {', '.join(DRIFTED)}; "
          f"seconds are the drift computation after reading the Parquet files; {os.cpu_count()} CPUs\n")
    print(table(results))
    print()
    print("\n".join(targets(results)))
    if args.json:
        args.json.write_text(json.dumps({"drifted_columns": DRIFTED, "rows": results}, indent=1))
    return 0 if all("error" not in r["loopml"] for r in results) else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--runner":
        _runner_main(*sys.argv[2:])
    else:
        os.environ.setdefault("PYTHONHASHSEED", "0")
        raise SystemExit(main())
