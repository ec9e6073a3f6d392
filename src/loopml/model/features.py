"""Feature engineering: one :class:`Preprocessor`, fit on training rows, applied unchanged at serving.

Each training column becomes one of:

- **numeric**: median imputation, plus a ``<col>__missing`` indicator where training had gaps;
- **categorical** (text labels, booleans): levels seen fewer than ``min_count`` times, and any level
  unseen in training, fold into ``"__rare__"``. ``"tree"`` gets integer codes (LightGBM treats them as
  categorical); ``"linear"`` gets one-hot levels, or — for more than 30 distinct levels when ``y`` is
  given — out-of-fold target encoding (``<col>__target``; one column per class for multiclass);
- **datetime** (a datetime dtype, or text that one date format parses for ≥ 95% of values):
  ``__year``, ``__month``, ``__dayofweek``, ``__hour`` (when training had times) and ``__days``
  since the earliest training date; the raw value is not a feature;
- **text** (mean length > 30, mostly distinct): TF-IDF reduced to ``__svd0``… by a seeded SVD;
- **dropped**, with the reason in :attr:`Preprocessor.dropped`: constant columns, and id-like ones
  (a different value in every row: text labels, or integers named like an id or numbering the rows).

``"linear"`` standardises every number. Everything learned is JSON (:meth:`Preprocessor.to_dict`).

>>> import pandas as pd
>>> X = pd.DataFrame({"age": [30, 40, None, 50, 60], "sex": ["f", "m", "f", "m", "f"], "k": [1] * 5})
>>> pre = Preprocessor(min_count=2).fit(X)
>>> pre.feature_names("linear"), pre.dropped
(['age', 'age__missing', 'sex=f', 'sex=m', 'sex=__rare__'], {'k': 'constant: every training row holds 1'})
>>> pre.transform(pd.DataFrame({"age": [None], "sex": ["x"]}), "tree").tolist()
[[45.0, 1.0, 2.0]]
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopml.errors import ModelError
from loopml.model import _dates, _encoding, _text

__all__ = ["Preprocessor", "apply_feature_hook", "feature_hook_sha256", "load_feature_hook"]

RARE = "__rare__"
MISSING = "__missing__"
Kind = Literal["tree", "linear"]
ONE_HOT_MAX = 30  # more distinct levels than this are target encoded for linear models (given y)
_MIN_ID_ROWS = 20  # fewer rows than this can be all distinct by chance
_MIN_ROW_NUMBER_ROWS = 100
_TEXT_MEAN_LENGTH = 30
_TEXT_DISTINCT_SHARE = 0.5
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _key(value: Any) -> str:
    """A categorical value as the string it is compared by (so 12, 12.0 and "12" are one level)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _keys(col: pd.Series) -> np.ndarray:
    """:func:`_key` of every value, computed once per distinct value on long columns."""
    if len(col) <= 64:  # serving-sized input: factorize costs more than it saves
        return np.array([_key(v) for v in col.tolist()], dtype=object)
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return np.array([_key(u) for u in uniques] + [MISSING], dtype=object)[codes]


