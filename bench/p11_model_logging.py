"""P11: logging a final run's trained network to MLflow, against the run's own wall time.

A final run of ``compare --preset quick`` trains the default config (8 epochs) and evaluates
it on the test classes; here one such run is trained in this process (a plain ``Trial``, so
Ray's share is not in the denominator, which makes the ratio conservative). Then its network
is logged as a sweep logs it (``pipeline/sweep/models.py``): rebuilt, exported with
``torch.export`` into MLflow's pt2 folder beside margin-tune's own copy and the environment's
freeze (the driver's part), and uploaded as a logged model through the tracker's writer into
SQLite (the writer thread's part, timed to its flush). The first export in a process pays
``torch.export``'s imports and warm-up; it is reported apart from the next ones (median of 3).

Run: ``python -m bench.p11_model_logging [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure
from margin_tune.pipeline.sweep.models import MODEL_NAME, save_mlflow_model
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import Trial

TARGET_SHARE = 0.05
REPEATS = 3


def measure(quick: bool) -> Figure:
    config = load_config(overrides=["train.epochs=2"] if quick else [])
    started = time.perf_counter()
    trial = Trial(config)
    trial.run(evaluate_test=True)
    run_wall = time.perf_counter() - started
    exports: list[float] = []
    uploads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-p11-") as scratch:
        root = Path(scratch)
        with Tracker(f"sqlite:///{root / 'mlflow.db'}", "bench-p11") as tracker:
            sweep = tracker.sweep_run("p11", sweep_id="p11", tags={})
            for index in range(1 + REPEATS):
                run_id = tracker.child_run(sweep, f"t{index}", name=f"final {index}")
                tracker.flush()
                began = time.perf_counter()
                folder = save_mlflow_model(trial.model, config, trial.dataset, root / str(index))
                exported = time.perf_counter()
                tracker.log_model(run_id, folder, MODEL_NAME, step=config.train.epochs)
                tracker.flush()
                exports.append(exported - began)
                uploads.append(time.perf_counter() - exported)
    cold = exports[0] + uploads[0]
    warm_export, warm_upload = statistics.median(exports[1:]), statistics.median(uploads[1:])
    warm = warm_export + warm_upload
    return Figure(
        id="P11",
        what="logging a final run's network to MLflow (pt2 + own copy + freeze), against the run",
        target=f"≤ {TARGET_SHARE:.0%} of a final run's wall time",
        value=(
            f"{warm:.2f} s a model ({warm / run_wall:.1%} of a {run_wall:.1f}-s final run; "
            f"export {warm_export:.2f} s in the driver, upload {warm_upload:.2f} s in the "
            f"writer); the first in a process {cold:.2f} s ({cold / run_wall:.1%})"
        ),
        met=warm / run_wall <= TARGET_SHARE,
        details=(
            f"One final run of the default config ({config.train.epochs} epochs, test "
            f"evaluation included) took {run_wall:.2f} s here; logging its network: the first "
            f"time {exports[0]:.2f} s export + {uploads[0]:.2f} s upload, then median of "
            f"{REPEATS} {warm_export:.2f} s + {warm_upload:.2f} s. A comparison logs its "
            "models after its re-trainings ended, so the first one's warm-up is paid once per "
            "command, not per run."
        ),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2-epoch run: checks the code")
    figure = measure(parser.parse_args(argv).quick)
    print(f"{figure.id}: {figure.value} (target {figure.target}; met: {figure.met})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
