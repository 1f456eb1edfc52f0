"""The statistics of the final table: means with 95% CIs and paired tests over seeds.

Every method is re-trained with the same training seeds on the same class split, so method
A's run with seed s and method B's run with seed s share the data order that seed fixes: the
comparison is paired by seed. A collapsed run is an outcome of its method: the caller gives it
its metrics, and it is averaged in and paired like any other run (and also counted). Only a
failed run has no metric (NaN); it is counted, and left out of means and pairs.

When a comparison is repeated over several class splits, the split, not the seed, is the unit
of replication: :func:`split_unit_values` averages the seeds within each split first. Several
comparisons at once are corrected with :func:`holm_bonferroni`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
#: Below this many pairs a Wilcoxon signed-rank test cannot reach p < 0.05 two-sided.
MIN_PAIRS_FOR_WILCOXON = 6


@dataclass(frozen=True)
class MeanInterval:
    """Mean with a two-sided Student-t confidence interval; ``half_width`` is NaN below n = 2."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> MeanInterval:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return MeanInterval(math.nan, math.nan, 0)
    mean = float(values.mean())
    if n < 2:
        return MeanInterval(mean, math.nan, n)
    sem = float(values.std(ddof=1)) / math.sqrt(n)
    quantile = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))
    return MeanInterval(mean, quantile * sem, n)


@dataclass(frozen=True)
class PairedComparison:
    """Difference ``treatment − baseline`` over seeds both have a value for, with its tests.

    ``constant`` is True when there are at least two pairs and every difference is the same
    (up to rounding, see :func:`_constant`); then both p-values and the interval's
    ``half_width`` are NaN.
    """

    difference: MeanInterval
    t_pvalue: float
    wilcoxon_pvalue: float
    constant: bool = False


def paired_comparison(treatment: np.ndarray, baseline: np.ndarray) -> PairedComparison:
    """Paired t-test always; Wilcoxon signed-rank as well when at least 6 pairs remain.

    Pairs with a missing (NaN) side, such as a failed run, are dropped.

    Constant differences (n ≥ 2, all equal up to rounding) get no test and no interval:
    ``t_pvalue``, ``wilcoxon_pvalue`` and ``difference.half_width`` are NaN and ``constant`` is
    True. A zero-variance sample has no standard error, so Student's t is 0/0 (all zero) or
    ±inf (a shift), and its p of 1 or 0 and CI of ±0 would claim a certainty that a handful of
    seeds cannot give: more likely the runs did not depend on the seed at all (a deterministic
    pipeline, a metric that saturated), which is a finding to report, not a significant
    result. The signed-rank test is left out for the same reason, so the two p-values never
    disagree about whether a test was done; ``difference.mean`` still gives the shift.
    """
    treatment = np.asarray(treatment, dtype=float)
    baseline = np.asarray(baseline, dtype=float)
    keep = np.isfinite(treatment) & np.isfinite(baseline)
    differences = treatment[keep] - baseline[keep]
    interval = mean_interval(differences)
    if len(differences) >= 2 and _constant(differences, treatment[keep], baseline[keep]):
        return PairedComparison(
            MeanInterval(interval.mean, math.nan, interval.n),
            math.nan,
            math.nan,
            constant=True,
        )
    t_pvalue = math.nan
    wilcoxon_pvalue = math.nan
    if len(differences) >= 2:
        t_pvalue = float(stats.ttest_1samp(differences, 0.0).pvalue)
    if len(differences) >= MIN_PAIRS_FOR_WILCOXON:
        wilcoxon_pvalue = float(stats.wilcoxon(differences).pvalue)
    return PairedComparison(interval, t_pvalue, wilcoxon_pvalue)


