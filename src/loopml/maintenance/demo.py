"""``loopml demo``: the whole loop on real data, unattended: a shift, an alert, one retrain, a promotion, recovery.

The demo writes a project for a shop that prices PCs (``examples/demo/computers.parquet``: real sales,
1993–1995, by month), runs the loop to a champion trained on the first year, and starts ``loopml serve``
as a real process on a free port of 127.0.0.1. It then replays windows of held-out sales over HTTP:
first sales of the first year (the population the champion learned), then, with ``shift``, sales of
months 23–25, when disks are twice as large and the same machine sells for far less. The true prices
reach ``POST /feedback`` one window late. The sales of months 23–25 that are not replayed reach the
source file month by month (its incremental column is ``trend``), as a market's sales feed would.

After each window, one monitoring pass and one maintenance pass run in this process, as cron would run
``loopml monitor`` and ``loopml maintain``. Serving swaps in the model maintenance promotes. The story
is complete when the monitor raises the goal breach, exactly one retrain runs, its challenger is
promoted, and every window the promoted model serves meets the goal again; without ``shift``, when
nothing retrains and every window meets the goal.

>>> result = run_demo("loopml-demo", quick=True)              # doctest: +SKIP
>>> result.exit_code, result.retrains, result.promotions        # doctest: +SKIP
(0, 1, 1)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from loopml.decisions import Decision
from loopml.errors import DataError, LoopmlError, ModelError, SpecError
from loopml.maintenance.audit import run_kinds
from loopml.maintenance.maintain import MaintainResult, maintain_project
from loopml.operations.monitor import MonitorResult, monitor_project
from loopml.process import run_project
from loopml.spec import ProjectSpec, load_spec
from loopml.store import Store

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["DemoResult", "DemoWindow", "default_data", "demo_table", "run_demo"]

Progress = Callable[[str, str], None]

TARGET = "price"
_MONTH = "trend"
_FIRST_YEAR = range(1, 13)
_LATER = (23, 24, 25)
_GOAL_MAE = 200
_WINDOW_ROWS = 40
_TRAIN_ROWS = 1800
# Sales of months 23-25 replayed at most; the rest reach the source file, a month per window.
_LATER_TRAFFIC = 240
_SEED = 0
_MARKER = ".loopml-demo"
# The demo keeps everything in its folder: a team store, artifact folder or API key must not reach it.
_FOREIGN_ENV = ("LOOPML_DB", "LOOPML_ARTIFACTS", "LOOPML_API_KEY", "LOOPML_ADMIN_TOKEN")
_READY_S = 120.0
_LOGGED_S = 30.0
_SWAP_S = 30.0
_RELOAD_S = 0.5
_SPEC = """\
# Written by `loopml demo`: a shop prices each PC listing at what it should sell for.
project: pc-shop
business:
  problem: Price each PC listing at what it will sell for; the market moves month by month.
  task: regression
  target: price
  goal: {{metric: mae, at_most: {goal}}}          # dollars, on the locked holdout and on live labels
data:
  sources:
    # The first year of sales; later months are appended as they arrive, read past the last `trend` seen.
    - {{name: sales, path: sales.csv, incremental: {{column: trend}}}}
model: {{budget: 5m, seed: 0, folds: 3, trials: {trials}}}
operations:
  monitor: {{window: {window}, min_labeled: 30}}   # one monitoring window per replayed window
maintenance:
  on: {{goal_breached: collect_then_retrain}}      # drift and data quality only alert
  min_labeled: {window}
  cooldown: 1h                                    # at most one retrain an hour
  retrain: {{window: {retrain_window}, budget: 5m, trials: {trials}}}
