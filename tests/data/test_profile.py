import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.data import assess, assess_file, profile_file, profile_frame
from loopml.errors import DataError

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"
ROWS = 200_000


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """200,000 rows with missing values, 1,000 duplicate rows, a near-constant column and a leak."""
    rng = np.random.default_rng(0)
    n = ROWS - 1000
    df = pd.DataFrame({
        "amount": rng.lognormal(0, 1, n),
        "age": rng.integers(18, 90, n),
        "city": rng.choice(["Lyon", "Nice", "Metz", None], n, p=[0.4, 0.3, 0.2, 0.1]),
        "rare": np.where(rng.random(n) < 0.99, "k", "z"),
        "seen": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
        "flag": rng.random(n) < 0.3,
    })
    df.loc[rng.random(n) < 0.07, "amount"] = np.nan
    df.loc[rng.random(n) < 0.02, "age"] = None
    df["y"] = np.where(np.log(df["amount"].fillna(1)) + rng.normal(size=n) > 0, "yes", "no")
    df["y_again"] = df["y"]
    df = pd.concat([df, df.sample(1000, random_state=2)], ignore_index=True)
    return df


@pytest.fixture(scope="module")
def parquet(frame, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "data.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def profiled(parquet):
    messages = []
    profile = profile_file(parquet, target="y", progress=lambda stage, message: messages.append(message))
    return profile, messages


def test_missing_counts_and_duplicates_match_pandas_exactly(frame, profiled):
    profile, _ = profiled
    assert profile.rows == ROWS
    assert {c: p.missing for c, p in profile.columns.items()} == frame.isna().sum().to_dict()
    assert profile.duplicate_rows == int(frame.duplicated().sum()) >= 1000
    assert profile.target_counts == {str(k): int(v) for k, v in frame["y"].value_counts().items()}
    assert profile.methods["duplicates"] == "64-bit row hash"


def test_numbers_match_pandas(frame, profiled):
    profile, _ = profiled
    exact = profile_frame(frame, target="y")
    amount, age = profile.columns["amount"], profile.columns["age"]
    assert (amount.min, amount.max) == (exact.columns["amount"].min, exact.columns["amount"].max)
    assert amount.mean == pytest.approx(exact.columns["amount"].mean, rel=1e-9)
    assert amount.std == pytest.approx(exact.columns["amount"].std, rel=1e-9)
    assert amount.q3 == pytest.approx(exact.columns["amount"].q3, rel=0.02)  # a reservoir's quartile
    values = frame["amount"].dropna()
    assert amount.outliers == int(((values < amount.low) | (values > amount.high)).sum())  # exact at its fences
    assert profile.columns["rare"].top_share == exact.columns["rare"].top_share
    assert profile.columns["city"].distinct == 3 and profile.columns["age"].distinct == pytest.approx(72, rel=0.1)
    assert {c: p.kind for c, p in profile.columns.items()} == {c: p.kind for c, p in exact.columns.items()}
    assert age.kind == "numeric" and age.min == 18


def test_progress_and_json(profiled):
    profile, messages = profiled
    assert messages[0] == "profiling data.parquet: reading the schema and a sample (1/4)"
    assert len(messages) == 4
    data = profile.to_dict()
    assert json.loads(json.dumps(data)) == data and "sample" not in data


def test_nan_in_parquet_is_missing_not_an_outlier(tmp_path):
    # pyarrow keeps NaN as a value (not null) when the array comes from NumPy; pandas calls it missing.
    values = np.array([1.0, 2.0, np.nan, 3.0, 2.5] * 20)
    pq.write_table(pa.table({"x": values, "y": ["a", "b"] * 50}), tmp_path / "nan.parquet")
    column = profile_file(tmp_path / "nan.parquet").columns["x"]
    assert (column.missing, column.outliers, column.max) == (20, 0, 3.0)


def test_csv_profile_matches_the_frame(tmp_path):
    df = pd.read_csv(BENEFITS)
    df = pd.concat([df, df.head(7)], ignore_index=True)
    df.loc[10:16, "rr"] = None
    path = tmp_path / "benefits.csv.gz"
    df.to_csv(path, index=False, compression="gzip")
    profile, exact = profile_file(path, target="ui"), profile_frame(df, target="ui")
    assert profile.rows == 4884 and profile.duplicate_rows == exact.duplicate_rows == 7
    assert {c: p.missing for c, p in profile.columns.items()} == {c: p.missing for c, p in exact.columns.items()}
    assert profile.target_counts == exact.target_counts
    assert profile.columns["state"].kind == "categorical" and profile.columns["tenure"].kind == "numeric"


def test_assess_file_profiles_everything_and_samples_for_the_models(frame, parquet):
    a = assess_file(parquet, "y", "binary", sample_rows=5000)
    exact = assess(frame, "y", "binary", sample_rows=5000)
    assert (a.rows, a.duplicate_rows, a.missing_share) == (exact.rows, exact.duplicate_rows, exact.missing_share)
    assert a.target_counts == exact.target_counts and a.constant_columns == exact.constant_columns == []
    assert [s["column"] for s in a.leakage_suspects] == ["y_again"] == [s["column"] for s in exact.leakage_suspects]
    assert a.near_constant_columns == {"rare": pytest.approx(exact.near_constant_columns["rare"])}
    assert a.checked_rows == 5000 and a.methods["distinct"] == "HyperLogLog estimate"
    assert all(0 <= p < ROWS for p in a.label_noise["examples"])
    assert a.column_kinds == exact.column_kinds


def test_a_missing_file_and_a_missing_target(tmp_path, parquet):
    with pytest.raises(DataError, match="nothing.parquet: file not found"):
        profile_file(tmp_path / "nothing.parquet")
    with pytest.raises(DataError, match="target 'label' is not a column; columns: amount, age"):
        profile_file(parquet, target="label")
