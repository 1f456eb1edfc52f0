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

from margin_tune.pipeline.sweep.ray_network import prefer_loopback

if TYPE_CHECKING:
    from margin_tune.pipeline.api import (
        TrainResult as TrainResult,
    )
    from margin_tune.pipeline.api import (
        ablate as ablate,
    )
    from margin_tune.pipeline.api import (
        compare as compare,
    )
    from margin_tune.pipeline.api import (
        report as report,
    )
    from margin_tune.pipeline.api import (
        report_tables as report_tables,
    )
    from margin_tune.pipeline.api import (
        resolve_config as resolve_config,
    )
    from margin_tune.pipeline.api import (
        resume_ablate as resume_ablate,
    )
    from margin_tune.pipeline.api import (
        resume_compare as resume_compare,
    )
    from margin_tune.pipeline.api import (
        resume_tune as resume_tune,
    )
    from margin_tune.pipeline.api import (
        train as train,
    )
    from margin_tune.pipeline.api import (
        tune as tune,
    )

__version__ = "0.2.0"
_API = (
    "TrainResult",
    "ablate",
    "compare",
    "report",
    "report_tables",
    "resolve_config",
    "resume_ablate",
    "resume_compare",
    "resume_tune",
    "train",
    "tune",
)
__all__ = ["__version__", *_API]

prefer_loopback()


def __getattr__(name: str) -> Any:
    if name in _API:
        from margin_tune.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