"""


@dataclass(frozen=True)
class _Plan:
    before: int  # windows of held-out first-year sales
    later: int  # windows after them: months 23-25 with a shift, more first-year sales without
    trials: int
    retrain_window: str


_QUICK = _Plan(before=2, later=4, trials=3, retrain_window="all")
_FULL = _Plan(before=4, later=6, trials=8, retrain_window="auto")


@dataclass
class DemoWindow:
    """One replayed window: who served it, its labeled metric, what monitoring and maintenance made of it.

    ``alerts`` are the monitor's alerts about this window (drift and data quality when it is replayed,
    a goal breach when its labels arrive); ``maintenance`` is what the pass did once its labels were in.
    """

    index: int
    population: str
    shifted: bool
    rows: int
    served: list[int]
    labeled: float | None = None
    met: bool | None = None
    estimated: float | None = None
    problem: str | None = None
    alerts: list[str] = field(default_factory=list)
    maintenance: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "population": self.population, "shifted": self.shifted, "rows": self.rows,
                "served": self.served, "labeled": self.labeled, "met": self.met, "estimated": self.estimated,
                "problem": self.problem, "alerts": self.alerts, "maintenance": self.maintenance}


@dataclass
class DemoResult:
    """What one demo did: the windows, the retrains and promotions, the numbers, and what did not happen.

    ``before``, ``during`` and ``after`` are the mean labeled goal metric of the first-year windows, of
    the shifted windows the first champion served, and of the shifted windows a promoted model served.
    ``detect_windows``: shifted windows replayed when the goal breach was raised (its labels come one
    window late); ``drift_windows``: the same for the first drift alert; ``recover_windows``: the shifted
    window (counted from the first) that is the first one a promoted model served within the goal.
    """

    folder: Path
    shift: bool
    quick: bool
    goal: str
    metric: str
    windows: list[DemoWindow]
    retrains: int
    promotions: int
    champion: int | None
    before: float | None
    during: float | None
    after: float | None
    detect_windows: int | None
    drift_windows: int | None
    recover_windows: int | None
    problems: list[str]
    notes: list[str]
    reports: list[Path]
    server_pid: int
    seconds: float
    decisions: list[Decision] = field(default_factory=list, repr=False)
    run_kinds: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """True when the story completed (see the module's doc)."""
        return not self.problems

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def story(self) -> str:
        """The outcome in one sentence."""
        if not self.ok:
            return "the story did not complete: " + "; ".join(self.problems)
        if not self.shift:
            return (f"no shift: {len(self.windows)} windows of the training population, {self.metric} "
                    f"{_number(self.before)} on average, goal {self.goal} held, nothing retrained")
        return (f"{self.metric} {_number(self.before)} before the shift, {_number(self.during)} during it, "
                f"{_number(self.after)} after recovery; goal breach raised after {self.detect_windows} shifted "
                f"window(s), one retrain, v{self.champion} promoted, goal met again from shifted window "
                f"{self.recover_windows}")

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "shift": self.shift, "quick": self.quick, "ok": self.ok,
                "exit_code": self.exit_code, "story": self.story(), "goal": self.goal, "metric": self.metric,
                "retrains": self.retrains, "promotions": self.promotions, "champion": self.champion,
                "before": self.before, "during": self.during, "after": self.after,
                "detect_windows": self.detect_windows, "drift_windows": self.drift_windows,
                "recover_windows": self.recover_windows, "problems": self.problems, "notes": self.notes,
                "reports": [str(p) for p in self.reports], "seconds": round(self.seconds, 1),
                "windows": [w.to_dict() for w in self.windows],
                "decisions": [{**d.to_dict(), "run_kind": self.run_kinds.get(d.run_id)} for d in self.decisions]}


def default_data() -> Path:
    """The demo's sales file: ``examples/demo/computers.parquet`` of this checkout, else of the current folder."""
    here = Path(__file__).resolve().parents[3] / "examples" / "demo" / "computers.parquet"
    cwd = Path.cwd() / "examples" / "demo" / "computers.parquet"
    return here if here.is_file() or not cwd.is_file() else cwd


