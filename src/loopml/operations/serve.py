"""Serve the champion over HTTP: validate against the data contract, predict, log, take feedback.

``create_app`` builds the FastAPI app (the model is loaded at startup and swapped when its alias
moves); ``serve`` runs it under uvicorn, with one or several worker processes, and records the
deployment in the store. docs/serving.md is the user's guide.

>>> from loopml.store import Store
>>> app = create_app(Store.open(project_root), "benefits-outreach")             # doctest: +SKIP
>>> serve(Store.open(project_root), "benefits-outreach", port=8080, workers=2)   # doctest: +SKIP

Endpoints: ``POST /predict`` (JSON ``{"row": {...}}`` or ``{"rows": [...]}``, or an Arrow IPC stream
or Parquet file), ``POST /feedback``, ``POST /admin/reload``, ``GET /health`` (the process is up),
``GET /ready`` (a model is loaded) and ``GET /metrics`` (Prometheus). Every bad input gets a 4xx
whose ``detail`` says what is wrong, never a 500.

With ``rollout`` (the spec's ``maintenance.rollout``) in ``shadow`` or ``canary`` mode the app also
follows the ``challenger`` alias: in shadow it scores every answered record after the answer, logged
with role ``shadow``; as a canary it answers the requests :func:`~loopml.operations._swap.canary_routed`
picks by their first prediction id, logged with role ``canary``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from loopml.data.contract import ContractViolation, DataContract, FieldError
from loopml.errors import ConflictError, LoopmlError, ModelError, NotFoundError, SpecError
from loopml.model.artifact import TrainedModel
from loopml.operations import _bodies
from loopml.operations._auth import Secrets, require_admin, require_api_key, unguarded_routes
from loopml.operations._bodies import json_response, problem, problems_error
from loopml.operations._http import BodyLimit, InflightLimit, WorkerHeader
from loopml.operations._metrics import MULTIPROC_ENV, MetricsMiddleware, ServingMetrics
from loopml.operations._openapi import request_body, with_contract
from loopml.operations._swap import Live, ModelHolder, ShadowScorer, canary_routed
from loopml.operations.batching import MicroBatcher, Overloaded
from loopml.operations.compiled import CompiledModel, CompiledPrediction
from loopml.operations.predlog import LogBackpressure, PredictionLog, RejectionLog, rejection_rows
from loopml.spec import RolloutSpec
from loopml.store.artifacts import ArtifactStore
from loopml.store.metadata import ModelVersion, Store

__all__ = [
    "FeedbackRequest",
    "FeedbackResponse",
    "HealthResponse",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "Problem",
    "ProblemResponse",
    "ReadyResponse",
    "ReloadResponse",
    "ServedModel",
    "app_from_env",
    "create_app",
    "load_served_model",
    "serve",
]

logger = logging.getLogger(__name__)

Label = str | bool | int | float

DEFAULT_MAX_BODY_BYTES = 8 << 20
# JSON bodies past this size are parsed in a worker thread, so one big batch does not stall the loop.
_INLINE_PARSE_BYTES = 64 << 10
# The environment `app_from_env` reads: how `serve(workers=N)` hands the store and options to each worker.
ENV_ROOT, ENV_PROJECT, ENV_ALIAS = "LOOPML_SERVE_ROOT", "LOOPML_SERVE_PROJECT", "LOOPML_SERVE_ALIAS"
ENV_DB, ENV_ARTIFACTS, ENV_OPTIONS = "LOOPML_SERVE_DB", "LOOPML_SERVE_ARTIFACTS", "LOOPML_SERVE_OPTIONS"
_OPTIONS = ("max_rows", "max_body_bytes", "max_inflight", "reload_interval_s", "rollout")


def _one_label_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # A failed union reports once per member ("label.str", "label.int", ...); say it once.
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(f"expected a string, number or boolean; got {type(value).__name__}") from None


# -- the model being served ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """A model version ready to serve: its registry row, the loaded model and its data contract."""

    project: str
    model_version: ModelVersion
    model: TrainedModel
    contract: DataContract


def load_served_model(store: Store, project: str, alias: str = "champion") -> ServedModel:
    """Load the version ``alias`` points at, with the contract of the snapshot it was trained on.

    >>> served = load_served_model(store, "benefits-outreach")   # doctest: +SKIP
    >>> served.model_version.version, served.model.task           # doctest: +SKIP
    (1, 'binary')
    """
    mv = store.alias(project, alias)
    if mv is None:
        raise ModelError(f"project '{project}' has no {alias} yet; run `loopml run` first")
    model = TrainedModel.from_bytes(store.read_model(mv), root=store.root)  # the feature hook's folder
    try:
        contract = DataContract.model_validate(store.snapshot(mv.snapshot_id).contract)
    except ValidationError as exc:
        raise ModelError(f"the data contract of snapshot {mv.snapshot_id} (model version {mv.version}) "
                         f"is not valid, so requests cannot be checked: {exc}") from exc
    return ServedModel(project=project, model_version=mv, model=model, contract=contract)


def _prepare(served: ServedModel) -> Live:
    # Compiling probes the model on rows built from the contract, so a swap is warm before it serves.
    fast = CompiledModel.from_model(served.model, served.contract)
    if not fast.compiled:
        # The pipeline predicts request by request: a batch shared with others would fail with any one of them.
        logger.info("loopml serve: version %d is served by the pipeline: %s", served.model_version.version,
                    fast.reason)
        return Live(served=served, fast=fast)
    return Live(served=served, fast=fast, batcher=MicroBatcher(fast.predict_records))


# -- request and response bodies -----------------------------------------------------------------


class Problem(BaseModel):
    """One thing wrong with a request."""

    row: int | None = Field(None, description="Position of the record in `rows` (0 for `row`); null: the request.")
    column: str | None = Field(None, description="The column at fault; null when it is not one column.")
    reason: str = Field(description="What is wrong and what was expected.")


class ProblemResponse(BaseModel):
    detail: list[Problem]


class PredictRequest(BaseModel):
    """Either ``rows`` (a batch of records) or ``row`` (one record); a record maps column to value.

    >>> PredictRequest.model_validate({"row": {"age": 41}}).records
    [{'age': 41}]
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"row": {"age": 41, "sex": "female"}}, {"rows": [{"age": 41, "sex": "male"}]}]},
    )

    rows: list[dict[str, Any]] | None = Field(None, min_length=1, description="A batch of records.")
    row: dict[str, Any] | None = Field(None, description="One record.")

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        if (self.rows is None) == (self.row is None):
            raise ValueError("give exactly one of 'rows' (a list of records) or 'row' (one record)")
        return self

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.rows if self.rows is not None else [self.row]  # type: ignore[list-item]


