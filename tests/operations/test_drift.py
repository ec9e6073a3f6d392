"""Drift on real data: a random split flags nothing, a population shift is flagged and ranked, big stable
samples stay quiet, heavy tails do not raise false alarms, joint shifts reach the domain classifier, and
bad windows get clear messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from loopml.errors import DataError
from loopml.model.search import split_holdout
from loopml.operations.drift import column_drift, domain_classifier, drift_report

_BENCH = Path(__file__).resolve().parents[1] / "bench_data"  # real tables, copied into the repo
# Every state-level attribute of the benefits data: the state, its unemployment rate, its maximum benefit,
# and the replacement rate (benefit over wage), which state benefit rules set.
_STATE_LEVEL = {"state", "stateur", "statemb", "rr"}
_PERSONAL = ["age", "sex", "married", "nwhite", "school12", "dkids", "head"]


def _dataset(name: str) -> pd.DataFrame:
    path = _BENCH / f"{name}.parquet"
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def benefits() -> pd.DataFrame:
    return _dataset("benefits").drop(columns=["ui"])


@pytest.fixture(scope="module")
def halves(benefits: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The benefits rows split at random in two: one population, two windows."""
    order = np.random.default_rng(0).permutation(len(benefits))
    half = len(benefits) // 2
    return benefits.iloc[order[:half]], benefits.iloc[order[half:]]


@pytest.fixture(scope="module")
def state_shift(halves) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference: a random half. Current: the other half's workers from three states only."""
    reference, rest = halves
    return reference, rest[rest["state"].isin(["st93", "st74", "st23"])]


# -- the same population -------------------------------------------------------------------------
def test_a_random_split_flags_no_column(halves):
    report = drift_report(*halves)
    assert report.drifted == []
    assert report.problems == {}


def test_a_random_split_is_not_flagged_by_the_domain_classifier(halves):
    result = domain_classifier(*halves)
    assert not result["drifted"]
    assert result["auc"] < result["threshold"]


# -- a real shift --------------------------------------------------------------------------------
def test_a_population_from_three_states_is_flagged_with_the_state_columns_first(state_shift):
    report = drift_report(*state_shift)
    assert set(report.drifted[:4]) == _STATE_LEVEL
    assert not any(report[c].drifted for c in _PERSONAL)


def test_the_domain_classifier_flags_the_state_shift_and_names_the_state(state_shift):
    result = domain_classifier(*state_shift)
    assert result["drifted"]
    assert result["auc"] > 0.8
    assert result["top_features"][0]["column"] == "state"


def test_importance_puts_the_important_drifted_column_first(state_shift):
    importance = {"stateur": 10.0, "state": 0.1, "statemb": 0.1, "rr": 0.1}
    report = drift_report(*state_shift, importance=importance)
    assert report.drifted[0] == "stateur"
    assert report["stateur"].score == pytest.approx(report["stateur"].effect * 10.0)


def test_a_category_the_reference_never_saw_is_measured_and_flagged(halves):
    reference, current = halves
    current = current.assign(state=np.where(np.arange(len(current)) % 5 == 0, "st99", current["state"]))
    column = drift_report(reference, current)["state"]
    assert column.stats.unseen_share == pytest.approx(0.2, abs=0.001)
    assert column.drifted


def test_a_window_holding_one_category_is_compared_not_rejected(halves):
    reference, current = halves
    column = drift_report(reference, current[current["sex"] == "female"])["sex"]
    assert column.problem is None
    assert column.drifted


# -- large samples ---------------------------------------------------------------------------------
def test_a_million_rows_resampled_from_one_population_flag_nothing():
    hdma = _dataset("hdma")
    rng = np.random.default_rng(1)
    reference = hdma.iloc[rng.integers(0, len(hdma), 1_000_000)].reset_index(drop=True)
    current = hdma.iloc[rng.integers(0, len(hdma), 1_000_000)].reset_index(drop=True)
    assert drift_report(reference, current).drifted == []