def run_demo(folder: str | Path, *, quick: bool = False, shift: bool = True, data: str | Path | None = None,
             progress: Progress | None = None) -> DemoResult:
    """Write the demo project into ``folder``, run the loop, serve it, replay the windows; see the module's doc.

    ``folder`` must be new, empty, or a folder an earlier demo wrote (it is then replaced). ``quick``
    replays 6 windows with 3 trials per search instead of 10 with 8. ``data`` is the sales file (default:
    :func:`default_data`). The server process is stopped, by its PID, however the demo ends.

    Raises :class:`~loopml.errors.SpecError` for a folder that holds other files,
    :class:`~loopml.errors.DataError` for a missing or unfit sales file, and
    :class:`~loopml.errors.ModelError` when the loop registers no champion or the server does not come up.
    """
    started = time.monotonic()
    say = progress or (lambda stage, message: None)
    plan = _QUICK if quick else _FULL
    sales = _read_sales(Path(data) if data is not None else default_data())
    root = _fresh_folder(Path(folder))
    replay = _write_project(root, sales, plan, shift)
    with _own_environment():
        store = Store.open(root)
        try:
            spec = load_spec(root)
            say("demo", f"project {spec.project} written to {root}: {_TRAIN_ROWS:,} first-year sales in "
                        f"sales.csv, goal {spec.business.goal.describe()}")
            run = run_project(spec, store, progress=say)
            if run.outcome != "registered":
                raise ModelError(f"the loop registered no champion ({run.outcome}: {run.explanation}); the demo "
                                 "needs one to serve")
            say("demo", f"v{run.model_version.version} is the champion: {run.explanation}")
            with _server(root, say) as server:
                steps = _Replay(spec, store, server, replay, say).run()
            reports, notes = _write_reports(store, spec, root)
            decisions = store.decisions(spec.project)
            result = _result(root, spec, store, plan, shift, quick, steps, decisions, reports,
                             [*steps.notes, *notes], server.pid, time.monotonic() - started)
        finally:
            store.close()
    say("demo", result.story())
    return result


def demo_table(result: DemoResult) -> Table:
    """The windows as a rich table: population, served version, labeled metric, alerts, maintenance."""
    from rich.table import Table

    table = Table(title=f"{result.folder.name}: {len(result.windows)} windows, goal {result.goal}",
                  title_justify="left")
    for name in ("window", "months", "served", f"labeled {result.metric}", "estimated", "alerts"):
        table.add_column(name, overflow="fold", no_wrap=name != "alerts")
    table.add_column("maintenance, once its labels arrived", overflow="fold")
    for w in result.windows:
        labeled = "-" if w.labeled is None else f"{w.labeled:.1f}" + ("" if w.met else " (missed)")
        table.add_row(str(w.index), w.population.removeprefix("months "), ", ".join(f"v{v}" for v in w.served), labeled,
                      "-" if w.estimated is None else f"{w.estimated:.1f}", ", ".join(w.alerts) or "-",
                      w.maintenance or "-")
    return table


# -- the project ---------------------------------------------------------------------------------


@dataclass
class _Traffic:
    """The windows to replay, in order, and the source rows that arrive with some of them."""

    windows: list[pd.DataFrame]
    populations: list[str]
    shifted: list[bool]
    arrivals: dict[int, pd.DataFrame]


def _read_sales(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: the demo's sales file is missing; it ships in the repository as "
                        "examples/demo/computers.parquet: run the demo from a checkout, or give its path with --data")
    try:
        sales = pd.read_parquet(path)
    except Exception as exc:  # pyarrow's errors name no loopml type; the message is what matters
        raise DataError(f"{path}: cannot be read as Parquet ({exc}); give the demo's computers.parquet") from None
    missing = [c for c in (TARGET, _MONTH, "speed", "hd", "ram") if c not in sales.columns]
    if missing:
        raise DataError(f"{path}: lacks column(s) {', '.join(missing)}; the demo needs the computers sales file "
                        "(examples/demo/computers.parquet)")
    need = _TRAIN_ROWS + _WINDOW_ROWS * (_FULL.before + _FULL.later)
    first = int(sales[_MONTH].isin(_FIRST_YEAR).sum())
    later = int(sales[_MONTH].isin(_LATER).sum())
    if first < need or later < _LATER_TRAFFIC + 3 * _WINDOW_ROWS:
        raise DataError(f"{path}: {first:,} sales of months 1-12 and {later:,} of months 23-25; the demo needs "
                        f"{need:,} and {_LATER_TRAFFIC + 3 * _WINDOW_ROWS:,} (examples/demo/computers.parquet "
                        "has them)")
    return sales