class Prediction(BaseModel):
    id: str = Field(description="Prediction id; send it back with the true label to POST /feedback.")
    prediction: Label = Field(description="The label at the operating point (classification) or the value.")
    probability: float | None = Field(
        None, description="Binary: P(positive class); multiclass: P(predicted class); regression: null."
    )
    probabilities: dict[str, float] | None = Field(None, description="Multiclass: P(class) for every class.")


class PredictResponse(BaseModel):
    model_version: int = Field(description="The model version that answered (also in `X-Loopml-Model-Version`).")
    predictions: list[Prediction]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(description="The `id` POST /predict returned.", min_length=1, max_length=128,
                               pattern=r"^[\x21-\x7e]+$")
    label: Annotated[Label, WrapValidator(_one_label_error)] = Field(
        description="The true outcome: one of the model's classes, or a number (regression)."
    )


class FeedbackResponse(BaseModel):
    status: Literal["recorded"] = "recorded"


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: int
    rollout: Literal["shadow", "canary"] | None = Field(None, description="Only in a shadow or canary release.")
    challenger_version: int | None = Field(
        None, description="In a shadow or canary release: the challenger loaded (absent while there is none).")


class ReloadResponse(BaseModel):
    model_version: int = Field(description="The version served after the reload.")
    swapped: bool = Field(description="True when the alias had moved and the new version now serves.")
    challenger_version: int | None = Field(
        None, description="In a shadow or canary release: the challenger loaded after the reload, if any.")


_PROBLEMS = {"model": ProblemResponse}
_UNAUTHORIZED = {401: {"description": "No API key, or a wrong one, while LOOPML_API_KEY is set."}}
_BUSY = {503: {"description": "No model loaded, or the server is busy (`Retry-After: 1`)."}}


# -- the app -------------------------------------------------------------------------------------


