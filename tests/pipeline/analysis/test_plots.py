"""The pictures people look at meet the house's criteria: legends that name the method or
config, at most 12 lines, whole-number epochs, axes labelled with units."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from margin_tune.pipeline.analysis.plots import (
    MAX_LINES,
    axis_label,
    epoch_figure,
    labelled_best_first,
    map_figure,
    roc_figure,
)
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG
from margin_tune.trainables.metric_names import EASY_RATIO, MARGIN, on_validation
from margin_tune.trainables.metrics.views import FAR_GRID


def history(epochs: int, offset: float) -> pd.DataFrame:
    steps = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": steps, MARGIN: 0.1 * steps + offset, EASY_RATIO: 0.5})


def legend_texts(figure: plt.Figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].get_legend().get_texts()]


def test_epoch_curves_draw_a_dozen_named_lines_on_whole_epochs() -> None:
    histories = {f"dams μ0={i / 10:.1f} lr=1e-03": history(7, i / 10) for i in range(15)}
    figure = epoch_figure(histories, MARGIN, "margin μ per epoch")
    assert figure is not None
    axes = figure.axes[0]
    assert len(axes.get_lines()) == MAX_LINES == 12
    assert legend_texts(figure) == list(histories)[:MAX_LINES]
    assert "best 12 of 15" in axes.get_title()
    ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert axes.get_xlabel() == "epoch"
    assert "distance" in axes.get_ylabel() and "(" in axes.get_ylabel()
    plt.close(figure)
    assert epoch_figure(histories, "not_a_column", "nothing") is None


@pytest.mark.parametrize(
    ("column", "words"),
    [
        (MARGIN, "margin μ (distance"),
        (EASY_RATIO, "fraction"),
        (on_validation("map_at_r"), "validation MAP@R (0–1)"),
        ("test_eer", "test equal error rate (fraction"),
    ],
)
def test_axes_say_what_a_column_measures_and_in_what_unit(column: str, words: str) -> None:
    assert axis_label(column).startswith(words) or words in axis_label(column)


def test_trials_are_named_by_config_completed_ones_first_best_first() -> None:
    trials = pd.DataFrame(
        {
            TRIAL_ID_TAG: ["a", "b", "c", "d"],
            "name": ["dams μ0=0.1", "dams μ0=0.2", "dams μ0=0.3", "dams μ0=0.3"],
            "status": ["completed", "early_stopped", "completed", "completed"],
            "epochs": [4, 1, 4, 4],
            "val_map_at_r": [0.5, 0.9, 0.7, 0.6],
        }
    )
    histories = {trial_id: history(4, 0) for trial_id in "abcd"}
    named = labelled_best_first(trials, histories, "val_map_at_r", "max")
    assert list(named) == [
        "dams μ0=0.3 (c)",
        "dams μ0=0.3 (d)",
        "dams μ0=0.1",
        "dams μ0=0.2 [early stopped at epoch 1]",
    ]
    lowest_first = labelled_best_first(trials, histories, "val_map_at_r", "min")
    assert next(iter(lowest_first)) == "dams μ0=0.1"


def test_the_roc_plot_has_one_line_per_method_on_a_log_rate_axis() -> None:
    rising = np.sqrt(FAR_GRID)
    curves = {f"method{i}": [rising, rising * 0.9] for i in range(14)}
    figure = roc_figure(curves, FAR_GRID, "test ROC")
    assert figure is not None
    axes = figure.axes[0]
    assert len(axes.get_lines()) == MAX_LINES
    assert legend_texts(figure)[0] == "method0 (n=2)"
    np.testing.assert_allclose(axes.get_lines()[0].get_ydata(), rising * 0.95)
    assert axes.get_xscale() == "log"
    assert "false accept rate (fraction" in axes.get_xlabel()
    assert "true accept rate (fraction" in axes.get_ylabel()
    plt.close(figure)
    assert roc_figure({"empty": []}, FAR_GRID, "none") is None


def test_the_map_names_its_classes() -> None:
    labels = np.repeat([3, 7], 5)
    xy = np.random.default_rng(0).normal(size=(10, 2))
    names = tuple(f"bird {i}" for i in range(10))
    figure = map_figure(xy, labels, names, "dams seed 1")
    assert legend_texts(figure) == ["bird 3", "bird 7"]
    assert "no unit" in figure.axes[0].get_xlabel()
    plt.close(figure)