def _fresh_folder(folder: Path) -> Path:
    """``folder``, new or emptied; only a folder an earlier demo wrote (its marker file) is emptied."""
    if folder.exists() and not folder.is_dir():
        raise SpecError(f"{folder} is a file; give --folder a new or empty folder for the demo's project")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / _MARKER).is_file():
            raise SpecError(f"{folder} already holds files that `loopml demo` did not write; nothing was changed. "
                            "Give --folder a new or empty folder")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _MARKER).write_text("written by `loopml demo`; the next demo into this folder replaces it\n",
                                  encoding="utf-8")
    return folder.resolve()


def _write_project(root: Path, sales: pd.DataFrame, plan: _Plan, shift: bool) -> _Traffic:
    """The spec, the first year's training sales in ``sales.csv``, and the windows to replay."""
    first = sales[sales[_MONTH].isin(_FIRST_YEAR)].sample(frac=1.0, random_state=_SEED)
    books, held = first.iloc[:_TRAIN_ROWS], first.iloc[_TRAIN_ROWS:].reset_index(drop=True)
    books.sort_values(_MONTH, kind="mergesort").to_csv(root / "sales.csv", index=False)
    (root / "loopml.yaml").write_text(_SPEC.format(goal=_GOAL_MAE, trials=plan.trials, window=_WINDOW_ROWS,
                                                   retrain_window=plan.retrain_window), encoding="utf-8")
    w = _WINDOW_ROWS
    count = plan.before + (0 if shift else plan.later)
    windows = [held.iloc[i * w:(i + 1) * w] for i in range(count)]
    populations = ["months 1-12"] * count
    arrivals: dict[int, pd.DataFrame] = {}
    if shift:
        later = sales[sales[_MONTH].isin(_LATER)].sample(frac=1.0, random_state=_SEED)
        traffic, feed = later.iloc[:_LATER_TRAFFIC], later.iloc[_LATER_TRAFFIC:]
        windows += [traffic.iloc[j * w:(j + 1) * w] for j in range(plan.later)]
        populations += ["months 23-25"] * plan.later
        # A month's other sales reach the source as its window is replayed: the feed is ahead of the labels.
        arrivals = {plan.before + j: feed[feed[_MONTH] == month][list(sales.columns)]
                    for j, month in enumerate(_LATER[:plan.later])}
    return _Traffic(windows, populations, [p != "months 1-12" for p in populations], arrivals)


