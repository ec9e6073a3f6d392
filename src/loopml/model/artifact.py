"""The trained model as it is registered and served: plain JSON state, never pickle.

A :class:`TrainedModel` holds the learned cleaning (:class:`~loopml.data.cleaner.Cleaner`, optional),
the :class:`~loopml.model.features.Preprocessor`, the estimator's numbers (a LightGBM model string,
linear coefficients, the node arrays of a random forest or extra trees, or an ensemble of these with
weights), the probability calibration and the operating point: the binary decision threshold, or the
multiclass per-class costs its decisions weigh. Loading it only parses JSON and numbers, so a model file
can never run code; linear and forest predictions are numpy. A model trained with the user's feature
hook names it (``feature_hook``) and calls it first at prediction: the hook's module is imported from
the project folder given at load (``TrainedModel.from_bytes(data, root=...)``), which the file never stores.

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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.cleaner import Cleaner
from loopml.errors import DataError, ModelError
from loopml.model._operating import decide
from loopml.model.features import _HOOK, FeatureHook, Preprocessor, call_feature_hook, load_feature_hook

__all__ = ["FORMAT", "TrainedModel"]

FORMAT = "loopml.model/1"
_TASKS = ("binary", "multiclass", "regression")
# The preprocessor encoding each estimator family reads; "ensemble" holds members of these.
KIND = {"linear": "linear", "lightgbm": "tree", "random_forest": "tree", "extra_trees": "tree"}
_FAMILIES = (*KIND, "ensemble")
_STATE_KEY = {"linear": "coef", "lightgbm": "booster", "random_forest": "roots", "extra_trees": "roots",
              "ensemble": "members"}


def _plain(value: Any) -> Any:
    """A label as a JSON-safe Python value (numpy scalars become int/float/str/bool)."""
    return value.item() if isinstance(value, np.generic) else value


def raw_scores(family: str, state: dict[str, Any], Z: np.ndarray, task: str, cache: dict[str, Any]) -> np.ndarray:
    """One estimator's output on encoded rows: P(positive) (binary), n×k probabilities or values.

    ``cache`` keeps what is slow to rebuild from the state (a LightGBM booster, unpacked tree arrays).
    """
    if family == "lightgbm":
        if "booster" not in cache:
            import lightgbm as lgb

            cache["booster"] = lgb.Booster(model_str=state["booster"])
        # One thread for small batches: OpenMP start-up dominates single-row serving latency.
        threads = 1 if len(Z) < 1000 else 0
        return np.asarray(cache["booster"].predict(Z, num_threads=threads), dtype=float)
    if family in ("random_forest", "extra_trees"):
        from loopml.model._forest import _Arrays, predict_forest

        if "forest" not in cache:
            cache["forest"] = state if isinstance(state, _Arrays) else _Arrays(state)
        return predict_forest(cache["forest"], Z)
    coef = np.asarray(state["coef"], dtype=float)
    intercept = np.asarray(state["intercept"], dtype=float)
    if task == "regression":
        return Z @ coef.reshape(-1) + float(intercept.reshape(-1)[0])
    logits = Z @ coef.T + intercept
    if task == "binary":
        return 1.0 / (1.0 + np.exp(-logits[:, 0]))
    logits -= logits.max(axis=1, keepdims=True)  # softmax without overflow
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def _costs(values: Any) -> list[float]:
    """Per-class costs as floats; a file that holds anything else is refused."""
    if not isinstance(values, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                    for v in values):
        raise ModelError(f"class_costs must be a list of numbers, one per class; got {values!r}")
    return [float(v) for v in values]


class TrainedModel:
    """A fitted model: learned cleaning, preprocessing, estimator state, calibration, labels and the threshold.

    ``state`` by ``family``: ``{"booster": <LightGBM model string>}`` (``lightgbm``);
    ``{"coef": ..., "intercept": ...}`` (``linear``, sklearn's shapes, as lists); the packed node
    arrays of every tree (``random_forest``, ``extra_trees``, see :mod:`loopml.model._forest`);
    ``{"members": [{"family", "params", "state", "weight"}, ...]}`` (``ensemble``: the weighted
    average of its members' outputs, all reading the one cleaner and preprocessor).
    Classification scores are over ``classes`` in order; binary ``classes`` are
    ``[negative, positive]``. ``cleaner``, when given, is applied to the input before the preprocessor,
    exactly as it was to the training rows. ``calibration`` (sigmoid a, b or isotonic x, y per
    calibrated column; see :mod:`loopml.model._calibration`) maps raw scores to the probabilities
    :meth:`predict_proba` returns and the binary ``threshold`` applies to. ``class_costs`` (multiclass,
    one per class, in the order of ``classes``) make :meth:`predict` choose the class maximising
    p_k * c_k, the lowest expected cost of a miss. ``feature_hook`` ("module:function") is applied to the
    input before everything else, imported from ``root`` (the project folder; not stored in the file).
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
        cleaner: Cleaner | None = None,
        calibration: dict[str, Any] | None = None,
        class_costs: list[float] | None = None,
        feature_hook: str | None = None,
        root: str | Path | None = None,
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
        self.cleaner = cleaner
        self.calibration = calibration
        self.class_costs = None if class_costs is None else _costs(class_costs)
        self.feature_hook = feature_hook
        self._root = None if root is None else Path(root)  # private: where the code lives is not model state
        self._hook: tuple[Path, FeatureHook] | None = None  # (root, function): imported once per root
        self._cache: dict[int, dict[str, Any]] = {}
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
        if not isinstance(self.state, dict):
            raise ModelError(f"state must be a mapping; got {type(self.state).__name__}")
        key = _STATE_KEY[self.family]
        if key not in self.state:
            raise ModelError(f"state of a {self.family} model needs '{key}'; found keys {sorted(self.state)}")
        if self.family == "ensemble":
            members = self.state["members"]
            if not isinstance(members, list) or not members:
                raise ModelError("an ensemble needs a non-empty list of members")
            for i, m in enumerate(members):
                if not isinstance(m, dict) or m.get("family") not in KIND or not isinstance(m.get("state"), dict):
                    raise ModelError(f"ensemble member {i} needs a family among {', '.join(KIND)} and a state")
                weight = m.get("weight")
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
                    raise ModelError(f"ensemble member {i} needs a weight in (0, 1]; got {weight!r}")
                if _STATE_KEY[m["family"]] not in m["state"]:
                    raise ModelError(f"state of ensemble member {i} ({m['family']}) needs '{_STATE_KEY[m['family']]}'")
        if self.calibration is not None:
            if self.task == "regression":
                raise ModelError("a regression model has no probabilities to calibrate")
            cal = self.calibration
            method = cal.get("method") if isinstance(cal, dict) else None
            if method not in ("sigmoid", "isotonic"):
                raise ModelError(f"calibration method must be sigmoid or isotonic; got {method!r}")
            columns = 1 if self.task == "binary" else len(self.classes)
            keys = ("a", "b") if method == "sigmoid" else ("x", "y")
            if not all(isinstance(cal.get(k), list) and len(cal[k]) == columns for k in keys) or (
                    method == "isotonic" and any(not isinstance(x, list) or not x or not isinstance(v, list)
                                                 or len(x) != len(v) for x, v in zip(cal["x"], cal["y"], strict=True))):
                raise ModelError(f"calibration state is malformed: {method} needs {' and '.join(keys)} "
                                 f"for each of {columns} column(s)")
        if self.class_costs is not None:
            if self.task != "multiclass":
                raise ModelError(f"class_costs weigh multiclass decisions; this model's task is {self.task!r}")
            if len(self.class_costs) != len(self.classes) or not all(np.isfinite(c) and c > 0
                                                                     for c in self.class_costs):
                raise ModelError(f"class_costs need one positive cost per class ({len(self.classes)}); "
                                 f"got {self.class_costs!r}")
        if self.feature_hook is not None and (not isinstance(self.feature_hook, str)
                                              or not _HOOK.match(self.feature_hook)):
            raise ModelError(f"feature_hook must be 'module:function'; got {self.feature_hook!r}")
        for i, (family, state, _) in enumerate(self.members):
            if family in ("random_forest", "extra_trees"):  # decode and check the node arrays once, now
                from loopml.model._forest import _Arrays

                self._cache.setdefault(i, {})["forest"] = _Arrays(state)

    def __repr__(self) -> str:
        extra = f", threshold={self.threshold:.4g}" if self.threshold is not None else ""
        extra += f", feature_hook={self.feature_hook!r}" if self.feature_hook else ""
        return f"TrainedModel(task={self.task!r}, family={self.family!r}, target={self.target!r}{extra})"

    @property
    def root(self) -> Path | None:
        """The project folder the feature hook is imported from (never stored in the model file)."""
        return self._root

    @root.setter
    def root(self, folder: str | Path | None) -> None:
        self._root = None if folder is None else Path(folder)

    @property
    def kind(self) -> str:
        """The preprocessor encoding this family uses (an ensemble: its first member's)."""
        family = self.state["members"][0]["family"] if self.family == "ensemble" else self.family
        return KIND[family]

    @property
    def members(self) -> list[tuple[str, dict[str, Any], float]]:
        """(family, state, weight) of each estimator whose outputs are averaged (one for a single model)."""
        if self.family == "ensemble":
            return [(m["family"], m["state"], float(m["weight"])) for m in self.state["members"]]
        return [(self.family, self.state, 1.0)]

    # -- prediction ----------------------------------------------------------------------------
    def _apply_hook(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` through the model's feature hook (unchanged without one), as at training.

        The hook's module is imported from :attr:`root` once; without a root it cannot be found.
        """
        if self.feature_hook is None:
            return X
        if self.root is None:
            raise ModelError(f"this model applies the feature hook '{self.feature_hook}', which is imported from "
                             "the project folder, and it was loaded without one: load it with "
                             "TrainedModel.from_bytes(data, root=PROJECT_FOLDER) (the folder of loopml.yaml)")
        if self._hook is None or self._hook[0] != self.root:
            self._hook = (self.root, load_feature_hook(self.feature_hook, self.root))
        return call_feature_hook(self._hook[1], X, self.feature_hook)

    def _raw_scores(self, X: pd.DataFrame) -> np.ndarray:
        """Model output before calibration: P(positive) (binary), n×k probabilities (multiclass) or values."""
        X = self._apply_hook(X)
        if self.cleaner:
            X = self.cleaner.transform(X)
        encoded: dict[str, np.ndarray] = {}
        out = None
        for i, (family, state, weight) in enumerate(self.members):
            kind = KIND[family]
            if kind not in encoded:
                encoded[kind] = self.preprocessor.transform(X, kind)
            s = raw_scores(family, state, encoded[kind], self.task, self._cache.setdefault(i, {}))
            # Added in member order, exactly as the search combined the out-of-fold scores.
            out = s if self.family != "ensemble" else (weight * s if out is None else out + weight * s)
        return out

    def _scores(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated output: P(positive) (binary), n×k probabilities (multiclass) or values."""
        s = self._raw_scores(X)
        if self.calibration is None:
            return s
        from loopml.model._calibration import apply

        return apply(self.calibration, s, self.task)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated class probabilities, n×k over ``classes`` (binary: columns [negative, positive])."""
        if self.task == "regression":
            raise ModelError("predict_proba needs a classification model; this one is regression, use predict")
        p = self._scores(X)
        return np.column_stack([1.0 - p, p]) if self.task == "binary" else p

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted labels in the original label values, or values.

        Binary: P(positive) >= threshold. Multiclass: the most probable class, or with ``class_costs``
        the class maximising p_k * c_k.
        """
        s = self._scores(X)
        if self.task == "regression":
            return s
        labels = np.asarray(self.classes)
        if self.task == "binary":
            threshold = 0.5 if self.threshold is None else self.threshold
            return labels[(s >= threshold).astype(int)]
        return labels[decide(s, self.class_costs)]

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
            "cleaner": self.cleaner.to_dict() if self.cleaner else None,
            "preprocessor": self.preprocessor.to_dict(),
            "state": self.state,
            "calibration": self.calibration,
            "class_costs": self.class_costs,
            "feature_hook": self.feature_hook,
            "versions": {"numpy": np.__version__, "lightgbm": lightgbm.__version__,
                         "scikit-learn": sklearn.__version__},
        }

    def to_bytes(self) -> bytes:
        """UTF-8 JSON with a ``"format": "loopml.model/1"`` header; floats round-trip exactly."""
        try:
            return json.dumps(self.to_dict(), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ModelError(f"model state is not JSON-safe: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes, *, root: str | Path | None = None) -> TrainedModel:
        """Load a model written by :meth:`to_bytes`; anything else raises :class:`ModelError`.

        ``root`` is the project folder (that of ``loopml.yaml``) a model's feature hook is imported from;
        a model with a hook needs it to predict.
        """
        if not isinstance(data, (bytes, bytearray)):
            raise ModelError(f"expected the model file's bytes; got {type(data).__name__}")
        from loopml.store.artifacts import pickle_family

        if (kind := pickle_family(data)) is not None:
            raise ModelError(f"refusing to load: pickle-family files can run code on load; loopml stores models as "
                             f"JSON, and this is {kind}")
        try:
            d = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"not a loopml model: the bytes are not UTF-8 JSON ({exc})") from exc
        found = d.get("format") if isinstance(d, dict) else None
        if found != FORMAT:
            raise ModelError(f"not a loopml model: format is {found!r}; expected {FORMAT!r}")
        try:
            # Models written before the cleaner existed have no "cleaner" key: they clip nothing.
            cleaner = Cleaner.from_dict(d["cleaner"]) if d.get("cleaner") else None
            return cls(
                task=d["task"], target=d["target"], family=d["family"],
                preprocessor=Preprocessor.from_dict(d["preprocessor"]), state=d["state"],
                classes=d.get("classes"), positive=d.get("positive"), threshold=d.get("threshold"),
                params=d.get("params"), cleaner=cleaner, calibration=d.get("calibration"),
                class_costs=d.get("class_costs"), feature_hook=d.get("feature_hook"), root=root,
            )
        except KeyError as exc:
            raise ModelError(f"loopml model file lacks the key {exc}") from exc
        except DataError as exc:
            raise ModelError(f"loopml model file: {exc}") from exc
