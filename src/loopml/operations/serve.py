"""Serve the champion over HTTP: validate against the data contract, predict, log, take feedback.

``create_app`` builds the FastAPI app (the model is loaded once, at startup); ``serve`` runs it
under uvicorn and records the deployment in the store.

>>> from loopml.store import Store
>>> app = create_app(Store.open(project_root), "benefits-outreach")    # doctest: +SKIP
>>> serve(Store.open(project_root), "benefits-outreach", port=8080)     # doctest: +SKIP

Endpoints: ``POST /predict`` (``{"row": {...}}`` or ``{"rows": [...]}``), ``POST /feedback``,
``GET /health`` (the process is up) and ``GET /ready`` (a model is loaded). Every bad input gets
a 4xx whose ``detail`` is a list of ``{"row", "column", "reason"}``, never a 500.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from loopml.data.contract import ContractViolation, DataContract
from loopml.errors import ConflictError, LoopmlError, ModelError, NotFoundError
from loopml.model.artifact import TrainedModel
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
    "ServedModel",
    "create_app",
    "load_served_model",
    "serve",
]

logger = logging.getLogger(__name__)

Label = str | bool | int | float


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
    model = TrainedModel.from_bytes(store.read_model(mv))
    try:
        contract = DataContract.model_validate(store.snapshot(mv.snapshot_id).contract)
    except ValidationError as exc:
        raise ModelError(f"the data contract of snapshot {mv.snapshot_id} (model version {mv.version}) "
                         f"is not valid, so requests cannot be checked: {exc}") from exc
    return ServedModel(project=project, model_version=mv, model=model, contract=contract)


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
    model_version: int
    predictions: list[Prediction]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(description="The `id` POST /predict returned.")
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


_PROBLEMS = {"model": ProblemResponse}


# -- the app -------------------------------------------------------------------------------------


def create_app(
    store: Store,
    project: str,
    *,
    alias: str = "champion",
    max_rows: int = 10_000,
    served: ServedModel | None = None,
) -> FastAPI:
    """The serving app for ``project``; it loads the model ``alias`` points at when it starts.

    Pass ``served`` to serve a model already loaded (``serve`` does, so that the deployment it
    records names the version actually served). If loading fails, ``/ready`` answers 503 with the
    reason and ``/predict`` refuses, while ``/health`` still answers.

    >>> import httpx                                                         # doctest: +SKIP
    >>> app = create_app(store, "benefits-outreach")                         # doctest: +SKIP
    >>> httpx.post(url + "/predict", json={"row": {"age": 41, ...}}).json()  # doctest: +SKIP
    {'model_version': 1, 'predictions': [{'id': '9f0c...', 'prediction': 'yes', 'probability': 0.81, ...}]}
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.served is None:
            try:
                app.state.served = load_served_model(store, project, alias)
            except LoopmlError as exc:
                # Stay up and say why on /ready, so an orchestrator's probe shows the cause.
                app.state.load_error = str(exc)
                logger.warning("loopml serve: no model loaded: %s", exc)
        yield

    app = FastAPI(title=f"loopml: {project}", lifespan=lifespan)
    app.state.served = served
    app.state.load_error = "the model is still loading"
    app.add_exception_handler(RequestValidationError, _invalid_request)

    def _served() -> ServedModel:
        if app.state.served is None:
            raise HTTPException(503, detail=f"no model loaded: {app.state.load_error}")
        return app.state.served

    @app.get("/health")
    def health() -> HealthResponse:
        """The process is up (it may still have no model; see /ready)."""
        return HealthResponse()

    @app.get("/ready", responses={503: {"description": "No model loaded; `detail` says why."}})
    def ready() -> ReadyResponse:
        """A model is loaded and predictions will be served."""
        return ReadyResponse(model_version=_served().model_version.version)

    @app.post("/predict", responses={413: _PROBLEMS, 422: _PROBLEMS, 503: {"description": "No model loaded."}})
    def predict(body: PredictRequest) -> PredictResponse:
        """Predict one record or a batch; each prediction is logged under the id it returns."""
        s = _served()
        records = body.records
        if len(records) > max_rows:
            raise HTTPException(413, detail=[_problem(
                f"a batch of {len(records):,} rows is over the limit of {max_rows:,} rows per request; "
                "send smaller batches")])
        start = time.perf_counter()
        try:
            X = s.contract.validate_records(records)
        except ContractViolation as exc:
            raise HTTPException(422, detail=[
                _problem(e.reason, row=e.row if e.row >= 0 else None, column=e.column or None) for e in exc.errors
            ]) from exc
        predictions = _predict(s.model, X)
        latency_ms = (time.perf_counter() - start) * 1000 / len(records)
        store.log_predictions(project, s.model_version.id, [
            {"id": p.id, "features": _json_safe(r), "prediction": p.prediction, "probability": p.probability,
             "latency_ms": latency_ms}
            for p, r in zip(predictions, records, strict=True)
        ])
        return PredictResponse(model_version=s.model_version.version, predictions=predictions)

    @app.post("/feedback", responses={404: {"description": "Unknown prediction id."},
                                      409: {"description": "The prediction already has a label."},
                                      422: _PROBLEMS})
    def feedback(body: FeedbackRequest) -> FeedbackResponse:
        """Record the true label of a logged prediction (once)."""
        label = _known_label(_served().model, body.label)
        try:
            store.record_feedback(project, body.prediction_id, label)
        except NotFoundError as exc:
            raise HTTPException(404, detail=str(exc)) from exc
        except ConflictError as exc:
            raise HTTPException(409, detail=str(exc)) from exc
        return FeedbackResponse()

    return app