@contextmanager
def _own_environment() -> Iterator[None]:
    """Leave out the variables that would send the demo's store or requests elsewhere; restore them after."""
    saved = {k: os.environ.pop(k) for k in _FOREIGN_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


# -- the server ----------------------------------------------------------------------------------


@dataclass
class _Server:
    http: httpx.Client
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ModelError(f"loopml serve (PID {self.pid}) exited with code {code}; its last output: "
                             f"{_tail(self.log)}")

    def served_version(self) -> int | None:
        try:
            response = self.http.get("/ready")
        except httpx.TransportError:
            return None
        return response.json().get("model_version") if response.status_code == 200 else None


@contextmanager
def _server(root: Path, say: Progress) -> Iterator[_Server]:
    """``loopml serve`` as a real process on a free port of 127.0.0.1, stopped by its PID however the demo ends."""
    port = _free_port()
    log = root / "serve.log"
    command = [sys.executable, "-m", "loopml", "serve", "--spec", str(root), "--host", "127.0.0.1",
               "--port", str(port), "--reload-interval", str(_RELOAD_S)]
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as http:
            server = _Server(http, process, log)
            version = _wait(lambda: server.check_running() or server.served_version(), _READY_S)
            if version is None:
                raise ModelError(f"loopml serve (PID {process.pid}) was not ready within {_READY_S:.0f}s; its "
                                 f"last output: {_tail(log)}")
            say("demo", f"loopml serve (PID {process.pid}) serves v{version} on http://127.0.0.1:{port}")
            yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: the server writes every prediction it answered, then exits
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(probe: Callable[[], Any], seconds: float, every: float = 0.1) -> Any:
    """The first truthy answer of ``probe`` within ``seconds``, else None."""
    deadline = time.monotonic() + seconds
    while True:
        answer = probe()
        if answer or time.monotonic() >= deadline:
            return answer or None
        time.sleep(every)


def _tail(path: Path, lines: int = 8) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(text[-lines:]) or "(nothing)"


# -- the replay ----------------------------------------------------------------------------------


@dataclass
class _Steps:
    """What the replay saw, window by window (index 0 is the first window)."""

    served: list[list[int]]
    monitor_window: dict[int, int]  # the monitor's window id -> the replayed window it covers
    alerts: dict[int, list[str]]
    raised_at: dict[str, int]  # alert kind -> the window after whose replay it was first raised on a shifted one
    maintenance: dict[int, str]
    notes: list[str]


class _Replay:
    def __init__(self, spec: ProjectSpec, store: Store, server: _Server, traffic: _Traffic, say: Progress):
        self.spec, self.store, self.server, self.traffic, self.say = spec, store, server, traffic, say
        self.project = spec.project
        n = len(traffic.windows)
        self.steps = _Steps([[] for _ in range(n)], {}, {i: [] for i in range(n)}, {}, {}, [])
        self.sent = 0

    def run(self) -> _Steps:
        pending: tuple[list[str], list[Any]] | None = None
        last = len(self.traffic.windows)
        for k, rows in enumerate(self.traffic.windows):
            arrived = self.traffic.arrivals.get(k)
            if arrived is not None and len(arrived):
                arrived.to_csv(self.spec.root / "sales.csv", mode="a", header=False, index=False)
            ids = self._predict(k, rows)
            if pending is not None:
                self._feedback(*pending)
            pending = (ids, rows[TARGET].tolist())
            maintained = self._passes(k, labels_of=k - 1 if k else None)
            self._say_window(k, arrived)
            self._await_swap(maintained)
        self._feedback(*pending)
        self._await_swap(self._passes(last, labels_of=last - 1))
        self.say("demo", f"labels of window {last} sent; maintenance on them: {self.steps.maintenance[last - 1]}")
        return self.steps

    def _predict(self, k: int, rows: pd.DataFrame) -> list[str]:
        self.server.check_running()
        records = json.loads(rows.drop(columns=[TARGET]).to_json(orient="records"))
        ids, versions = [], set()
        for record in records:
            body = self._post("/predict", {"row": record})
            ids.append(body["predictions"][0]["id"])
            versions.add(int(body["model_version"]))
        self.steps.served[k] = sorted(versions)
        self.sent += len(records)
        logged = _wait(lambda: self.store.prediction_count(self.project) >= self.sent, _LOGGED_S, every=0.05)
        if not logged:
            raise ModelError(f"the server logged {self.store.prediction_count(self.project):,} of {self.sent:,} "
                             f"predictions within {_LOGGED_S:.0f}s; see {self.server.log}")
        return ids

    def _feedback(self, ids: list[str], labels: list[Any]) -> None:
        for prediction_id, label in zip(ids, labels, strict=True):
            self._post("/feedback", {"prediction_id": prediction_id, "label": label})

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.server.http.post(path, json=payload)
        if response.status_code != 200:
            raise ModelError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def _passes(self, k: int, labels_of: int | None) -> MaintainResult:
        """A monitoring pass, then a maintenance pass, as cron would run them after window ``k``."""
        monitored = monitor_project(self.spec, self.store)
        self._note_monitor(k, monitored)
        maintained = maintain_project(self.spec, self.store, progress=self.say)
        if labels_of is not None:
            self.steps.maintenance[labels_of] = _maintenance_text(maintained)
        return maintained

    def _await_swap(self, maintained: MaintainResult) -> None:
        """After a promotion, wait until serving answers with the promoted version (it polls the alias)."""
        if maintained.outcome != "promoted" or maintained.challenger is None:
            return
        version = maintained.challenger.version
        started = time.monotonic()
        if _wait(lambda: self.server.served_version() == version, _SWAP_S):
            self.say("demo", f"serving swapped to v{version} {time.monotonic() - started:.1f}s after its promotion")
        else:
            self.steps.notes.append(f"serving did not swap to v{version} within {_SWAP_S:.0f}s of its promotion")

    def _note_monitor(self, k: int, monitored: MonitorResult) -> None:
        new = [w for w in monitored.windows if w.rows]
        if k < len(self.traffic.windows):
            if len(new) != 1 or new[0].rows != len(self.traffic.windows[k]):
                self.steps.notes.append(f"window {k + 1}: the monitor cut {len(new)} window(s) of "
                                        f"{[w.rows for w in new]} rows where one of {len(self.traffic.windows[k])} "
                                        "was expected")
            for w in new:
                self.steps.monitor_window[w.id] = k
        for alert in monitored.alerts:
            window = self.steps.monitor_window.get(alert.window_id)
            if window is None:
                continue
            if alert.kind not in self.steps.alerts[window]:
                self.steps.alerts[window].append(alert.kind)
            if self.traffic.shifted[window]:
                self.steps.raised_at.setdefault(alert.kind, k)

    def _say_window(self, k: int, arrived: pd.DataFrame | None) -> None:
        fed = f"; {len(arrived)} sales of month {int(arrived[_MONTH].iloc[0])} reached sales.csv" \
            if arrived is not None and len(arrived) else ""
        self.say("demo", f"window {k + 1}/{len(self.traffic.windows)} ({self.traffic.populations[k]}): "
                         f"{len(self.traffic.windows[k])} requests served by "
                         f"{', '.join(f'v{v}' for v in self.steps.served[k])}{fed}; alerts: "
                         f"{', '.join(self.steps.alerts[k]) or 'none'}"
                         + (f"; maintenance on window {k}'s labels: {self.steps.maintenance.get(k - 1, '-')}"
                            if k else ""))


def _maintenance_text(result: MaintainResult) -> str:
    """What a pass found and did, in a few words: ``goal breached (v1); retrained, v2 promoted``."""
    checked = next((d for d in result.decisions if (d.stage, d.gate) == ("maintenance", "goal_holds")), None)
    found = "waiting for labels" if checked is None else \
        f"goal {'holds' if checked.verdict == 'pass' else 'breached'} (v{checked.evidence.get('champion')})"
    challenger = f"v{result.challenger.version}" if result.challenger is not None else "the challenger"
    done = {"promoted": f"retrained, {challenger} promoted", "kept_champion": f"retrained, {challenger} kept out",
            "retrain_failed": "retrain failed", "awaiting_approval": f"retrained, {challenger} awaits approval"}
    policy = next((d for d in result.decisions if (d.stage, d.gate) == ("maintenance", "policy")), None)
    did = done.get(result.outcome, "")
    if not did and policy is not None and policy.evidence.get("wanted"):  # a retrain the policy held back
        did = "retrain held back by the cool-down" if "cool-down" in policy.summary else "retrain waits for labels"
    return f"{found}; {did}" if did else found


# -- the outcome ---------------------------------------------------------------------------------


def _write_reports(store: Store, spec: ProjectSpec, root: Path) -> tuple[list[Path], list[str]]:
    try:
        from loopml.report.monitoring import monitoring_report
    except ImportError as exc:
        return [], [f"the monitoring report is not written: loopml.report.monitoring cannot be imported ({exc})"]
    try:
        return [monitoring_report(store, spec.project, spec=spec).write(root / "reports" / "monitoring.html")], []
    except LoopmlError as exc:
        return [], [f"the monitoring report is not written: {exc}"]


def _result(root: Path, spec: ProjectSpec, store: Store, plan: _Plan, shift: bool, quick: bool, steps: _Steps,
            decisions: list[Decision], reports: list[Path], notes: list[str], pid: int,
            seconds: float) -> DemoResult:
    goal = spec.business.goal
    windows = _windows(store, spec, steps, plan, shift)
    retrains = sum(1 for d in decisions if (d.stage, d.gate) == ("maintenance", "policy")
                   and d.action in ("retrain", "collect_then_retrain"))
    promotions = sum(1 for d in decisions if (d.stage, d.gate, d.action) == ("maintenance", "challenger_vs_champion",
                                                                              "promote"))
    champion = store.alias(spec.project, "champion")
    first = min((v for w in windows for v in w.served), default=None)
    shifted = [w for w in windows if w.shifted]
    during = [w for w in shifted if w.served == [first]]
    after = [w for w in shifted if w.served and first not in w.served]
    recovered = next((w for w in after if w.met), None)
    start = plan.before  # the index of the first shifted window
    detect = steps.raised_at.get("goal_breached")
    drift = steps.raised_at.get("drift")
    result = DemoResult(
        folder=root, shift=shift, quick=quick, goal=goal.describe(), metric=goal.metric, windows=windows,
        retrains=retrains, promotions=promotions, champion=champion.version if champion else None,
        before=_mean([w for w in windows if not w.shifted]), during=_mean(during), after=_mean(after),
        detect_windows=None if detect is None else detect - start + 1,
        drift_windows=None if drift is None else drift - start + 1,
        recover_windows=None if recovered is None else recovered.index - start,
        problems=[], notes=notes, reports=reports, server_pid=pid, seconds=seconds, decisions=decisions,
        run_kinds=run_kinds(store, spec.project, decisions))
    result.problems = _problems(result, during, after)
    return result


def _windows(store: Store, spec: ProjectSpec, steps: _Steps, plan: _Plan, shift: bool) -> list[DemoWindow]:
    stored = {w["id"]: w for w in store.monitor_windows(spec.project, kind="predictions")}
    by_window = {k: stored.get(i) for i, k in steps.monitor_window.items()}
    out = []
    for k, served in enumerate(steps.served):
        w = DemoWindow(index=k + 1, population="months 23-25" if shift and k >= plan.before else "months 1-12",
                       shifted=shift and k >= plan.before, rows=0, served=served, alerts=steps.alerts[k],
                       maintenance=steps.maintenance.get(k, ""))
        row = by_window.get(k)
        if row is not None:
            labeled = row.get("labeled") or {}
            estimated = ((row["metrics"].get("performance") or {}).get("estimated")) or {}
            w.rows, w.labeled, w.met = row["rows"], labeled.get("value"), labeled.get("met")
            w.estimated, w.problem = estimated.get("value"), labeled.get("problem")
        out.append(w)
    return out


def _problems(r: DemoResult, during: list[DemoWindow], after: list[DemoWindow]) -> list[str]:
    """What of the story did not happen, each in words."""
    problems = [f"window {w.index} has no labeled {r.metric}: {w.problem or 'its labels were not monitored'}"
                for w in r.windows if w.labeled is None]
    problems += [n for n in r.notes if n.startswith("serving did not swap")]
    if not r.shift:
        if r.retrains or r.promotions:
            problems.append(f"{r.retrains} retrain(s) and {r.promotions} promotion(s) on the training population, "
                            "where the story has none")
        problems += [f"window {w.index} missed the goal {r.goal}: {r.metric} {w.labeled:.1f}"
                     for w in r.windows if w.met is False]
        return problems
    if r.detect_windows is None:
        problems.append("monitoring raised no goal_breached alert on the shifted windows")
    if r.retrains != 1:
        problems.append(f"{r.retrains} retrains, where the story has exactly one")
    if r.promotions != 1:
        problems.append(f"{r.promotions} promotions, where the story has exactly one")
    problems += [f"window {w.index} ({w.population}, served by v{w.served[0]}) met the goal: the shift did not "
                 "hurt the first champion" for w in during if w.met]
    if not after:
        problems.append("no shifted window was served by a promoted model")
    problems += [f"window {w.index} (served by {', '.join(f'v{v}' for v in w.served)}) missed the goal {r.goal} "
                 f"after the promotion: {r.metric} {w.labeled:.1f}" for w in after if w.met is False]
    return problems


def _mean(windows: list[DemoWindow]) -> float | None:
    values = [w.labeled for w in windows if w.labeled is not None]
    return sum(values) / len(values) if values else None


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
