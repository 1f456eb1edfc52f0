"""An ablation's plan: what its input check needs, without the run's modules.

The check (``margin_tune.pipeline.api.ablation``) loads the data and builds every cell's trial
before Ray starts. It is kept apart from :mod:`~margin_tune.pipeline.jobs.ablate.run`, which
imports Ray Tune, MLflow and pandas, so that those are imported while Ray comes up, as for a
``tune`` (:mod:`~margin_tune.pipeline.sweep.plan`) and a ``compare``
(:mod:`~margin_tune.pipeline.jobs.compare.plan`).
"""

from __future__ import annotations

from margin_tune.pipeline.jobs.ablate.grid import AblationGrid
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Samples, load_dataset
from margin_tune.trainables.trial import Trial


def plan_ablation(grid: AblationGrid, base: Config) -> Samples:
    """Load the data and build every cell's trial: sizes that do not fit fail here, not in Ray."""
    dataset = load_dataset(base.dataset)
    for cell in grid.cells:
        Trial(cell.config, dataset=dataset)
    return dataset
