"""The Operations stage: serve the champion over HTTP, log predictions and take feedback.

>>> from loopml.operations import create_app, serve   # doctest: +SKIP
"""

from loopml.operations.serve import (
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
    Problem,
    ProblemResponse,
    ReadyResponse,
    ServedModel,
    create_app,
    load_served_model,
    serve,
)

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
