"""A real image dataset with many classes and no download: characters in matplotlib's fonts.

Each class is one printable ASCII character; its samples are that character in the DejaVu and
STIX faces bundled with matplotlib, each with a small random rotation, scale and shift. Glyph
outlines are rasterised directly under the jittered affine map (no resampling), with the em box
at a fixed place so that size and height stay informative: ``.`` sits low and small, ``'`` high,
``o`` is smaller than ``O``. Look-alikes (``l``, ``I``, ``|``, ``1``) make it realistically hard.

Everything is drawn from a fixed seed per class, so the dataset is a pure function of
``num_classes``, ``samples_per_class`` and ``image_size`` (and of the matplotlib version, whose
fonts it renders; the fingerprint tells them apart). Nothing is cached on disk.
"""

from __future__ import annotations

import string
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backend_bases import GraphicsContextBase
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path as GlyphPath
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import Dataset
from margin_tune.trainables.data.limits import check_dataset_bytes, largest_field

CHARACTERS = string.digits + string.ascii_uppercase + string.ascii_lowercase + string.punctuation
"""The classes, in label order (94): a small ``num_classes`` takes the digits first."""

FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)
"""Faces with a true Unicode map of every character above; matplotlib's Computer Modern files
use TeX encodings and its display/size/LastResort faces lack the glyphs, so they are left out."""

GLYPH_SEED = 0
"""Root of the jitter draws; class ``k`` uses the stream ``(GLYPH_SEED, k)``."""

EM_FRACTION = 0.8
"""Height of the em box as a fraction of the image side, before jitter."""

EM_CENTRE = 0.3
"""Height above the baseline, in em, placed at the image centre (between descender and caps)."""

MAX_ROTATION_DEG = 12.0
MAX_LOG_SCALE = 0.15
MAX_SHIFT_FRACTION = 0.08
"""Jitter bounds: rotation in degrees, log of the scale factor, shift as a fraction of the side."""


def load_glyphs(config: DatasetConfig) -> Dataset:
    """``min(num_classes, 94)`` characters x ``samples_per_class`` images, (N, 1, S, S) in [0, 1].

    Sample ``j`` of a class uses font ``j mod 16``: every class cycles through the same faces, so
    the font is a nuisance shared by all classes, not a cue to the class.

    Raises:
        ConfigError: the images would need more than ``dataset.max_bytes`` (or this machine's
            memory), checked before any is drawn.
    """
    characters = CHARACTERS[: config.num_classes]
    check_dataset_bytes(
        config,
        largest_field(config, "samples_per_class", "image_size"),
        f"glyphs: {len(characters)} classes x {config.samples_per_class:,} samples of "
        f"{config.image_size} x {config.image_size} pixels",
        len(characters) * config.samples_per_class * (config.image_size**2 * 4 + 8),
    )
    fonts = [FontProperties(fname=path) for path in _font_paths()[: config.samples_per_class]]
    size = config.image_size
    renderer = RendererAgg(size, size, 72)
    context = GraphicsContextBase()
    context.set_linewidth(0)
    images = np.empty((len(characters), config.samples_per_class, size, size), dtype=np.float32)
    for label, character in enumerate(characters):
        outlines = [TextPath((0, 0), character, size=1, prop=font) for font in fonts]
        rng = np.random.default_rng((GLYPH_SEED, label))
        for sample in range(config.samples_per_class):
            outline = outlines[sample % len(outlines)]
            renderer.clear()
            renderer.draw_path(context, outline, _placement(outline, size, rng), (1.0, 1.0, 1.0))
            images[label, sample] = np.asarray(renderer.buffer_rgba())[:, :, 3] / 255.0
    return Dataset(
        features=images.reshape(-1, 1, size, size),
        labels=np.repeat(np.arange(len(characters), dtype=np.int64), config.samples_per_class),
        class_names=tuple(characters),
        name="glyphs",
    )


def _font_paths() -> list[str]:
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [str(folder / name) for name in FONT_FILES if (folder / name).is_file()]


def _placement(outline: GlyphPath, size: int, rng: np.random.Generator) -> Affine2D:
    """Centre the ink horizontally and the em box vertically, then jitter around the centre.

    Control points bound the ink closely enough for centring and cost far less than exact
    Bézier extents.
    """
    x = np.asarray(outline.vertices)[:, 0]
    centre_x = (x.min() + x.max()) / 2 if len(x) else 0.0
    rotation, log_scale = rng.uniform(-1, 1, 2) * (MAX_ROTATION_DEG, MAX_LOG_SCALE)
    shift = rng.uniform(-MAX_SHIFT_FRACTION, MAX_SHIFT_FRACTION, 2) * size
    return (
        Affine2D()
        .translate(-centre_x, -EM_CENTRE)
        .scale(EM_FRACTION * size * np.exp(log_scale))
        .rotate_deg(rotation)
        .translate(size / 2 + shift[0], size / 2 + shift[1])
    )
