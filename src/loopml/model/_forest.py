"""Random forests and extra trees as plain arrays: exported from scikit-learn, predicted with numpy.

A fitted forest becomes the node arrays of all its trees concatenated (children, split feature,
threshold, where a missing value goes, the leaf value), each stored in the model JSON as zlib-packed
little-endian bytes in base64 — no pickle, and loading decodes numbers only. :func:`predict_forest`
walks every (row, tree) pair down at once and averages the leaves exactly as scikit-learn does
(features as float32, ``x <= threshold`` in float64, a running sum over the trees in order, then
one division), so its output equals the estimator's ``predict_proba``/``predict`` bit for bit.

>>> import numpy as np
>>> from sklearn.ensemble import RandomForestRegressor
>>> X = np.arange(40, dtype=float).reshape(20, 2)
>>> est = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, X[:, 0] * 2)
>>> state = export_forest(est, task="regression", k=0)
>>> bool(np.array_equal(predict_forest(state, X), est.predict(X)))
True
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

from loopml.errors import ModelError

__all__ = ["export_forest", "pack", "predict_forest", "unpack"]

_DTYPES = ("<f8", "<i4", "|u1")  # the only element types a packed array may declare
_CHUNK_ROWS = 4096  # rows walked at once: bounds the (rows × trees) working arrays


# -- arrays in JSON --------------------------------------------------------------------------------
def pack(a: np.ndarray, dtype: str) -> dict[str, Any]:
    """``a`` as ``{"dtype", "shape", "zlib"}``: little-endian bytes, zlib-compressed, base64 text.

    >>> unpack(pack(np.array([1.5, -2.0]), "<f8")).tolist()
    [1.5, -2.0]
    """
    if dtype not in _DTYPES:
        raise ModelError(f"cannot pack dtype {dtype!r}; one of {_DTYPES}")
    raw = np.ascontiguousarray(a, dtype=np.dtype(dtype)).tobytes()
    return {"dtype": dtype, "shape": list(np.shape(a)), "zlib": base64.b64encode(zlib.compress(raw, 6)).decode()}


def unpack(d: Any) -> np.ndarray:
    """The array :func:`pack` wrote; a malformed entry is a :class:`ModelError` (decompression is size-capped)."""
    try:
        dtype, shape = np.dtype(d["dtype"]), [int(s) for s in d["shape"]]
        if d["dtype"] not in _DTYPES or any(s < 0 for s in shape):
            raise ValueError(f"dtype {d['dtype']!r}, shape {shape}")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        inflate = zlib.decompressobj()
        raw = inflate.decompress(base64.b64decode(d["zlib"], validate=True), size + 1)
        if len(raw) != size or inflate.unconsumed_tail:
            raise ValueError(f"{len(raw)} bytes for shape {shape}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ModelError(f"loopml model file: a packed array is malformed ({exc})") from exc


# -- export ----------------------------------------------------------------------------------------
def export_forest(est: Any, *, task: str, k: int, packed: bool = True) -> dict[str, Any] | _Arrays:
    """The JSON state of a fitted scikit-learn forest (random forest or extra trees).

    Leaf values: P(class 1) for ``binary``, one column per class (``k``, in code order) for
    ``multiclass`` (a class absent from the fitting rows gets 0), the mean for ``regression``.
    ``packed=False`` skips the JSON encoding and returns the arrays, ready to predict (for scores
    that are not stored, like out-of-fold ones).
    """
    trees = [e.tree_ for e in est.estimators_]
    sizes = np.array([t.node_count for t in trees], dtype=np.int64)
    roots = np.r_[0, np.cumsum(sizes)[:-1]]
    if sizes.sum() >= 2**31:
        raise ModelError(f"the forest has {int(sizes.sum()):,} nodes; too many to store")
    left, right, feature, threshold, missing_left, values = [], [], [], [], [], []
    for tree, root in zip(trees, roots, strict=True):
        leaf = tree.children_left == -1
        left.append(np.where(leaf, -1, tree.children_left + root))
        right.append(np.where(leaf, -1, tree.children_right + root))
        feature.append(np.where(leaf, 0, tree.feature))
        threshold.append(np.where(leaf, 0.0, tree.threshold))
        go_left = getattr(tree, "missing_go_to_left", None)
        missing_left.append(np.zeros(len(leaf), dtype=np.uint8) if go_left is None else np.asarray(go_left, np.uint8))
        value = tree.value[:, 0, :]  # (nodes, classes seen) as fractions, or (nodes, 1) for regression
        if task == "regression":
            v = value[:, 0]
        else:
            full = np.zeros((len(value), k))
            full[:, np.asarray(est.classes_, dtype=int)] = value
            v = full[:, 1] if task == "binary" else full
        values.append(np.where(leaf if v.ndim == 1 else leaf[:, None], v, 0.0))  # inner values are never read
    arrays = {"roots": roots, "left": np.concatenate(left), "right": np.concatenate(right),
              "feature": np.concatenate(feature), "threshold": np.concatenate(threshold),
              "missing_left": np.concatenate(missing_left), "value": np.concatenate(values)}
    if not packed:
        return _Arrays(arrays)
    dtypes = {"threshold": "<f8", "value": "<f8", "missing_left": "|u1"}
    return {"n_trees": len(trees), **{name: pack(a, dtypes.get(name, "<i4")) for name, a in arrays.items()}}


class _Arrays:
    """The node arrays of one forest, checked once: from a stored state, or straight from :func:`export_forest`."""

    def __init__(self, state: dict[str, Any]):
        raw = all(isinstance(v, np.ndarray) for v in state.values())
        get = (lambda name: state[name]) if raw else (lambda name: unpack(state[name]))
        try:
            self.roots = get("roots").astype(np.int64)
            self.n_trees = len(self.roots) if raw else int(state["n_trees"])
            self.left = get("left").astype(np.int64)
            self.right = get("right").astype(np.int64)
            self.feature = get("feature").astype(np.int64)
            self.threshold = get("threshold").astype(np.float64)
            self.missing_left = get("missing_left").astype(bool)
            self.value = get("value").astype(np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"loopml model file: forest state lacks or mangles {exc}") from exc
        n = len(self.left)
        if (self.n_trees != len(self.roots) or self.n_trees < 1 or any(len(a) != n for a in (
                self.right, self.feature, self.threshold, self.missing_left, self.value))
                or n == 0 or self.roots.min() < 0 or self.roots.max() >= n
                or self.left.max() >= n or self.right.max() >= n or self.feature.min() < 0):
            raise ModelError("loopml model file: forest state is malformed (array lengths or node indices)")


def predict_forest(state: dict[str, Any] | _Arrays, Z: np.ndarray) -> np.ndarray:
    """The forest's average leaf value for each row of ``Z`` (as scikit-learn computes it)."""
    arrays = state if isinstance(state, _Arrays) else _Arrays(state)
    Z = np.asarray(Z, dtype=np.float32)  # scikit-learn trees split float32 features
    if len(Z) and arrays.feature.max() >= Z.shape[1]:
        raise ModelError(f"the forest splits on feature {arrays.feature.max()}; the input has {Z.shape[1]} columns")
    out = [_predict_chunk(arrays, Z[i : i + _CHUNK_ROWS]) for i in range(0, len(Z), _CHUNK_ROWS)]
    if not out:
        return np.empty((0, *arrays.value.shape[1:]))
    return np.concatenate(out)


def _predict_chunk(a: _Arrays, Z: np.ndarray) -> np.ndarray:
    n, t = len(Z), a.n_trees
    node = np.tile(a.roots, n)  # row-major: (row 0, tree 0), (row 0, tree 1), ...
    row = np.repeat(np.arange(n), t)
    active = np.flatnonzero(a.left[node] >= 0)
    while active.size:
        at = node[active]
        x = Z[row[active], a.feature[at]]
        go_left = np.where(np.isnan(x), a.missing_left[at], x <= a.threshold[at])
        nxt = np.where(go_left, a.left[at], a.right[at])
        node[active] = nxt
        active = active[a.left[nxt] >= 0]
    leaves = a.value[node].reshape(n, t, *a.value.shape[1:])
    # scikit-learn adds the trees' outputs one after another into zeros, then divides once: a
    # cumulative sum is that same sequence of additions (np.sum would pair them differently).
    return np.cumsum(leaves, axis=1)[:, -1] / t
