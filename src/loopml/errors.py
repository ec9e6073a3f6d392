"""One exception tree for loopml.

Every error a user can cause derives from :class:`LoopmlError` and carries a
message that names the problem and the fix. The CLI maps the tree onto exit
codes: bad input (spec, data, request) exits 2, anything else 3.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ComputeError",
    "ConflictError",
    "DataError",
    "LoopmlError",
    "ModelError",
    "NotFoundError",
    "SpecError",
    "StoreError",
]


class LoopmlError(Exception):
    """Base class of every error loopml raises on purpose."""

    exit_code = 3


class SpecError(LoopmlError, ValueError):
    """The project spec (``loopml.yaml``) is missing, malformed or inconsistent."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class DataError(LoopmlError, ValueError):
    """A data source cannot be read, or its content cannot serve the goal."""

    exit_code = 2


class ComputeError(LoopmlError):
    """The Dask cluster named by ``compute.dask`` (or ``--cluster``) cannot be reached or used: bad input."""

    exit_code = 2


class ModelError(LoopmlError):
    """Training, evaluating or loading a model failed."""


class StoreError(LoopmlError):
    """The metadata store cannot be opened, migrated or written."""


class ArtifactError(StoreError):
    """An artifact is missing, outside the artifact root, or fails its SHA-256 check."""


class NotFoundError(StoreError, LookupError):
    """A version, alias or prediction id that the store does not hold: bad input."""

    exit_code = 2


class ConflictError(StoreError):
    """A write that contradicts what is stored, such as a second label for one prediction."""

    exit_code = 2
