"""The figures a sweep and a comparison leave behind (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import optuna
import pandas as pd

from margin_tune.trainables.metric_names import EASY_RATIO, EFFECTIVE_MARGIN_QUANTILES, MARGIN


def epoch_curves(
    histories: Mapping[str, pd.DataFrame], column: str, title: str, path: Path
) -> Path | None:
    """One line per history (a trial, or a method) of a per-epoch column; None if none has it."""
    drawn = [(name, h) for name, h in histories.items() if column in h and "epoch" in h]
    if not drawn:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, history in drawn:
        axes.plot(history["epoch"], history[column], marker=".", linewidth=1, label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel(column)
    axes.set_title(title)
    if len(drawn) <= 12:
        axes.legend(fontsize=7, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def epoch_curve_files(
    histories: Mapping[str, pd.DataFrame], titles: Mapping[str, str], prefix: Path
) -> list[Path]:
    """:func:`epoch_curves` of each ``column → title``, as ``<prefix>_<column>.png``; only the
    columns some history has."""
    made = [
        epoch_curves(histories, column, title, prefix.with_name(f"{prefix.name}_{column}.png"))
        for column, title in titles.items()
    ]
    return [path for path in made if path is not None]


def sweep_plots(
    trials: pd.DataFrame,
    histories: Mapping[str, pd.DataFrame],
    *,
    metric: str,
    mode: str,
    distributions: Mapping[str, optuna.distributions.BaseDistribution],
    directory: Path,
) -> list[Path]:
    """Margin, easy-ratio and validation curves of every trial, and parameter importances.

    Takes the sweep's tables, not the sweep: ``trials`` (one row per trial, ``config.<path>``
    columns) and each trial's epoch history, the tuned ``metric`` and ``mode``, and the Optuna
    distributions of the searched parameters.
    """
    directory.mkdir(parents=True, exist_ok=True)
    made = [
        epoch_curves(histories, MARGIN, "margin μ per epoch", directory / "margin.png"),
        epoch_curves(histories, EASY_RATIO, "easy-triplet ratio", directory / "easy_ratio.png"),
        epoch_curves(histories, metric, f"{metric} per epoch", directory / f"{metric}.png"),
        epoch_curves(
            histories,
            EFFECTIVE_MARGIN_QUANTILES[1],
            "median effective margin d(a,n) − d(a,p)",
            directory / "effective_margin.png",
        ),
        parameter_importance_plot(
            trials, metric, mode, distributions, directory / "importance.png"
        ),
    ]
    return [path for path in made if path is not None]


def parameter_importance_plot(
    trials: pd.DataFrame,
    metric: str,
    mode: str,
    distributions: Mapping[str, optuna.distributions.BaseDistribution],
    path: Path,
) -> Path | None:
    """fANOVA importances of the searched parameters, computed by Optuna on the sweep's trials."""
    if metric not in trials:
        return None
    finished = trials.dropna(subset=[metric])
    if len(finished) < 3 or not distributions:
        return None
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, row in finished.iterrows():
        params = {name: row.get(f"config.{name}") for name in distributions}
        if any(
            value is None or (isinstance(value, float) and math.isnan(value))
            for value in params.values()
        ):
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dict(distributions), value=float(row[metric])
            )
        )
    if len(study.trials) < 3:
        return None
    importances = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
    )
    figure, axes = plt.subplots(figsize=(6, 0.5 + 0.4 * len(importances)))
    names = list(importances)[::-1]
    axes.barh(names, [importances[name] for name in names])
    axes.set_xlabel(f"importance for {metric} (fANOVA)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def comparison_bars(table: pd.DataFrame, metrics: tuple[str, ...], path: Path) -> Path:
    """One panel per test metric: each method's mean with its 95% CI."""
    figure, axes_row = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6))
    for axes, metric in zip(axes_row, metrics, strict=True):
        errors = table[f"{metric}_ci95"].fillna(0.0)
        axes.bar(table["method"], table[f"{metric}_mean"], yerr=errors, capsize=4)
        axes.set_title(metric)
        axes.tick_params(axis="x", rotation=45)
        _zoom(axes, table[f"{metric}_mean"], table[f"{metric}_ci95"], axis="y")
        axes.grid(axis="y", alpha=0.3)
    figure.suptitle("test classes: mean ± 95% CI over training seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def cell_bars(cells: pd.DataFrame, metric: str, path: Path) -> Path:
    """An ablation's cells, best at the top: mean of ``metric`` with its 95% CI over seeds."""
    ordered = cells.sort_values("rank", ascending=False, na_position="first")
    figure, axes = plt.subplots(figsize=(7.5, 1.0 + 0.32 * len(ordered)))
    axes.barh(
        ordered["cell"],
        ordered[f"{metric}_mean"],
        xerr=ordered[f"{metric}_ci95"].fillna(0.0),
        capsize=3,
    )
    _zoom(axes, ordered[f"{metric}_mean"], ordered[f"{metric}_ci95"], axis="x")
    axes.set_xlabel(f"{metric}: mean ± 95% CI over seeds")
    axes.tick_params(axis="y", labelsize=7)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main_effect_plot(effects: pd.DataFrame, metric: str, path: Path) -> Path:
    """One panel per factor: the mean of ``metric`` at each level, with its 95% CI."""
    factors = list(dict.fromkeys(effects["factor"]))
    figure, axes_row = plt.subplots(
        1, len(factors), figsize=(2.8 * len(factors), 3.4), sharey=True, squeeze=False
    )
    for axes, factor in zip(axes_row[0], factors, strict=True):
        rows = effects[effects["factor"] == factor]
        axes.errorbar(
            range(len(rows)), rows["mean"], yerr=rows["ci95"].fillna(0.0), marker="o", capsize=4
        )
        axes.set_xticks(range(len(rows)), [str(level) for level in rows["level"]], rotation=30)
        axes.set_title(factor, fontsize=9)
        axes.grid(alpha=0.3)
    _zoom(axes_row[0][0], effects["mean"], effects["ci95"], axis="y")
    axes_row[0][0].set_ylabel(metric)
    figure.suptitle("main effects: mean over the cells at each level, 95% CI over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _zoom(axes: plt.Axes, means: pd.Series, half_widths: pd.Series, *, axis: str) -> None:
    """Limit an axis to the values and their CIs, padded: differences of 0.01 stay visible."""
    errors = half_widths.fillna(0.0)
    low, high = (means - errors).min(), (means + errors).max()
    if not (math.isfinite(low) and math.isfinite(high)):
        return
    pad = max((high - low) * 0.3, 1e-3)
    (axes.set_xlim if axis == "x" else axes.set_ylim)(low - pad, high + pad)
