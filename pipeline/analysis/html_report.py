"""One comparison as a single HTML file to share: everything inline, nothing fetched.

A reviewer gets one file by mail or in a paper's supplement and opens it anywhere, offline, years
later. So the page holds its own CSS and its images as ``data:`` URIs, links only to its own
sections, and is built from what the comparison logged to MLflow (its ``comparison/``
artifacts, the re-training runs' embedding maps and the provenance tags), not from an output
directory that may be on another machine. The numbers are the logged ``table.csv``,
``comparisons.csv`` and ``tuning.csv`` as they are: each table cell also carries the unrounded
value (``data-value``), so the page can be checked against the CSV it came from.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Run

from margin_tune.pipeline.analysis.tables import mean_ci, p_value, score
from margin_tune.pipeline.outputs.folders import BASE_CONFIG
from margin_tune.pipeline.tracking.reader import (
    ExperimentRuns,
    quiet_downloads,
    run_kind,
    sweep_id_of,
)
from margin_tune.pipeline.tracking.vocabulary import (
    COMMAND_TAG,
    COMPARISON_ARTIFACTS,
    COMPARISON_KIND,
    DATASET_TAG,
    FINAL_STAGE,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    HOST_TAG,
    MAP_ARTIFACT,
    METHOD_TAG,
    RESUMED_BY_PREFIX,
    SEED_TAG,
    SPLIT_TAG,
    STAGE_TAG,
    VERSION_TAG,
    VERSIONS_PREFIX,
    tag_value,
)
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metric_names import VALIDATION_PREFIX, best_mode, metrics_of, on_test

#: The plots of ``comparison/``, in the page's order, with what each shows.
FIGURES = {
    "test_metrics.png": "Test metrics per method: mean and 95% CI over the re-training units.",
    "final_margin.png": "Margin μ per epoch: each method's chosen config, first re-training.",
    "final_easy_ratio.png": "Proportion of easy triplets per epoch, first re-training.",
    "roc.png": "Test ROC per method: the mean over its re-trainings.",
}
#: The figures that span the page; the others sit two abreast.
_WIDE = ("test_metrics.png",)
#: The CSV tables a finished comparison logs; the page needs all three.
TABLES = ("table.csv", "comparisons.csv", "tuning.csv")

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d232b;
  margin: 0 auto; max-width: 1180px; padding: 24px 32px 64px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; margin-top: 36px; border-bottom: 1px solid #d7dce2; padding-bottom: 4px; }
.meta { color: #5b6570; margin-top: 0; }
nav a { margin-right: 14px; color: #1f5fa8; text-decoration: none; }
table { border-collapse: collapse; margin: 12px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d7dce2; padding: 4px 9px; text-align: right; }
th { background: #f0f3f6; }
td.text { text-align: left; }
thead th { text-align: center; }
tr.best td { background: #eef7ee; }
figure { margin: 16px 0; }
figure img { max-width: 100%; border: 1px solid #e3e7eb; }
figcaption { color: #5b6570; font-size: 13px; }
.maps { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 13px;
  white-space: pre-wrap; word-break: break-all; }
.note { background: #fff8e5; border-left: 4px solid #e0b000; padding: 6px 10px; }
"""


@dataclass(frozen=True)
class ComparisonPage:
    """The parts of a comparison the page shows, read from its MLflow runs."""

    comparison: Run
    table: pd.DataFrame
    comparisons: pd.DataFrame
    tuning: pd.DataFrame
    caption: list[str]
    figures: dict[str, bytes]
    #: (title, PNG) of one re-training per method and split: the lowest seed's.
    maps: list[tuple[str, bytes]]
    base_config: str | None
    #: The command that produced the comparison, then each that resumed it.
    commands: list[str] = field(default_factory=list)


def find_comparison(runs: ExperimentRuns, key: str) -> Run:
    """The comparison run named by ``key`` (a sweep id, run id, or unique prefix of either).

    Raises:
        ConfigError: naming ``--comparison``, when nothing or a sweep matches.
    """
    run = runs.find(key, field="--comparison")
    if run_kind(run) != COMPARISON_KIND:
        raise ConfigError(
            "--comparison",
            f"{key!r} is a {run_kind(run) or 'run'} ({run.info.run_name}), not a comparison; "
            "--sweep shows it",
        )
    return run