def _constant(differences: np.ndarray, treatment: np.ndarray, baseline: np.ndarray) -> bool:
    """Whether the differences are equal up to the rounding of subtracting these inputs.

    The tolerance scales with the inputs, not an absolute ``1e-8``: a real spread of tiny
    differences (a metric on a 1e-9 scale) still gets Student's t, while ``(b + 0.01) - b``,
    constant but for rounding, is treated as the exact shift it is (no test; t would be
    ±inf or a rounding artefact).
    """
    magnitude = max(float(np.max(np.abs(treatment))), float(np.max(np.abs(baseline))))
    return bool(float(np.ptp(differences)) <= 16 * np.finfo(float).eps * magnitude)


def interval_table(
    runs: pd.DataFrame, by: str, groups: Sequence[Any], columns: Mapping[str, str]
) -> pd.DataFrame:
    """Per group of ``runs[by]``, in the order of ``groups``: runs, collapsed and failed counts,
    and ``<name>_mean``, ``<name>_ci95``, ``<name>_n`` of each ``name → column`` in ``columns``.

    A collapsed run is an outcome of its method: when it carries a value it is averaged in like
    any other run, and counted under ``collapsed`` as well. A failed run has no value (NaN), so
    it is only counted under ``failed``. ``<name>_n`` is the number of finite values averaged.
    """
    rows = []
    for group in groups:
        subset = runs[runs[by] == group]
        row: dict[str, Any] = {
            by: group,
            "runs": len(subset),
            "collapsed": int((subset["status"] == "collapsed").sum()),
            "failed": int((subset["status"] == "failed").sum()),
        }
        for name, column in columns.items():
            interval = mean_interval(subset[column].to_numpy())
            row[f"{name}_mean"] = interval.mean
            row[f"{name}_ci95"] = interval.half_width
            row[f"{name}_n"] = interval.n
        rows.append(row)
    return pd.DataFrame(rows)


def holm_bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order of ``pvalues``.

    With the m finite p-values sorted ascending, ``p_(1) ≤ … ≤ p_(m)``, the adjusted value of
    ``p_(i)`` is ``max_{j ≤ i} min(1, (m − j + 1) · p_(j))``; rejecting where it is below α
    controls the family-wise error rate at α. NaN entries (comparisons without a test) stay
    NaN and do not count toward m.
    """
    raw = np.asarray(pvalues, dtype=float).reshape(-1)
    finite = ~np.isnan(raw)
    values = raw[finite]
    if np.any((values < 0) | (values > 1)):
        raise ValueError(f"p-values must lie in [0, 1] (or be NaN), got {raw.tolist()}")
    adjusted = np.full(raw.shape, math.nan)
    m = len(values)
    if m == 0:
        return adjusted
    order = np.argsort(values, kind="stable")
    multipliers = np.arange(m, 0, -1, dtype=float)  # m − j + 1 for j = 1 … m
    stepped = np.maximum.accumulate(np.minimum(1.0, multipliers * values[order]))
    in_input_order = np.empty(m)
    in_input_order[order] = stepped
    adjusted[finite] = in_input_order
    return adjusted


def split_unit_values(
    runs: pd.DataFrame, value: str, by: str = "method", unit: str = "split"
) -> pd.DataFrame:
    """The mean of ``value`` over the seeds of each ``(by, unit)`` group: columns by, unit, value.

    When a comparison is repeated over class splits, the runs of one split share its classes,
    so their seeds are not independent replicates of the comparison; the split is. This gives
    one value per method and split, to pair over splits. NaN values (failed runs) are skipped;
    a group whose values are all NaN gives NaN. Groups are sorted by ``by``, then ``unit``.
    """
    missing = [column for column in (by, unit, value) if column not in runs.columns]
    if missing:
        raise KeyError(f"runs has no column {', '.join(map(repr, missing))}")
    values = pd.to_numeric(runs[value], errors="raise").astype(float)
    grouped = values.groupby([runs[by], runs[unit]], sort=True).mean()
    frame = grouped.reset_index()
    frame.columns = pd.Index([by, unit, value])
    return frame