def create_app(
    store: Store,
    project: str,
    *,
    alias: str = "champion",
    max_rows: int = 10_000,
    served: ServedModel | None = None,
    api_key: str | None = None,
    admin_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_inflight: int = 64,
    reload_interval_s: float = 2.0,
    rollout: RolloutSpec | dict[str, Any] | None = None,
) -> FastAPI:
    """The serving app for ``project``; it loads the model ``alias`` points at when it starts.

    Pass ``served`` to serve a model already loaded (``serve`` does, so that the deployment it
    records names the version actually served). If loading fails, ``/ready`` answers 503 with the
    reason and ``/predict`` refuses, while ``/health`` still answers. Every ``reload_interval_s``
    (0: never) the alias is checked and a version it moved to replaces the served one.

    ``api_key`` (default: ``LOOPML_API_KEY``) guards /predict and /feedback; ``admin_token``
    (default: ``LOOPML_ADMIN_TOKEN``) guards /admin/*, which are disabled without one. Bodies over
    ``max_body_bytes`` get 413, batches over ``max_rows`` get 413, and past ``max_inflight``
    requests in flight the app answers 503 at once.

    ``rollout`` (the spec's ``maintenance.rollout``; default: none) in ``shadow`` or ``canary`` mode also
    loads the version the ``challenger`` alias points at, and swaps it as that alias moves or is removed.
    Shadow: the champion answers every request and the challenger scores the same records afterwards, in
    a thread of its own (never adding latency, never failing a request), logged with role ``shadow`` and
    ``shadow_of`` the answered id. Canary: the challenger answers the share of requests whose first
    prediction id hashes under ``canary_share`` (the champion answers if the canary fails), logged with
    role ``canary``; the response's ``model_version`` says who answered.

    >>> import httpx                                                         # doctest: +SKIP
    >>> app = create_app(store, "benefits-outreach")                         # doctest: +SKIP
    >>> httpx.post(url + "/predict", json={"row": {"age": 41, ...}}).json()  # doctest: +SKIP
    {'model_version': 1, 'predictions': [{'id': '9f0c...', 'prediction': 'yes', 'probability': 0.81, ...}]}
    """
    _check_limits(max_rows=max_rows, max_body_bytes=max_body_bytes, max_inflight=max_inflight,
                  reload_interval_s=reload_interval_s)
    plan = _rollout(rollout)
    metrics = ServingMetrics()
    closing: set[asyncio.Task] = set()  # the retired batchers finishing their queues

    def retire(old: Live | None) -> None:
        if old is not None and old.batcher is not None:
            # Requests already queued finish on the old model; new ones reach the new batcher.
            task = asyncio.get_running_loop().create_task(old.batcher.close())
            closing.add(task)
            task.add_done_callback(closing.discard)

    def on_swap(new: Live | None, old: Live | None) -> None:
        if new is not None:
            metrics.model_version.set(new.version)
        if old is not None:
            metrics.reloads.labels(outcome="swapped").inc()
        retire(old)

    holder = ModelHolder(store, project, alias, load=lambda: _prepare(load_served_model(store, project, alias)),
                         on_swap=on_swap)
    # The challenger of a shadow or canary release: the same hot swap, on an alias that may point at nothing.
    challenger = None if plan.mode == "direct" else ModelHolder(
        store, project, "challenger", load=lambda: _prepare(load_served_model(store, project, "challenger")),
        on_swap=lambda new, old: retire(old), optional=True)

    def on_watch_error(exc: Exception) -> None:
        if holder.current is None:
            if str(exc) != holder.error:
                logger.warning("loopml serve: no model loaded: %s", exc)
            holder.error = str(exc)
            return
        metrics.reloads.labels(outcome="failed").inc()
        logger.warning("loopml serve: %s of '%s' moved but could not be loaded; still serving version %d: %s",
                       alias, project, holder.current.version, exc)

    def on_challenger_error(exc: Exception) -> None:
        # A challenger that cannot load takes no traffic; said once per cause, the champion is not affected.
        if str(exc) != challenger.error:  # type: ignore[union-attr]
            logger.warning("loopml serve: the challenger of '%s' could not be loaded, so it takes no %s traffic: %s",
                           project, plan.mode, exc)
            challenger.error = str(exc)  # type: ignore[union-attr]

    async def refresh_challenger(force: bool = False) -> None:
        try:
            await challenger.refresh(force=force)  # type: ignore[union-attr]
        except Exception as exc:  # the champion serves whatever becomes of the challenger
            on_challenger_error(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if served is not None:
                holder.current = await run_in_threadpool(_prepare, served)
                on_swap(holder.current, None)
            else:
                await holder.refresh()
        except LoopmlError as exc:
            # Stay up and say why on /ready, so an orchestrator's probe shows the cause.
            holder.error = str(exc)
            logger.warning("loopml serve: no model loaded: %s", exc)
        app.state.prediction_log = PredictionLog(store, project)
        app.state.prediction_log.start()
        app.state.rejection_log = RejectionLog(store, project)
        app.state.rejection_log.start()
        watchers = []
        if challenger is not None:
            await refresh_challenger()
            shadow.start()
            if reload_interval_s > 0:
                watchers.append(asyncio.create_task(challenger.watch(reload_interval_s, on_challenger_error)))
        if reload_interval_s > 0:
            watchers.append(asyncio.create_task(holder.watch(reload_interval_s, on_watch_error)))
        try:
            yield
        finally:
            for watcher in watchers:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            for live in (holder.current, challenger.current if challenger is not None else None):
                if live is not None and live.batcher is not None:
                    await live.batcher.close()
            await asyncio.gather(*closing)
            # The shadow rows of the last answers reach the log before it closes.
            await asyncio.to_thread(shadow.close)
            # uvicorn gets here after answering the requests in flight (SIGTERM, Ctrl-C): write every prediction.
            await asyncio.to_thread(app.state.prediction_log.close)
            await asyncio.to_thread(app.state.rejection_log.close)
            metrics.worker_exited()

    app = FastAPI(title=f"loopml: {project}", lifespan=lifespan)
    app.state.secrets = Secrets.resolve(api_key, admin_token)
    app.state.holder = holder
    app.state.challenger = challenger
    app.state.rollout = plan
    app.state.metrics = metrics
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _internal_error)

    def _live() -> Live:
        live = holder.current
        if live is None:
            raise HTTPException(503, detail=f"no model loaded: {holder.error}")
        return live

    def _append(live: Live, records: list[dict[str, Any]], predictions: list[dict[str, Any]], latency_ms: float,
                role: str, shadow_of: list[str] | None = None) -> None:
        # The one place predictions reach the prediction log.
        app.state.prediction_log.append(live.served.model_version.id, [
            {"id": p["id"], "features": _json_safe(r), "prediction": p["prediction"],
             "probability": p["probability"], "latency_ms": latency_ms, "role": role,
             **({"shadow_of": shadow_of[i]} if shadow_of is not None else {})}
            for i, (p, r) in enumerate(zip(predictions, records, strict=True))
        ])

    def _log(live: Live, records: list[dict[str, Any]], predictions: list[dict[str, Any]], latency_ms: float,
             role: str) -> None:
        try:
            _append(live, records, predictions, latency_ms, role)
        except LogBackpressure as exc:  # refuse rather than answer a prediction that may never be logged
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": "1"}) from exc

    def _score_shadow(rival: Live, records: list[dict[str, Any]], answered: list[str]) -> None:
        """The challenger on records the champion answered (the shadow thread; what it raises is only counted)."""
        start = time.perf_counter()
        result = rival.fast.predict_records(records)
        latency_ms = (time.perf_counter() - start) * 1000 / len(records)
        _append(rival, records, _predictions(result, _new_ids(len(records))), latency_ms, "shadow", answered)

    shadow = ShadowScorer(_score_shadow)
    app.state.shadow = shadow

    def _rival(live: Live) -> Live | None:
        """The challenger that takes a share of this request, if a release is on and it is not the champion."""
        rival = challenger.current if challenger is not None else None
        if rival is None or rival.served.model_version.id == live.served.model_version.id:
            return None
        return rival

    def _canary(rival: Live | None, first_id: str) -> Live | None:
        return rival if rival is not None and plan.mode == "canary" and canary_routed(first_id, plan.canary_share) \
            else None

    def _canary_failed(canary: Live, exc: Exception) -> None:
        if canary.version not in canary_warned:  # once per version: the champion answers; the log says why
            canary_warned.add(canary.version)
            logger.warning("loopml serve: canary version %d failed on rows the champion's contract accepts (%s); "
                           "the champion answers such requests; further failures are not logged", canary.version, exc)

    canary_warned: set[int] = set()

    def _refused(exc: HTTPException) -> None:
        """Count a request /predict refused with 422, by column and kind (the one place refusals are recorded)."""
        if isinstance(exc, _Refused):
            rows, columns = exc.rejected, exc.columns
        else:  # the body could not be read as records: its problems are the body's
            live = holder.current
            rows = rejection_rows(_body_problems(exc.detail), request_rows=None,
                                  model_version_id=live.served.model_version.id if live else None)
            columns = frozenset(live.served.contract.feature_names) if live else frozenset()
        app.state.rejection_log.append(rows)
        metrics.count_rejections(rows, columns)

    def _record_feedback(prediction_id: str, label: Any) -> None:
        # The one place feedback reaches the prediction log.
        try:
            app.state.prediction_log.record_feedback(prediction_id, label)
        except NotFoundError as exc:
            raise HTTPException(404, detail=str(exc)) from exc
        except ConflictError as exc:
            raise HTTPException(409, detail=str(exc)) from exc

    def _answered(live: Live, records: list[dict[str, Any]], predictions: list[dict[str, Any]],
                  start: float, role: str = "champion", rival: Live | None = None) -> Response:
        _log(live, records, predictions, (time.perf_counter() - start) * 1000 / len(records), role)
        metrics.predicted_rows.labels(model_version=str(live.version)).inc(len(predictions))
        if rival is not None and plan.mode == "shadow":
            shadow.submit(rival, records, [p["id"] for p in predictions])
        return json_response({"model_version": live.version, "predictions": predictions},
                             headers={"x-loopml-model-version": str(live.version), "x-loopml-role": role})

    def _answer(live: Live, records: list[dict[str, Any]], rival: Live | None = None) -> Response:
        """Check, predict and log a batch (in a worker thread: it is the model's CPU time)."""
        start = time.perf_counter()
        ids = _new_ids(len(records))
        canary = _canary(rival, ids[0])
        if canary is not None:
            # The champion's contract is the API's: the canary answers exactly the requests the champion would.
            errors = live.fast.validate(records)
            if errors:
                raise _Refused(live, errors, len(records))
            try:
                result = canary.fast.predict_records(records)
            except LoopmlError as exc:
                _canary_failed(canary, exc)
            else:
                return _answered(canary, records, _predictions(result, ids), start, "canary")
        try:
            result = live.fast.predict_records(records)
        except ContractViolation as exc:
            raise _Refused(live, exc.errors, len(records)) from exc
        except LoopmlError as exc:
            raise _model_failed(live, exc) from exc
        return _answered(live, records, _predictions(result, ids), start, rival=rival)

    async def _answer_one(live: Live, record: dict[str, Any], rival: Live | None = None) -> Response:
        """Check one record, then predict it in a micro-batch shared with concurrent requests."""
        start = time.perf_counter()
        # Checked alone first: a batch call fails for all it holds, so a bad record must not join one.
        errors = live.fast.validate([record])
        if errors:
            raise _Refused(live, errors, 1)
        prediction_id = uuid.uuid4().hex
        canary = _canary(rival, prediction_id)
        if canary is not None:
            try:
                row = await _one_row(canary, record)
            except LoopmlError as exc:  # its contract, its model or its full queue: the champion answers
                _canary_failed(canary, exc)
            else:
                return _answered(canary, [record], [_prediction(prediction_id, row)], start, "canary")
        try:
            row = await live.batcher.submit(record)
        except Overloaded as exc:
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc
        except LoopmlError as exc:
            raise _model_failed(live, exc) from exc
        return _answered(live, [record], [_prediction(prediction_id, row)], start, rival=rival)

    # The probes and /metrics are async: they answer on the event loop even when every worker thread is busy.
    @app.get("/health")
    async def health() -> HealthResponse:
        """The process is up (it may still have no model; see /ready)."""
        return HealthResponse()

    @app.get("/ready", responses={503: {"description": "No model loaded; `detail` says why."}},
             response_model_exclude_none=True)
    async def ready() -> ReadyResponse:
        """A model is loaded and predictions will be served (in a release: and which challenger takes its share)."""
        live = _live()
        if challenger is None:
            return ReadyResponse(model_version=live.version)
        rival = _rival(live)
        return ReadyResponse(model_version=live.version, rollout=plan.mode,
                             challenger_version=rival.version if rival is not None else None)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def metrics_endpoint() -> Response:
        """Prometheus metrics: requests, latency, errors, rows predicted, the version served, requests in flight,
        and the monitor's alerts and window gauges (read from the store at most every few seconds)."""
        await metrics.refresh_monitor(store, project)
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)

    @app.post("/predict", dependencies=[Depends(require_api_key)], response_model=PredictResponse,
              responses={**_UNAUTHORIZED, 413: _PROBLEMS, 415: _PROBLEMS, 422: _PROBLEMS, **_BUSY,
                         500: {"model": ProblemResponse, "description": "The model failed on valid rows."}},
              openapi_extra=request_body(PredictRequest, tables=True))
    async def predict(request: Request) -> Response:
        """Predict one record or a batch; each prediction is logged under the id it returns.

        JSON (`{"row": {...}}` or `{"rows": [...]}`) is the default; large batches may be sent as an Arrow
        IPC stream (`application/vnd.apache.arrow.stream`) or a Parquet file (`application/vnd.apache.parquet`).
        A request refused with 422 is counted, by column and kind of problem, for monitoring.
        """
        try:
            return await _predict(request)
        except HTTPException as exc:
            if exc.status_code == 422:
                _refused(exc)
            raise

    async def _predict(request: Request) -> Response:
        _live()  # no model: 503 before reading a body nothing can answer
        kind = _bodies.body_kind(request.headers.get("content-type"))
        body = await _read(request)
        if kind == "json":
            parsed = (_bodies.parse_json(body, PredictRequest) if len(body) <= _INLINE_PARSE_BYTES
                      else await run_in_threadpool(_bodies.parse_json, body, PredictRequest))
            records = parsed.records
        else:
            records = await run_in_threadpool(_bodies.read_table, body, kind, max_rows)
        if len(records) > max_rows:
            raise _bodies.too_many_rows(f"{len(records):,}", max_rows)
        # The models current now answer (a swap after this point leaves this request on them).
        live = _live()
        rival = _rival(live)
        if kind == "json" and parsed.row is not None and live.batcher is not None:
            return await _answer_one(live, records[0], rival)
        return await run_in_threadpool(_answer, live, records, rival)

    @app.post("/feedback", dependencies=[Depends(require_api_key)], response_model=FeedbackResponse,
              responses={**_UNAUTHORIZED, 404: {"description": "Unknown prediction id."},
                         409: {"description": "The prediction already has a label."},
                         415: _PROBLEMS, 422: _PROBLEMS, **_BUSY},
              openapi_extra=request_body(FeedbackRequest, tables=False))
    async def feedback(request: Request) -> FeedbackResponse:
        """Record the true label of a logged prediction (once)."""
        live = _live()
        if _bodies.body_kind(request.headers.get("content-type")) != "json":
            raise problems_error(415, [problem(f"send feedback as {_bodies.JSON_TYPE}")])
        body = _bodies.parse_json(await _read(request), FeedbackRequest)
        label = _known_label(live.served.model, body.label)
        await run_in_threadpool(_record_feedback, body.prediction_id, label)
        return FeedbackResponse()

    @app.post("/admin/reload", dependencies=[Depends(require_admin)],
              responses={401: {"description": "No admin token, or a wrong one."},
                         403: {"description": "Admin endpoints are disabled: LOOPML_ADMIN_TOKEN is not set."},
                         409: {"description": "The alias points at nothing, or its version cannot be loaded."}},
              response_model_exclude_none=True)
    async def reload() -> ReloadResponse:
        """Load the version the alias points at now (and the challenger, in a release), without waiting."""
        if challenger is not None:
            await refresh_challenger(force=True)
        try:
            swapped = await holder.refresh(force=True)
        except LoopmlError as exc:
            if holder.current is not None:
                metrics.reloads.labels(outcome="failed").inc()
            still = f"still serving version {holder.current.version}" if holder.current else "no model is served"
            raise HTTPException(409, detail=f"reload failed ({still}): {exc}") from exc
        live = _live()
        rival = _rival(live)
        return ReloadResponse(model_version=live.version, swapped=swapped,
                              challenger_version=rival.version if rival is not None else None)

    unguarded = unguarded_routes(app)
    if unguarded:  # deny by default: a new route must choose public or protected
        raise LoopmlError(f"routes neither public nor protected: {', '.join(unguarded)}")

    def openapi() -> dict[str, Any]:
        live = holder.current
        key = live.served.model_version.id if live else None
        if app.state.openapi_for != key:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                   description=f"Predictions of the {alias} model of '{project}'.")
            app.state.openapi = with_contract(document, [PredictRequest, FeedbackRequest],
                                              live.served.contract if live else None, live.version if live else None)
            app.state.openapi_for = key
        return app.state.openapi

    app.state.openapi_for = object()  # nothing built yet
    app.openapi = openapi  # type: ignore[method-assign]

    routes = frozenset(getattr(r, "path", "") for r in app.routes)
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)
    app.add_middleware(InflightLimit, max_inflight=max_inflight, exempt=frozenset({"/health", "/ready", "/metrics"}),
                       on_change=metrics.inflight.inc)
    app.add_middleware(WorkerHeader)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    return app