def read_page(runs: ExperimentRuns, comparison: Run) -> ComparisonPage:
    """Download what the page shows from the store.

    Raises:
        ConfigError: naming ``--comparison`` when the run has no tables yet (still running,
            or cut off before it wrote them).
    """
    client, run_id = runs.client, comparison.info.run_id
    listed = {
        item.path.split("/")[-1] for item in client.list_artifacts(run_id, COMPARISON_ARTIFACTS)
    }
    missing = [name for name in TABLES if name not in listed]
    if missing:
        raise ConfigError(
            "--comparison",
            f"comparison {sweep_id_of(comparison)} ({comparison.info.status}) has no "
            f"{', '.join(missing)} among its artifacts: it has not written its tables yet; "
            "finish it with margin-tune resume",
        )
    with quiet_downloads(), tempfile.TemporaryDirectory(prefix="margin-tune-") as scratch:
        local = Path(client.download_artifacts(run_id, COMPARISON_ARTIFACTS, scratch))
        frames = [_read_table(local / name) for name in TABLES]
        markdown = local / "table.md"
        caption = _prose(markdown.read_text(encoding="utf-8")) if markdown.is_file() else []
        figures = {
            name: (local / name).read_bytes() for name in FIGURES if (local / name).is_file()
        }
        config = local / BASE_CONFIG
        base_config = config.read_text(encoding="utf-8") if config.is_file() else None
        maps = _maps(runs, comparison, Path(scratch))
    tags = comparison.data.tags
    commands = [tags[key] for key in (COMMAND_TAG, RESUMED_BY_PREFIX + COMMAND_TAG) if key in tags]
    table, comparisons, tuning = frames
    return ComparisonPage(
        comparison, table, comparisons, tuning, caption, figures, maps, base_config, commands
    )