def _is_categorical(dtype: Any) -> bool:
    return (
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _is_id_name(name: str) -> bool:
    tokens = re.split(r"[^a-z0-9]+", name.lower())
    return "id" in tokens or name.endswith(("Id", "ID"))


def _stats(values: np.ndarray) -> dict[str, Any]:
    """Median for imputing, mean and std (of the imputed values) for standardising, and whether any were missing."""
    missing = np.isnan(values)
    median = float(np.median(values[~missing])) if (~missing).any() else 0.0
    filled = np.where(missing, median, values)
    std = float(filled.std())
    return {"median": median, "mean": float(filled.mean()), "std": std if std > 0 else 1.0,
            "indicator": bool(missing.any())}


def _scaled(values: np.ndarray, stats: dict[str, Any], kind: Kind) -> np.ndarray:
    filled = np.where(np.isnan(values), stats.get("median", 0.0), values)
    return (filled - stats["mean"]) / stats["std"] if kind == "linear" else filled


class Preprocessor:
    """Learns, from training rows only, how to turn columns into numbers for a ``"tree"`` or ``"linear"`` model.

    ``min_count``: fewer rows than this make a categorical level rare. ``seed``: the target encoding's
    folds and the text SVD. Train a linear model on :meth:`fit_transform` (out-of-fold target codes);
    :meth:`transform` is for rows the preprocessor did not learn from.

    >>> import pandas as pd
    >>> pre = Preprocessor().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    >>> pre.transform(pd.DataFrame({"x": [2.0]}), "linear").tolist()
    [[0.0]]
    """

    def __init__(self, *, min_count: int = 5, seed: int = 0):
        self.min_count = min_count
        self.seed = seed
        self.numeric: list[dict[str, Any]] = []  # {name, median, mean, std, indicator}
        self.dates: list[dict[str, Any]] = []  # {name, format, reference, hour, parts: [{median,mean,std}], indicator}
        self.texts: list[dict[str, Any]] = []  # {name, vocabulary, idf, components, mean, std}
        self.categorical: list[dict[str, Any]] = []  # {name, levels[, target: {outputs, prior, means}]}
        self.dropped: dict[str, str] = {}  # column → why it is not a feature
        self._compiled: dict[str, _text.Compiled] = {}  # text state as arrays, built on first use

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Any = None) -> Preprocessor:
        """Learn every column's treatment from the training features ``X`` (and target ``y``, optional).

        ``y`` (floats for regression, labels otherwise) enables target encoding of high-cardinality
        categoricals for ``"linear"``; without it they are one-hot encoded.
        """
        self._fit(X, y)
        return self

    def fit_transform(self, X: pd.DataFrame, y: Any = None, *, kind: Kind) -> np.ndarray:
        """:meth:`fit`, then the training matrix, with out-of-fold target codes (no row encodes its own label).

        >>> import pandas as pd
        >>> X = pd.DataFrame({"city": [f"c{i % 40}" for i in range(80)]})
        >>> pre = Preprocessor()
        >>> pre.fit_transform(X, [i % 2 for i in range(80)], kind="linear").shape, pre.feature_names("linear")
        ((80, 1), ['city__target'])
        """
        _check_kind(kind)
        oof = self._fit(X, y)
        return self._transform(X, kind, oof)

    def _fit(self, X: pd.DataFrame, y: Any) -> dict[str, np.ndarray]:
        """Fit the state; returns the out-of-fold target codes of the training rows per encoded column."""
        if X.shape[1] == 0:
            raise ModelError("there are no feature columns to train on; the data holds only the target")
        target = None
        if y is not None:
            if len(y) != len(X):
                raise ModelError(f"y has {len(y)} values for {len(X)} rows of X; give one target value per row")
            target = _encoding.target_matrix(y)
        self.numeric, self.dates, self.texts, self.categorical, self.dropped = [], [], [], [], {}
        self._compiled = {}
        oof: dict[str, np.ndarray] = {}
        for name in X.columns:
            col, key = X[name], str(name)
            if col.nunique(dropna=False) <= 1:
                value = "missing" if col.isna().all() else repr(_plain(col.dropna().iloc[0]))
                self.dropped[key] = f"constant: every training row holds {value}"
            elif pd.api.types.is_datetime64_any_dtype(col.dtype):
                self._fit_date(key, col, "ISO8601")  # serving receives these as ISO text (JSON)
            elif _is_categorical(col.dtype):
                self._fit_labels(key, col, target, oof)
            elif pd.api.types.is_numeric_dtype(col.dtype):
                if self._row_numbers(key, col):
                    self.dropped[key] = "id-like: a different integer in every training row"
                else:
                    self.numeric.append({"name": key, **_stats(col.to_numpy(dtype=float, na_value=np.nan))})
            else:
                raise ModelError(
                    f"column '{name}' has dtype {col.dtype}, which the model cannot use; "
                    "turn it into numbers, dates or text in the Data stage, or drop it"
                )
        if not self.columns:
            reasons = "; ".join(f"'{c}' ({why})" for c, why in self.dropped.items())
            raise ModelError(f"no usable feature column is left: {reasons}; add informative columns in the Data stage")
        return oof

    @staticmethod
    def _row_numbers(name: str, col: pd.Series) -> bool:
        if not pd.api.types.is_integer_dtype(col.dtype) or not _unique_per_row(col):
            return False
        span = int(col.max()) - int(col.min()) + 1
        return _is_id_name(name) or (len(col) >= _MIN_ROW_NUMBER_ROWS and span == len(col))

    def _fit_labels(self, name: str, col: pd.Series, target: tuple | None, oof: dict[str, np.ndarray]) -> None:
        """A text/label column: dates, free text, an id, or categorical levels."""
        plain_text = not isinstance(col.dtype, pd.CategoricalDtype) and not pd.api.types.is_bool_dtype(col.dtype)
        fmt = _dates.date_format(col) if plain_text else None
        if fmt is not None:
            self._fit_date(name, col, fmt)
            return
        strings = plain_text and pd.api.types.infer_dtype(col.dropna(), skipna=True) == "string"
        if strings and _is_text(col):
            self._fit_text(name, col)
            return
        if strings and _unique_per_row(col):
            self.dropped[name] = "id-like: a different value in every training row"
            return
        keys = _keys(col)
        counts = pd.Series(keys).value_counts()
        levels = sorted(str(k) for k, c in counts.items() if c >= self.min_count and k != RARE)
        entry: dict[str, Any] = {"name": name, "levels": levels}
        if target is not None and len(counts) > ONE_HOT_MAX:
            entry["target"], oof[name] = _encoding.fit_target(keys, *target, seed=self.seed)
        self.categorical.append(entry)

    def _fit_date(self, name: str, col: pd.Series, fmt: str) -> None:
        times = _dates.parse(col, fmt)
        valid = times[~np.isnat(times)]
        if valid.size == 0:
            self.dropped[name] = "constant: no training row holds a date"
            return
        reference, hour = pd.Timestamp(valid.min()).isoformat(), _dates.has_time(valid)
        # Every part is missing on the same rows: one indicator per date column, not one per part.
        stats = [{k: v for k, v in _stats(part).items() if k != "indicator"}
                 for part in _dates.parts(times, reference, hour=hour).T]
        self.dates.append({"name": name, "format": fmt, "reference": reference, "hour": hour,
                           "parts": stats, "indicator": bool(np.isnat(times).any())})

    def _fit_text(self, name: str, col: pd.Series) -> None:
        docs = _text.documents(col)
        state = _text.fit_text(docs, seed=self.seed)
        if state is None:
            self.dropped[name] = "text with too few distinct words to learn from"
            return
        Z = _text.transform_text(docs, state)
        std = Z.std(axis=0)
        self.texts.append({"name": name, **state, "mean": Z.mean(axis=0).tolist(),
                           "std": np.where(std > 0, std, 1.0).tolist()})

    # -- applying ------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The input columns the preprocessor needs (dropped ones are not among them)."""
        return [c["name"] for block in (self.numeric, self.dates, self.texts, self.categorical) for c in block]

    def feature_names(self, kind: Kind) -> list[str]:
        """Names of the output columns of :meth:`transform` for ``kind``."""
        _check_kind(kind)
        names = [c["name"] for c in self.numeric]
        names += [f"{c['name']}__missing" for c in self.numeric if c["indicator"]]
        for c in self.dates:
            parts = [p for p in _dates.PARTS if p != "hour" or c["hour"]]
            names += [f"{c['name']}__{p}" for p in parts] + ([f"{c['name']}__missing"] if c["indicator"] else [])
        for c in self.texts:
            names += [f"{c['name']}__svd{i}" for i in range(len(c["components"]))]
        for c in self.categorical:
            if kind == "tree":
                names.append(c["name"])
            elif "target" in c:
                names += [f"{c['name']}__target{suffix}" for suffix in c["target"]["outputs"]]
            else:
                names += [f"{c['name']}={level}" for level in [*c["levels"], RARE]]
        return names

    def categorical_indices(self, kind: Kind) -> list[int]:
        """Output columns holding categorical codes (``"tree"`` only; one-hot needs none)."""
        _check_kind(kind)
        if kind == "linear":
            return []
        start = len(self.feature_names("tree")) - len(self.categorical)
        return list(range(start, start + len(self.categorical)))

    def transform(self, X: pd.DataFrame, kind: Kind) -> np.ndarray:
        """Encode ``X`` as a float64 matrix; extra columns are ignored, missing ones are an error."""
        _check_kind(kind)
        return self._transform(X, kind)

    def _transform(self, X: pd.DataFrame, kind: Kind, oof: dict[str, np.ndarray] | None = None) -> np.ndarray:
        if not self.columns:
            raise ModelError("the preprocessor is not fitted; call fit(X) on the training features first")
        by_name = {str(c): c for c in X.columns}  # names are stored as text (JSON); frames may use ints
        absent = [c for c in self.columns if c not in by_name]
        if absent:
            raise ModelError(f"input lacks the feature column(s) {', '.join(absent)} the model was trained on")
        blocks: list[np.ndarray] = []
        indicators: list[np.ndarray] = []
        for c in self.numeric:
            values = self._numeric(X[by_name[c["name"]]], c["name"])
            blocks.append(_scaled(values, c, kind))
            if c["indicator"]:
                indicators.append(np.isnan(values).astype(float))
        blocks += indicators
        for c in self.dates:
            times = _dates.parse(X[by_name[c["name"]]], c["format"])
            values = _dates.parts(times, c["reference"], hour=c["hour"])
            blocks += [_scaled(v, s, kind) for v, s in zip(values.T, c["parts"], strict=True)]
            if c["indicator"]:
                blocks.append(np.isnat(times).astype(float))
        for c in self.texts:
            if c["name"] not in self._compiled:
                self._compiled[c["name"]] = _text.compile_text(c)
            values = _text.transform_text(_text.documents(X[by_name[c["name"]]]), self._compiled[c["name"]])
            blocks += [_scaled(v, {"mean": m, "std": s}, kind) for v, m, s in zip(values.T, c["mean"], c["std"],
                                                                                  strict=True)]
        for c in self.categorical:
            keys = _keys(X[by_name[c["name"]]])
            if kind == "linear" and "target" in c:
                codes = oof[c["name"]] if oof and c["name"] in oof else _encoding.apply_target(keys, c["target"])
                blocks.extend(codes.T)
                continue
            position = {level: i for i, level in enumerate(c["levels"])}
            rare = len(c["levels"])
            codes = np.array([position.get(k, rare) for k in keys], dtype=np.int64)
            if kind == "tree":
                blocks.append(codes.astype(float))
            else:
                blocks.extend((codes == i).astype(float) for i in range(rare + 1))
        return np.column_stack(blocks) if blocks else np.empty((len(X), 0))

    @staticmethod
    def _numeric(col: pd.Series, name: str) -> np.ndarray:
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            return col.to_numpy(dtype=float, na_value=np.nan)
        # At serving numbers may arrive as text (JSON, CSV); accept them, refuse what is not a number.
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = np.isnan(values) & col.notna().to_numpy()
        if bad.any():
            example = col[bad].iloc[0]
            raise ModelError(f"column '{name}' must be numeric; found {example!r} ({type(example).__name__})")
        return values

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; :meth:`from_dict` restores it exactly."""
        return {"min_count": self.min_count, "seed": self.seed, "numeric": self.numeric, "dates": self.dates,
                "texts": self.texts, "categorical": self.categorical, "dropped": self.dropped}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output (older files lack dates, texts, dropped)."""
        try:
            pre = cls(min_count=int(d["min_count"]), seed=int(d.get("seed", 0)))
            pre.numeric = [
                {"name": str(c["name"]), "median": float(c["median"]), "mean": float(c["mean"]),
                 "std": float(c["std"]), "indicator": bool(c["indicator"])}
                for c in d["numeric"]
            ]
            pre.dates = [
                {"name": str(c["name"]), "format": str(c["format"]), "reference": str(c["reference"]),
                 "hour": bool(c["hour"]), "indicator": bool(c["indicator"]),
                 "parts": [{k: float(p[k]) for k in ("median", "mean", "std")} for p in c["parts"]]}
                for c in d.get("dates", [])
            ]
            pre.texts = [
                {"name": str(c["name"]), "vocabulary": [str(t) for t in c["vocabulary"]],
                 **{k: _floats(c[k]) for k in ("idf", "components", "mean", "std")}}
                for c in d.get("texts", [])
            ]
            pre.categorical = [_categorical_from_dict(c) for c in d["categorical"]]
            pre.dropped = {str(k): str(v) for k, v in d.get("dropped", {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"preprocessor state is malformed: {exc!r}") from exc
        return pre


def _categorical_from_dict(c: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": str(c["name"]), "levels": [str(v) for v in c["levels"]]}
    if "target" in c:
        t = c["target"]
        entry["target"] = {"outputs": [str(s) for s in t["outputs"]], "prior": _floats(t["prior"]),
                           "means": {str(k): _floats(v) for k, v in t["means"].items()}}
    return entry


def _floats(values: Any) -> Any:
    """Nested lists of numbers as floats (refusing anything else)."""
    return [_floats(v) for v in values] if isinstance(values, list) else float(values)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _unique_per_row(col: pd.Series) -> bool:
    return len(col) >= _MIN_ID_ROWS and bool(col.notna().all()) and col.is_unique


def _is_text(col: pd.Series) -> bool:
    values = col.dropna().astype(str)
    return (not values.empty and values.str.len().mean() > _TEXT_MEAN_LENGTH
            and values.nunique() / len(values) > _TEXT_DISTINCT_SHARE)


def _check_kind(kind: str) -> None:
    if kind not in ("tree", "linear"):
        raise ModelError(f"kind must be 'tree' or 'linear'; got {kind!r} instead")


# -- user hook -----------------------------------------------------------------------------------
FeatureHook = Callable[[pd.DataFrame], pd.DataFrame]
# module name -> (file, SHA-256) of the project file it was imported from, to notice an edit or another project.
_IMPORTED: dict[str, tuple[str, str]] = {}


def apply_feature_hook(frame: pd.DataFrame, hook: str, root: Path) -> pd.DataFrame:
    """Call the user's feature function ``hook`` ("module:function") on a copy of ``frame``; return its frame.

    ``module`` is imported with ``root`` (the spec's folder) first on ``sys.path``. The function gets a
    copy of the rows and must return a DataFrame with the same rows in the same order (it may add,
    change or remove columns). It runs at training AND at serving, on every batch of rows, so it must
    be deterministic and use only each row's own columns: no statistics over the batch, no clock, no
    network — anything learned from data belongs in the Data stage or the preprocessor.

    >>> import pandas as pd, pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "doc_hook.py").write_text("def add(df):\\n    df['x2'] = df['x'] * 2\\n    return df\\n")
    >>> apply_feature_hook(pd.DataFrame({"x": [1, 2]}), "doc_hook:add", root)["x2"].tolist()
    [2, 4]
    """
    return call_feature_hook(load_feature_hook(hook, root), frame, hook)


def load_feature_hook(hook: str, root: Path) -> FeatureHook:
    """The user's function ``hook`` ("module:function"), imported with ``root`` first on ``sys.path``.

    A module file in ``root`` is imported afresh when it changed since it was last imported, or when a
    module of the same name was imported from elsewhere (another project's hook), so the code that runs
    is always the code in ``root``. Load once and call :func:`call_feature_hook` per batch.
    """
    module_name, function_name = _split_hook(hook)
    folder = Path(root).resolve()
    source = _project_file(module_name, folder)
    if str(folder) in sys.path:
        sys.path.remove(str(folder))
    sys.path.insert(0, str(folder))
    stamp = (str(source), _sha256(source)) if source is not None else None
    if stamp is not None and _IMPORTED.get(module_name) != stamp:
        for name in [n for n in sys.modules if n == module_name or module_name.startswith(n + ".")]:
            del sys.modules[name]  # this module and its packages come from root, not from an earlier import
    importlib.invalidate_caches()  # a hook file written after start-up must still be found
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"feature hook '{hook}': cannot import module '{module_name}' from {folder} "
                         f"or the installed packages ({exc})") from exc
    except Exception as exc:  # the user's module failed while it was imported
        raise ModelError(f"feature hook '{hook}': importing module '{module_name}' raised "
                         f"{type(exc).__name__}: {exc}") from exc
    if stamp is not None:
        _IMPORTED[module_name] = stamp
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ModelError(f"feature hook '{hook}': module '{module_name}' has no function '{function_name}'")
    return function


def call_feature_hook(function: FeatureHook, frame: pd.DataFrame, hook: str) -> pd.DataFrame:
    """``function(copy of frame)``, checked: a DataFrame with every row; any failure names ``hook``."""
    try:
        out = function(frame.copy())
    except Exception as exc:  # the user's code: report whatever it raised, with the hook's name
        raise ModelError(f"feature hook '{hook}' raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, pd.DataFrame):
        raise ModelError(f"feature hook '{hook}' must return a pandas DataFrame; it returned {type(out).__name__}")
    if len(out) != len(frame):
        raise ModelError(f"feature hook '{hook}' must keep every row; it returned {len(out)} rows for {len(frame)}")
    return out


def feature_hook_sha256(hook: str, root: Path) -> str:
    """SHA-256 of the file that defines the hook's module (in ``root``, else the installed one).

    The loop puts it in the model's reuse key and lineage: editing the hook trains again.

    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "doc_sha_hook.py").write_text("def add(df):\\n    return df\\n")
    >>> len(feature_hook_sha256("doc_sha_hook:add", root))
    64
    """
    module_name, _ = _split_hook(hook)
    folder = Path(root).resolve()
    source = _project_file(module_name, folder)
    if source is None:
        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            found = None
        origin = getattr(found, "origin", None)
        if not origin or not Path(origin).is_file():
            raise ModelError(f"feature hook '{hook}': no module '{module_name}' in {folder} or the installed "
                             f"packages; put {module_name.replace('.', '/')}.py beside loopml.yaml")
        source = Path(origin)
    return _sha256(source)


def _split_hook(hook: str) -> tuple[str, str]:
    if not isinstance(hook, str) or not _HOOK.match(hook):
        raise ModelError(f"feature hook {hook!r} must be 'module:function', e.g. 'features:add_features'")
    module_name, function_name = hook.split(":")
    return module_name, function_name


def _project_file(module_name: str, folder: Path) -> Path | None:
    """The file in ``folder`` that defines ``module_name`` (a module or a package), if there is one."""
    parts = module_name.split(".")
    for path in (folder.joinpath(*parts[:-1], parts[-1] + ".py"), folder.joinpath(*parts, "__init__.py")):
        if path.is_file():
            return path
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
