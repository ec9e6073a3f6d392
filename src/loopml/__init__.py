"""loopml: the applied-ML process as one closed loop.

A business goal, stated once in ``loopml.yaml``, drives data collection and
cleaning, model search and evaluation, serving and maintenance; when a gate
fails, the loop goes back to the stage that can fix it.

>>> import loopml
>>> spec = loopml.load_spec("examples/benefits/loopml.yaml")   # doctest: +SKIP
>>> result = loopml.run_project(spec, loopml.Store.open(spec.root))  # doctest: +SKIP
>>> loopml.project_report(loopml.Store.open(spec.root), spec.project)  # doctest: +SKIP
"""

from loopml.decisions import Decision
from loopml.errors import (
    ArtifactError,
    ConflictError,
    DataError,
    LoopmlError,
    ModelError,
    NotFoundError,
    SpecError,
    StoreError,
)
from loopml.process import MaintainResult, RunResult, maintain_project, run_project
from loopml.report import Report, project_report
from loopml.spec import ProjectSpec, load_spec
from loopml.store import Store

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "ConflictError",
    "DataError",
    "Decision",
    "LoopmlError",
    "MaintainResult",
    "ModelError",
    "NotFoundError",
    "ProjectSpec",
    "Report",
    "RunResult",
    "SpecError",
    "Store",
    "StoreError",
    "load_spec",
    "maintain_project",
    "project_report",
    "run_project",
]
