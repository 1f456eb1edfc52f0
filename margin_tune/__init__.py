"""margin-tune: margin schedulers for the triplet loss, tuned with Ray Tune and Optuna, tracked
in MLflow.

One import namespace over the repository's folders: ``margin_tune.trainables`` (what one trial
runs), ``margin_tune.pipeline`` (sweeps, tracking, reports, the CLI) and
``margin_tune.search_spaces`` (packaged spaces and grids). This file and ``__main__.py`` live in
the repository's ``margin_tune/`` folder, whose ``pipeline``, ``trainables`` and
``search_spaces`` entries are links to the top-level folders of the same names, so the code is
imported, type-checked and packaged under one name and never as a top-level ``pipeline`` that a
user's own ``pipeline.py`` could shadow.

Importing it is cheap (no torch, no Ray). It asks a local Ray, should one start in this process
later, to stay on loopback; that must happen before Ray's first import
(see :mod:`margin_tune.pipeline.sweep.ray_network`).
"""

from margin_tune.pipeline.sweep.ray_network import prefer_loopback

__version__ = "0.2.0"
__all__ = ["__version__"]

prefer_loopback()
