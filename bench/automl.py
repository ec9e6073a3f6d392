"""Benchmark: loopml's Model stage against FLAML, side by side, on the shared bench datasets.

For every dataset of the bench suite (``shared/bench/public``: 8 real tabular datasets, binary,
multiclass and regression) both tools get the same fixed 80/20 split (``split.py``), the same time
budget and the same metric (the manifest's: ROC AUC, macro one-vs-rest ROC AUC or RMSE), and are
scored on the same holdout rows by ``score.py``. Each tool runs in its own process, one dataset at a
time and never both at once, so neither competes with the other for the 2 cores or for memory.
FLAML (``flaml[automl]``) is not a loopml dependency: the first run installs it into
``bench/.venv-flaml``.

Run from the repository root:

    python bench/automl.py                        # all datasets, 60 s each (about 20 minutes)
    python bench/automl.py --quick                # smoke check: 10 s on 2 datasets
    python bench/automl.py --datasets hdma,slid --budget 30
    python bench/automl.py --json results.json    # also write the raw results

The table gives each tool's holdout score, ``loopml - FLAML`` signed so that positive means loopml is
better (for RMSE, where lower is better, that is FLAML's RMSE minus loopml's), and the seconds each
tool's fit took; a summary line counts wins, ties (|diff| < 0.001) and losses and gives the mean
difference. The shared bench folder is ``shared/bench`` beside the repository's folder unless
``--bench-dir`` or ``$LOOPML_BENCH_DIR`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from automl_common import RESULT_PREFIX, default_bench_dir, peer_python, run_tool  # noqa: E402

FLAML_VENV = HERE / ".venv-flaml"
FLAML_REQUIREMENTS = ["flaml[automl]", "pyarrow"]  # pyarrow: the runner reads the Parquet files
QUICK_DATASETS = ["treatment", "slid"]
QUICK_BUDGET = 10.0
TIE = 0.001
LOWER_IS_BETTER = {"rmse"}


# -- FLAML's venv --------------------------------------------------------------------------------
def flaml_python() -> Path:
    """The FLAML venv's interpreter, creating the venv and installing FLAML when missing."""
    return peer_python(FLAML_VENV, FLAML_REQUIREMENTS,
                       "import flaml.automl, lightgbm, xgboost, pyarrow, sklearn; print(flaml.__version__)")


def flaml_version(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import flaml; print(flaml.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


# -- one run -------------------------------------------------------------------------------------
def run_one(python: Path | str, runner: str, bench_dir: Path, suite: str, name: str, budget: float) -> dict:
    """Run one runner on one dataset in its own process; its result, or ``{"error": ...}``."""
    cmd = [str(python), str(HERE / runner), str(bench_dir), suite, name, str(budget)]
    # Generous: FLAML overruns its budget by its final refit; loopml by its refit and learning curve.
    return run_tool(cmd, prefix=RESULT_PREFIX, timeout_s=budget * 4 + 300)

def diff(metric: str, loopml: dict, flaml: dict) -> float | None:
    """loopml's advantage: positive when loopml is better (for RMSE: FLAML's minus loopml's)."""
    if "score" not in loopml or "score" not in flaml:
        return None
    d = loopml["score"] - flaml["score"]
    return -d if metric in LOWER_IS_BETTER else d


# -- the table -----------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    head = ["dataset", "task", "metric", "loopml", "FLAML", "loopml − FLAML", "loopml s", "FLAML s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 5) + "|"]

    def fmt_score(r: dict) -> str:
        return f"{r['score']:.4f}" if "score" in r else "error"

    def fmt_s(r: dict) -> str:
        return f"{r['fit_s']:.1f}" if "fit_s" in r else "–"

    for row in rows:
        d = row["diff"]
        lines.append("| " + " | ".join([
            row["dataset"], row["task"], row["metric"], fmt_score(row["loopml"]), fmt_score(row["flaml"]),
            "–" if d is None else f"{d:+.4f}", fmt_s(row["loopml"]), fmt_s(row["flaml"]),
        ]) + " |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    diffs = [r["diff"] for r in rows if r["diff"] is not None]
    wins = sum(d >= TIE for d in diffs)
    losses = sum(d <= -TIE for d in diffs)
    ties = len(diffs) - wins - losses
    errors = len(rows) - len(diffs)
    mean = sum(diffs) / len(diffs) if diffs else float("nan")
    by_metric = {}
    for r in rows:
        if r["diff"] is not None:
            by_metric.setdefault(r["metric"], []).append(r["diff"])
    per_metric = ", ".join(f"{m} {sum(v) / len(v):+.4f}" for m, v in by_metric.items())
    text = (f"loopml vs FLAML: {wins} wins, {ties} ties, {losses} losses (tie: |diff| < {TIE}); "
            f"mean difference {mean:+.4f} over all datasets (positive = loopml better; for RMSE the "
            f"difference is FLAML − loopml, in the target's units, so it weighs most in that mean); "
            f"by metric: {per_metric}")
    return text + (f"; {errors} dataset(s) without a score" if errors else "")


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=None, help="seconds per tool and dataset (default 60)")
    parser.add_argument("--datasets", default=None, help="comma-separated dataset names (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke check: budget {QUICK_BUDGET:g} s on {', '.join(QUICK_DATASETS)}")
    parser.add_argument("--bench-dir", type=Path, default=None,
                        help="the shared bench folder (default: $LOOPML_BENCH_DIR, else ../shared/bench)")
    parser.add_argument("--suite", default="public", help="the suite folder inside the bench folder")
    parser.add_argument("--no-flaml", action="store_true", help="run loopml only")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results to this file")
    args = parser.parse_args(argv)

    bench_dir = (args.bench_dir or default_bench_dir()).resolve()
    manifest_path = bench_dir / args.suite / "manifest.json"
    if not manifest_path.is_file():
        parser.error(f"no {args.suite}/manifest.json in {bench_dir}: pass --bench-dir or set LOOPML_BENCH_DIR")
    manifest = {m["name"]: m for m in json.loads(manifest_path.read_text())}
    budget = args.budget if args.budget is not None else (QUICK_BUDGET if args.quick else 60.0)
    if args.datasets:
        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    else:
        names = QUICK_DATASETS if args.quick else list(manifest)
    unknown = [n for n in names if n not in manifest]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(manifest)}")

    python = None if args.no_flaml else flaml_python()
    print(f"budget {budget:g} s per tool and dataset; datasets: {', '.join(names)}; "
          f"FLAML {flaml_version(python) if python else '(skipped)'}", flush=True)

    rows = []
    for name in names:
        meta = manifest[name]
        loopml = run_one(sys.executable, "automl_loopml_runner.py", bench_dir, args.suite, name, budget)
        flaml = ({"error": "skipped"} if python is None
                 else run_one(python, "automl_flaml_runner.py", bench_dir, args.suite, name, budget))
        row = {"dataset": name, "task": meta["task"], "metric": meta["metric"], "loopml": loopml,
               "flaml": flaml, "diff": diff(meta["metric"], loopml, flaml)}
        rows.append(row)
        for tool, r in (("loopml", loopml), ("FLAML", flaml)):
            what = (f"{r['score']:.4f} in {r['fit_s']:.1f} s ({r.get('model')})" if "score" in r
                    else r["error"])
            print(f"  {name:10} {tool:6} {meta['metric']:11} {what}", flush=True)

    print()
    print(table(rows))
    print()
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps({"budget_s": budget, "suite": args.suite, "rows": rows}, indent=1))
    return 0 if all(r["diff"] is not None for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
