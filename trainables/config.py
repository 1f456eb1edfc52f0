"""Trial configuration: frozen dataclasses built from YAML and validated at the edge.

A config is read with :mod:`margin_tune.trainables.yaml_io` (a safe loader, never unpickled, that
refuses
aliases and duplicate keys), laid over the dataclass defaults, then changed by dotted
``key=value`` overrides. Every bad value fails here with a :class:`ConfigError`
that names the field, the value and what is allowed, so inner code can trust its inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from margin_tune.trainables.errors import ConfigError, quote, shorten
from margin_tune.trainables.yaml_io import load_yaml, read_yaml_file

Device = Literal["auto", "cpu", "cuda"]

MAX_SEED = 2**32 - 1
"""Largest ``seed``, ``dataset.split_seed`` and ``eval.pair_seed``: NumPy's legacy seeding and
torch both accept [0, 2**32 - 1]."""

MAX_IMAGE_SIZE = 1024
"""Largest ``dataset.image_size``: images are resized to a side of at most this many pixels."""

DEFAULT_MAX_BYTES = 8 * 2**30
"""Default ``dataset.max_bytes`` (8 GiB)."""

MAX_WIDTH = 65_536
"""Widest layer a config may ask for (each of ``model.hidden_dims``, ``model.embedding_dim``)."""

MAX_LAYERS = 64
"""Most entries of ``model.hidden_dims``."""

DEFAULT_MAX_PARAMETERS = 100_000_000
"""Default ``model.max_parameters``: training holds about four float32 copies of every parameter
(weights, gradients and Adam's two moments), so 1.6 GB at this bound."""


@dataclass(frozen=True)
class DatasetConfig:
    """Where the samples come from and how classes are split.

    Train, validation and test *classes* are disjoint. ``split_seed`` is independent of the
    training ``seed`` so that several training seeds are compared on the same test classes.
    ``num_classes``, ``samples_per_class``, ``dim`` and ``noise`` shape the generated datasets;
    ``image_size`` applies to image datasets. ``max_bytes`` bounds the memory loading a dataset
    may need, computed before anything is allocated (from the config, an ``.npz``'s array headers
    or an image folder's file count); this machine's physical memory bounds it too.

    The benchmarks read from disk in their own layouts (``cub``, ``cars``, ``sop``, ``lfw``) are
    lazy: paths and labels in memory, pixels decoded by the loader. ``split`` ``given`` uses
    the source's own train/test classes (the literature's split) and carves the validation
    classes, ``val_fraction`` of the given training classes, from them with ``split_seed``;
    ``seeded`` (the default) splits every class at random. Their training images get a random
    resized crop (``crop_scale``: the share of the image's area it keeps, aspect 3/4 to 4/3) to
    ``image_size`` and a horizontal flip when ``augment``; evaluation resizes the shorter side to
    ``resize`` (default ``image_size`` x 8/7, the literature's 256 -> 224) and centre-crops
    ``image_size``; ``normalize`` ``imagenet`` subtracts ImageNet's channel means and divides by
    its deviations, what pretrained backbones expect.
    """

    name: str = "synthetic"
    path: str | None = None
    split_seed: int = 0
    train_fraction: float = 0.4
    val_fraction: float = 0.1
    num_classes: int = 100
    samples_per_class: int = 40
    dim: int = 64
    noise: float = 0.35
    image_size: int = 32
    max_bytes: int = DEFAULT_MAX_BYTES
    split: Literal["seeded", "given"] = "seeded"
    resize: int | None = None
    augment: bool = True
    crop_scale: tuple[float, float] = (0.16, 1.0)
    normalize: Literal["imagenet", "none"] = "imagenet"

    def __post_init__(self) -> None:
        _check_seed("dataset.split_seed", self.split_seed)
        if self.resize is not None:
            _check_at_least("dataset.resize", self.resize, self.image_size)
            _check_at_most("dataset.resize", self.resize, 2 * MAX_IMAGE_SIZE)
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(
                "dataset.crop_scale",
                f"must be [low, high] with 0 < low <= high <= 1, got {list(self.crop_scale)}",
            )
        _check_open_unit("dataset.train_fraction", self.train_fraction)
        _check_open_unit("dataset.val_fraction", self.val_fraction)
        if self.train_fraction + self.val_fraction >= 1:
            raise ConfigError(
                "dataset.val_fraction",
                "train_fraction + val_fraction must be < 1 so that test classes remain, got "
                f"{self.train_fraction} + {self.val_fraction}",
            )
        _check_at_least("dataset.num_classes", self.num_classes, 2)
        _check_at_least("dataset.samples_per_class", self.samples_per_class, 2)
        _check_at_least("dataset.dim", self.dim, 1)
        _check_at_least("dataset.noise", self.noise, 0.0)
        _check_at_least("dataset.image_size", self.image_size, 8)
        _check_at_most("dataset.image_size", self.image_size, MAX_IMAGE_SIZE)
        _check_at_least("dataset.max_bytes", self.max_bytes, 1)


@dataclass(frozen=True)
class ModelConfig:
    """The Siamese embedding network (weights shared by every branch).

    ``max_parameters`` bounds the network's weights and biases. The products of consecutive
    widths are checked here; the exact count, which depends on the input, when it is built.

    ``name: torchvision`` (the ``[vision]`` extra) takes torchvision's ``backbone`` by name
    (``resnet18``, ``resnet50``, any classifier ``torchvision.models.list_models`` lists), its
    last linear layer replaced by a linear embedding head. Its weights: random; or, with
    ``pretrained``, torchvision's default ImageNet weights from torch's own cache, never
    downloaded; or ``weights``, a local ``state_dict`` file of the backbone. ``freeze_bn`` keeps
    every BatchNorm layer's running statistics as loaded (the literature's frozen BN for
    pretrained backbones trained on small batches).
    """

    name: str = "mlp"
    hidden_dims: tuple[int, ...] = (256, 256)
    embedding_dim: int = 64
    max_parameters: int = DEFAULT_MAX_PARAMETERS
    backbone: str = "resnet18"
    pretrained: bool = False
    weights: str | None = None
    freeze_bn: bool = False

    def __post_init__(self) -> None:
        _check_at_most("model.hidden_dims", len(self.hidden_dims), MAX_LAYERS, "layers")
        for index, width in enumerate(self.hidden_dims):
            _check_at_least(f"model.hidden_dims[{index}]", width, 1)
            _check_at_most(f"model.hidden_dims[{index}]", width, MAX_WIDTH)
        _check_at_least("model.embedding_dim", self.embedding_dim, 2)
        _check_at_most("model.embedding_dim", self.embedding_dim, MAX_WIDTH)
        _check_at_least("model.max_parameters", self.max_parameters, 1)
        if self.pretrained and self.weights:
            raise ConfigError(
                "model.weights",
                "give either model.pretrained (torchvision's cached weights) or model.weights "
                "(a file), not both",
            )
        if self.name == "torchvision":
            return  # hidden_dims size the built-in networks only
        widths = (*self.hidden_dims, self.embedding_dim)
        least = sum(left * right for left, right in itertools.pairwise(widths))
        if least > self.max_parameters:
            raise ConfigError(
                "model.hidden_dims",
                f"{shorten(str(list(self.hidden_dims)))} with embedding_dim "
                f"{self.embedding_dim} give at least {least:,} parameters, above "
                f"model.max_parameters ({self.max_parameters:,}); use narrower layers or raise "
                "model.max_parameters",
            )


@dataclass(frozen=True)
class LossConfig:
    """The embedding loss; any margin μ it uses comes from the margin scheduler.

    ``triplet``: the triplet margin loss over the miner's triplets. ``contrastive``: positive
    pairs pulled within ``pos_margin``, negative pairs pushed beyond μ (its negative margin,
    starting at ``margin.initial_margin``). ``ntxent``: InfoNCE / NT-Xent on cosine
    similarities at ``temperature``; it has no margin.

    The two pair losses are a positive term plus an entropy term (Sors et al., "Simple and
    Effective Balance of Contrastive Losses"), weighted by ``balance`` λ in [0, 1] as
    ``2·(λ·positive + (1 − λ)·entropy)``: λ = 0.5 weighs both 1, which is
    pytorch-metric-learning's ``ContrastiveLoss`` / ``NTXentLoss``; λ = 1 keeps only the
    positive term. ``reduction`` applies to ``triplet`` and to each term of ``contrastive``
    (``mean_nonzero``: over non-zero losses, PML's default; ``mean``: over all). ``balance``,
    ``pos_margin`` and ``temperature`` are read by the pair losses only.
    """

    name: str = "triplet"
    reduction: Literal["mean_nonzero", "mean"] = "mean_nonzero"
    balance: float = 0.5
    pos_margin: float = 0.0
    temperature: float = 0.07

    def __post_init__(self) -> None:
        _check_closed_unit("loss.balance", self.balance)
        _check_at_least("loss.pos_margin", self.pos_margin, 0.0)
        _check_positive("loss.temperature", self.temperature)


@dataclass(frozen=True)
class MinerConfig:
    """Which valid triplets of a batch enter the loss (statistics always use all of them)."""

    name: str = "all"


@dataclass(frozen=True)
class SamplerConfig:
    """How a batch is drawn: P classes x K samples.

    ``representative_iters`` and ``hard_class_fraction`` belong to ``class_representative``:
    each class keeps one representative sample in every batch for that many iterations, and
    that fraction of a batch's P classes are mined as the classes whose representatives lie
    nearest one random seed class (0: every class random).
    """

    name: str = "pk"
    classes_per_batch: int = 16
    samples_per_class: int = 4
    representative_iters: int = 10
    hard_class_fraction: float = 0.0

    def __post_init__(self) -> None:
        _check_at_least("sampler.classes_per_batch", self.classes_per_batch, 2)
        _check_at_least("sampler.samples_per_class", self.samples_per_class, 2)
        _check_at_least("sampler.representative_iters", self.representative_iters, 1)
        _check_closed_unit("sampler.hard_class_fraction", self.hard_class_fraction)


@dataclass(frozen=True)
class MarginConfig:
    """The margin scheduler and every parameter a registered scheduler may read.

    ``initial_margin``, ``target_easy_ratio`` and ``step_size`` are the paper's three parameters;
    the others belong to one scheduler each (``rate`` to ``linear``, ``tolerance`` to
    ``two_sided``, ``kp``/``ki`` to ``pi``, ``schedule`` (μ of each epoch) to ``replay``;
    ``min_margin``/``max_margin`` bound those that move).
    """

    scheduler: str = "dams"
    initial_margin: float = 0.2
    target_easy_ratio: float = 0.95
    step_size: float = 0.05
    max_margin: float | None = None
    min_margin: float = 0.0
    rate: float = 0.01
    tolerance: float = 0.05
    kp: float = 0.5
    ki: float = 0.1
    schedule: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_at_least("margin.initial_margin", self.initial_margin, 0.0)
        for index, value in enumerate(self.schedule):
            _check_at_least(f"margin.schedule[{index}]", value, 0.0)
        if not 0 < self.target_easy_ratio <= 1:
            raise ConfigError(
                "margin.target_easy_ratio",
                f"must be in (0, 1], got {self.target_easy_ratio}",
            )
        _check_at_least("margin.step_size", self.step_size, 0.0)
        _check_at_least("margin.min_margin", self.min_margin, 0.0)
        _check_at_least("margin.rate", self.rate, 0.0)
        _check_at_least("margin.tolerance", self.tolerance, 0.0)
        _check_at_least("margin.kp", self.kp, 0.0)
        _check_at_least("margin.ki", self.ki, 0.0)
        if self.min_margin > self.initial_margin:
            raise ConfigError(
                "margin.min_margin",
                f"must be <= margin.initial_margin ({self.initial_margin}), got {self.min_margin}",
            )
        if self.max_margin is not None and self.max_margin < self.initial_margin:
            raise ConfigError(
                "margin.max_margin",
                f"must be >= margin.initial_margin ({self.initial_margin}), got {self.max_margin}",
            )


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop. ``num_threads`` None means one torch thread per CPU of the trial.

    ``num_workers`` and ``eval_batch_size`` apply to datasets read from disk lazily: the
    ``DataLoader`` processes that decode and augment images (0: in the trial's own process), and
    the images embedded at once for evaluation. In-memory datasets need neither.

    ``head_lr`` trains the embedding head at its own learning rate (the backbone at ``lr``), as
    the literature does with pretrained backbones. ``precision`` ``bf16`` or ``fp16`` runs the
    network's forward passes under ``torch.autocast`` (fp16 with a gradient scaler, CUDA only);
    the loss and the metrics stay float32. ``channels_last`` stores images and convolution
    weights NHWC, which tensor cores prefer.

    ``lr_schedule`` (one rate per epoch, empty: ``lr`` throughout) sets ``lr`` epoch by epoch,
    as a population's best member trained (``head_lr`` keeps its own rate): the learning-rate
    half of a replayed schedule (``margin.scheduler: replay``).
    """

    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    batches_per_epoch: int | None = None
    num_threads: int | None = None
    device: Device = "auto"
    num_workers: int = 0
    eval_batch_size: int = 256
    head_lr: float | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    lr_schedule: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_at_least("train.epochs", self.epochs, 1)
        for index, value in enumerate(self.lr_schedule):
            _check_positive(f"train.lr_schedule[{index}]", value)
        _check_at_least("train.num_workers", self.num_workers, 0)
        _check_at_most("train.num_workers", self.num_workers, 256)
        _check_at_least("train.eval_batch_size", self.eval_batch_size, 1)
        if self.head_lr is not None:
            _check_positive("train.head_lr", self.head_lr)
        _check_positive("train.lr", self.lr)
        _check_at_least("train.weight_decay", self.weight_decay, 0.0)
        if self.batches_per_epoch is not None:
            _check_at_least("train.batches_per_epoch", self.batches_per_epoch, 1)
        if self.num_threads is not None:
            _check_at_least("train.num_threads", self.num_threads, 1)


#: Least ``eval.max_pairs``: a sample of that many pairs holds at least 1,000,000 different-class
#: pairs (``margin_tune.trainables.metrics.pairs.MIN_NEGATIVE_PAIRS``), as at most half are
#: same-class.
MIN_MAX_PAIRS = 2_000_000

MAX_RECALL_AT = 100_000
"""Largest K of ``eval.recall_at``: each K ranks that many neighbours of every query."""


@dataclass(frozen=True)
class EvalConfig:
    """Which pairs verification metrics are computed on, chosen once per split.

    A split with at most ``max_pairs`` unordered pairs is scored on all of them; a larger one on
    ``max_pairs`` pairs sampled with ``pair_seed``, at least 1,000,000 of them different-class
    so that TAR@FAR=1e-3 rests on at least 1,000 false accepts. Either way the pairs are reused
    every epoch.

    ``recall_at`` lists the K of the Recall@K reported beside MAP@R (Recall@1 always is). None
    means the literature's for the dataset: 1, 2, 4, 8 for ``cub`` and ``cars``; 1, 10, 100,
    1000 for ``sop``; 1 alone elsewhere.
    """

    max_pairs: int = 5_000_000
    pair_seed: int = 0
    recall_at: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_seed("eval.pair_seed", self.pair_seed)
        if self.recall_at is not None:
            ks = list(self.recall_at)
            if not ks or any(k < 1 or k > MAX_RECALL_AT for k in ks) or ks != sorted(set(ks)):
                raise ConfigError(
                    "eval.recall_at",
                    f"must be increasing whole numbers in 1..{MAX_RECALL_AT}, or null for the "
                    f"dataset's usual ones, got {shorten(str(ks))}",
                )
        if self.max_pairs < MIN_MAX_PAIRS:
            raise ConfigError(
                "eval.max_pairs",
                f"must be >= {MIN_MAX_PAIRS}, got {self.max_pairs}: above this bound pairs are "
                "sampled, and at least 1,000,000 different-class pairs are needed for >= 1,000 "
                "false accepts at FAR 1e-3",
            )


@dataclass(frozen=True)
class CollapseConfig:
    """When a trial counts as collapsed: every embedding near one point, so it stops early.

    Each epoch the mean pairwise distance of unit-norm embeddings of a fixed validation probe is
    measured (in [0, 2]); ``patience`` consecutive epochs below ``threshold`` stop the trial with
    stop reason ``collapsed``. ``enabled`` false keeps measuring but never stops.

    The default threshold 0.01 comes from batch-hard runs on ``synthetic``: a run that collapses
    for good falls below 0.01 within two epochs and keeps falling (to 0.001), while a run that
    only shrinks early on bottoms out at 0.018-0.07 and recovers to a ROC-AUC of 0.96, so a
    higher threshold such as 0.05 would stop good runs. Healthy runs stay above 0.3.
    """

    enabled: bool = True
    threshold: float = 0.01
    patience: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 2:
            raise ConfigError(
                "collapse.threshold",
                f"must be in [0, 2] (distances between unit-norm embeddings), got {self.threshold}",
            )
        _check_at_least("collapse.patience", self.patience, 1)


@dataclass(frozen=True)
class Config:
    """One trial: everything needed to train and evaluate one embedding network."""

    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    miner: MinerConfig = field(default_factory=MinerConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    margin: MarginConfig = field(default_factory=MarginConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)

    def __post_init__(self) -> None:
        _check_seed("seed", self.seed)
        epochs = self.train.epochs
        for path, values in (
            ("margin.schedule", self.margin.schedule),
            ("train.lr_schedule", self.train.lr_schedule),
        ):
            if values and len(values) < epochs:
                raise ConfigError(
                    path,
                    f"holds {len(values)} epochs' values, train.epochs is {epochs}: give one "
                    "value per epoch",
                )

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-safe dict (tuples become lists) that :func:`config_from_dict` reads."""
        return _plain(dataclasses.asdict(self))

    def flat(self) -> dict[str, Any]:
        """Dotted keys to values, as search spaces, overrides and trackers name them."""
        return flatten(self.to_dict())


DEFAULT_CONFIG_RESOURCE = "default.yaml"


def default_config_path() -> Path:
    """The packaged default config (``trainables/configs/default.yaml``)."""
    return Path(
        str(resources.files("margin_tune.trainables") / "configs" / DEFAULT_CONFIG_RESOURCE)
    )


def read_config_data(
    path: str | Path | None = None, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Read a YAML config (the packaged default when ``path`` is None) and apply overrides.

    The file may give any subset of the keys, none included: an empty file (or one holding only
    comments, or ``null``) means every default. The result is plain data, not yet checked:
    :func:`margin_tune.trainables.parts.load_config` builds and checks it.

    Raises:
        ConfigError: unreadable file, YAML error, not a mapping, malformed override.
    """
    source = Path(path) if path is not None else default_config_path()
    data = read_yaml(source, field_name="--config")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{source} must hold a mapping, got {type(data).__name__}")
    for override in overrides:
        key, value = parse_override(override)
        set_dotted(data, key, value)
    return data


def read_yaml(path: Path, *, field_name: str) -> Any:
    """Load a YAML file with :func:`margin_tune.trainables.yaml_io.read_yaml_file`: safe, no
    aliases, no
    duplicate keys, bounded size; every failure is a ConfigError naming ``field_name``."""
    return read_yaml_file(path, field_name=field_name)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is parsed as YAML (``0.9``, ``null``, ``[64, 64]``) by the
    same loader as files."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", f"expected key=value, got {quote(text)}")
    if not raw.strip():
        return key, ""
    return key, load_yaml(raw, field_name=key, describe=f"cannot parse value {quote(raw)}")


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating intermediate mappings; validation comes later."""
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: depth + 1]), "is a value, not a section")
        node = child
    node[parts[-1]] = value


