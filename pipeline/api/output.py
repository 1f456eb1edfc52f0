"""How much the API's runs print: the CLI's ``-q`` / ``-v`` for a script or a notebook.

``with margin_tune.verbosity("quiet"): margin_tune.tune(...)`` keeps a notebook cell to the
result; ``"verbose"`` brings back Ray Tune's status tables. The default (``"normal"``) prints
one line per ended trial, and a progress bar when the stream is a terminal.
"""

from __future__ import annotations

from margin_tune.pipeline.runtime.console import VERBOSITIES as VERBOSITIES, verbosity as verbosity
