"""``--dry-run``: what a ``tune``, ``compare`` or ``ablate`` would run, and about how long.

Everything the command checks before it starts is checked (the config, the spaces or grid,
every bound of every space against the data, the options, the output directory), then one
epoch of the base config is trained and timed on this machine. Nothing is written, no MLflow
run is made and Ray is never started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from margin_tune.pipeline.search.space import Parameter, SearchSpace, apply_overrides
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Samples
from margin_tune.trainables.trial import Trial
from margin_tune.trainables.yaml_io import dump_yaml


@dataclass(frozen=True)
class DryRun:
    """A checked plan: the config, what is searched, the budget and a rough wall time."""

    command: str
    base: Config
    budget: dict[str, int]
    """``trials``, ``epochs``, ``seeds``, ``splits``, ``runs`` and ``trial_epochs``."""
    concurrency: int
    epoch_seconds: float
    """One epoch of the base config, trained and validated here."""
    spaces: dict[str, SearchSpace] = field(default_factory=dict)
    cells: tuple[str, ...] = ()

    @property
    def estimate_seconds(self) -> float:
        """Trial-epochs × one epoch ÷ concurrency: rough. ASHA stops some trials early, Ray adds
        a few seconds a trial, and the searched values change an epoch's cost."""
        return self.budget["trial_epochs"] * self.epoch_seconds / self.concurrency

    def render(self) -> str:
        lines = [
            f"dry run of {self.command}: checked; nothing written, no MLflow run, Ray not started",
            "",
            "config:",
            *("  " + line for line in dump_yaml(self.base.to_dict()).splitlines()),
        ]
        for name, space in self.spaces.items():
            lines += ["", f"space {name} ({space.metric}, {space.mode}):"]
            lines += [f"  {p.path}: {_describe(p)}" for p in space.parameters]
        if self.cells:
            lines += ["", f"cells ({len(self.cells)}):", *(f"  {cell}" for cell in self.cells)]
        budget = self.budget
        lines += [
            "",
            "budget: "
            + ", ".join(f"{key.replace('_', '-')} {value}" for key, value in budget.items()),
            f"one epoch here: {self.epoch_seconds:.2f} s; at concurrency {self.concurrency} "
            f"about {_duration(self.estimate_seconds)} of training (rough: Ray's start and each "
            "trial's set-up and test evaluation come on top)",
        ]
        return "\n".join(lines) + "\n"


def time_one_epoch(base: Config, dataset: Samples) -> float:
    """Seconds to train and validate one epoch of ``base`` on ``dataset``, here."""
    trial = Trial(apply_overrides(base, {"train.epochs": 1}), dataset=dataset)
    started = time.perf_counter()
    trial.run()
    return time.perf_counter() - started


def _describe(parameter: Parameter) -> str:
    if not parameter.searched:
        return f"fixed {parameter.value!r}"
    if parameter.distribution == "categorical":
        return f"one of {list(parameter.choices)}"
    step = f" step {parameter.step}" if parameter.step else ""
    return f"{parameter.distribution} [{parameter.low:g}, {parameter.high:g}]{step}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
