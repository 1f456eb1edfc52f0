"""margin-tune: margin schedulers for the triplet loss, tuned with Ray Tune and Optuna, tracked
in MLflow.

One import namespace over the repository's folders: ``margin_tune.trainables`` (what one trial
runs), ``margin_tune.pipeline`` (sweeps, tracking, reports, the CLI) and
``margin_tune.search_spaces`` (packaged spaces and grids). This file and ``__main__.py`` live in
the repository's ``margin_tune/`` folder, whose ``pipeline``, ``trainables`` and
``search_spaces`` entries are links to the top-level folders of the same names, so the code is
imported, type-checked and packaged under one name and never as a top-level ``pipeline`` that a
user's own ``pipeline.py`` could shadow.

The Python API is here too: ``margin_tune.train``, ``tune``, ``compare``, ``ablate``,
``report`` (see :mod:`margin_tune.pipeline.api`), each imported when first used.

Importing it is cheap (no torch, no Ray). It asks a local Ray, should one start in this process
later, to stay on loopback; that must happen before Ray's first import
(see :mod:`margin_tune.pipeline.sweep.ray_network`).
"""

from typing import TYPE_CHECKING, Any

from margin_tune.pipeline.api import EXPORTS
from margin_tune.pipeline.sweep.ray_network import prefer_loopback

if TYPE_CHECKING:
    from margin_tune.pipeline.api import (
        DryRun as DryRun,
        TrainResult as TrainResult,
        ablate as ablate,
        compare as compare,
        plan_ablate as plan_ablate,
        plan_compare as plan_compare,
        plan_tune as plan_tune,
        register as register,
        report as report,
        report_html as report_html,
        report_tables as report_tables,
        resolve_config as resolve_config,
        resume_ablate as resume_ablate,
        resume_compare as resume_compare,
        resume_tune as resume_tune,
        train as train,
        tune as tune,
        verify as verify,
    )

__version__ = "0.2.0"
__all__ = ["__version__", *EXPORTS]

prefer_loopback()


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        from margin_tune.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
