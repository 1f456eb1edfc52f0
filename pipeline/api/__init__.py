"""The Python API: what the CLI's commands run, as functions a script or notebook calls.

Each command of ``margin-tune`` parses its flags, calls one of these in the same process and
prints what it returns; nothing the CLI does is out of a script's reach. The same names are
importable from ``margin_tune`` itself (``margin_tune.tune(...)``). Each is imported when first
used, so ``report`` never loads torch or Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from margin_tune.pipeline.api.ablation import (
        ablate as ablate,
        plan_ablate as plan_ablate,
        resume_ablate as resume_ablate,
    )
    from margin_tune.pipeline.api.comparison import (
        compare as compare,
        plan_compare as plan_compare,
        resume_compare as resume_compare,
    )
    from margin_tune.pipeline.api.config import (
        resolve_config as resolve_config,
    )
    from margin_tune.pipeline.api.dry_run import DryRun as DryRun
    from margin_tune.pipeline.api.embedding import (
        EmbedResult as EmbedResult,
        embed as embed,
    )
    from margin_tune.pipeline.api.output import verbosity as verbosity
    from margin_tune.pipeline.api.plugins import (
        register as register,
    )
    from margin_tune.pipeline.api.reporting import (
        report as report,
        report_html as report_html,
        report_tables as report_tables,
    )
    from margin_tune.pipeline.api.sweeping import (
        plan_tune as plan_tune,
        resume_tune as resume_tune,
        tune as tune,
    )
    from margin_tune.pipeline.api.training import (
        TrainResult as TrainResult,
        train as train,
    )
    from margin_tune.pipeline.api.verification import (
        VerifyResult as VerifyResult,
        verify as verify,
    )

#: Public name → the module of this package that defines it.
EXPORTS = {
    "train": "training",
    "TrainResult": "training",
    "tune": "sweeping",
    "resume_tune": "sweeping",
    "plan_tune": "sweeping",
    "plan_compare": "comparison",
    "plan_ablate": "ablation",
    "DryRun": "dry_run",
    "embed": "embedding",
    "EmbedResult": "embedding",
    "verify": "verification",
    "VerifyResult": "verification",
    "compare": "comparison",
    "resume_compare": "comparison",
    "ablate": "ablation",
    "resume_ablate": "ablation",
    "report": "reporting",
    "report_tables": "reporting",
    "report_html": "reporting",
    "resolve_config": "config",
    "register": "plugins",
    "verbosity": "output",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
