"""The ``loopml`` command line: thin — it parses, calls the process, renders.

Exit codes: 0 ok, 1 goal not met (or breached and not recovered), 2 bad input, 3 internal error;
`loopml maintain` adds 4 (another pass holds the lock) and 5 (a challenger awaits a human's promotion).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loopml.decisions import decisions_table
from loopml.errors import LoopmlError, SpecError

app = typer.Typer(
    name="loopml",
    help="Run the applied-ML process as one closed loop: goal → data → model → serving → maintenance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="The model registry: versions, the champion, promotion and rollback.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

out = Console()
err = Console(stderr=True)

SpecOption = Annotated[Path, typer.Option("--spec", "-s", help="The project spec, or the folder holding loopml.yaml.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts instead of tables.")]

EXIT_CODES = {"ok": 0, "goal_not_met": 1, "bad_input": 2, "internal": 3}


def main() -> None:
    """Console-script entry point."""
    app()


@contextmanager
def _errors() -> Iterator[None]:
    """Turn loopml's errors into one message on stderr and the documented exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except LoopmlError as exc:
        # escape: a message may hold brackets (pip extras, lists) that rich would read as markup
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(EXIT_CODES["internal"]) from None
    except Exception as exc:  # anything unexpected is ours to fix, never the user's input
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CODES["internal"]) from None


def _load(spec_path: Path, *, check_data: bool = True):
    from loopml.spec import load_spec
    from loopml.store import Store

    spec = load_spec(spec_path, check_data=check_data)
    return spec, Store.open(spec.root)