def _read_table(path: Path) -> pd.DataFrame:
    """A logged CSV table; one with no rows and no header (nothing to pair) as empty."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _prose(markdown: str) -> list[str]:
    """The caption paragraphs of ``table.md``: the text before its first table."""
    paragraphs = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            break
        if line.strip() and not line.startswith("#"):
            paragraphs.append(line.removeprefix("> ").strip())
    return paragraphs


def _maps(runs: ExperimentRuns, comparison: Run, scratch: Path) -> list[tuple[str, bytes]]:
    finals = [
        run for run in runs.children(comparison) if run.data.tags.get(STAGE_TAG) == FINAL_STAGE
    ]
    first: dict[tuple[str, str], Run] = {}
    for run in sorted(finals, key=lambda r: int(tag_value(r.data.tags, SEED_TAG, "0"))):
        method = tag_value(run.data.tags, METHOD_TAG, str(run.info.run_name))
        key = (tag_value(run.data.tags, SPLIT_TAG, "0"), method)
        first.setdefault(key, run)
    several = len({split for split, _ in first}) > 1
    order = comparison.data.params.get("methods", "").split(",")

    def place(key: tuple[str, str]) -> tuple[int, int, str]:
        split, method = key
        return (int(split), order.index(method) if method in order else len(order), method)

    maps = []
    for (split, method), run in sorted(first.items(), key=lambda item: place(item[0])):
        names = {item.path for item in runs.client.list_artifacts(run.info.run_id)}
        if MAP_ARTIFACT not in names:
            continue
        path = runs.client.download_artifacts(run.info.run_id, MAP_ARTIFACT, str(scratch))
        seed = tag_value(run.data.tags, SEED_TAG, "?")
        where = f", split {split}" if several else ""
        maps.append((f"{method}, re-training seed {seed}{where}", Path(path).read_bytes()))
    return maps


def render_page(page: ComparisonPage, report_command: str) -> str:
    """The whole HTML document."""
    run = page.comparison
    params, tags = run.data.params, run.data.tags
    primary = params.get("metric", "").removeprefix(VALIDATION_PREFIX)
    started = _when(run.info.start_time)
    title = f"{run.info.run_name} on {tag_value(tags, DATASET_TAG, 'its dataset')}"
    sections = [
        ("results", "Test-class results", _results(page, primary)),
        ("tests", "Paired tests", _paired(page.comparisons)),
        ("tuning", "Tuning budget and choice", _tuning(page.tuning, params.get("metric", ""))),
        ("figures", "Curves", _figures(page.figures)),
        ("maps", "Embedding maps", _map_grid(page.maps)),
        ("reproduce", "How it was produced", _provenance(page, report_command)),
    ]
    nav = "".join(f'<a href="#{anchor}">{html.escape(name)}</a>' for anchor, name, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{html.escape(name)}</h2>{content}</section>'
        for anchor, name, content in sections
    )
    meta = (
        f"comparison {html.escape(sweep_id_of(run))} · MLflow run {html.escape(run.info.run_id)}"
        f" · {html.escape(run.info.status)} · started {html.escape(started)}"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="meta">{meta}</p><nav>{nav}</nav>'
        f"{body}</body></html>\n"
    )


def _results(page: ComparisonPage, primary: str) -> str:
    table = page.table
    metrics = [
        m
        for m in metrics_of(on_test(c.removesuffix("_mean")) for c in table)
        if f"{m}_mean" in table
    ]
    ordered = [primary, *(m for m in metrics if m != primary)] if primary in metrics else metrics
    header = ["method", "runs", "collapsed", "failed", "n"]
    header += [f"{m} (primary)" if m == primary else m for m in ordered]
    best = _best_row(table, primary)
    rows = []
    for index, row in table.iterrows():
        cells = [_text(row["method"])]
        cells += [
            _number_cell(row[name], str(int(row[name]))) for name in ("runs", "collapsed", "failed")
        ]
        n = row.get(f"{primary}_n", row.get(f"{ordered[0]}_n", math.nan)) if ordered else math.nan
        unit = str(row.get("unit", "run"))
        cells.append(_number_cell(n, "–" if pd.isna(n) else f"{int(n)} {unit}s"))
        for metric in ordered:
            mean, ci95 = row[f"{metric}_mean"], row.get(f"{metric}_ci95", math.nan)
            cells.append(
                f'<td data-metric="{html.escape(metric)}" data-value="{_raw(mean)}" '
                f'data-ci95="{_raw(ci95)}">{html.escape(mean_ci(mean, ci95))}</td>'
            )
        css = ' class="best"' if index == best else ""
        rows.append(
            f'<tr{css} data-method="{html.escape(str(row["method"]))}">{"".join(cells)}</tr>'
        )
    caption = "".join(f"<p>{html.escape(line)}</p>" for line in page.caption)
    return (
        caption
        + _table("final-table", header, rows)
        + (
            f'<p class="meta">Highlighted: the best mean {html.escape(primary)}.</p>'
            if best is not None
            else ""
        )
    )


def _best_row(table: pd.DataFrame, primary: str) -> object | None:
    column = f"{primary}_mean"
    if column not in table or table[column].isna().all():
        return None
    values = table[column]
    return values.idxmin() if best_mode(primary) == "min" else values.idxmax()


def _paired(comparisons: pd.DataFrame) -> str:
    if comparisons.empty:
        return "<p>No baseline to pair with: the comparison has one method.</p>"
    unit = str(comparisons["unit"].iloc[0])
    primaries = int((comparisons["role"] == "primary").sum())
    intro = (
        f"<p>Paired by {html.escape(unit)}: scheduler − baseline; paired t-test, Holm-Bonferroni "
        f"adjusted over the {primaries} comparisons of the primary metric, Wilcoxon signed-rank "
        "when n ≥ 6. A constant difference has no test.</p>"
    )
    header = [
        "scheduler",
        "baseline",
        "metric",
        "difference ± 95% CI",
        "n",
        "t-test p",
        "Holm p",
        "Wilcoxon p",
    ]
    rows = []
    for _, row in comparisons.iterrows():
        constant = str(row["constant"]).lower() == "true"
        t_p = "constant" if constant else p_value(row["t_test_p"])
        cells = [
            _text(row["scheduler"]),
            _text(row["baseline"]),
            _text(f"{row['metric']} ({row['role']})"),
            f'<td data-value="{_raw(row["mean_difference"])}" data-ci95="{_raw(row["ci95"])}">'
            f"{html.escape(mean_ci(row['mean_difference'], row['ci95'], signed=True))}</td>",
            _number_cell(row["pairs"], str(int(row["pairs"]))),
            _number_cell(row["t_test_p"], t_p),
            _number_cell(row["holm_p"], p_value(row["holm_p"])),
            _number_cell(row["wilcoxon_p"], p_value(row["wilcoxon_p"])),
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return intro + _table("paired-table", header, rows)


def _tuning(tuning: pd.DataFrame, metric: str) -> str:
    intro = (
        f"<p>Per method and class split: the trial chosen on validation {html.escape(metric)} "
        "among those that trained the whole budget, the epochs it trained, its score beside the "
        "mean validation score of its re-trainings, and the budget its sweep spent.</p>"
    )
    columns = {
        "method": "method",
        "split": "split",
        "chosen_trial": "chosen trial",
        "chosen_epochs": "epochs",
        "tuning_score": "tuning score",
        "retrained_val": "re-trained val",
        "trials": "trials",
        "trial_epochs": "trial-epochs",
        "searcher": "searcher",
        "dimensions": "dimensions",
    }
    present = [c for c in columns if c in tuning]
    rows = []
    for _, row in tuning.iterrows():
        cells = []
        for column in present:
            value = row[column]
            if column in ("tuning_score", "retrained_val"):
                cells.append(_number_cell(value, score(value)))
            elif column in ("method", "chosen_trial", "searcher"):
                cells.append(_text("none" if pd.isna(value) else value))
            else:
                shown = (
                    "–"
                    if pd.isna(value)
                    else str(int(value))
                    if isinstance(value, float)
                    else str(value)
                )
                cells.append(_number_cell(value, shown))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return intro + _table("tuning-table", [columns[c] for c in present], rows)


def _figures(figures: dict[str, bytes]) -> str:
    if not figures:
        return "<p>The comparison logged no plots.</p>"
    wide = [_figure(png, FIGURES[name], name) for name, png in figures.items() if name in _WIDE]
    rest = [_figure(png, FIGURES[name], name) for name, png in figures.items() if name not in _WIDE]
    return "".join(wide) + '<div class="grid">' + "".join(rest) + "</div>"


def _map_grid(maps: Sequence[tuple[str, bytes]]) -> str:
    if not maps:
        return "<p>No re-training logged an embedding map.</p>"
    intro = (
        "<p>t-SNE of test-class samples, one re-training per method (its lowest seed); the "
        "others are among each re-training run's artifacts.</p>"
    )
    return (
        intro
        + '<div class="maps">'
        + "".join(_figure(png, title, title) for title, png in maps)
        + "</div>"
    )


def _figure(png: bytes, caption: str, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _provenance(page: ComparisonPage, report_command: str) -> str:
    tags = page.comparison.data.tags
    commands = page.commands or [
        f"{tags.get('mlflow.source.name', 'unknown')} (the whole command line is recorded from "
        "margin-tune 0.2 on)"
    ]
    labelled = [("produced by", commands[0]), *(("resumed by", c) for c in commands[1:])]
    labelled.append(("this page", report_command))
    shown = "".join(
        f"<p>{html.escape(label)}:</p><pre>{html.escape(command)}</pre>"
        for label, command in labelled
    )
    versions = {
        "margin-tune": tags.get(VERSION_TAG, "unknown"),
        "git commit": tags.get(GIT_COMMIT_TAG, "unknown")
        + (" (uncommitted changes)" if tags.get(GIT_DIRTY_TAG) == "true" else ""),
        "host": tags.get(HOST_TAG, "unknown"),
        **{
            key.removeprefix(VERSIONS_PREFIX): value
            for key, value in sorted(tags.items())
            if key.startswith(VERSIONS_PREFIX)
        },
    }
    rows = [f"<tr>{_text(name)}{_text(value)}</tr>" for name, value in versions.items()]
    params = "".join(
        f"<tr>{_text(key)}{_text(value)}</tr>"
        for key, value in sorted(page.comparison.data.params.items())
    )
    config = (
        "<details><summary>base config</summary>"
        f"<pre>{html.escape(page.base_config)}</pre></details>"
        if page.base_config
        else ""
    )
    return (
        shown
        + _table("versions-table", ["", "version"], rows)
        + _table("params-table", ["parameter", "value"], [params])
        + config
    )


def _table(identifier: str, header: Iterable[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join(rows)
    return f'<table id="{identifier}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _text(value: object) -> str:
    return f'<td class="text">{html.escape(str(value))}</td>'


def _number_cell(value: object, shown: str) -> str:
    return f'<td data-value="{_raw(value)}">{html.escape(shown)}</td>'


def _raw(value: object) -> str:
    """The unrounded value of a cell, ``nan`` for none: what a check reads back."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "nan" if math.isnan(float(value)) else repr(float(value))
    return "nan" if value is None else html.escape(str(value))


def _when(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "unknown"
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
