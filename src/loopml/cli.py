"""The ``loopml`` command line: thin — it parses, calls the process, renders.

Exit codes: 0 ok, 1 goal not met (or breached and not recovered), 2 bad input, 3 internal error.
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
from rich.table import Table

from loopml.decisions import decisions_table
from loopml.errors import LoopmlError, NotFoundError, SpecError

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
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
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
) -> None:
    """Run the loop: business goal → data → model → register → champion, going back when a gate fails."""
    from loopml.process import run_project

    with _errors():
        project_spec, store = _load(spec)
        try:
            if as_json:
                result = run_project(project_spec, store, replay_run=replay)
                _emit_json(result.to_dict())
            else:
                with _progress() as progress:
                    result = run_project(project_spec, store, progress=progress, replay_run=replay)
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
    for row in rows:
        score = row.get("score")
        table.add_row(str(row["rank"]), row["family"], "-" if score is None else f"{score:.4f}",
                      f"{row.get('seconds') or 0:.1f}", str(row.get("params", ""))[:60])
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
    with _errors():
        project_spec, store = _load(spec, check_data=False)
        try:
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
        finally:
            store.close()


@app.command()
def serve(
    spec: SpecOption = Path("loopml.yaml"),
    host: Annotated[str | None, typer.Option(help="Address to listen on (default from the spec: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from the spec).")] = None,
) -> None:
    """Serve the champion over HTTP: POST /predict, POST /feedback, GET /health, GET /ready."""
    from loopml.operations import serve as serve_app

    with _errors():
        project_spec, store = _load(spec, check_data=False)
        h = host or project_spec.operations.serve.host
        p = port or project_spec.operations.serve.port
        err.print(f"serving {project_spec.project} on http://{h}:{p} (docs at /docs); Ctrl-C stops")
        try:
            serve_app(store, project_spec.project, host=h, port=p)
        finally:
            store.close()


@app.command()
def maintain(spec: SpecOption = Path("loopml.yaml"), as_json: JsonOption = False) -> None:
    """One maintenance pass: check the goal on new labels; when breached, retrain and promote only a better model."""
    from loopml.process import maintain_project

    with _errors():
        project_spec, store = _load(spec)
        try:
            if as_json:
                result = maintain_project(project_spec, store)
                _emit_json(result.to_dict())
            else:
                with _progress() as progress:
                    result = maintain_project(project_spec, store, progress=progress)
                out.print(decisions_table(result.decisions, title=f"{project_spec.project}: maintenance"))
                out.print(f"[bold]{result.outcome}[/]: {result.explanation}", highlight=False)
        finally:
            store.close()
    raise typer.Exit(result.exit_code)


@models_app.command("list")
def models_list(spec: SpecOption = Path("loopml.yaml"), as_json: JsonOption = False) -> None:
    """Every registered version with its metrics, aliases and lineage."""
    with _errors():
        project_spec, store = _load(spec, check_data=False)
        try:
            versions = store.model_versions(project_spec.project)
            if as_json:
                _emit_json([{"version": v.version, "family": v.family, "aliases": list(v.aliases),
                             "metrics": v.metrics, "created_at": v.created_at, "sha256": v.artifact_sha256,
                             "lineage": v.lineage} for v in versions])
                return
            metric = project_spec.business.goal.metric
            table = Table(title=f"{project_spec.project}: model versions")
            for col in ("version", "aliases", "family", f"{metric} (holdout)", "created", "sha256"):
                table.add_column(col)
            for v in versions:
                table.add_row(str(v.version), ", ".join(v.aliases) or "-", v.family,
                              f"{v.metrics['holdout']['value']:.3f}", f"{v.created_at:%Y-%m-%d %H:%M}",
                              v.artifact_sha256[:12])
            out.print(table if versions else "no model versions yet: run `loopml run`")
        finally:
            store.close()


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="The version to make champion.")],
    spec: SpecOption = Path("loopml.yaml"),
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "promoted by hand",
) -> None:
    """Make VERSION the champion (recorded as a decision with who and why)."""
    with _errors():
        project_spec, store = _load(spec, check_data=False)
        try:
            _move_champion(store, project_spec.project, store.model_version(project_spec.project, version).version,
                           "promote", reason)
        finally:
            store.close()


@models_app.command("rollback")
def models_rollback(
    spec: SpecOption = Path("loopml.yaml"),
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "rolled back by hand",
) -> None:
    """Return the champion alias to the version it pointed at before its latest change."""
    with _errors():
        project_spec, store = _load(spec, check_data=False)
        try:
            previous = store.previous_alias_target(project_spec.project, "champion")
            if previous is None:
                raise NotFoundError(f"project '{project_spec.project}' has no earlier champion to roll back to")
            _move_champion(store, project_spec.project, previous.version, "rollback", reason)
        finally:
            store.close()


def _move_champion(store, project: str, version: int, action: str, reason: str) -> None:
    import getpass

    from loopml.decisions import Decision

    current = store.alias(project, "champion")
    actor = getpass.getuser()
    decision = Decision(stage="operations", gate="registry", verdict="info", action=action, next_stage=None,
                        summary=f"champion: v{current.version if current else '-'} → v{version} by {actor}: {reason}",
                        evidence={"from": current.version if current else None, "to": version, "reason": reason},
                        actor=actor)
    store.set_alias(project, "champion", version, actor=actor, reason=reason, decision=decision)
    out.print(decision.summary, highlight=False)


if __name__ == "__main__":
    main()