def serve(store: Store, project: str, *, host: str = "127.0.0.1", port: int = 8080, alias: str = "champion") -> None:
    """Serve ``alias`` of ``project`` until stopped (Ctrl-C), recording the deployment in the store.

    >>> serve(Store.open("."), "benefits-outreach", port=8080)   # doctest: +SKIP
    """
    served = load_served_model(store, project, alias)  # fail here, with the reason, not inside uvicorn
    app = create_app(store, project, alias=alias, served=served)
    deployment = store.start_deployment(project, served.model_version.id, host, port)
    try:
        uvicorn.run(app, host=host, port=port, workers=1, log_level="warning")
    finally:
        store.stop_deployment(deployment)


# -- helpers -------------------------------------------------------------------------------------


def _problem(reason: str, *, row: int | None = None, column: str | None = None) -> dict[str, Any]:
    return Problem(row=row, column=column, reason=reason).model_dump()


def _predict(model: TrainedModel, X) -> list[Prediction]:
    # model.predict applies the operating point (binary threshold), so serving and evaluation agree.
    labels = model.predict(X).tolist()
    n = len(labels)
    probability: list[float | None] = [None] * n
    probabilities: list[dict[str, float] | None] = [None] * n
    if model.task == "binary":
        probability = model.predict_proba(X)[:, 1].tolist()
    elif model.task == "multiclass":
        P = model.predict_proba(X)
        probability = P.max(axis=1).tolist()
        names = [str(c) for c in model.classes]
        probabilities = [dict(zip(names, p, strict=True)) for p in P.tolist()]
    return [
        Prediction(id=uuid.uuid4().hex, prediction=label, probability=p, probabilities=ps)
        for label, p, ps in zip(labels, probability, probabilities, strict=True)
    ]


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    # Python's json reads NaN, but PostgreSQL's JSON does not store it: log it as null (missing).
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def _known_label(model: TrainedModel, label: Label) -> Any:
    """The label as the model knows it (its class value), or a 422 saying what is accepted."""
    if model.task == "regression":
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            raise HTTPException(422, detail=[_problem(
                f"a regression label must be a finite number; got {label!r}", column="label")])
        return float(label)
    if isinstance(label, float) and label.is_integer():
        label = int(label)  # 1.0 from a JSON client is the class "1"
    known = {str(c): c for c in model.classes}
    if str(label) not in known:
        raise HTTPException(422, detail=[_problem(
            f"unknown label {label!r}; the model's classes are: {', '.join(known)}", column="label")])
    return known[str(label)]


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body FastAPI could not parse or validate, as the same ``detail`` list as contract problems."""
    return JSONResponse(status_code=422, content={"detail": [_request_problem(e) for e in exc.errors()]})


def _request_problem(error: dict[str, Any]) -> dict[str, Any]:
    # The default handler echoes the input back, and a NaN in it cannot be encoded (a 500):
    # report only where and why.
    loc = list(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        cause = (error.get("ctx") or {}).get("error", "cannot be parsed")
        at = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return _problem(f"the body is not valid JSON: {cause}{at}")
    inner = loc[1:] if loc[:1] == ["body"] else loc
    row = column = None
    if inner[:1] == ["rows"] and len(inner) > 1 and isinstance(inner[1], int):
        row = inner[1]
        column = str(inner[2]) if len(inner) > 2 else None
    elif inner[:1] == ["row"]:
        row = 0
        column = str(inner[1]) if len(inner) > 1 else None
    path = "body" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inner)
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return _problem(f"{path}: {message}", row=row, column=column)
