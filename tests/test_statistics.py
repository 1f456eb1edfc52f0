"""Means with t confidence intervals and paired tests, checked against independent scipy calls."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from pipeline.statistics import (
    CONFIDENCE,
    MIN_PAIRS_FOR_WILCOXON,
    MeanInterval,
    mean_interval,
    paired_comparison,
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
    treatment_gaps[[1, 5]] = math.nan  # collapsed runs of the treatment
    baseline_gaps[[5, 9]] = math.nan  # and of the baseline (seed 5 collapsed in both)
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


def test_identical_arrays_have_no_difference() -> None:
    _, baseline = paired_samples(10, 0.0, 7)
    result = paired_comparison(baseline.copy(), baseline)
    assert result.difference.mean == 0.0
    assert result.difference.half_width == 0.0
    assert result.t_pvalue == 1.0
    assert result.wilcoxon_pvalue == 1.0


def test_a_constant_non_zero_shift_is_certain() -> None:
    _, baseline = paired_samples(10, 0.0, 8)
    treatment = baseline + 0.01  # rounding makes the differences equal only to ~1e-17
    result = paired_comparison(treatment, baseline)
    assert result.difference.mean == pytest.approx(0.01)
    assert result.difference.half_width == pytest.approx(0.0, abs=1e-12)
    assert result.t_pvalue == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: "nearly identical" data
        assert stats.ttest_rel(treatment, baseline).pvalue == pytest.approx(0.0, abs=1e-12)
    # Every difference positive: the exact two-sided Wilcoxon p is 2 / 2**10.
    assert result.wilcoxon_pvalue == pytest.approx(2 / 2**10)
    assert result.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(treatment, baseline).pvalue)


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
