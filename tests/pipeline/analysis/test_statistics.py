"""Means with t confidence intervals and paired tests, checked against independent scipy calls;
Holm's correction; seed means per class split."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from margin_tune.pipeline.analysis.statistics import (
    CONFIDENCE,
    MIN_PAIRS_FOR_WILCOXON,
    MeanInterval,
    holm_bonferroni,
    interval_table,
    mean_interval,
    paired_comparison,
    split_unit_values,
)

SAMPLES = [
    np.array([0.81, 0.84, 0.79, 0.86, 0.83]),
    np.array([1.0, 2.0]),
    np.random.default_rng(0).normal(0.9, 0.02, size=10),
    np.random.default_rng(1).exponential(3.0, size=37),
]


def independent_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Mean ± t_{(1+c)/2, n−1} · s/√n, computed from scratch."""
    n = len(values)
    mean = float(np.sum(values) / n)
    sample_std = math.sqrt(float(np.sum((values - mean) ** 2)) / (n - 1))
    quantile = float(stats.t.ppf((1 + confidence) / 2, n - 1))
    return mean, quantile * sample_std / math.sqrt(n)


# --- mean_interval ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", SAMPLES, ids=lambda v: f"n{len(v)}")
@pytest.mark.parametrize("confidence", [CONFIDENCE, 0.9, 0.99])
def test_mean_interval_equals_an_independent_computation(
    values: np.ndarray, confidence: float
) -> None:
    result = mean_interval(values, confidence)
    mean, half_width = independent_interval(values, confidence)
    assert result.n == len(values)
    assert result.mean == pytest.approx(mean, rel=1e-12)
    assert result.half_width == pytest.approx(half_width, rel=1e-10)
    assert result.half_width > 0


@pytest.mark.parametrize("values", SAMPLES, ids=lambda v: f"n{len(v)}")
def test_mean_interval_equals_scipy_t_interval(values: np.ndarray) -> None:
    result = mean_interval(values)
    low, high = stats.t.interval(
        CONFIDENCE, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )
    assert (result.low, result.high) == pytest.approx((low, high), rel=1e-10)


def test_default_confidence_is_95_percent() -> None:
    assert CONFIDENCE == 0.95
    values = np.array([1.0, 2.0, 4.0])
    # t_{0.975, 2} = 4.302652729...; s = 1.527525...; s / √3 = 0.881917...
    assert mean_interval(values).half_width == pytest.approx(4.302652729 * 0.8819171037, rel=1e-8)
    assert mean_interval(values).mean == pytest.approx(7 / 3)


def test_two_values_use_the_wide_t_quantile() -> None:
    # n = 2: t_{0.975, 1} = 12.706...; s/√2 = 0.5 for values 1 and 2.
    result = mean_interval(np.array([1.0, 2.0]))
    assert result.half_width == pytest.approx(12.7062047 * 0.5, rel=1e-7)
    assert result.low < 1.0 - 5 and result.high > 2.0 + 5


def test_empty_values_give_nan_mean_and_width() -> None:
    result = mean_interval(np.array([]))
    assert result.n == 0
    assert math.isnan(result.mean)
    assert math.isnan(result.half_width)
    assert math.isnan(result.low) and math.isnan(result.high)


def test_one_value_has_a_mean_but_no_width() -> None:
    result = mean_interval(np.array([0.75]))
    assert result == MeanInterval(0.75, result.half_width, 1)
    assert math.isnan(result.half_width)


def test_nan_values_are_ignored() -> None:
    with_nans = np.array([0.8, math.nan, 0.9, 0.85, math.nan])
    result = mean_interval(with_nans)
    clean = mean_interval(np.array([0.8, 0.9, 0.85]))
    assert result == clean
    assert result.n == 3
    assert result.mean == pytest.approx(0.85)


def test_only_nan_values_are_empty() -> None:
    result = mean_interval(np.array([math.nan, math.nan]))
    assert result.n == 0
    assert math.isnan(result.mean)


def test_lists_are_accepted() -> None:
    assert mean_interval([1.0, 2.0, 3.0]) == mean_interval(np.array([1.0, 2.0, 3.0]))  # type: ignore[arg-type]


def test_identical_values_have_zero_width() -> None:
    result = mean_interval(np.full(5, 0.9))
    assert result.mean == pytest.approx(0.9)
    assert result.half_width == 0.0


# --- paired_comparison -----------------------------------------------------------------------


