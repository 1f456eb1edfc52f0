"""``margin_tune.report``: what an experiment holds, read back from MLflow as DataFrames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from margin_tune.pipeline.analysis.html_report import find_comparison, read_page, render_page
from margin_tune.pipeline.analysis.report import Table, build_report, comparison_report
from margin_tune.pipeline.outputs.folders import check_new_file, write_new_file
from margin_tune.pipeline.tracking.provenance import command_line
from margin_tune.pipeline.tracking.reader import ExperimentRuns, open_client
from margin_tune.pipeline.tracking.store import DEFAULT_EXPERIMENT


def report(
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    sweep: str | None = None,
    sort: str | None = None,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """The main table of ``margin-tune report``: one row per sweep and comparison of the
    experiment; with ``sweep``, one row per trial of that sweep, or, for a comparison, one row
    per method (test metrics, mean ± CI). :func:`report_tables` gives every table.

    Raises:
        ConfigError: no such store, experiment or sweep, or an unknown sort column.
    """
    return report_tables(experiment, sweep=sweep, sort=sort, tracking_uri=tracking_uri)[0].frame


def report_tables(
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    sweep: str | None = None,
    comparison: str | None = None,
    sort: str | None = None,
    tracking_uri: str | None = None,
) -> list[Table]:
    """Every table ``margin-tune report`` prints, each titled, in order.

    Without ``sweep``: the sweeps and comparisons, then the best tuning trial per method. With
    ``sweep`` (a sweep id, a run id, or a unique prefix of either): its trials, or a
    comparison's final table and its sweeps. ``sort`` names a metric column, best first by the
    sweep's mode. ``comparison`` is as ``sweep``, but must name a comparison.
    """
    client = open_client(tracking_uri)
    if comparison is not None:
        runs = ExperimentRuns(client, experiment)
        return comparison_report(runs, find_comparison(runs, comparison), sort)
    return build_report(client, experiment, sweep=sweep, sort=sort)


def report_html(
    comparison: str,
    out: str | Path,
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    tracking_uri: str | None = None,
) -> Path:
    """Write one comparison as a self-contained HTML page (``margin-tune report --comparison
    ID --html out.html``) and return its path.

    The page holds the test-class table with 95% CIs, the paired tests with Holm-corrected
    p-values, the tuning budget, the margin and easy-ratio curves, the per-method ROC curves
    and an embedding map per method, and the commands and library versions that produced it:
    CSS and images inline, no link out of the page, so it opens offline. ``comparison`` is a
    comparison's sweep id or run id, or a unique prefix of either.

    Raises:
        ConfigError: naming ``--html`` (the file exists, is not ``.html`` or has no folder:
            nothing is written), ``--comparison`` (no such comparison, a sweep, or one that
            has not written its tables yet), ``--experiment`` or ``--tracking-uri``.
    """
    target = Path(out)
    check_new_file(target, ".html", field="--html")
    runs = ExperimentRuns(open_client(tracking_uri), experiment)
    page = read_page(runs, find_comparison(runs, comparison))
    text = render_page(page, command_line())
    write_new_file(target, lambda path: path.write_text(text, encoding="utf-8"), field="--html")
    return target
