"""Readers of the four metric-learning benchmarks in the layouts their archives unpack to.

The literature reports CUB-200-2011, Cars196, Stanford Online Products and LFW on fixed class
splits (and, for LFW, fixed verification pairs) that are defined by each archive's own index
files, not by its folder structure. Reading those index files as published, rather than asking
users to rearrange gigabytes of images into class folders, keeps results comparable with
published numbers and lets an archive be used straight after extraction. Each reader parses
its index, reports a bad line by file and line number, and hands the listing to
:func:`~margin_tune.trainables.data.files.image_files`, which checks every image on disk.
"""

from __future__ import annotations

from margin_tune.trainables.data.layouts.cars import load_cars
from margin_tune.trainables.data.layouts.cub import load_cub
from margin_tune.trainables.data.layouts.lfw import load_lfw
from margin_tune.trainables.data.layouts.sop import load_sop

__all__ = ["load_cars", "load_cub", "load_lfw", "load_sop"]
