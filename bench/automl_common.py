"""What both benchmark runners share: find the bench folder, load one dataset's fixed split, score it.

Imported by ``automl_loopml_runner.py`` (loopml's venv) and ``automl_flaml_runner.py`` (FLAML's own
venv), so it needs only the standard library at import time; ``split.py`` and ``score.py`` come from the
shared bench folder and need numpy, pandas and scikit-learn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULT_PREFIX = "AUTOML_RESULT "


def default_bench_dir() -> Path:
    """``$LOOPML_BENCH_DIR``, else ``shared/bench`` beside the repository's folder."""
    env = os.environ.get("LOOPML_BENCH_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "bench"


def bench_modules(bench_dir: Path):
    """The shared ``split`` and ``score`` modules of ``bench_dir``."""
    sys.path.insert(0, str(bench_dir))
    import score
    import split

    return split, score


def load_split(bench_dir: Path, suite: str, name: str):
    """(meta, X_train, X_test, y_train, y_test, split module, score module) for one dataset."""
    split, score = bench_modules(bench_dir)
    df, meta = split.load_dataset(suite, name, str(bench_dir))
    X_tr, X_te, y_tr, y_te = split.train_test(df, meta)
    return meta, X_tr, X_te, y_tr, y_te, split, score


def emit(result: dict) -> None:
    """Print the one result line the parent reads."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def peer_python(venv: Path, requirements: list[str], check: str) -> Path:
    """The interpreter of a peer tool's own venv, created and filled with ``requirements`` when ``check``
    (Python source) does not run there. Peers live in their own venvs so loopml's environment stays as it is.
    """
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv.relative_to(venv.parent.parent)} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(python), "-c", check], capture_output=True).returncode != 0:
        print(f"installing {' '.join(requirements)} into {venv.name} (a few minutes) ...", file=sys.stderr, flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    return python


def run_tool(cmd: list[str], *, prefix: str, timeout_s: float) -> dict:
    """Run one tool's process; the JSON it printed after ``prefix`` (plus ``process_s``), or ``{"error": ...}``."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {time.perf_counter() - started:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(prefix):
            result = json.loads(line[len(prefix):])
            result["process_s"] = round(time.perf_counter() - started, 2)
            return result
    tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail[:300]}"}