def test_a_tiny_shift_in_a_million_rows_is_significant_but_not_flagged():
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 1_000_000)})
    current = pd.DataFrame({"x": rng.normal(0.02, 1, 1_000_000)})
    column = drift_report(reference, current)["x"]
    assert column.p_adjusted < 1e-6
    assert not column.drifted


def test_a_real_shift_in_a_million_rows_is_flagged():
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 1_000_000)})
    current = pd.DataFrame({"x": rng.normal(0.3, 1, 1_000_000)})
    assert drift_report(reference, current).drifted == ["x"]


def test_a_big_window_measured_in_threads_gives_each_column_its_own_statistics():
    hdma = _dataset("hdma")
    rng = np.random.default_rng(6)
    reference = hdma.iloc[rng.integers(0, len(hdma), 60_000)].reset_index(drop=True)
    current = hdma.iloc[rng.integers(0, len(hdma), 60_000)].reset_index(drop=True)
    report = drift_report(reference, current)
    for name in reference.columns:
        kind = report[name].kind
        assert report[name].stats == column_drift(reference[name], current[name], kind=kind, name=name)


# -- heavy tails -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segment() -> pd.DataFrame:
    return _dataset("segment").drop(columns=["category"])


def test_random_windows_of_one_population_with_heavy_tails_flag_nothing(segment):
    # Several segment columns are heavy-tailed (hedge-sd: median 0.6, p99 24, max 1386).
    flagged = {}
    for seed in range(40):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(segment))
        reference, rest = segment.iloc[order[: len(segment) // 2]], segment.iloc[order[len(segment) // 2:]]
        for rows in (200, 400, 700, 1000):
            report = drift_report(reference, rest.iloc[rng.choice(len(rest), rows, replace=False)])
            flagged.update({(seed, rows, c): report[c].effect for c in report.drifted})
    assert flagged == {}


def test_a_heavy_tail_missing_from_a_small_window_is_not_flagged():
    # The holdout's first 250 rows lack hedge-mean's tail (training p99 22, window p99 7.5): the plain
    # distance is 6 times the threshold, and the KS test (p = 0.0006) calls it significant.
    train, holdout = split_holdout(_dataset("segment"), "category", "multiclass", 0.5, seed=0)
    report = drift_report(train.drop(columns=["category"]), holdout.drop(columns=["category"]).head(250))
    column = report["hedge-mean"]
    assert column.stats.wasserstein > 6 * report.wasserstein_threshold
    assert column.p_adjusted < 0.01
    assert column.stats.wasserstein_lower < report.wasserstein_threshold
    assert report.drifted == []


def test_the_distance_beyond_chance_integrates_the_cdf_gap_over_the_ks_band():
    rng = np.random.default_rng(8)
    a, b = rng.lognormal(0, 1, 3000), rng.lognormal(0.2, 1, 800)
    s = column_drift(a, b, kind="numeric", alpha=0.1)
    x = np.unique(np.r_[a, b])
    gap = np.abs(np.searchsorted(np.sort(a), x, side="right") / len(a)
                 - np.searchsorted(np.sort(b), x, side="right") / len(b))
    band = stats.kstwobign.isf(0.1) * np.sqrt(1 / len(a) + 1 / len(b))
    q1, q3 = np.quantile(a, [0.25, 0.75])
    expected = np.sum(np.maximum(gap[:-1] - band, 0) * np.diff(x)) / ((q3 - q1) / 1.349)
    assert s.wasserstein_lower == pytest.approx(expected, rel=1e-9)
    assert 0 < s.wasserstein_lower < s.wasserstein


# -- the joint view ------------------------------------------------------------------------------
def test_a_flipped_correlation_is_invisible_per_column_and_caught_by_the_domain_classifier():
    rng = np.random.default_rng(4)
    cov = [[1.0, 0.8], [0.8, 1.0]]
    reference = pd.DataFrame(rng.multivariate_normal([0, 0], cov, 5000), columns=["x", "y"])
    flipped = rng.multivariate_normal([0, 0], [[1.0, -0.8], [-0.8, 1.0]], 5000)
    current = pd.DataFrame(flipped, columns=["x", "y"])
    assert drift_report(reference, current).drifted == []
    result = domain_classifier(reference, current)
    assert result["drifted"] and result["auc"] > 0.7


# -- the statistics --------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [2000, 30_000])
def test_ks_and_wasserstein_match_scipy(halves, rows):
    reference, current = halves
    rng = np.random.default_rng(5)
    a = reference["rr"].to_numpy()[rng.integers(0, len(reference), rows)]
    b = current["rr"].to_numpy()[rng.integers(0, len(current), rows)] * 1.05
    s = column_drift(a, b, kind="numeric")
    q1, q3 = np.quantile(a, [0.25, 0.75])
    assert s.wasserstein == pytest.approx(stats.wasserstein_distance(a, b) / ((q3 - q1) / 1.349), rel=1e-9)
    assert s.p_value == pytest.approx(stats.ks_2samp(a, b).pvalue, rel=1e-6, abs=1e-300)


@pytest.mark.parametrize(("n", "m", "shift"), [(30_000, 30_000, 0.05), (30_000, 30_000, 0.3),
                                                (50_000, 12_000, 0.08), (200_000, 200_000, 0.02)])
def test_large_sample_p_values_match_scipys_asymptotic_ks(n, m, shift):
    # Sizes and shifts where scipy sums its series term by term (2.2 <= n_eff D^2 < 370): known effects.
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, n), rng.normal(shift, 1, m)
    expected = stats.ks_2samp(a, b, method="asymp")
    assert 2.2 <= round(n * m / (n + m)) * expected.statistic ** 2 < 370
    assert column_drift(a, b, kind="numeric").p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_categorical_statistics_match_scipy(halves):
    reference, current = halves
    s = column_drift(reference["joblost"], current["joblost"], kind="categorical")
    cats = sorted(set(reference["joblost"]))
    r = reference["joblost"].value_counts().reindex(cats).to_numpy()
    c = current["joblost"].value_counts().reindex(cats).to_numpy()
    from scipy.spatial.distance import jensenshannon

    assert s.jensen_shannon == pytest.approx(jensenshannon(r / r.sum(), c / c.sum(), base=2))
    assert s.p_value == pytest.approx(stats.chi2_contingency(np.vstack([r, c]))[1])
    assert s.unseen_share == 0


def test_psi_of_a_half_range_shift_on_decile_bins():
    s = column_drift(np.arange(1000.0), np.arange(1000.0) + 500, kind="numeric")
    # Five reference deciles empty in the current window (raised to 1e-4), the top one holding 60%.
    expected = 5 * (1e-4 - 0.1) * np.log(1e-4 / 0.1) + 0.5 * np.log(6)
    assert s.psi == pytest.approx(expected)


def test_a_column_of_few_values_gets_one_bin_per_value():
    reference = np.r_[np.zeros(900), np.ones(100)]
    current = np.r_[np.zeros(500), np.ones(500)]
    s = column_drift(reference, current, kind="numeric")
    assert s.psi == pytest.approx((0.5 - 0.9) * np.log(0.5 / 0.9) + (0.5 - 0.1) * np.log(0.5 / 0.1))


def test_missing_values_are_counted_apart(halves):
    reference, current = halves
    current = current.assign(age=current["age"].astype(float).where(np.arange(len(current)) % 4 != 0))
    column = drift_report(reference, current)["age"]
    assert column.stats.missing_current == pytest.approx(0.25, abs=0.001)
    assert column.stats.missing_reference == 0
    assert not column.drifted


def test_the_report_is_json_safe_and_flat(state_shift):
    report = drift_report(*state_shift)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["drifted"] == report.drifted
    assert {"column", "psi", "p_adjusted", "drifted", "problem"} <= set(data["columns"][0])
    assert list(report.to_frame()["column"]) == [c.column for c in report.columns]


# -- bad input -------------------------------------------------------------------------------------
def test_an_empty_window_gives_every_column_a_message(halves):
    reference, current = halves
    report = drift_report(reference, current.iloc[:0])
    assert report.drifted == []
    assert set(report.problems) == set(reference.columns)
    assert report.problems["age"] == "the current window is empty (0 rows): compare once it holds rows"


def test_an_all_missing_column_gets_a_message_and_the_others_are_compared(state_shift):
    reference, current = state_shift
    report = drift_report(reference, current.assign(age=np.nan))
    assert report.problems == {"age": f"column 'age' is missing in all {len(current):,} rows of the current window: "
                                      "check the source or the pipeline step that fills it"}
    assert "state" in report.drifted


def test_a_column_missing_from_a_window_gets_a_message(halves):
    reference, current = halves
    report = drift_report(reference, current.drop(columns=["tenure"]), columns=["tenure", "age", "bonus"])
    assert report.problems == {
        "tenure": "column 'tenure' is missing from the current window: send it with every record, "
                  "or leave it out of columns=",
        "bonus": "column 'bonus' is not in the reference: drift needs it in both windows; "
                 "pass columns= with the reference's columns",
    }
    assert report["age"].stats is not None


def test_text_in_a_numeric_column_gets_a_message(halves):
    reference, current = halves
    report = drift_report(reference, current.assign(age=current["age"].astype(str)))
    assert report.problems["age"].startswith("column 'age' holds str values in the current window, not numbers")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"psi_threshold": 0}, "psi_threshold must be a positive number; got 0"),
    ({"alpha": 1.5}, "alpha must be in (0, 1); got 1.5"),
    ({"importance": {"age": -1}}, "importance must map columns to finite numbers >= 0; got {'age': -1}"),
])
def test_bad_settings_are_rejected_with_the_fix(halves, kwargs, message):
    with pytest.raises(DataError) as exc:
        drift_report(*halves, **kwargs)
    assert str(exc.value) == message


