"""The statistics of the final table: means with 95% CIs and paired tests over seeds.

Every method is re-trained with the same training seeds on the same class split, so method
A's run with seed s and method B's run with seed s share the data order that seed fixes: the
comparison is paired by seed. Collapsed runs are excluded from means and from pairs, and
counted separately by the caller.
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
    """Difference ``treatment − baseline`` over seeds both finished, with its tests."""

    difference: MeanInterval
    t_pvalue: float
    wilcoxon_pvalue: float


def paired_comparison(treatment: np.ndarray, baseline: np.ndarray) -> PairedComparison:
    """Paired t-test always; Wilcoxon signed-rank as well when at least 6 pairs remain.

    Pairs with a missing (NaN) side, such as a collapsed run, are dropped.
    """
    treatment = np.asarray(treatment, dtype=float)
    baseline = np.asarray(baseline, dtype=float)
    keep = np.isfinite(treatment) & np.isfinite(baseline)
    differences = treatment[keep] - baseline[keep]
    interval = mean_interval(differences)
    t_pvalue = math.nan
    wilcoxon_pvalue = math.nan
    if len(differences) >= 2:
        if _constant(differences, treatment[keep], baseline[keep]):
            t_pvalue = 1.0 if np.all(differences == 0) else 0.0
        else:
            t_pvalue = float(stats.ttest_1samp(differences, 0.0).pvalue)
    if len(differences) >= MIN_PAIRS_FOR_WILCOXON:
        wilcoxon_pvalue = (
            1.0 if np.all(differences == 0) else float(stats.wilcoxon(differences).pvalue)
        )
    return PairedComparison(interval, t_pvalue, wilcoxon_pvalue)


def _constant(differences: np.ndarray, treatment: np.ndarray, baseline: np.ndarray) -> bool:
    """Whether the differences are equal up to the rounding of subtracting these inputs.

    The tolerance scales with the inputs, not an absolute ``1e-8``: a real spread of tiny
    differences (a metric on a 1e-9 scale) still gets Student's t, while ``(b + 0.01) - b``,
    constant but for rounding, is treated as the exact shift it is (p = 0; t would be ±inf).
    """
    magnitude = max(float(np.max(np.abs(treatment))), float(np.max(np.abs(baseline))))
    return bool(float(np.ptp(differences)) <= 16 * np.finfo(float).eps * magnitude)


def interval_table(
    runs: pd.DataFrame, by: str, groups: Sequence[Any], columns: Mapping[str, str]
) -> pd.DataFrame:
    """Per group of ``runs[by]``, in the order of ``groups``: runs, collapsed and failed counts,
    and ``<name>_mean``, ``<name>_ci95``, ``<name>_n`` of each ``name → column`` in ``columns``.

    A run's value is NaN unless it completed, so collapsed and failed runs are counted here,
    never averaged in.
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