def serve(
    store: Store,
    project: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    alias: str = "champion",
    workers: int = 1,
    max_rows: int = 10_000,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_inflight: int = 64,
    reload_interval_s: float = 2.0,
    rollout: RolloutSpec | dict[str, Any] | None = None,
) -> None:
    """Serve ``alias`` of ``project`` until stopped (Ctrl-C), recording the deployment in the store.

    With ``workers`` > 1 each worker is its own process running :func:`app_from_env`; they share the
    port, the store and (summed) the metrics. Secrets come from ``LOOPML_API_KEY`` / ``LOOPML_ADMIN_TOKEN``.
    ``rollout``: the spec's ``maintenance.rollout``, for a shadow or canary release (see :func:`create_app`).

    >>> serve(Store.open("."), "benefits-outreach", port=8080, workers=4)   # doctest: +SKIP
    """
    options: dict[str, Any] = {"max_rows": max_rows, "max_body_bytes": max_body_bytes, "max_inflight": max_inflight,
                               "reload_interval_s": reload_interval_s}
    _check_limits(**options)
    plan = _rollout(rollout)
    if plan.mode != "direct":
        options["rollout"] = plan.model_dump(mode="json")
    if not isinstance(workers, int) or workers < 1:
        raise SpecError(f"workers must be a whole number of processes, at least 1; got {workers!r}")
    if workers > 1 and store.root is None:
        raise SpecError("serving with several workers needs a store opened with Store.open(root), "
                        "so that each worker can open it too")
    served = load_served_model(store, project, alias)  # fail here, with the reason, not inside uvicorn
    deployment = store.start_deployment(project, served.model_version.id, host, port)
    previous = _exit_cleanly_on_sigterm()
    try:
        if workers == 1:
            app = create_app(store, project, alias=alias, served=served, **options)
            uvicorn.run(app, host=host, port=port, workers=1, log_level="warning")
        else:
            with _worker_environment(store, project, alias, options):
                uvicorn.run(f"{__name__}:app_from_env", factory=True, host=host, port=port, workers=workers,
                            log_level="warning")
    finally:
        store.stop_deployment(deployment)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_cleanly_on_sigterm() -> Any:
    # uvicorn drains, then re-raises SIGTERM to the handler it found; make that handler end the process
    # through SystemExit, so the deployment is closed and the exit code is 0 for a requested stop.
    if threading.current_thread() is not threading.main_thread():
        return None

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    return signal.signal(signal.SIGTERM, _stop)