@contextmanager
def _opened(spec_path: Path) -> Iterator[tuple[Any, Any]]:
    """The spec (its data not read) and its store, closed after; errors reported as by :func:`_errors`."""
    with _errors():
        spec, store = _load(spec_path, check_data=False)
        try:
            yield spec, store
        finally:
            store.close()


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@app.command()
def init(
    data_file: Annotated[Path, typer.Argument(help="A CSV or Parquet file with the labeled rows.")],
    target: Annotated[str | None, typer.Option(help="The target column (guessed when omitted).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the spec.")] = Path("loopml.yaml"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing spec.")] = False,
) -> None:
    """Write a starter loopml.yaml for DATA_FILE, guessing the task and target, and say what was guessed."""
    from loopml.business.starter import draft_spec
    from loopml.spec import load_spec

    with _errors():
        if not data_file.is_file():
            raise SpecError(f"{data_file}: no such data file; give a CSV or Parquet file with labeled rows")
        if output.exists() and not force:
            raise SpecError(f"{output} already exists; nothing was written. Use --force to overwrite it "
                            "or --output to write elsewhere")
        draft = draft_spec(data_file, target=target, spec_dir=output.parent)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(draft.text, encoding="utf-8")
        load_spec(output)  # the starter must itself be a valid spec
        out.print(f"wrote {output}")
        for guess in draft.guesses:
            out.print(f"  guessed {guess}")
        out.print(f"next: edit business.goal, then `loopml run --spec {output}`")


@app.command()
def run(
    spec: SpecOption = Path("loopml.yaml"),
    as_json: JsonOption = False,
    replay: Annotated[int | None, typer.Option(help="Rebuild run RUN's model from its recorded trials.",
                                               metavar="RUN")] = None,
    cluster: Annotated[str | None, typer.Option(help="Run search trials on this Dask scheduler "
                                                     "(tcp://host:8786 or a scheduler file); overrides compute.dask.",
                                                metavar="ADDRESS")] = None,
) -> None:
    """Run the loop: business goal → data → model → register → champion, going back when a gate fails."""
    from loopml.process import run_project

    with _errors():
        project_spec, store = _load(spec)
        try:
            if as_json:
                result = run_project(project_spec, store, replay_run=replay, cluster=cluster)
                _emit_json(result.to_dict())
            else:
                with _progress() as progress:
                    result = run_project(project_spec, store, progress=progress, replay_run=replay,
                                         cluster=cluster)
                out.print(decisions_table(result.decisions, title=f"{project_spec.project}: run {result.run_id}"))
                _print_leaderboard(*result.leaderboard())
                colour = "green" if result.exit_code == 0 else "yellow"
                out.print(f"[bold {colour}]{result.outcome}[/]: {result.explanation}", highlight=False)
                if result.reachable:
                    out.print(f"reachable with this data: {result.reachable_text()}", highlight=False)
        finally:
            store.close()
    raise typer.Exit(result.exit_code)


def _print_leaderboard(metric: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    table = Table(title=f"leaderboard (out-of-fold {metric})", title_justify="left")
    for col in ("#", "family", "score", "seconds"):
        table.add_column(col, no_wrap=True)
    table.add_column("setting", overflow="ellipsis", no_wrap=True, max_width=32)
    on_cluster = any(row.get("worker") for row in rows)  # trials ran on Dask workers: say which
    if on_cluster:
        table.add_column("worker", no_wrap=True)
    for row in rows:
        score = row.get("score")
        cells = [str(row["rank"]), row["family"], "-" if score is None else f"{score:.4f}",
                 f"{row.get('seconds') or 0:.1f}", str(row.get("params", ""))[:60]]
        table.add_row(*cells, *([row.get("worker") or "-"] if on_cluster else []))
    out.print(table)


@contextmanager
def _progress():
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[stage]:<11}[/] {task.description}"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("starting", stage="process", total=None)

        def update(stage: str, message: str) -> None:
            bar.update(task, description=message[:100], stage=stage)

        yield update


@app.command()
def assess(spec: SpecOption = Path("loopml.yaml"), as_json: JsonOption = False) -> None:
    """Assess every source and the joined table: availability, usability, quality, cost. Recorded in the store."""
    from loopml.data import assess_project
    from loopml.data.report import render_assessment
    from loopml.decisions import Decision
    from loopml.spec import spec_hash

    with _errors():
        project_spec, store = _load(spec)
        try:
            if as_json:
                report = assess_project(project_spec)
            else:
                with _progress() as progress:
                    report = assess_project(project_spec, progress=progress)
            payload = report.to_dict()
            run_id = store.start_run(project_spec.project, "assess", spec_hash(project_spec))
            reachable = [s for s in report.sources if s.availability.get("reachable")]
            store.record_decision(project_spec.project, Decision(
                stage="data", gate="assessment", verdict="info", action="assessed", next_stage=None,
                summary=f"{len(reachable)} of {len(report.sources)} sources reachable; joined table "
                        f"{report.joined.rows:,} rows" if report.joined is not None else
                        f"{len(reachable)} of {len(report.sources)} sources reachable",
                evidence=payload, run_id=run_id))
            store.finish_run(run_id, "assessed", "assessment recorded")
            if as_json:
                _emit_json(payload)
            else:
                out.print(render_assessment(report))
        finally:
            store.close()


@app.command()
def status(
    spec: SpecOption = Path("loopml.yaml"),
    limit: Annotated[int, typer.Option(help="How many of the latest decisions to show.")] = 15,
    as_json: JsonOption = False,
) -> None:
    """Where the loop stands: the champion, the latest runs and the latest decisions."""
    with _opened(spec) as (project_spec, store):
        project = project_spec.project
        champion = store.alias(project, "champion")
        runs = store.runs(project, limit=5)
        decisions = store.decisions(project, limit=limit)
        if as_json:
            _emit_json({"project": project, "champion": champion.version if champion else None,
                        "runs": runs, "decisions": [d.to_dict() for d in decisions]})
            return
        where = (f"champion: version {champion.version} ({champion.family}, "
                 f"{project_spec.business.goal.metric} {champion.metrics['holdout']['value']:.3f} on holdout)"
                 if champion else "no champion yet: run `loopml run`")
        out.print(f"[bold]{project}[/] — goal {project_spec.business.goal.describe()}; {where}", highlight=False)
        if runs:
            last = runs[0]
            out.print(f"last run {last['id']} ({last['kind']}): {last['status']} — {last['outcome'] or ''}",
                      highlight=False)
        out.print(decisions_table(decisions, title=f"latest {len(decisions)} decisions"))


@app.command()
def serve(
    spec: SpecOption = Path("loopml.yaml"),
    host: Annotated[str | None, typer.Option(help="Address to listen on (default from the spec: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from the spec).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes sharing the port (each loads the model).")] = 1,
    reload_interval: Annotated[float, typer.Option(
        min=0, help="Seconds between checks that the champion moved (a new one is swapped in); 0: never.")] = 2.0,
) -> None:
    """Serve the champion over HTTP: POST /predict, POST /feedback, GET /health, GET /ready, GET /metrics.

    LOOPML_API_KEY (if set) guards /predict and /feedback; LOOPML_ADMIN_TOKEN enables POST /admin/reload.
    With maintenance.rollout mode shadow or canary in the spec, the challenger shadows or shares the traffic.
    """
    from loopml.operations import serve as serve_app

    with _errors():
        project_spec, store = _load(spec, check_data=False)
        h = host or project_spec.operations.serve.host
        p = port or project_spec.operations.serve.port
        plural = "s" if workers > 1 else ""
        rollout = project_spec.maintenance.rollout
        release = {"shadow": "; the challenger, if any, scores every request in shadow",
                   "canary": f"; the challenger, if any, answers {rollout.canary_share:.0%} of requests as a canary",
                   }.get(rollout.mode, "")
        err.print(f"serving {project_spec.project} on http://{h}:{p} with {workers} worker{plural} "
                  f"(docs at /docs, metrics at /metrics){release}; Ctrl-C stops")
        try:
            serve_app(store, project_spec.project, host=h, port=p, workers=workers,
                      reload_interval_s=reload_interval, rollout=rollout)
        finally:
            store.close()


@app.command()
def ui(
    spec: SpecOption = Path("loopml.yaml"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8081,
) -> None:
    """The dashboard in the browser: the loop, decisions, model versions (promote, roll back), monitoring.

    Pages only read the store; promote and rollback need LOOPML_ADMIN_TOKEN, typed in the form with a reason.
    """
    import uvicorn

    from loopml.report.dashboard import dashboard_app

    with _errors():
        project_spec, store = _load(spec, check_data=False)
        try:
            app_ = dashboard_app(store, project_spec.project, spec=project_spec)
            changes = "promote and rollback need the admin token" if app_.state.admin_token else \
                "promote and rollback are off (set LOOPML_ADMIN_TOKEN to enable them)"
            err.print(f"dashboard of {project_spec.project} on http://{host}:{port} ({changes}); Ctrl-C stops",
                      highlight=False, soft_wrap=True)
            uvicorn.run(app_, host=host, port=port, log_level="warning")
        finally:
            store.close()


@app.command()
def maintain(
    spec: SpecOption = Path("loopml.yaml"),
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", help="Run a pass every --every until Ctrl-C.")] = False,
    every: Annotated[str | None, typer.Option(
        "--every", help="With --watch: the time from one pass to the next, such as 10m (default 10m).")] = None,
    wait: Annotated[str | None, typer.Option(
        "--wait", help="How long to wait for another pass's lock, such as 30s or 0 (default maintenance.lock.wait).",
    )] = None,
    max_passes: Annotated[int | None, typer.Option("--max-passes", min=1, hidden=True)] = None,
) -> None:
    """One maintenance pass: act on alerts and new labels per the policy; retrain; promote only a better model.

    Exit codes (cron-friendly): 0 the goal holds, nothing to do, or a better challenger was promoted;
    1 an alert the policy only reports, a retrain held back or failed, or a challenger that does not beat
    the champion; 2 bad input; 3 internal error; 4 another pass held the lock for the whole wait;
    5 a better challenger awaits a human's `loopml models promote`. With --watch: the last pass's code.
    """
    from loopml.maintenance import maintain_project
    from loopml.maintenance import watch as watch_passes
    from loopml.spec import duration_or_zero, parse_duration

    result = None
    with _errors():
        if every is not None and not watch:
            raise SpecError(f"--every {every}: the time between passes applies to --watch; add --watch")
        try:
            period = parse_duration(every or "10m")
        except ValueError as exc:
            raise SpecError(f"--every: {exc}") from None
        try:
            lock_wait = None if wait is None else duration_or_zero(wait)
        except ValueError as exc:
            raise SpecError(f"--wait: {exc}") from None
        if watch:
            result = _watch_maintenance(spec, as_json, period, lock_wait, max_passes, watch_passes)
        else:
            # The sources need not answer now: a pass retries one that is down, then alerts.
            project_spec, store = _load(spec, check_data=False)
            try:
                if as_json:
                    result = maintain_project(project_spec, store, lock_wait_s=lock_wait)
                    _emit_json(result.to_dict())
                else:
                    with _progress() as progress:
                        result = maintain_project(project_spec, store, progress=progress, lock_wait_s=lock_wait)
                    _print_maintenance(result, project_spec.project)
            finally:
                store.close()
    raise typer.Exit(result.exit_code if result is not None else 0)


def _watch_maintenance(spec: Path, as_json: bool, period: float, lock_wait: float | None, max_passes: int | None,
                       watch_passes):
    def on_pass(result, busy) -> None:
        if as_json:
            # One line per pass (JSON Lines), so a script can read them as they come.
            payload = result.to_dict() if result is not None else {"outcome": "lock_busy", "explanation": str(busy)}
            sys.stdout.write(json.dumps(payload, default=str) + "\n")
            sys.stdout.flush()
        elif result is not None:
            _print_maintenance(result, result.project)
        else:
            err.print(f"skipped this pass: {escape(str(busy))}", highlight=False, soft_wrap=True)

    try:
        return watch_passes(lambda: _load(spec, check_data=False), every_s=period, max_passes=max_passes,
                            on_pass=on_pass, lock_wait_s=lock_wait)
    except KeyboardInterrupt:
        err.print("stopped")
        return None


def _print_maintenance(result, project: str) -> None:
    out.print(decisions_table(result.decisions, title=f"{project}: maintenance run {result.run_id}"))
    out.print(f"[bold]{result.outcome}[/] (exit {result.exit_code}): {escape(result.explanation)}", highlight=False,
              soft_wrap=True)


@app.command()
def history(
    spec: SpecOption = Path("loopml.yaml"),
    stage: Annotated[str | None, typer.Option(
        help="Only this stage: business, data, model, operations or maintenance.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the latest N decisions (after --stage).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every decision of the loop, oldest first, from the first run to the latest promotion, with its evidence."""
    from loopml.maintenance.audit import history as read_history
    from loopml.maintenance.audit import history_table, run_kinds

    with _opened(spec) as (project_spec, store):
        decisions = read_history(store, project_spec.project, stage=stage, limit=limit)
        kinds = run_kinds(store, project_spec.project, decisions)
        if as_json:
            _emit_json({"project": project_spec.project, "stage": stage, "count": len(decisions),
                        "decisions": [{**d.to_dict(), "run_kind": kinds.get(d.run_id)} for d in decisions]})
            return
        if not decisions:
            out.print(f"no decisions{f' of stage {stage}' if stage else ''} yet: run `loopml run`")
            return
        what = f"{stage} decisions" if stage else "decisions"
        out.print(history_table(decisions, kinds, title=f"{project_spec.project}: {len(decisions)} {what}"))


@app.command()
def monitor(
    spec: SpecOption = Path("loopml.yaml"),
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", help="Monitor again after each pause until Ctrl-C.")] = False,
    every: Annotated[str | None, typer.Option(
        "--every", help="With --watch: the pause between passes, such as 30s or 5m (default 30s).")] = None,
    max_passes: Annotated[int | None, typer.Option("--max-passes", min=1, hidden=True)] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="After each pass, write the monitoring report to this HTML file (self-contained, "
                         "readable offline).")] = None,
) -> None:
    """Monitor the prediction log in windows: data quality, drift, estimated and labeled performance, latency.

    Each window is computed once; labels that arrive later update its labeled performance. Alerts are
    stored, posted to operations.monitor.webhook and recorded as a decision for Maintenance.
    --report out.html writes every stored window and alert as one HTML page (charts, tables) after each pass.
    Exit code: 0 no alert raised, 1 at least one alert raised (in any pass of --watch), 2 bad input.
    """
    import time

    from loopml.operations.monitor import monitor_project
    from loopml.spec import parse_duration

    alerted = False
    with _errors():
        if every is not None and not watch:
            raise SpecError(f"--every {every}: the pause applies between the passes of --watch; add --watch")
        try:
            pause = parse_duration(every or "30s")
        except ValueError as exc:
            raise SpecError(f"--every: {exc}") from None
        if report is not None and report.is_dir():
            raise SpecError(f"--report {report}: is a folder; give the HTML file to write, such as "
                            f"{report / 'monitoring.html'}")
        project_spec, store = _load(spec, check_data=False)
        passes = 0
        try:
            while True:
                result = monitor_project(project_spec, store)
                alerted = alerted or bool(result.alerts)
                passes += 1
                if as_json:
                    # --watch prints one line per pass (JSON Lines), so a script can read them as they come.
                    sys.stdout.write(json.dumps(result.to_dict(), default=str, indent=None if watch else 2) + "\n")
                    sys.stdout.flush()
                else:
                    _print_monitor(result, project_spec.project)
                if report is not None:
                    _write_monitor_report(store, project_spec, report, quiet=as_json)
                if not watch or (max_passes is not None and passes >= max_passes):
                    break
                time.sleep(pause)
        except KeyboardInterrupt:
            if not watch:
                raise
            err.print(f"stopped after {passes} pass(es)")
        finally:
            store.close()
    raise typer.Exit(1 if alerted else 0)


def _write_monitor_report(store, project_spec, path: Path, *, quiet: bool) -> None:
    """Write the monitoring report; ``quiet`` (--json) keeps stdout for the JSON and says it on stderr."""
    from loopml.report import monitoring_report

    html = monitoring_report(store, project_spec.project, spec=project_spec)
    try:
        written = html.write(path)
    except OSError as exc:
        raise SpecError(f"--report {path}: cannot write it ({exc.strerror or exc}); give a writable file "
                        "path") from None
    (err if quiet else out).print(f"report written to {escape(str(written))}", highlight=False, soft_wrap=True)


@app.command()
def report(
    spec: SpecOption = Path("loopml.yaml"),
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write (self-contained, readable "
                                                               "offline).")] = Path("report.html"),
    run: Annotated[int | None, typer.Option(help="The run to report (default: the latest `loopml run`).",
                                            metavar="RUN")] = None,
) -> None:
    """Write a run's stage report: the goal and verdict, every decision, the data, the model and its model card."""
    from loopml.report import project_report

    with _errors():
        if out_path.is_dir():
            raise SpecError(f"--out {out_path}: is a folder; give the HTML file to write, such as "
                            f"{out_path / 'report.html'}")
        project_spec, store = _load(spec, check_data=False)
        try:
            html = project_report(store, project_spec.project, spec=project_spec, run=run)
        finally:
            store.close()
        try:
            written = html.write(out_path)
        except OSError as exc:
            raise SpecError(f"--out {out_path}: cannot write it ({exc.strerror or exc}); give a writable file "
                            "path") from None
        out.print(f"report written to {escape(str(written))}", highlight=False, soft_wrap=True)


def _print_monitor(result, project: str) -> None:
    table = Table(title=f"{project}: monitoring", title_justify="left")
    for name in ("window", "seqs", "rows", "drifted (ranked)", "quality", "estimated", "labeled", "p99 ms", "alerts"):
        table.add_column(name, overflow="fold")
    kinds: dict[int | None, list[str]] = {}
    for a in result.alerts:
        kinds.setdefault(a.window_id, []).append(a.kind)
    for w in [*result.windows, *result.relabeled]:
        m = w.metrics
        drifted = ((m.get("drift") or {}).get("drifted")) or []
        rejected = m.get("rejected") or {}
        breaches = [*(((m.get("quality") or {}).get("breaches")) or []), *([1] if rejected.get("breach") else [])]
        refused = f", {rejected['requests']} refused" if rejected.get("requests") else ""
        estimated = ((m.get("performance") or {}).get("estimated")) or {}
        table.add_row(str(w.id) + (" (labels)" if w in result.relabeled else ""), f"{w.first_seq}–{w.last_seq}",
                      str(w.rows), ", ".join(drifted[:3]) + (" …" if len(drifted) > 3 else "") or "-",
                      (f"{len(breaches)} over limit" if breaches else "ok" if m.get("quality") else "-") + refused,
                      _estimate_text(estimated), _estimate_text(w.labeled or {}),
                      _number((m.get("latency") or {}).get("p99_ms")), ", ".join(kinds.get(w.id, [])) or "-")
    if result.windows or result.relabeled:
        out.print(table)
    for a in result.alerts:
        out.print(f"[bold red]alert[/] {a.kind}: {escape(a.summary)}", highlight=False, soft_wrap=True)
    for w in [*result.windows, *result.relabeled]:
        for note in w.notes:
            out.print(f"[dim]window {w.id}:[/] {escape(note)}", highlight=False, soft_wrap=True)
    for note in result.notes:
        out.print(escape(note), highlight=False, soft_wrap=True)
    computed = sum(1 for w in result.windows if w.rows)
    verdict = f"{len(result.alerts)} alert(s)" if result.alerts else "no alert"
    out.print(f"[bold]{computed} new window(s), {len(result.relabeled)} with new labels: {verdict}[/]",
              highlight=False)


def _estimate_text(d: dict[str, Any]) -> str:
    """``0.842 (0.80–0.88)``, or ``-`` when the window has no value."""
    if d.get("value") is None:
        return "-"
    return f"{d['value']:.3f} ({d['ci_low']:.3f}–{d['ci_high']:.3f})"


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


@app.command()
def demo(
    folder: Annotated[Path, typer.Option(
        "--folder", help="Where the demo writes its project: a new or empty folder, or one an earlier demo wrote "
                         "(replaced).")] = Path("loopml-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="6 windows and 3 trials per search instead of 10 and 8.")
                     ] = False,
    no_shift: Annotated[bool, typer.Option(
        "--no-shift", help="Replay the training population only: nothing should retrain.")] = False,
    data: Annotated[Path | None, typer.Option(
        "--data", help="The sales file (default: examples/demo/computers.parquet of this checkout).")] = None,
    as_json: JsonOption = False,
) -> None:
    """The whole loop on real PC sales, unattended: serve, replay a real shift, alert, retrain, promote, recover.

    Writes the project, trains a champion on the first year, starts `loopml serve` on a free 127.0.0.1 port,
    replays held-out sales over HTTP with their prices sent to /feedback one window late, and runs a
    monitoring and a maintenance pass after each window. Prints the decision log and the metric per window;
    writes the monitoring report into the folder. Exit code: 0 when the story completed (with a shift: the
    goal breach raised, exactly one retrain, its promotion, the goal met again; without: no retrain and the
    goal held), 1 otherwise, with what did not happen.
    """
    from loopml.maintenance.audit import history_table
    from loopml.maintenance.demo import demo_table, run_demo

    with _errors():
        if as_json:
            result = run_demo(folder, quick=quick, shift=not no_shift, data=data)
            _emit_json(result.to_dict())
        else:
            with _progress() as bar:
                def progress(stage: str, message: str) -> None:
                    if stage == "demo":  # the story's steps stay on screen; the rest passes in the spinner
                        err.print(escape(message), highlight=False, soft_wrap=True)
                    else:
                        bar(stage, message)

                result = run_demo(folder, quick=quick, shift=not no_shift, data=data, progress=progress)
            out.print(history_table(result.decisions, result.run_kinds,
                                    title=f"decision log: {len(result.decisions)} decisions"))
            out.print(demo_table(result))
            for note in result.notes:
                out.print(f"[dim]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
            for path in result.reports:
                out.print(f"report written to {escape(str(path))}", highlight=False, soft_wrap=True)
            colour = "green" if result.ok else "yellow"
            out.print(f"[bold {colour}]{escape(result.story())}[/] ({result.seconds:.0f}s; the project is in "
                      f"{escape(str(result.folder))})", highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


ReasonOption = Annotated[str, typer.Option("--reason", help="Why, for the audit log (required).")]
ActorOption = Annotated[str | None, typer.Option("--actor", help="Who makes the change (default: your user name).")]


@models_app.command("list")
def models_list(spec: SpecOption = Path("loopml.yaml"), as_json: JsonOption = False) -> None:
    """Every registered version with its status, aliases and holdout metric."""
    from loopml.operations.registry import list_versions

    with _opened(spec) as (project_spec, store):
        versions = list_versions(store, project_spec.project)
        if as_json:
            _emit_json([v.to_dict() for v in versions])
            return
        metric = project_spec.business.goal.metric
        table = Table(title=f"{project_spec.project}: model versions")
        for col in ("version", "status", "aliases", "family", f"{metric} (holdout, 95% CI)", "created", "sha256"):
            table.add_column(col)
        for v in versions:
            table.add_row(str(v.version), v.status, ", ".join(v.aliases) or "-", v.family, _with_ci(v.holdout),
                          f"{v.created_at:%Y-%m-%d %H:%M}", v.sha256[:12])
        out.print(table if versions else "no model versions yet: run `loopml run`")


@models_app.command("show")
def models_show(
    version: Annotated[int, typer.Argument(help="The version to show.")],
    spec: SpecOption = Path("loopml.yaml"),
    as_json: JsonOption = False,
) -> None:
    """One version: metrics with CI, operating point, aliases, lineage, artifact hash and who registered it."""
    from loopml.operations.registry import show_version

    with _opened(spec) as (project_spec, store):
        detail = show_version(store, project_spec.project, version)
        if as_json:
            _emit_json(detail.to_dict())
        else:
            out.print(_version_table(detail))


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="The version to make champion.")],
    reason: ReasonOption,
    spec: SpecOption = Path("loopml.yaml"),
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make VERSION the champion (recorded as a decision with who and why)."""
    from loopml.operations.registry import promote

    with _opened(spec) as (project_spec, store):
        _print_change(promote(store, project_spec.project, version, reason=reason, actor=actor), as_json)


@models_app.command("rollback")
def models_rollback(
    reason: ReasonOption,
    spec: SpecOption = Path("loopml.yaml"),
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Return the champion to the version it pointed at before its latest change."""
    from loopml.operations.registry import rollback

    with _opened(spec) as (project_spec, store):
        _print_change(rollback(store, project_spec.project, reason=reason, actor=actor), as_json)


@models_app.command("archive")
def models_archive(
    version: Annotated[int, typer.Argument(help="The version to retire; it can never be promoted again.")],
    reason: ReasonOption,
    spec: SpecOption = Path("loopml.yaml"),
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Archive VERSION: it stays listed with its lineage but cannot be promoted (not the champion)."""
    from loopml.operations.registry import archive

    with _opened(spec) as (project_spec, store):
        _print_change(archive(store, project_spec.project, version, reason=reason, actor=actor), as_json)


@models_app.command("export")
def models_export(
    version: Annotated[int, typer.Argument(help="The version to export.")],
    mlflow: Annotated[str, typer.Option("--mlflow", metavar="URI",
                                        help="MLflow tracking URI, e.g. sqlite:///mlflow.db or file:///path/mlruns.")],
    spec: SpecOption = Path("loopml.yaml"),
    artifact_location: Annotated[str | None, typer.Option(
        help="Where a new MLflow experiment keeps its files (default: beside a SQLite tracking database).")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export VERSION to MLflow as a pyfunc model whose predict calls loopml (needs `pip install 'loopml[mlflow]'`)."""
    from loopml.operations.registry import export_mlflow

    with _opened(spec) as (project_spec, store):
        done = export_mlflow(store, project_spec.project, version, mlflow, actor=actor,
                             artifact_location=artifact_location)
        if as_json:
            _emit_json(done.to_dict())
            return
        out.print(f"v{version} exported to MLflow at {done.tracking_uri}: {done.model_uri} (run {done.run_id})",
                  highlight=False)
        if done.registered_name:
            out.print(f"registered as '{done.registered_name}' version {done.registered_version}", highlight=False)
        elif done.note:
            out.print(done.note, highlight=False)
        out.print(f"load it with mlflow.pyfunc.load_model('{done.artifact_uri}')", highlight=False)


def _print_change(change, as_json: bool) -> None:
    if as_json:
        _emit_json(change.to_dict())
    else:
        out.print(change.summary, highlight=False)


def _with_ci(holdout: dict[str, Any]) -> str:
    value, low, high = holdout.get("value"), holdout.get("ci_low"), holdout.get("ci_high")
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else "")


def _version_table(d) -> Table:
    lin, art = d.lineage, d.artifact
    table = Table(title=f"{d.project}: model version {d.version}", show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    registered = d.registered_by
    rows = [
        ("family", d.family),
        ("status", d.status + (f"; aliases: {', '.join(d.aliases)}" if d.aliases else "")),
        (f"{d.holdout.get('metric') or 'goal metric'} (holdout)",
         _with_ci(d.holdout) + (f" on {d.holdout['rows']:,} rows" if d.holdout.get("rows") else "")),
        ("operating point", ", ".join(f"{k}={_short(v)}" for k, v in d.operating_point.items()) or "-"),
        ("data snapshot", f"{lin['snapshot_id']} (data hash {(lin.get('data_hash') or '-')[:16]})"),
        ("sources", ", ".join(f"{k} ({str(v)[:12]})" for k, v in (lin.get("sources") or {}).items()) or "-"),
        ("spec hash", lin.get("spec_hash") or "-"),
        ("rows", f"train {lin.get('train_rows') or '-'}, holdout {lin.get('holdout_rows') or '-'}"),
        ("code", f"loopml {lin.get('loopml') or '-'}, git commit "
                 f"{lin.get('git_commit') or '- (not a git repository)'}"),
        ("python", f"{lin.get('python') or '-'}; " + ", ".join(f"{k} {v}" for k, v in lin["packages"].items())),
        ("artifact", f"{art['path']} ({art['size']:,} bytes)" if art.get("size") is not None else art["path"]),
        ("sha256", art["sha256"]),
        ("registered by", f"decision {registered.id} (run {registered.run_id}): {registered.summary}"
         if registered else f"run {d.run_id}" if d.run_id else "-"),
        ("created", f"{d.created_at:%Y-%m-%d %H:%M:%S %Z}"),
    ]
    rows += [(f"{h['at']:%Y-%m-%d %H:%M}", _history_line(h)) for h in d.history]
    for field_name, value in rows:
        table.add_row(field_name, str(value))
    return table


def _history_line(h: dict[str, Any]) -> str:
    if h["event"] == "alias":
        before = f" (from v{h['previous_version']})" if h.get("previous_version") else ""
        return f"became {h['alias']}{before} by {h['actor']}: {h['reason']}"
    return f"{h['event']} by {h['actor']}" + (f": {h['reason']}" if h.get("reason") else "")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
