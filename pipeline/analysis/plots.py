"""The figures a sweep and a comparison leave behind (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from margin_tune.pipeline.analysis.pareto import Direction
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG
from margin_tune.trainables.metric_names import (
    EASY_RATIO,
    EER,
    EFFECTIVE_MARGIN_QUANTILES,
    MAP_AT_R,
    MARGIN,
    RECALL_AT_1,
    ROC_AUC,
    TAR_AT_FAR,
    TEST_PREFIX,
    TRAIN_LOSS,
    VALIDATION_PREFIX,
)

#: Most lines a plot draws: past a dozen, a legend cannot be read and colours repeat.
MAX_LINES = 12
#: What each evaluation measures, in words and units, for an axis.
METRIC_AXES = {
    ROC_AUC: "ROC-AUC (0–1)",
    EER: "equal error rate (fraction of pairs, 0–1)",
    TAR_AT_FAR: "TAR at FAR = 1e-3 (fraction of same-class pairs)",
    RECALL_AT_1: "Recall@1 (fraction of queries, 0–1)",
    MAP_AT_R: "MAP@R (0–1)",
}
#: The per-epoch training columns, in words and units.
EPOCH_AXES = {
    MARGIN: "margin μ (distance between unit-length embeddings, 0–2)",
    EASY_RATIO: "easy triplets (fraction of the epoch's triplets)",
    EFFECTIVE_MARGIN_QUANTILES[1]: "median d(a,n) − d(a,p) (embedding distance)",
    TRAIN_LOSS: "training loss (per triplet)",
}


def axis_label(column: str) -> str:
    """``val_map_at_r`` → ``validation MAP@R (0–1)``; a column without words keeps its name."""
    for prefix, part in ((VALIDATION_PREFIX, "validation"), (TEST_PREFIX, "test")):
        bare = column.removeprefix(prefix)
        if column.startswith(prefix) and bare in METRIC_AXES:
            return f"{part} {METRIC_AXES[bare]}"
    return EPOCH_AXES.get(column, column)


def epoch_curves(
    histories: Mapping[str, pd.DataFrame], column: str, title: str, path: Path
) -> Path | None:
    """:func:`epoch_figure` saved to ``path``; None if no history has the column."""
    return save(epoch_figure(histories, column, title), path)


def save(figure: Figure | None, path: Path) -> Path | None:
    """Write ``figure`` as a PNG and free it; None for no figure."""
    if figure is None:
        return None
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


_Line = TypeVar("_Line")


def at_most_a_dozen(lines: list[_Line], title: str) -> tuple[list[_Line], str]:
    """The first :data:`MAX_LINES` lines (callers put the best first), and the title saying
    how many were left out when some were."""
    if len(lines) <= MAX_LINES:
        return lines, title
    return lines[:MAX_LINES], f"{title} (best {MAX_LINES} of {len(lines)})"


def epoch_figure(histories: Mapping[str, pd.DataFrame], column: str, title: str) -> Figure | None:
    """One line per history of a per-epoch column, labelled by its key (a method, a cell, a
    trial's config); None if none has the column.

    At most :data:`MAX_LINES` are drawn, the first in the mapping's order: callers order
    them best first, and the title says how many were left out. Epochs are whole numbers on
    the axis.
    """
    drawn = [(name, h) for name, h in histories.items() if column in h and "epoch" in h]
    if not drawn:
        return None
    drawn, title = at_most_a_dozen(drawn, title)
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    for name, history in drawn:
        axes.plot(history["epoch"], history[column], marker=".", linewidth=1, label=name)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(axis_label(column), fontsize=8)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=6.5, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


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


def roc_plot(
    curves: Mapping[str, list[np.ndarray]], far: np.ndarray, title: str, path: Path
) -> Path | None:
    """:func:`roc_figure` saved to ``path``; None without curves."""
    return save(roc_figure(curves, far, title), path)


def roc_figure(
    curves: Mapping[str, list[np.ndarray]], far: np.ndarray, title: str
) -> Figure | None:
    """Each method's ROC curve on one plot: the mean true-accept rate over its runs at each
    false-accept rate of ``far`` (log scale, where verification is used); None without curves.

    ``curves`` maps a method to the TAR arrays of its runs, best method first; at most
    :data:`MAX_LINES` are drawn.
    """
    drawn = [(name, np.vstack(tars)) for name, tars in curves.items() if tars]
    if not drawn:
        return None
    drawn, title = at_most_a_dozen(drawn, title)
    figure, axes = plt.subplots(figsize=(6.5, 4.6))
    for name, tars in drawn:
        # A false-accept rate below what a small test set can resolve is NaN in every run:
        # its mean stays NaN (a gap in the line), without numpy's "Mean of empty slice".
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(tars, axis=0)
        axes.plot(far, mean, linewidth=1.4, label=f"{name} (n={len(tars)})")
    axes.set_xscale("log")
    axes.set_xlabel("false accept rate (fraction of different-class pairs, log scale)")
    axes.set_ylabel("true accept rate (fraction of same-class pairs)")
    axes.set_ylim(0, 1.01)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure


def embedding_map(
    xy: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], title: str, path: Path
) -> Path:
    """:func:`map_figure` saved to ``path``."""
    saved = save(map_figure(xy, labels, class_names, title), path)
    assert saved is not None
    return saved


def map_figure(
    xy: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], title: str
) -> Figure:
    """A t-SNE map of test samples, one colour per class, the classes named in the legend.

    t-SNE's coordinates have no unit (only neighbourhoods mean something), and the axes say so.
    """
    figure, axes = plt.subplots(figsize=(6.2, 5.0))
    colours = plt.get_cmap("tab10")
    for index, label in enumerate(np.unique(labels)):
        chosen = labels == label
        axes.scatter(
            xy[chosen, 0],
            xy[chosen, 1],
            s=10,
            color=colours(index % 10),
            label=class_names[int(label)],
        )
    axes.set_xlabel("t-SNE 1 (no unit: only neighbours are meaningful)", fontsize=8)
    axes.set_ylabel("t-SNE 2 (no unit)", fontsize=8)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.0, 0.5), title="test class")
    figure.tight_layout()
    return figure


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
    named = labelled_best_first(trials, histories, metric, mode)
    made = [
        epoch_curves(named, MARGIN, "margin μ per epoch", directory / "margin.png"),
        epoch_curves(
            named, EASY_RATIO, "easy-triplet ratio per epoch", directory / "easy_ratio.png"
        ),
        epoch_curves(named, metric, f"{metric} per epoch", directory / f"{metric}.png"),
        epoch_curves(
            named,
            EFFECTIVE_MARGIN_QUANTILES[1],
            "median effective margin d(a,n) − d(a,p) per epoch",
            directory / "effective_margin.png",
        ),
        parameter_importance_plot(
            trials, metric, mode, distributions, directory / "importance.png"
        ),
    ]
    return [path for path in made if path is not None]


def labelled_best_first(
    trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame], metric: str, mode: str
) -> dict[str, pd.DataFrame]:
    """The trials' histories keyed by their run names (the config, not Tune's trial id), the
    trials that trained their whole budget first, each group by its last value of ``metric``,
    best first. A trial that did not complete says how it ended and when; a name two trials
    share gets the trial id."""
    if trials.empty or not {"name", "status", metric} <= set(trials):
        return dict(histories)
    ordered = trials.assign(_short=trials["status"] != "completed").sort_values(
        ["_short", metric], ascending=[True, mode == "min"], na_position="last"
    )
    counts = ordered["name"].value_counts()
    named = {}
    for row in ordered.to_dict("records"):
        trial_id, name = row[TRIAL_ID_TAG], row["name"]
        if trial_id not in histories:
            continue
        label = name if counts[name] == 1 else f"{name} ({trial_id})"
        if row["status"] != "completed":
            label += f" [{row['status'].replace('_', ' ')} at epoch {row.get('epochs', '?')}]"
        named[label] = histories[trial_id]
    return named


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


def pareto_plot(
    trials: pd.DataFrame, front: pd.DataFrame, objectives: Sequence[Direction], path: Path
) -> Path | None:
    """The first two objectives of every completed trial, the front's points joined; more
    objectives are listed in the title (the front is computed over all of them)."""
    x, y = objectives[0], objectives[1]
    status = trials["status"] if "status" in trials else pd.Series("completed", trials.index)
    done = trials[(status == "completed")].dropna(subset=[x.metric, y.metric])
    if done.empty:
        return None
    figure, axes = plt.subplots(figsize=(7, 5))
    axes.scatter(done[x.metric], done[y.metric], color="0.6", label="completed trial")
    ordered = front.sort_values(x.metric)
    axes.plot(
        ordered[x.metric],
        ordered[y.metric],
        "o-",
        color="tab:red",
        label=f"Pareto front ({len(front)} trials)",
    )
    axes.set_xlabel(f"{x.metric} ({x.mode})")
    axes.set_ylabel(f"{y.metric} ({y.mode})")
    others = ", ".join(f"{o.metric} ({o.mode})" for o in objectives[2:])
    axes.set_title(
        "Pareto front of the completed trials" + (f"; also over {others}" if others else "")
    )
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(figure, path)


def schedule_plot(schedule: pd.DataFrame, path: Path) -> Path | None:
    """A population's learned schedule: μ and the learning rate per epoch of the best member,
    each stretch coloured by the trial that trained it (its lineage)."""
    if schedule.empty:
        return None
    figure, (margin_axes, lr_axes) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    owners = list(dict.fromkeys(schedule["trial_id"]))
    colours = plt.get_cmap("tab10")
    for index, owner in enumerate(owners):
        part = schedule[schedule["trial_id"] == owner]
        colour = colours(index % 10)
        margin_axes.plot(part["epoch"], part["margin"], "o", color=colour, label=f"trial {owner}")
        lr_axes.plot(part["epoch"], part["train.lr"], "o", color=colour)
    margin_axes.plot(schedule["epoch"], schedule["margin"], "-", color="0.5", zorder=0)
    lr_axes.plot(schedule["epoch"], schedule["train.lr"], "-", color="0.5", zorder=0)
    margin_axes.set_ylabel("margin μ")
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_yscale("log")
    lr_axes.set_xlabel("epoch")
    lr_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    margin_axes.set_title(
        "learned schedule of the best member, by the trial that trained each epoch"
    )
    margin_axes.legend(fontsize=8)
    for axes in (margin_axes, lr_axes):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(figure, path)
