"""The dashboard: the loop in the browser, served by ``loopml ui`` on 127.0.0.1 (port 8081 by default).

Server-rendered pages, charts as inline SVG, no script and nothing loaded from the network:

- ``/``: the process diagram, each stage's state in the latest cycle and where the loop is now;
- ``/decisions``: every decision with its evidence, newest first (``?stage=model`` filters by stage);
- ``/models``: model versions with aliases, lineage and holdout metric (95% CI); promote and roll back
  with the admin token and a reason (``/models/N`` shows one version);
- ``/monitoring``: the monitoring report (drift, performance against the goal, data quality, latency, alerts).

Pages only read the store. The promote and rollback forms are the only writes: each needs the admin token
(``admin_token``, else ``LOOPML_ADMIN_TOKEN``), who makes the change and why, and goes through the same
registry functions as ``loopml models promote`` and ``rollback``, so each change is a decision record.

>>> app = dashboard_app(store, "benefits-outreach", spec=spec, admin_token="s3cret")   # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8081)                                     # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import hmac
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from loopml.errors import ConflictError, LoopmlError, NotFoundError, SpecError
from loopml.maintenance.audit import STAGES, evidence_brief, run_kinds
from loopml.operations._auth import ADMIN_TOKEN_ENV, Secrets
from loopml.operations.registry import CHAMPION, VersionSummary, list_versions, promote, rollback, show_version
from loopml.report._diagram import STATES, loop_position, process_diagram
from loopml.report.charts import Series, line_chart
from loopml.report.monitoring import monitoring_context
from loopml.report.page import render_page, svg

if TYPE_CHECKING:
    from loopml.spec import ProjectSpec
    from loopml.store import Store

__all__ = ["ChampionChange", "dashboard_app"]

PAGES = {"/": "loop", "/decisions": "decisions", "/models": "models", "/monitoring": "monitoring"}
_DECISIONS_LIMIT = 200
_HOME_DECISIONS = 8
_ALIAS_ROWS = 20
_EVIDENCE_CHARS = 4000  # per decision on the page; `loopml history --json` prints it whole
_STATUS = {NotFoundError: 404, ConflictError: 409, SpecError: 400}


class ChampionChange(BaseModel):
    """What the promote and rollback forms post (form fields, or the same keys as JSON).

    >>> ChampionChange(token="s3cret", actor="ana", reason="v1 holds recall on the March labels").actor
    'ana'
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    token: str = ""
    actor: str = ""
    reason: str = ""


