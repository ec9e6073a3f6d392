"""The trained model as it is registered and served: plain JSON state, never pickle.

A :class:`TrainedModel` holds the :class:`~loopml.model.features.Preprocessor`, the estimator's
numbers (a LightGBM model string, or linear coefficients) and the decision threshold. Loading it
only parses JSON and numbers, so a model file can never run code; linear predictions are numpy.

>>> import pandas as pd
>>> from loopml.model.features import Preprocessor
>>> pre = Preprocessor().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0]}))
>>> m = TrainedModel(task="regression", target="y", family="linear", preprocessor=pre,
...                  state={"coef": [2.0], "intercept": 1.0})
>>> TrainedModel.from_bytes(m.to_bytes()).predict(pd.DataFrame({"x": [1.0]})).round(6).tolist()
[1.0]
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ModelError
from loopml.model.features import Preprocessor

__all__ = ["FORMAT", "TrainedModel"]

FORMAT = "loopml.model/1"
_TASKS = ("binary", "multiclass", "regression")
_FAMILIES = ("linear", "lightgbm")


def _plain(value: Any) -> Any:
    """A label as a JSON-safe Python value (numpy scalars become int/float/str/bool)."""
    return value.item() if isinstance(value, np.generic) else value


class TrainedModel:
    """A fitted model: preprocessing, estimator state, labels and the binary decision threshold.

    ``state`` is ``{"booster": <LightGBM model string>}`` for ``family="lightgbm"`` and
    ``{"coef": ..., "intercept": ...}`` for ``family="linear"`` (sklearn's shapes, as lists).
    Classification scores are over ``classes`` in order; binary ``classes`` are
    ``[negative, positive]``.
    """

    def __init__(
        self,
        *,
        task: str,
        target: str,
        family: str,
        preprocessor: Preprocessor,
        state: dict[str, Any],
        classes: list | None = None,
        positive: Any = None,
        threshold: float | None = None,
        params: dict[str, Any] | None = None,
    ):
        self.task = task
        self.target = target
        self.family = family
        self.preprocessor = preprocessor
        self.state = state
        self.classes = [_plain(c) for c in classes] if classes is not None else []
        self.positive = _plain(positive)
        self.threshold = None if threshold is None else float(threshold)
        self.params = dict(params or {})
        self._booster = None
        self._validate()

    def _validate(self) -> None:
        if self.task not in _TASKS:
            raise ModelError(f"task must be one of {', '.join(_TASKS)}; got {self.task!r} instead")
        if self.family not in _FAMILIES:
            raise ModelError(f"family must be one of {', '.join(_FAMILIES)}; got {self.family!r} instead")
        if self.task == "binary" and len(self.classes) != 2:
            raise ModelError(f"a binary model needs 2 classes [negative, positive]; got {self.classes!r}")
        if self.task == "multiclass" and len(self.classes) < 3:
            raise ModelError(f"a multiclass model needs at least 3 classes; got {self.classes!r}")
        key = "booster" if self.family == "lightgbm" else "coef"
        if key not in self.state:
            raise ModelError(f"state of a {self.family} model needs '{key}'; found keys {sorted(self.state)}")

    def __repr__(self) -> str:
        extra = f", threshold={self.threshold:.4g}" if self.threshold is not None else ""
        return f"TrainedModel(task={self.task!r}, family={self.family!r}, target={self.target!r}{extra})"

    @property
    def kind(self) -> str:
        """The preprocessor encoding this family uses."""
        return "tree" if self.family == "lightgbm" else "linear"

    # -- prediction ----------------------------------------------------------------------------
    def _scores(self, X: pd.DataFrame) -> np.ndarray:
        """Raw model output: P(positive) (binary), n×k probabilities (multiclass) or values."""
        Z = self.preprocessor.transform(X, self.kind)
        if self.family == "lightgbm":
            if self._booster is None:
                import lightgbm as lgb

                self._booster = lgb.Booster(model_str=self.state["booster"])
            # One thread for small batches: OpenMP start-up dominates single-row serving latency.
            threads = 1 if len(Z) < 1000 else 0
            return np.asarray(self._booster.predict(Z, num_threads=threads), dtype=float)
        coef = np.asarray(self.state["coef"], dtype=float)
        intercept = np.asarray(self.state["intercept"], dtype=float)
        if self.task == "regression":
            return Z @ coef.reshape(-1) + float(intercept.reshape(-1)[0])
        logits = Z @ coef.T + intercept
        if self.task == "binary":
            return 1.0 / (1.0 + np.exp(-logits[:, 0]))
        logits -= logits.max(axis=1, keepdims=True)  # softmax without overflow
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, n×k over ``classes`` (binary: columns [negative, positive])."""
        if self.task == "regression":
            raise ModelError("predict_proba needs a classification model; this one is regression, use predict")
        p = self._scores(X)
        return np.column_stack([1.0 - p, p]) if self.task == "binary" else p

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted labels in the original label values (binary: P(positive) >= threshold), or values."""
        s = self._scores(X)
        if self.task == "regression":
            return s
        labels = np.asarray(self.classes)
        if self.task == "binary":
            threshold = 0.5 if self.threshold is None else self.threshold
            return labels[(s >= threshold).astype(int)]
        return labels[s.argmax(axis=1)]

    # -- storage -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to predict, as JSON-safe values."""
        import lightgbm
        import sklearn

        return {
            "format": FORMAT,
            "task": self.task,
            "target": self.target,
            "classes": self.classes,
            "positive": self.positive,
            "threshold": self.threshold,
            "family": self.family,
            "params": self.params,
            "preprocessor": self.preprocessor.to_dict(),
            "state": self.state,
            "versions": {"numpy": np.__version__, "lightgbm": lightgbm.__version__, "scikit-learn": sklearn.__version__},
        }

    def to_bytes(self) -> bytes:
        """UTF-8 JSON with a ``"format": "loopml.model/1"`` header; floats round-trip exactly."""
        try:
            return json.dumps(self.to_dict(), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ModelError(f"model state is not JSON-safe: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedModel:
        """Load a model written by :meth:`to_bytes`; anything else raises :class:`ModelError`."""
        if not isinstance(data, (bytes, bytearray)):
            raise ModelError(f"expected the model file's bytes; got {type(data).__name__}")
        if data[:1] == b"\x80":
            raise ModelError("refusing to load: pickle-family files can run code on load; loopml stores models as JSON")
        try:
            d = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"not a loopml model: the bytes are not UTF-8 JSON ({exc})") from exc
        found = d.get("format") if isinstance(d, dict) else None
        if found != FORMAT:
            raise ModelError(f"not a loopml model: format is {found!r}; expected {FORMAT!r}")
        try:
            return cls(
                task=d["task"], target=d["target"], family=d["family"],
                preprocessor=Preprocessor.from_dict(d["preprocessor"]), state=d["state"],
                classes=d.get("classes"), positive=d.get("positive"), threshold=d.get("threshold"),
                params=d.get("params"),
            )
        except KeyError as exc:
            raise ModelError(f"loopml model file lacks the key {exc}") from exc
