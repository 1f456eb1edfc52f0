"""``margin_tune.report``: what an experiment holds, read back from MLflow as DataFrames."""

from __future__ import annotations

import pandas as pd

from margin_tune.pipeline.analysis.report import Table, build_report
from margin_tune.pipeline.tracking.reader import open_client
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
    sort: str | None = None,
    tracking_uri: str | None = None,
) -> list[Table]:
    """Every table ``margin-tune report`` prints, each titled, in order.

    Without ``sweep``: the sweeps and comparisons, then the best tuning trial per method. With
    ``sweep`` (a sweep id, a run id, or a unique prefix of either): its trials, or a
    comparison's final table and its sweeps. ``sort`` names a metric column, best first by the
    sweep's mode.
    """
    client = open_client(tracking_uri)
    return build_report(client, experiment, sweep=sweep, sort=sort)
