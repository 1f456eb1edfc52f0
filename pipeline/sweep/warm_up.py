"""What the end of a run imports, imported while its trials train.

When the last trial of a sweep ends, the driver logs the winner's network (``torch.export``:
its first call in a process imports ``torch._dynamo``, sympy and networkx, 1.4 s here) and
draws the sweep's plots (pyplot, and scikit-learn's forests for fANOVA importances, 1.5 s).
Nothing else runs then: the trial workers are done, and on two cores one of them idles while
the driver imports. During the sweep the driver mostly waits for results, so those imports
are made there instead, on a thread started once the first trial has reported (not earlier:
the workers are still importing torch then, and the first trial would start later).

On a machine whose cores the trials fill, the thread takes its CPU from them; the tail it
removes is longer than what it adds (see bench/RESULTS.md, P1). An import that fails here is
left to fail again where the module is used, with its own error there.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from ray import tune

logger = logging.getLogger(__name__)

#: Modules the end of a ``tune``, ``compare`` or ``ablate`` imports for the first time.
END_OF_RUN_MODULES = (
    "mlflow.pytorch",  # the winner's network as an MLflow model (sweep/models.py)
    "mlflow.models",
    "torch.export._trace",  # torch.export's tracer: torch._dynamo, sympy, networkx
    "margin_tune.pipeline.analysis.plots",  # pyplot
    "optuna.importance",  # fANOVA importances: scikit-learn's random forests
)


def import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:
            logger.debug("warming %s failed: %s", name, error)


class WarmEndOfRunImports(tune.Callback):
    """Imports :data:`END_OF_RUN_MODULES` on a daemon thread after the first trial result.

    Plain data only (Tune pickles its callbacks into the experiment state): the thread is not
    kept, and a restored callback warms again, once, in the process that restored it.
    """

    def __init__(self, modules: tuple[str, ...] = END_OF_RUN_MODULES) -> None:
        self.modules = modules
        self.started = False

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if self.started:
            return
        self.started = True
        threading.Thread(
            target=import_all, args=(self.modules,), name="warm-imports", daemon=True
        ).start()

    def __getstate__(self) -> dict[str, Any]:
        return {"modules": self.modules, "started": False}