def test_repeated_column_names_are_rejected(halves):
    reference, current = halves
    doubled = pd.concat([current[["age"]], current[["age"]]], axis=1)
    with pytest.raises(DataError) as exc:
        drift_report(reference, doubled)
    assert str(exc.value) == "the current window has repeated column names: age; give each column one name"


def test_a_window_that_is_not_a_frame_is_rejected(halves):
    with pytest.raises(DataError, match="the current window must be a pandas DataFrame; got list"):
        drift_report(halves[0], [{"age": 30}])


def test_a_bad_alpha_for_one_column_is_rejected_with_the_fix():
    with pytest.raises(DataError) as exc:
        column_drift([1.0, 2.0], [2.0, 3.0], kind="numeric", alpha=0)
    assert str(exc.value) == "alpha must be in (0, 1); got 0"


def test_an_unknown_kind_is_rejected():
    with pytest.raises(DataError, match="kind must be 'numeric' or 'categorical'; got 'text' for column 'x'"):
        column_drift([1.0], [2.0], kind="text", name="x")


def test_the_domain_classifier_rejects_a_window_too_small(halves):
    reference, current = halves
    with pytest.raises(DataError) as exc:
        domain_classifier(reference, current.iloc[:3])
    assert str(exc.value) == ("the current window has 3 rows; the domain classifier needs at least 10 in each "
                              "window: compare once it holds more")


def test_the_domain_classifier_rejects_columns_not_in_both_windows(halves):
    reference, current = halves
    with pytest.raises(DataError, match="column\\(s\\) 'age' are not in both windows"):
        domain_classifier(reference, current.drop(columns=["age"]))
