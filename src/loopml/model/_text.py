"""Free text as a few numbers: TF-IDF reduced by a seeded truncated SVD, stored as JSON, applied in numpy.

Fitting uses scikit-learn (``TfidfVectorizer`` with its default analyzer, ``TruncatedSVD``); what is
stored is only data: the vocabulary in column order, the idf weights and the SVD components. Serving
re-implements the transform (lowercase, the default token pattern, counts × idf, l2 row norm, a
product with the components), so a model file never holds pickled objects.

>>> docs = ["good food and good service", "bad food", "slow service and bad coffee", "good coffee"]
>>> state = fit_text(docs, seed=0)
>>> transform_text(["good coffee"], state).shape
(1, 3)
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

# 1000 terms × 20 dimensions keeps the stored components near 400 KB of JSON at most.
MAX_FEATURES = 1000
DIMS = 20
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern


def documents(col: pd.Series) -> list[str]:
    """The column as strings; missing text is the empty document."""
    return ["" if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v) for v in col.tolist()]


def fit_text(docs: list[str], *, seed: int) -> dict[str, Any] | None:
    """Vocabulary, idf and SVD components learned from ``docs``; None when there are too few words."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(max_features=MAX_FEATURES, token_pattern=_TOKEN.pattern, dtype=np.float64)
    try:
        tfidf = vectorizer.fit_transform(docs)
    except ValueError:  # no token of two or more word characters in any document
        return None
    dims = min(DIMS, tfidf.shape[1] - 1, len(docs) - 1)
    if dims < 1:
        return None
    svd = TruncatedSVD(n_components=dims, random_state=seed).fit(tfidf)
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    return {"vocabulary": vocabulary, "idf": vectorizer.idf_.tolist(), "components": svd.components_.tolist()}


class Compiled(NamedTuple):
    """A stored state as lookup structures, built once per loaded model (not once per request)."""

    index: dict[str, int]
    idf: np.ndarray
    components_t: np.ndarray  # vocabulary × dims


def compile_text(state: dict[str, Any]) -> Compiled:
    return Compiled({term: i for i, term in enumerate(state["vocabulary"])},
                    np.asarray(state["idf"], dtype=float), np.asarray(state["components"], dtype=float).T)


def transform_text(docs: list[str], state: dict[str, Any] | Compiled) -> np.ndarray:
    """The SVD coordinates of ``docs``, n×dims, as ``TfidfVectorizer`` + ``TruncatedSVD.transform`` give."""
    c = state if isinstance(state, Compiled) else compile_text(state)
    rows: list[int] = []
    cols: list[int] = []
    for r, doc in enumerate(docs):
        for token in _TOKEN.findall(doc.lower()):
            j = c.index.get(token)
            if j is not None:
                rows.append(r)
                cols.append(j)
    n, size = len(docs), len(c.index)
    # Term counts per (row, term), then tf·idf scaled to unit length per row, as TfidfTransformer does.
    cells, counts = np.unique(np.asarray(rows, dtype=np.int64) * size + np.asarray(cols, dtype=np.int64),
                              return_counts=True)
    row, col = cells // size, cells % size
    values = counts * c.idf[col]
    values /= np.sqrt(np.bincount(row, weights=values**2, minlength=n))[row]
    return np.asarray(sp.csr_matrix((values, (row, col)), shape=(n, size)) @ c.components_t)