def app_from_env() -> FastAPI:
    """The app described by ``LOOPML_SERVE_*`` variables: what each worker of ``serve(workers=N)`` runs.

    ``LOOPML_SERVE_ROOT`` (the project folder) and ``LOOPML_SERVE_PROJECT`` are required;
    ``LOOPML_SERVE_ALIAS``, ``LOOPML_SERVE_DB``, ``LOOPML_SERVE_ARTIFACTS`` and ``LOOPML_SERVE_OPTIONS``
    (JSON of ``create_app`` limits) are optional. It also suits any ASGI server with an app factory:

    >>> # LOOPML_SERVE_ROOT=. LOOPML_SERVE_PROJECT=benefits-outreach \\
    >>> #   uvicorn --factory loopml.operations.serve:app_from_env --workers 4
    """
    missing = [name for name in (ENV_ROOT, ENV_PROJECT) if not os.environ.get(name)]
    if missing:
        raise SpecError(f"app_from_env: set {' and '.join(missing)} (the project folder and the project name)")
    try:
        options = json.loads(os.environ.get(ENV_OPTIONS) or "{}")
    except json.JSONDecodeError as exc:
        raise SpecError(f"{ENV_OPTIONS} is not valid JSON ({exc}); expected e.g. {{\"max_rows\": 10000}}") from None
    unknown = sorted(set(options) - set(_OPTIONS)) if isinstance(options, dict) else ["(not an object)"]
    if unknown:
        raise SpecError(f"{ENV_OPTIONS}: unknown keys {', '.join(unknown)}; allowed: {', '.join(_OPTIONS)}")
    store = Store.open(os.environ[ENV_ROOT], url=os.environ.get(ENV_DB) or None)
    if os.environ.get(ENV_ARTIFACTS):
        store.artifacts = ArtifactStore(os.environ[ENV_ARTIFACTS])
    return create_app(store, os.environ[ENV_PROJECT], alias=os.environ.get(ENV_ALIAS) or "champion", **options)


