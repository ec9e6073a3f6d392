"""Dates become calendar parts and elapsed days; free text becomes TF-IDF + SVD, served without sklearn objects."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from loopml.model import Preprocessor, _text

# -- dates ---------------------------------------------------------------------------------------
KNOWN = ["2023-12-31 23:00:00", "2024-01-01 08:30:00", "2024-02-29 00:00:00", None]


def test_date_parts_and_elapsed_days_are_correct_for_known_dates():
    X = pd.DataFrame({"when": KNOWN * 10})
    pre = Preprocessor().fit(X)
    assert pre.feature_names("tree") == ["when__year", "when__month", "when__dayofweek", "when__hour",
                                         "when__days", "when__missing"]
    assert pre.dates[0]["reference"] == "2023-12-31T23:00:00"  # the earliest training date
    Z = pre.transform(pd.DataFrame({"when": KNOWN[:3]}), "tree")
    assert Z.tolist() == [
        [2023, 12, 6, 23, 0.0, 0],  # a Sunday
        [2024, 1, 0, 8, 9.5 / 24, 0],  # a Monday, 9 h 30 min later
        [2024, 2, 3, 0, 59 + 1 / 24, 0],  # leap day, a Thursday
    ]


def test_a_datetime_dtype_with_a_zone_is_taken_in_utc_and_served_from_iso_text():
    when = pd.to_datetime(["2024-03-01T12:00:00+02:00", "2024-03-02T12:00:00+02:00"] * 10, format="ISO8601")
    pre = Preprocessor().fit(pd.DataFrame({"when": when}))
    assert pre.feature_names("tree") == ["when__year", "when__month", "when__dayofweek", "when__hour", "when__days"]
    served = pre.transform(pd.DataFrame({"when": ["2024-03-02T10:00:00Z"]}), "tree")
    assert served.tolist() == [[2024, 3, 5, 10, 1.0]]


def test_unparseable_or_missing_dates_at_serving_are_imputed_and_flagged():
    pre = Preprocessor().fit(pd.DataFrame({"when": KNOWN * 10}))
    Z = pre.transform(pd.DataFrame({"when": ["not a date", None]}), "tree")
    medians = [p["median"] for p in pre.dates[0]["parts"]]
    assert Z.tolist() == [[*medians, 1.0]] * 2


def test_date_only_columns_have_no_hour_and_the_raw_column_is_not_a_feature():
    X = pd.DataFrame({"day": ["01/15/2024", "02/20/2024", "12/01/2023"] * 10})
    pre = Preprocessor().fit(X)
    assert pre.dates[0]["format"] == "%m/%d/%Y"
    assert pre.feature_names("linear") == ["day__year", "day__month", "day__dayofweek", "day__days"]
    assert "day" not in pre.feature_names("tree")


def test_codes_written_as_digits_and_plain_labels_are_not_dates():
    X = pd.DataFrame({"zip": ["20240105", "20240106"] * 10, "month": ["march", "may"] * 10})
    pre = Preprocessor().fit(X)
    assert pre.dates == []
    assert [c["name"] for c in pre.categorical] == ["zip", "month"]


# -- text ----------------------------------------------------------------------------------------
GOOD = "great delicious friendly lovely fresh superb".split()
BAD = "awful rude cold stale bland terrible".split()
FILLER = "the food was and service table we ordered our waiter evening dinner place really quite".split()


def _reviews(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Short synthetic reviews whose sentiment words carry the label (an injected, known effect)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    docs = []
    for label in y:
        words = [*rng.choice(FILLER, 8), *rng.choice(GOOD if label else BAD, 2), *rng.choice(GOOD + BAD, 1)]
        docs.append(" ".join(rng.permutation(words)).capitalize() + ".")
    return pd.DataFrame({"review": docs}), y


def test_reviews_are_text_and_their_svd_carries_the_label():
    X, y = _reviews(400, seed=0)
    pre = Preprocessor()
    Z = pre.fit_transform(X, y, kind="linear")
    assert pre.feature_names("linear")[:2] == ["review__svd0", "review__svd1"]
    assert Z.shape == (400, _text.DIMS)
    held_out, y_held = _reviews(200, seed=1)
    model = LogisticRegression().fit(Z, y)
    assert model.score(pre.transform(held_out, "linear"), y_held) > 0.85


def test_numpy_transform_after_a_json_round_trip_matches_sklearn_on_held_out_text():
    X, _ = _reviews(400, seed=0)
    pre = Preprocessor.from_dict(json.loads(json.dumps(Preprocessor(seed=3).fit(X).to_dict())))
    held_out = _reviews(100, seed=2)[0]["review"].tolist() + ["", "words never seen before", "GREAT great Great"]
    served = pre.transform(pd.DataFrame({"review": held_out}), "tree")

    tfidf = TfidfVectorizer(max_features=_text.MAX_FEATURES)
    svd = TruncatedSVD(n_components=_text.DIMS, random_state=3).fit(tfidf.fit_transform(X["review"]))
    expected = svd.transform(tfidf.transform(held_out))
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9)


def test_a_large_vocabulary_stays_a_few_hundred_kilobytes():
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}x" for i in range(5000)]
    X = pd.DataFrame({"note": [" ".join(rng.choice(vocabulary, 40)) for _ in range(400)]})
    pre = Preprocessor().fit(X)
    assert len(pre.texts[0]["vocabulary"]) == _text.MAX_FEATURES
    assert len(json.dumps(pre.to_dict())) < 500_000


def test_text_without_words_is_dropped_with_the_reason():
    X = pd.DataFrame({"x": np.arange(40.0), "marks": [f"{'!' * 31}{'?' * i}" for i in range(40)]})
    pre = Preprocessor().fit(X)
    assert pre.dropped == {"marks": "text with too few distinct words to learn from"}


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_text_is_the_empty_document(missing):
    X, _ = _reviews(100, seed=0)
    pre = Preprocessor().fit(X)
    assert pre.transform(pd.DataFrame({"review": [missing]}), "tree").tolist() == [[0.0] * _text.DIMS]