def paired_samples(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(0.80, 0.90, size=n)
    treatment = baseline + shift + rng.normal(0.0, 0.01, size=n)
    return treatment, baseline


@pytest.mark.parametrize(("n", "shift", "seed"), [(10, 0.005, 0), (8, 0.0, 1), (25, -0.003, 2)])
def test_p_values_equal_scipy_paired_tests(n: int, shift: float, seed: int) -> None:
    treatment, baseline = paired_samples(n, shift, seed)
    result = paired_comparison(treatment, baseline)
    assert result.t_pvalue == pytest.approx(stats.ttest_rel(treatment, baseline).pvalue, rel=1e-10)
    assert result.wilcoxon_pvalue == pytest.approx(
        stats.wilcoxon(treatment, baseline).pvalue, rel=1e-10
    )
    assert 0 < result.t_pvalue < 1
    difference = mean_interval(treatment - baseline)
    assert result.difference == difference
    assert result.difference.n == n


def test_p_values_do_not_depend_on_the_scale_of_the_metric() -> None:
    treatment, baseline = paired_samples(10, 0.005, 0)
    reference = paired_comparison(treatment, baseline)
    for scale in (1e3, 1e-6, 1e-9, 1e-12):
        scaled = paired_comparison(treatment * scale, baseline * scale)
        assert scaled.t_pvalue == pytest.approx(reference.t_pvalue, rel=1e-6)
        assert scaled.t_pvalue == pytest.approx(
            stats.ttest_rel(treatment * scale, baseline * scale).pvalue, rel=1e-10
        )
        assert scaled.wilcoxon_pvalue == reference.wilcoxon_pvalue


def test_the_sign_is_treatment_minus_baseline() -> None:
    treatment, baseline = paired_samples(10, 0.02, 3)
    forward = paired_comparison(treatment, baseline)
    backward = paired_comparison(baseline, treatment)
    assert forward.difference.mean > 0
    assert backward.difference.mean == pytest.approx(-forward.difference.mean)
    assert backward.t_pvalue == pytest.approx(forward.t_pvalue)
    assert backward.wilcoxon_pvalue == pytest.approx(forward.wilcoxon_pvalue)


def test_nan_pairs_are_dropped_from_both_sides() -> None:
    treatment, baseline = paired_samples(12, 0.004, 4)
    treatment_gaps = treatment.copy()
    baseline_gaps = baseline.copy()
    treatment_gaps[[1, 5]] = math.nan  # failed runs of the treatment
    baseline_gaps[[5, 9]] = math.nan  # and of the baseline (seed 5 failed in both)
    keep = np.ones(12, dtype=bool)
    keep[[1, 5, 9]] = False
    result = paired_comparison(treatment_gaps, baseline_gaps)
    assert result.difference.n == 9
    assert result.difference == mean_interval(treatment[keep] - baseline[keep])
    assert result.t_pvalue == pytest.approx(
        stats.ttest_rel(treatment[keep], baseline[keep]).pvalue, rel=1e-10
    )
    assert result.wilcoxon_pvalue == pytest.approx(
        stats.wilcoxon(treatment[keep], baseline[keep]).pvalue, rel=1e-10
    )
    # The same, as scipy's own NaN handling would do it.
    assert result.t_pvalue == pytest.approx(
        stats.ttest_rel(treatment_gaps, baseline_gaps, nan_policy="omit").pvalue, rel=1e-10
    )


def test_wilcoxon_needs_six_pairs() -> None:
    assert MIN_PAIRS_FOR_WILCOXON == 6
    treatment, baseline = paired_samples(6, 0.01, 5)
    five = paired_comparison(treatment[:5], baseline[:5])
    six = paired_comparison(treatment, baseline)
    assert math.isnan(five.wilcoxon_pvalue)
    assert five.t_pvalue == pytest.approx(stats.ttest_rel(treatment[:5], baseline[:5]).pvalue)
    assert six.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(treatment, baseline).pvalue)


def test_six_pairs_of_which_one_is_nan_are_five() -> None:
    treatment, baseline = paired_samples(6, 0.01, 6)
    treatment[2] = math.nan
    result = paired_comparison(treatment, baseline)
    assert result.difference.n == 5
    assert math.isnan(result.wilcoxon_pvalue)
    assert not math.isnan(result.t_pvalue)