# -- helpers -------------------------------------------------------------------------------------


def _rollout(value: RolloutSpec | dict[str, Any] | None) -> RolloutSpec:
    """The release plan: the spec's ``maintenance.rollout`` (or the same as a mapping); none is ``direct``."""
    if value is None or isinstance(value, RolloutSpec):
        return value or RolloutSpec()
    if not isinstance(value, dict):
        raise SpecError(f"rollout must be the spec's maintenance.rollout (a RolloutSpec) or a mapping such as "
                        f"{{'mode': 'canary', 'canary_share': 0.1}}; got {type(value).__name__}")
    try:
        return RolloutSpec.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rollout'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise SpecError(f"rollout: {problems}") from None


def _check_limits(*, max_rows: int, max_body_bytes: int, max_inflight: int, reload_interval_s: float) -> None:
    for name, value in (("max_rows", max_rows), ("max_body_bytes", max_body_bytes), ("max_inflight", max_inflight)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{name} must be a whole number of at least 1; got {value!r}")
    if isinstance(reload_interval_s, bool) or not isinstance(reload_interval_s, (int, float)) \
            or not math.isfinite(reload_interval_s) or reload_interval_s < 0:
        raise SpecError(f"reload_interval_s must be a number of seconds, 0 or more (0: never reload); "
                        f"got {reload_interval_s!r}")


@contextlib.contextmanager
def _worker_environment(store: Store, project: str, alias: str, options: dict[str, Any]) -> Iterator[None]:
    """Set what each worker's :func:`app_from_env` reads, and a shared metrics folder; restore after."""
    values = {ENV_ROOT: str(store.root), ENV_PROJECT: project, ENV_ALIAS: alias,
              ENV_DB: store.engine.url.render_as_string(hide_password=False),
              ENV_ARTIFACTS: str(store.artifacts.root), ENV_OPTIONS: json.dumps(options)}
    with contextlib.ExitStack() as stack:
        if not os.environ.get(MULTIPROC_ENV):
            values[MULTIPROC_ENV] = stack.enter_context(tempfile.TemporaryDirectory(prefix="loopml-metrics-"))
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


async def _read(request: Request) -> bytes:
    try:
        return await request.body()
    except ClientDisconnect:
        raise HTTPException(400, detail="the client closed the connection before the whole body arrived") from None


class _Refused(HTTPException):
    """The 422 for records that break ``live``'s contract, with what the rejection log and metrics count.

    Built where the records were checked (a worker thread for a batch), so the event loop only queues it.
    """

    def __init__(self, live: Live, errors: list[FieldError], request_rows: int):
        refused = problems_error(422, [
            problem(e.reason, row=e.row if e.row >= 0 else None, column=e.column or None) for e in errors])
        super().__init__(422, detail=refused.detail)
        self.rejected = rejection_rows(errors, request_rows=request_rows,
                                       model_version_id=live.served.model_version.id)
        self.columns = frozenset(live.served.contract.feature_names)


def _body_problems(detail: Any) -> list[FieldError]:
    """The problems of a body that could not be read as records, as errors of kind ``body``."""
    return [FieldError(-1, str(p.get("column") or ""), str(p.get("reason", "")), "body")
            for p in (detail if isinstance(detail, list) else [{"reason": str(detail)}]) if isinstance(p, dict)]


def _model_failed(live: Live, exc: LoopmlError) -> HTTPException:
    # Rows the contract accepted made the model fail: a fault of the served model, to log and fix.
    logger.error("loopml serve: version %d failed on rows its contract accepted: %s", live.version, exc)
    return problems_error(500, [problem(str(exc))])


def _new_ids(n: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(n)]


def _prediction(prediction_id: str, row: Any) -> dict[str, Any]:
    """The response entry of one record predicted alone (a micro-batch's row)."""
    return {"id": prediction_id, "prediction": row.label, "probability": row.probability,
            "probabilities": row.probabilities}


async def _one_row(live: Live, record: dict[str, Any]) -> Any:
    """One record through ``live``'s own contract, then its micro-batcher (or its pipeline, in a thread)."""
    errors = live.fast.validate([record])
    if errors:
        raise ContractViolation(errors)
    if live.batcher is not None:
        return await live.batcher.submit(record)
    return (await run_in_threadpool(live.fast.predict_records, [record]))[0]


def _predictions(result: CompiledPrediction, ids: list[str]) -> list[dict[str, Any]]:
    """One response entry per record, as plain Python values, under the given ``ids``."""
    labels = result.labels.tolist()
    n = len(labels)
    probability = result.probability.tolist() if result.probability is not None else [None] * n
    if result.probabilities is not None:
        names = [str(c) for c in result.classes]
        probabilities = [dict(zip(names, p, strict=True)) for p in result.probabilities.tolist()]
    else:
        probabilities = [None] * n
    return [
        {"id": i, "prediction": label, "probability": p, "probabilities": ps}
        for i, label, p, ps in zip(ids, labels, probability, probabilities, strict=True)
    ]


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    # Python's json reads NaN, but PostgreSQL's JSON does not store it: log it as null (missing).
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def _known_label(model: TrainedModel, label: Label) -> Any:
    """The label as the model knows it (its class value), or a 422 saying what is accepted."""
    if model.task == "regression":
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            raise problems_error(422, [problem(
                f"a regression label must be a finite number; got {label!r}", column="label")])
        return float(label)
    if isinstance(label, float) and label.is_integer():
        label = int(label)  # 1.0 from a JSON client is the class "1"
    known = {str(c): c for c in model.classes}
    if str(label) not in known:
        raise problems_error(422, [problem(
            f"unknown label {str(label)[:100]!r}; the model's classes are: {', '.join(known)}", column="label")])
    return known[str(label)]


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Every HTTP error as ``{"detail": ...}`` JSON that any client text can be encoded in."""
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return json_response({"detail": exc.detail}, status=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure (a bug of ours) as JSON too; the traceback goes to the server log."""
    return json_response({"detail": "internal error: the server failed on this request; see its log"}, status=500)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """A request FastAPI could not validate, as the same ``detail`` list as contract problems."""
    return json_response({"detail": [_bodies.request_problem(e) for e in exc.errors()]}, status=422)
