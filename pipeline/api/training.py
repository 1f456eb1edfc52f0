"""``margin_tune.train``: one trial in a plain loop, no Ray and no MLflow; what ``train`` runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from margin_tune.pipeline.api.config import ConfigLike, Overrides, resolve_config
from margin_tune.pipeline.outputs.folders import (
    CsvAppender,
    check_output_dir,
    new_output_dir,
    write_json,
    write_yaml,
)
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import recall_ks
from margin_tune.trainables.metric_names import epoch_columns, on_test
from margin_tune.trainables.saved_model import MODEL_DIR, save_embedder
from margin_tune.trainables.trial import EpochReport, Trial

#: What a trial's output directory holds.
CONFIG_FILE, METRICS_FILE, SUMMARY_FILE = "config.yaml", "metrics.csv", "summary.json"
EMBEDDINGS_FILE = "test_embeddings.npz"


@dataclass(frozen=True)
class TrainResult:
    """One trained trial: its per-epoch history and its evaluation on the test classes."""

    config: Config
    history: pd.DataFrame
    """One row per epoch, the columns of ``metrics.csv``."""
    test_metrics: dict[str, float]
    """``test_roc_auc``, ``test_map_at_r``, … on the test classes, after the last epoch."""
    stop_reason: str
    """``completed``, or why the trial stopped early (``collapsed``)."""
    wall_seconds: float
    reference_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """The same evaluation of the raw features and the untrained network, for scale."""
    out: Path | None = None
    test_embeddings: np.ndarray | None = None
    test_labels: np.ndarray | None = None

    @property
    def summary(self) -> dict[str, object]:
        """What ``summary.json`` holds."""
        return {
            "stop_reason": self.stop_reason,
            "epochs": len(self.history),
            "wall_seconds": self.wall_seconds,
            **self.test_metrics,
            "final": {k: float(v) for k, v in self.history.iloc[-1].items()}
            if len(self.history)
            else {},
            "reference": self.reference_metrics,
        }


def train(
    config: ConfigLike = None,
    overrides: Overrides = (),
    *,
    out: str | Path | None = None,
    save_embeddings: bool = False,
    on_start: Callable[[Trial], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainResult:
    """Train one trial and evaluate it on the test classes.

    Args:
        config: a :class:`Config`, a mapping laid out like the YAML file, a YAML path, or None
            for the packaged default.
        overrides: dotted values over it, ``{"train.epochs": 3}`` or ``["train.epochs=3"]``.
        out: a new or empty directory for ``config.yaml``, ``metrics.csv`` (written as each
            epoch ends), ``summary.json`` and the trained network in ``model/`` (see
            :mod:`margin_tune.trainables.saved_model`; ``margin_tune.embed`` reads it); None
            writes nothing.
        save_embeddings: keep the test classes' embeddings (and write them to ``out``).
        on_start: called with the built trial before the first epoch (data, split, device).
        on_epoch: called with each epoch's report as it ends.

    Raises:
        ConfigError: a bad config or output directory, before anything trains.
    """
    directory = Path(out) if out is not None else None
    if directory is not None:
        check_output_dir(directory)
    config = resolve_config(config, overrides)
    trial = Trial(config)
    with _output(directory) as written:
        metrics_csv = (
            CsvAppender(written / METRICS_FILE, epoch_columns(recall_ks(config)))
            if written
            else None
        )
        if written is not None:
            write_yaml(written / CONFIG_FILE, config.to_dict())
        if on_start is not None:
            on_start(trial)
        started = time.perf_counter()

        def epoch_done(report: EpochReport) -> None:
            if metrics_csv is not None:
                metrics_csv.append(report.metrics)
            if on_epoch is not None:
                on_epoch(report)

        ran = trial.run(epoch_done, evaluate_test=True, keep_test_embeddings=save_embeddings)
        assert ran.test_metrics is not None
        result = TrainResult(
            config=config,
            history=pd.DataFrame(ran.history),
            test_metrics={on_test(name): value for name, value in ran.test_metrics.items()},
            stop_reason=ran.stop_reason,
            wall_seconds=time.perf_counter() - started,
            reference_metrics={
                name: {on_test(key): value for key, value in metrics.items()}
                for name, metrics in ran.reference_metrics.items()
            },
            out=written,
            test_embeddings=ran.test_embeddings,
            test_labels=ran.test_labels,
        )
        if written is not None:
            summary = dict(result.summary)
            summary["dataset_fingerprint"] = trial.dataset.fingerprint()
            write_json(written / SUMMARY_FILE, summary)
            if ran.test_embeddings is not None and ran.test_labels is not None:
                np.savez(written / EMBEDDINGS_FILE, X=ran.test_embeddings, y=ran.test_labels)
            save_embedder(written / MODEL_DIR, trial.model, config, trial.dataset)
    return result


@contextlib.contextmanager
def _output(directory: Path | None) -> Iterator[Path | None]:
    """The output directory, created and locked (a second command on it is refused), or None."""
    if directory is None:
        yield None
        return
    with new_output_dir(directory) as created:
        yield created