def test_fewer_than_two_pairs_have_no_tests() -> None:
    one = paired_comparison(np.array([0.9]), np.array([0.8]))
    assert one.difference.n == 1
    assert one.difference.mean == pytest.approx(0.1)
    assert math.isnan(one.difference.half_width)
    assert math.isnan(one.t_pvalue) and math.isnan(one.wilcoxon_pvalue)
    none = paired_comparison(np.array([math.nan, 0.9]), np.array([0.8, math.nan]))
    assert none.difference.n == 0
    assert math.isnan(none.t_pvalue) and math.isnan(none.wilcoxon_pvalue)


def test_identical_arrays_are_constant_and_untested() -> None:
    _, baseline = paired_samples(10, 0.0, 7)
    result = paired_comparison(baseline.copy(), baseline)
    assert result.constant
    assert result.difference.mean == 0.0
    assert result.difference.n == 10
    assert math.isnan(result.difference.half_width)
    assert math.isnan(result.t_pvalue)
    assert math.isnan(result.wilcoxon_pvalue)


def test_a_constant_non_zero_shift_is_constant_and_untested() -> None:
    # Across binades, rounding makes the differences equal only to ~1e-17.
    baseline = np.array([0.1, 0.2, 0.3, 0.55, 0.7, 0.81, 0.83, 0.9, 0.95, 0.99])
    treatment = baseline + 0.01
    assert np.ptp(treatment - baseline) > 0  # not exactly equal: the tolerance decides
    result = paired_comparison(treatment, baseline)
    assert result.constant
    assert result.difference.mean == pytest.approx(0.01)
    assert result.difference.n == 10
    assert math.isnan(result.difference.half_width)
    assert math.isnan(result.difference.low) and math.isnan(result.difference.high)
    assert math.isnan(result.t_pvalue)
    assert math.isnan(result.wilcoxon_pvalue)
    # scipy itself gives a meaningless p ≈ 0 (and warns): that is what is no longer reported.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: "nearly identical" data
        assert stats.ttest_rel(treatment, baseline).pvalue == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n", [2, 3, MIN_PAIRS_FOR_WILCOXON - 1, MIN_PAIRS_FOR_WILCOXON, 20])
@pytest.mark.parametrize("shift", [0.0, 0.01, -0.25, 3.0])
def test_constant_differences_are_constant_for_every_size_and_shift(n: int, shift: float) -> None:
    _, baseline = paired_samples(n, 0.0, n)
    result = paired_comparison(baseline + shift, baseline)
    assert result.constant
    assert result.difference.n == n
    assert result.difference.mean == pytest.approx(shift, abs=1e-12)
    assert math.isnan(result.difference.half_width)
    assert math.isnan(result.t_pvalue) and math.isnan(result.wilcoxon_pvalue)


def test_constant_after_dropping_nan_pairs_is_constant() -> None:
    baseline = np.array([0.80, 0.81, math.nan, 0.83, 0.84])
    treatment = np.array([0.82, 0.83, 0.95, math.nan, 0.86])
    result = paired_comparison(treatment, baseline)
    assert result.constant
    assert result.difference.n == 3
    assert result.difference.mean == pytest.approx(0.02)
    assert math.isnan(result.t_pvalue)


def test_one_pair_is_not_called_constant() -> None:
    result = paired_comparison(np.array([0.9]), np.array([0.8]))
    assert not result.constant
    assert result.difference.n == 1
    assert math.isnan(result.t_pvalue)


def test_a_tiny_real_spread_is_not_constant() -> None:
    treatment, baseline = paired_samples(10, 0.005, 0)
    scaled = paired_comparison(treatment * 1e-9, baseline * 1e-9)
    assert not scaled.constant
    assert 0 < scaled.t_pvalue < 1
    assert scaled.difference.half_width > 0


@pytest.mark.parametrize("seed", range(20))
def test_a_random_non_constant_sample_has_finite_p_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    baseline = rng.uniform(0.5, 0.95, size=n)
    treatment = baseline + rng.normal(rng.normal(0.0, 0.01), 0.02, size=n)
    result = paired_comparison(treatment, baseline)
    assert not result.constant
    assert result.difference.n == n
    assert math.isfinite(result.t_pvalue)
    assert 0 < result.t_pvalue <= 1
    assert math.isfinite(result.difference.half_width) and result.difference.half_width > 0
    assert result.t_pvalue == pytest.approx(stats.ttest_rel(treatment, baseline).pvalue)
    if n >= MIN_PAIRS_FOR_WILCOXON:
        assert 0 < result.wilcoxon_pvalue <= 1
    else:
        assert math.isnan(result.wilcoxon_pvalue)


