"""The Model stage: features, candidate search, evaluation on the locked holdout, diagnosis.

>>> from loopml.model import SearchPlan
>>> SearchPlan(families=("linear", "lightgbm")).describe()
'linear, LightGBM + up to 200 Optuna trials in the time budget, greedy ensemble, 5-fold cross-validation, seed 0'
"""

from loopml.model.artifact import TrainedModel
from loopml.model.evaluate import Diagnosis, Evaluation, diagnose, evaluate, predict_latency_ms
from loopml.model.features import Preprocessor
from loopml.model.search import CandidateResult, SearchPlan, SearchResult, search, split_holdout

__all__ = [
    "CandidateResult",
    "Diagnosis",
    "Evaluation",
    "Preprocessor",
    "SearchPlan",
    "SearchResult",
    "TrainedModel",
    "diagnose",
    "evaluate",
    "predict_latency_ms",
    "search",
    "split_holdout",
]