def build_config(data: Mapping[str, Any]) -> Config:
    """Build a Config and check every field's type and range; part names are checked above,
    in :func:`margin_tune.trainables.parts.config_from_dict`, which knows the registries."""
    config: Config = _build(Config, data, prefix="")
    return config


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping to dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys to a nested dict (the inverse of :func:`flatten`)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        set_dotted(nested, key, value)
    return nested


def config_fields() -> dict[str, Any]:
    """Every dotted config path with its annotated type: what search spaces may name."""
    return _field_types(Config, "")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a config dataclass, computed once per class: resolving them
    (``get_type_hints`` evaluates every string annotation) was most of building a config, which
    a sweep's driver does a few times per trial."""
    return typing.get_type_hints(cls)


def _field_types(cls: type, prefix: str) -> dict[str, Any]:
    hints = _hints(cls)
    found: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            found.update(_field_types(typing.cast(type, hint), f"{prefix}{item.name}."))
        else:
            found[f"{prefix}{item.name}"] = hint
    return found


def _build(cls: type, data: Any, prefix: str) -> Any:
    section = prefix.rstrip(".") or "config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(section, f"must be a mapping, got {type(data).__name__} {data!r}")
    hints = _hints(cls)
    known = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}",
            f"unknown key; known keys of {section}: {', '.join(sorted(known))}",
        )
    values: dict[str, Any] = {}
    for name, raw in data.items():
        hint = hints[name]
        path = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            values[name] = _build(typing.cast(type, hint), raw, f"{path}.")
        else:
            values[name] = _coerce(path, hint, raw)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:  # pragma: no cover - a dataclass invariant we missed
        raise ConfigError(section, str(error)) from None