def dashboard_app(store: Store, project: str, *, spec: ProjectSpec | None = None,
                  admin_token: str | None = None) -> FastAPI:
    """The dashboard of ``project`` as a FastAPI app; ``spec`` adds the goal and limits as the spec says them now.

    ``admin_token`` (else ``LOOPML_ADMIN_TOKEN``) enables promote and rollback; without one they are refused.
    """
    app = FastAPI(title=f"loopml dashboard: {project}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.project, app.state.spec = store, project, spec
    app.state.admin_token = Secrets.resolve(api_key=None, admin_token=admin_token).admin_token

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404 and request.url.path not in PAGES:
            detail = (f"no page at {request.url.path}; the dashboard's pages are "
                      f"{', '.join(PAGES)} and /models/N for one model version")
        else:
            detail = str(exc.detail)
        return _error_page(request, exc.status_code, detail)

    @app.exception_handler(RequestValidationError)
    async def _bad_query(request: Request, exc: RequestValidationError) -> Response:
        return _error_page(request, 400, "; ".join(_problem(e) for e in exc.errors()))

    @app.exception_handler(LoopmlError)
    async def _loopml_error(request: Request, exc: LoopmlError) -> Response:
        return _error_page(request, _status(exc), str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Starlette logs the traceback after this page is sent; the page says what failed and that nothing changed.
        return _error_page(request, 500, f"the dashboard failed on {request.url.path}: {type(exc).__name__}: "
                                         f"{exc}. Nothing was changed; the server's log holds the traceback")

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        return _page(request, "dashboard/home.html.j2", "loop", **_home(request.app))

    @app.get("/decisions", response_class=HTMLResponse)
    def decisions(request: Request, stage: str | None = None, limit: int = _DECISIONS_LIMIT) -> Response:
        return _page(request, "dashboard/decisions.html.j2", "decisions", **_decisions(request.app, stage, limit))

    @app.get("/models", response_class=HTMLResponse)
    def models(request: Request, change: int | None = None) -> Response:
        return _page(request, "dashboard/models.html.j2", "models", **_models(request.app, change=change))

    @app.get("/models/{version}", response_class=HTMLResponse)
    def model(request: Request, version: int) -> Response:
        detail = show_version(request.app.state.store, request.app.state.project, version)
        return _page(request, "dashboard/version.html.j2", f"model version {version}", active="models", v=detail,
                     goal=_goal(request.app))

    # CSRF: the admin token travels in the form body itself, never in a cookie, so another site cannot forge it.
    @app.post("/models/{version}/promote", response_class=HTMLResponse)
    async def promote_version(request: Request, version: int) -> Response:
        return await _change(request, "promote", version)

    @app.post("/models/rollback", response_class=HTMLResponse)
    async def rollback_champion(request: Request) -> Response:
        return await _change(request, "rollback", None)

    @app.get("/monitoring", response_class=HTMLResponse)
    def monitoring(request: Request) -> Response:
        state = request.app.state
        try:
            context = monitoring_context(state.store, state.project, spec=state.spec)
        except NotFoundError as exc:
            return _page(request, "dashboard/empty.html.j2", "monitoring", message=str(exc))
        context.update(title=f"{state.project}: monitoring", nav=_nav("monitoring"))
        return HTMLResponse(render_page("dashboard/monitoring.html.j2", **context))

    return app


# -- pages ---------------------------------------------------------------------------------------
def _home(app: FastAPI) -> dict[str, Any]:
    store, project = app.state.store, app.state.project
    decisions = store.decisions(project)
    position = loop_position(decisions, store.runs(project, limit=50))
    versions = list_versions(store, project)
    champion = next((v for v in versions if CHAMPION in v.aliases), None)
    goal = _goal(app)
    return {"diagram": svg(process_diagram(position)), "position": position, "states": STATES,
            "champion": champion, "goal": goal, "latest": decisions[-1] if decisions else None,
            "recent": list(reversed(decisions[-_HOME_DECISIONS:])), "alerts": len(store.alerts(project)),
            "predictions": store.prediction_count(project), "chart": _versions_chart(versions, goal)}


def _decisions(app: FastAPI, stage: str | None, limit: int) -> dict[str, Any]:
    store, project = app.state.store, app.state.project
    if stage is not None and stage not in STAGES:
        close = difflib.get_close_matches(stage, STAGES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SpecError(f"stage: '{stage}' is not a stage of the loop; {hint}give one of {', '.join(STAGES)}, "
                        "or leave it out for every stage")
    if limit < 1:
        raise SpecError(f"limit: found {limit}; give how many of the latest decisions to show, 1 or more")
    every = store.decisions(project)
    counts = {s: sum(1 for d in every if d.stage == s) for s in STAGES}
    chosen = [d for d in every if stage is None or d.stage == stage]
    shown = list(reversed(chosen[-limit:]))
    kinds = run_kinds(store, project, shown)
    rows = [{"d": d, "kind": kinds.get(d.run_id, "") if d.run_id else "", "brief": evidence_brief(d.evidence),
             "evidence": _evidence_text(d.evidence)} for d in shown]
    return {"rows": rows, "stage": stage, "stages": STAGES, "counts": counts, "total": len(chosen),
            "all": len(every)}


def _models(app: FastAPI, *, change: int | None = None, error: str | None = None,
            form: ChampionChange | None = None) -> dict[str, Any]:
    store, project = app.state.store, app.state.project
    versions = list_versions(store, project)
    done = None
    if change is not None:
        done = next((d for d in store.registry_decisions(project) if d.id == change), None)
        if done is None:
            error = error or f"change {change} is not a registry change of project '{project}'"
    history = list(reversed(store.alias_history(project)))[:_ALIAS_ROWS]
    goal = _goal(app)
    return {"versions": list(reversed(versions)), "goal": goal, "chart": _versions_chart(versions, goal),
            "done": done, "error": error, "form": form or ChampionChange(), "history": history,
            "enabled": app.state.admin_token is not None, "token_env": ADMIN_TOKEN_ENV,
            "champion": next((v.version for v in versions if CHAMPION in v.aliases), None)}


async def _change(request: Request, action: str, version: int | None) -> Response:
    """Promote or roll back for a request that holds the admin token, who and why; else the page says what failed."""
    app = request.app
    try:
        form = await _read_form(request)
    except ValidationError as exc:
        fields = ", ".join(ChampionChange.model_fields)
        return _refuse(request, 400, "; ".join(_problem(e) for e in exc.errors()) + f"; the form's fields are {fields}",
                       None)
    expected = app.state.admin_token
    if expected is None:
        return _refuse(request, 403, f"promote and rollback are disabled: start `loopml ui` with {ADMIN_TOKEN_ENV} "
                                     "set; nothing changed", form)
    if not form.token or not _same(form.token, expected):
        return _refuse(request, 401, f"{'no' if not form.token else 'wrong'} admin token: give the token set in "
                                     f"{ADMIN_TOKEN_ENV} in the admin token field; nothing changed", form)
    if not form.actor:
        return _refuse(request, 400, "who makes the change? Write your name in the 'who' field, for the audit log; "
                                     "nothing changed", form)
    if not form.reason:
        return _refuse(request, 400, "why? A change of the champion needs a reason for the audit log: write it in the "
                                     "reason field; nothing changed", form)
    store, project = app.state.store, app.state.project
    try:
        if action == "promote":
            done = await run_in_threadpool(promote, store, project, version, reason=form.reason, actor=form.actor)
        else:
            done = await run_in_threadpool(rollback, store, project, reason=form.reason, actor=form.actor)
    except LoopmlError as exc:
        message = str(exc) if "nothing changed" in str(exc) else f"{exc}; nothing changed"
        return _refuse(request, _status(exc), message, form)
    # The registry wrote the decision with the alias move; its id names the change on the page shown next.
    written = next((d for d in reversed(store.registry_decisions(project)) if d.summary == done.summary), None)
    return RedirectResponse(f"/models?change={written.id}" if written else "/models", status_code=303)


async def _read_form(request: Request) -> ChampionChange:
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        return ChampionChange.model_validate_json(body or b"{}")
    return ChampionChange.model_validate(dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))


def _refuse(request: Request, status: int, message: str, form: ChampionChange | None) -> Response:
    kept = form.model_copy(update={"token": ""}) if form is not None else None  # the token is never sent back
    context = _models(request.app, error=message, form=kept)
    return _page(request, "dashboard/models.html.j2", "models", status=status, **context)


# -- pieces --------------------------------------------------------------------------------------
def _goal(app: FastAPI) -> dict[str, Any]:
    """The goal's metric, threshold and text: from the spec, else from the latest business decision."""
    spec = app.state.spec
    if spec is not None:
        g = spec.business.goal
        return {"metric": g.metric, "threshold": g.threshold, "text": g.describe()}
    for d in reversed(app.state.store.decisions(app.state.project)):
        if d.stage == "business" and d.gate == "goal_fits_task":
            e = d.evidence
            return {"metric": e.get("metric"), "threshold": e.get("threshold"),
                    "text": f"{e.get('metric')} (threshold {e.get('threshold')})"}
    return {"metric": None, "threshold": None, "text": None}


def _versions_chart(versions: list[VersionSummary], goal: dict[str, Any]) -> Markup | None:
    if not versions:
        return None
    metric = goal["metric"] or next((v.holdout.get("metric") for v in versions if v.holdout.get("metric")), "metric")
    series = Series(f"holdout {metric}", [v.holdout.get("value") for v in versions],
                    low=[v.holdout.get("ci_low") for v in versions], high=[v.holdout.get("ci_high") for v in versions])
    threshold = goal["threshold"]
    return svg(line_chart([f"v{v.version}" for v in versions], [series],
                          title=f"{metric} on the locked holdout per model version, with 95% intervals",
                          y_label=metric, goal=threshold,
                          goal_label=f"goal {threshold:g}" if threshold is not None else "goal"))


def _evidence_text(evidence: dict[str, Any]) -> str:
    text = json.dumps(evidence, indent=2, default=str, sort_keys=True)
    if len(text) <= _EVIDENCE_CHARS:
        return text
    return (text[:_EVIDENCE_CHARS] + f"\n… {len(text) - _EVIDENCE_CHARS:,} more characters: "
            "`loopml history --json` prints the whole evidence")


def _page(request: Request, template: str, name: str, *, active: str | None = None, status: int = 200,
          subtitle: str | None = None, **context: Any) -> Response:
    """``template`` as the page ``name`` (its title), with ``active`` (default ``name``) marked in the navigation."""
    project = request.app.state.project
    html = render_page(template, title=f"{project}: {name}",
                       subtitle=_subtitle(request.app) if subtitle is None else subtitle,
                       nav=_nav(active or name), project=project, **context)
    return HTMLResponse(html, status_code=status)


def _subtitle(app: FastAPI) -> str:
    goal = _goal(app)
    return f"goal {goal['text']}" if goal["text"] else "no run yet: `loopml run` starts the loop"


def _nav(active: str) -> list[dict[str, Any]]:
    return [{"href": href, "label": label, "active": label == active} for href, label in PAGES.items()]


def _error_page(request: Request, status: int, message: str) -> Response:
    # A 500 may come from the store itself, so its page does not read the goal from it.
    return _page(request, "dashboard/error.html.j2", "error", status=status, status_code=status, message=message,
                 subtitle="" if status >= 500 else None)


def _problem(error: dict[str, Any]) -> str:
    """One validation problem as the key, what was found and what is expected."""
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
    found = error.get("input")
    return f"{where}: {error.get('msg', 'invalid').lower()}" + (f", found {found!r}" if found is not None
                                                                else "")


def _status(exc: LoopmlError) -> int:
    return next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)


def _same(sent: str, expected: str) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str, and a form may hold any text.
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))