def test_a_hand_made_improvement_has_a_ci_excluding_zero() -> None:
    baseline = np.array([0.80, 0.82, 0.78, 0.85, 0.81, 0.79, 0.83, 0.80])
    treatment = np.array([0.83, 0.84, 0.82, 0.87, 0.85, 0.80, 0.86, 0.83])
    # differences 0.03 0.02 0.04 0.02 0.04 0.01 0.03 0.03: mean 0.0275, s = 0.0103510...
    result = paired_comparison(treatment, baseline)
    assert result.difference.mean == pytest.approx(0.0275)
    sd = math.sqrt(
        sum((d - 0.0275) ** 2 for d in [0.03, 0.02, 0.04, 0.02, 0.04, 0.01, 0.03, 0.03]) / 7
    )
    assert result.difference.half_width == pytest.approx(
        stats.t.ppf(0.975, 7) * sd / math.sqrt(8), rel=1e-9
    )
    assert result.difference.low > 0
    assert result.t_pvalue < 0.001
    # All eight differences positive: exact two-sided p = 2 / 2**8.
    assert result.wilcoxon_pvalue == pytest.approx(2 / 2**8)


def test_a_noisy_small_effect_has_a_ci_including_zero() -> None:
    baseline = np.array([0.80, 0.82, 0.78, 0.85, 0.81, 0.79])
    treatment = np.array([0.82, 0.81, 0.79, 0.84, 0.83, 0.78])
    result = paired_comparison(treatment, baseline)
    assert result.difference.low < 0 < result.difference.high
    assert result.t_pvalue > 0.05
    assert result.wilcoxon_pvalue > 0.05


# --- holm_bonferroni -------------------------------------------------------------------------


def test_holm_equals_a_hand_computed_example() -> None:
    # Sorted: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04 → 0.06).
    adjusted = holm_bonferroni([0.01, 0.04, 0.03, 0.005])
    assert isinstance(adjusted, np.ndarray)
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02], rtol=1e-12)


def test_holm_caps_at_one() -> None:
    np.testing.assert_allclose(holm_bonferroni([0.3, 0.6, 0.02]), [0.6, 0.6, 0.06], rtol=1e-12)
    np.testing.assert_allclose(holm_bonferroni([0.5, 0.9]), [1.0, 1.0])


def test_holm_keeps_nan_and_does_not_count_it() -> None:
    adjusted = holm_bonferroni([0.01, math.nan, 0.04, math.nan])
    assert math.isnan(adjusted[1]) and math.isnan(adjusted[3])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04], rtol=1e-12)  # m = 2, not 4
    assert np.isnan(holm_bonferroni([math.nan, math.nan])).all()


def test_holm_of_a_single_p_is_that_p() -> None:
    for p in (0.0, 0.003, 0.5, 1.0):
        assert holm_bonferroni([p]).tolist() == [p]
    assert holm_bonferroni([]).shape == (0,)


def test_holm_ties_get_equal_adjusted_values() -> None:
    adjusted = holm_bonferroni([0.01, 0.02, 0.01])
    assert adjusted[0] == adjusted[2] == pytest.approx(0.03)
    assert adjusted[1] == pytest.approx(0.03)


def test_holm_refuses_values_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_bonferroni([0.1, 1.5])
    with pytest.raises(ValueError):
        holm_bonferroni([-0.01])