def _coerce(path: str, hint: Any, raw: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if raw is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _coerce(path, inner, raw)
    if origin is Literal:
        if raw not in args:
            allowed = ", ".join(str(arg) for arg in args)
            raise ConfigError(path, f"unknown value {raw!r}; allowed: {allowed}")
        return raw
    if origin is tuple:
        if not isinstance(raw, list | tuple):
            raise ConfigError(path, f"must be a list, got {type(raw).__name__} {raw!r}")
        return tuple(_coerce(f"{path}[{index}]", args[0], item) for index, item in enumerate(raw))
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(path, f"must be true or false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(path, f"must be an integer, got {type(raw).__name__} {raw!r}")
        return raw
    if hint is float:
        number = as_number(raw)
        if number is None:
            raise ConfigError(path, f"must be a number, got {type(raw).__name__} {raw!r}")
        if not math.isfinite(number):
            raise ConfigError(path, f"must be finite, got {raw!r}")
        return number
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(path, f"must be a string, got {type(raw).__name__} {raw!r}")
        return raw
    raise TypeError(f"unsupported config type {hint!r} at {path}")  # pragma: no cover


_YAML_1_1_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def as_number(raw: Any) -> float | None:
    """A float from an int, a float, or exponent notation YAML left as text; else None.

    PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a *string*; users write it anyway.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str) and _YAML_1_1_FLOAT.fullmatch(raw.strip()):
        return float(raw)
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _check_at_most(path: str, value: float, upper: int, unit: str = "") -> None:
    if value > upper:
        raise ConfigError(
            path, f"must be <= {upper:,}{f' {unit}' if unit else ''}, got {quote(value)}"
        )


def _check_seed(path: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(
            path,
            f"must be in [0, {MAX_SEED}] (2**32 - 1, the seeds NumPy and torch accept), "
            f"got {quote(value)}",
        )


def _check_at_least(path: str, value: float, lower: float) -> None:
    if value < lower:
        raise ConfigError(path, f"must be >= {lower}, got {value}")


def _check_positive(path: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(path, f"must be > 0, got {value}")


def _check_closed_unit(path: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(path, f"must be in [0, 1], got {value}")


def _check_open_unit(path: str, value: float) -> None:
    if not 0 < value < 1:
        raise ConfigError(path, f"must be in (0, 1), got {value}")