@pytest.mark.parametrize("seed", range(20))
def test_holm_properties_hold_for_random_p_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 15))
    raw = rng.uniform(0, 1, size=m) ** 3  # plenty of small p-values
    raw[rng.uniform(size=m) < 0.2] = math.nan
    adjusted = holm_bonferroni(raw)
    finite = ~np.isnan(raw)
    assert np.array_equal(np.isnan(adjusted), ~finite)
    a, r = adjusted[finite], raw[finite]
    assert np.all(a >= r)
    assert np.all(a <= 1)
    order = np.argsort(r, kind="stable")
    assert np.all(np.diff(a[order]) >= 0)  # monotone in the order of the raw p-values
    # Never more than Bonferroni, never less than the smallest p times m.
    k = len(r)
    assert np.all(a <= np.minimum(1, k * r) + 1e-15)
    if k:
        assert a.min() == pytest.approx(min(1.0, k * r.min()))
    # The definition, written out.
    sorted_raw = r[order]
    expected = [max(min(1.0, (k - j) * sorted_raw[j]) for j in range(i + 1)) for i in range(k)]
    np.testing.assert_allclose(a[order], expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_holm_equals_statsmodels(seed: int) -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    raw = np.random.default_rng(seed).uniform(0, 0.2, size=12)
    expected = multitest.multipletests(raw, method="holm")[1]
    np.testing.assert_allclose(holm_bonferroni(raw), expected, rtol=1e-12)


# --- interval_table --------------------------------------------------------------------------


def test_interval_table_averages_collapsed_runs_with_values_and_counts_failed_ones() -> None:
    runs = pd.DataFrame(
        {
            "method": ["a", "a", "a", "a", "b", "b"],
            "status": ["completed", "collapsed", "failed", "completed", "completed", "failed"],
            "test_roc_auc": [0.9, 0.5, math.nan, 0.8, 0.7, math.nan],
        }
    )
    table = interval_table(runs, "method", ["a", "b"], {"roc_auc": "test_roc_auc"})
    a, b = table.to_dict("records")
    assert (a["runs"], a["collapsed"], a["failed"], a["roc_auc_n"]) == (4, 1, 1, 3)
    assert a["roc_auc_mean"] == pytest.approx((0.9 + 0.5 + 0.8) / 3)
    assert a["roc_auc_ci95"] == pytest.approx(mean_interval(np.array([0.9, 0.5, 0.8])).half_width)
    assert (b["runs"], b["collapsed"], b["failed"], b["roc_auc_n"]) == (2, 0, 1, 1)
    assert b["roc_auc_mean"] == pytest.approx(0.7)


# --- split_unit_values -----------------------------------------------------------------------


def test_split_unit_values_averages_the_seeds_of_each_split() -> None:
    runs = pd.DataFrame(
        {
            "method": ["b", "a", "a", "a", "a", "b", "b", "b"],
            "split": [0, 1, 0, 0, 1, 0, 1, 1],
            "seed": [0, 0, 0, 1, 1, 1, 0, 1],
            "test_roc_auc": [0.70, 0.86, 0.80, 0.90, math.nan, 0.74, math.nan, math.nan],
            "status": ["completed"] * 4 + ["failed", "completed", "failed", "failed"],
        }
    )
    frame = split_unit_values(runs, "test_roc_auc")
    assert list(frame.columns) == ["method", "split", "test_roc_auc"]
    assert frame[["method", "split"]].values.tolist() == [["a", 0], ["a", 1], ["b", 0], ["b", 1]]
    values = frame["test_roc_auc"].tolist()
    assert values[0] == pytest.approx(0.85)  # mean of 0.80 and 0.90
    assert values[1] == pytest.approx(0.86)  # the NaN seed is skipped
    assert values[2] == pytest.approx(0.72)
    assert math.isnan(values[3])  # every seed failed


def test_split_unit_values_uses_the_named_columns() -> None:
    runs = pd.DataFrame(
        {
            "cell": ["x", "x", "y", "y"],
            "class_split": [3, 3, 3, 3],
            "val_eer": [0.1, 0.3, 0.2, 0.2],
        }
    )
    frame = split_unit_values(runs, "val_eer", by="cell", unit="class_split")
    assert list(frame.columns) == ["cell", "class_split", "val_eer"]
    assert frame["val_eer"].tolist() == pytest.approx([0.2, 0.2])
    assert len(runs) == 4 and list(runs.columns) == ["cell", "class_split", "val_eer"]


def test_split_unit_values_feed_a_paired_comparison_over_splits() -> None:
    rng = np.random.default_rng(11)
    rows = []
    for split in range(6):
        level = rng.uniform(0.75, 0.9)
        for seed in range(3):
            noise = rng.normal(0, 0.01)
            rows.append(("base", split, seed, level + noise))
            rows.append(("new", split, seed, level + 0.02 + noise + rng.normal(0, 0.005)))
    runs = pd.DataFrame(rows, columns=["method", "split", "seed", "value"])
    units = split_unit_values(runs, "value").pivot(index="split", columns="method", values="value")
    assert len(units) == 6
    by_hand = runs.groupby(["method", "split"])["value"].mean().unstack("method")
    np.testing.assert_allclose(units.to_numpy(), by_hand.to_numpy())
    result = paired_comparison(units["new"].to_numpy(), units["base"].to_numpy())
    assert result.difference.n == 6
    assert result.difference.mean == pytest.approx(0.02, abs=0.01)
    assert not result.constant


def test_split_unit_values_names_a_missing_column() -> None:
    runs = pd.DataFrame({"method": ["a"], "seed": [0], "value": [1.0]})
    with pytest.raises(KeyError, match="'split'"):
        split_unit_values(runs, "value")
