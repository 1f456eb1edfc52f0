"""One trial: train a Siamese embedding network under a margin scheduler, in a plain loop.

This is what every sweep runs, wrapped thinly by the pipeline. It needs no Ray and no MLflow:
progress leaves through a per-epoch callback that may ask to stop and may checkpoint the trial.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from margin_tune.trainables import metric_names as names
from margin_tune.trainables.collapse import CollapseMonitor, choose_probe
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import (
    ClassSplit,
    Dataset,
    Samples,
    load_dataset,
    recall_ks,
    split_classes,
)
from margin_tune.trainables.data.feed import Part, build_feed
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.losses import (
    BatchGeometry,
    DifficultyCounts,
    EffectiveMarginReservoir,
    LossTerms,
    build_loss,
)
from margin_tune.trainables.metrics import Evaluator, embedding_spread, evaluate_raw_features
from margin_tune.trainables.metrics.verification import pair_scores, roc_curve
from margin_tune.trainables.metrics.views import (
    FAR_GRID,
    EmbeddingViews,
    map_indices,
    roc_at_grid,
    tsne_map,
)
from margin_tune.trainables.miners import build_miner
from margin_tune.trainables.models import SiameseEmbedder, build_model
from margin_tune.trainables.samplers import EpochContext, build_sampler
from margin_tune.trainables.schedulers import EpochStats, build_scheduler

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochReport:
    """What the trainer tells its callback at the end of each epoch.

    ``metrics`` is the epoch's ``metrics.csv`` row. ``checkpoint()`` returns the trial's full
    state, loadable with ``torch.load(weights_only=True)``; call it only when saving, it copies.
    """

    epoch: int
    metrics: dict[str, float]
    checkpoint: Callable[[], dict[str, Any]]


EpochCallback = Callable[[EpochReport], bool | None]
"""Called after every epoch; returning True stops the trial after that epoch."""


@dataclass
class TrialResult:
    """The history of a trial and, when asked for, its test-class evaluation."""

    history: list[dict[str, float]]
    stop_reason: str
    test_metrics: dict[str, float] | None = None
    reference_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    test_embeddings: np.ndarray | None = None
    test_labels: np.ndarray | None = None


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite: the trial cannot go on."""


def resolve_device(requested: str) -> torch.device:
    """``train.device`` on this machine; ``cuda`` where there is none is refused, not crashed."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device", "cuda, but this machine has no CUDA device; allowed here: auto, cpu"
        )
    return torch.device(requested)


def _check_retrieval_split(labels: np.ndarray, part: str, config: Config) -> None:
    """Refuse, before any training, a split whose metrics cannot exist.

    Retrieval and verification need a same-class pair (a class with two samples) and a
    different-class pair; only the class sizes are read, never features or results.
    """
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) >= 2 and (counts >= 2).any():
        return
    field = "dataset.path" if config.dataset.path else "dataset.samples_per_class"
    raise ConfigError(
        field,
        f"the {part} classes of {config.dataset.name} ({len(counts)} classes, at most "
        f"{int(counts.max()) if len(counts) else 0} sample(s) each) hold no same-class pair; "
        "need 2 classes and a class with at least 2 samples",
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch's random streams, derived from (seed, epoch) only."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


class Trial:
    """Everything a config describes, built and checked before any training starts.

    Construction loads the data, splits classes, builds sampler, model, miner and scheduler,
    so every bad value surfaces before a caller creates outputs. ``run`` then trains. The
    optimiser is built when first used (its values are checked with the config): a sweep's
    driver builds a trial at every bound of the space only to check it, and the first optimiser
    in a process imports ``torch._dynamo``, about 1.4 s here, before Ray could start.
    """

    def __init__(self, config: Config, dataset: Samples | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.train.device)
        torch.set_num_threads(config.train.num_threads or len(os.sched_getaffinity(0)))
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset)
        self.split: ClassSplit = split_classes(
            self.dataset.labels, config.dataset, self.dataset.given_test_classes
        )
        for part, indices in (
            ("validation", self.split.val_indices),
            ("test", self.split.test_indices),
        ):
            _check_retrieval_split(self.dataset.labels[indices], part, config)
        self.feed = build_feed(self.dataset, self.split, self.device, config)
        self.train_labels = torch.as_tensor(
            self.dataset.labels[self.split.train_indices], device=self.device
        )
        self.sampler = build_sampler(
            config.sampler,
            self.dataset.labels[self.split.train_indices],
            config.train.batches_per_epoch,
        )
        torch.manual_seed(config.seed)
        self.model: SiameseEmbedder = build_model(config.model, self.dataset.sample_shape).to(
            self.device
        )
        self.precision = Precision(config, self.device)
        if self.precision.channels_last:
            _channels_last(self.model)
        self.miner = build_miner(config.miner.name)
        self.loss = build_loss(config.loss, self.miner)
        self.scheduler = build_scheduler(config.margin)
        self.val_evaluator = Evaluator(
            self.dataset.labels[self.split.val_indices],
            max_pairs=config.eval.max_pairs,
            seed=config.eval.pair_seed,
            recall_at=recall_ks(config),
        )
        self.probe = torch.as_tensor(
            choose_probe(len(self.split.val_indices), config.eval.pair_seed), device=self.device
        )
        self.collapse = CollapseMonitor(config.collapse)
        self.epoch = 0
        self.history: list[dict[str, float]] = []

    @functools.cached_property
    def optimizer(self) -> torch.optim.Optimizer:
        return _build_optimizer(self.config, self.model)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "collapse": self.collapse.state_dict(),
            "history": [dict(row) for row in self.history],
            **self.precision.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the network, the optimiser's moments, μ, the collapse
        monitor and the history come back; the hyperparameters stay this trial's config's.

        The checkpoint may come from another config: population-based training restores a
        copy of a better trial and perturbs its values, and those must win. μ's rule reads its
        values from the config already (a scheduler keeps only μ as state); the learning rate
        lives in the optimiser's state, so it is set back to ``train.lr`` (and ``head_lr``).
        A plain resume has the same config, and nothing changes.
        """
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group, lr in zip(self.optimizer.param_groups, self._learning_rates(), strict=True):
            group["lr"] = lr
        self.scheduler.load_state_dict(state["scheduler"])
        self.collapse.load_state_dict(state["collapse"])
        self.epoch = int(state["epoch"])
        self.history = [dict(row) for row in state["history"]]
        self.precision.load_state_dict(state)

    def _set_learning_rate(self) -> float:
        """The epoch's learning rate (of the network, or of its trunk beside ``head_lr``):
        ``train.lr_schedule``'s for this epoch where it has one, else as the optimiser holds
        it (``train.lr``)."""
        group = self.optimizer.param_groups[0]
        if self.config.train.lr_schedule:
            group["lr"] = self.config.train.lr_schedule[self.epoch - 1]
        return float(group["lr"])

    def _learning_rates(self) -> list[float]:
        """Each parameter group's rate as the config sets it (see :func:`_parameter_groups`)."""
        train = self.config.train
        return [train.lr] if train.head_lr is None else [train.lr, train.head_lr]

    def forward(self, inputs: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        """``model`` (the trial's network) on ``inputs`` in ``train.precision`` and memory
        format; the embeddings come out float32."""
        network = self.model if model is None else model
        if self.precision.channels_last and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            return network(inputs).float()

    @torch.no_grad()
    def embed(self, part: Part, positions: np.ndarray | None = None) -> torch.Tensor:
        """The current network's embeddings of ``part`` (or of its ``positions``), in order,
        in the evaluation view and mode."""
        was_training = self.model.training
        self.model.eval()
        chunks = [self.forward(chunk) for chunk in self.feed.evaluation(part, positions)]
        self.model.train(was_training)
        return torch.cat(chunks)

    def run(
        self,
        on_epoch: EpochCallback | None = None,
        *,
        evaluate_test: bool = False,
        keep_test_embeddings: bool = False,
    ) -> TrialResult:
        """Train from the current epoch to ``train.epochs``, or until stopped or collapsed.

        The callback may stop the trial after any epoch; a collapse (see
        :class:`~margin_tune.trainables.collapse.CollapseMonitor`) stops it too, after the callback
        has seen
        the collapsed epoch, whose row has ``collapsed`` 1.0.
        """
        reference = self.reference_metrics() if evaluate_test else {}
        stop_reason = "completed"
        while self.epoch < self.config.train.epochs and not self.collapse.collapsed:
            metrics = self._train_epoch()
            self.history.append(metrics)
            report = EpochReport(self.epoch, metrics, self.state_dict)
            if on_epoch is not None and on_epoch(report) and self.epoch < self.config.train.epochs:
                stop_reason = "stopped"
                break
        if self.collapse.collapsed:
            stop_reason = "collapsed"
        result = TrialResult(
            history=self.history, stop_reason=stop_reason, reference_metrics=reference
        )
        if evaluate_test:
            embeddings = self.embed("test")
            result.test_metrics = self.test_evaluator(embeddings)
            if keep_test_embeddings:
                result.test_embeddings = embeddings.cpu().numpy()
                result.test_labels = self.dataset.labels[self.split.test_indices]
        return result

    @functools.cached_property
    def test_evaluator(self) -> Evaluator:
        """Built on first use only: tuning trials never look at the test classes."""
        return Evaluator(
            self.dataset.labels[self.split.test_indices],
            max_pairs=self.config.eval.max_pairs,
            seed=self.config.eval.pair_seed,
            recall_at=recall_ks(self.config),
        )

    def embed_test(self) -> torch.Tensor:
        """The current network's embeddings of the test classes' samples, in split order."""
        return self.embed("test")

    def evaluate_test(self, embeddings: torch.Tensor | None = None) -> dict[str, float]:
        """The current network on the test classes (``embeddings``: :meth:`embed_test`'s, when
        the caller has them already)."""
        return self.test_evaluator(self.embed_test() if embeddings is None else embeddings)

    def test_views(self, embeddings: torch.Tensor | None = None) -> EmbeddingViews:
        """The current network's ROC curve on the test pairs and its t-SNE map of test samples
        (:mod:`~margin_tune.trainables.metrics.views`), the same pairs and classes for every
        method of a split."""
        embeddings = self.embed_test() if embeddings is None else embeddings
        evaluator = self.test_evaluator
        curve = roc_curve(pair_scores(embeddings, evaluator.pairs), evaluator.pairs.same)
        labels = self.dataset.labels[self.split.test_indices]
        picked = map_indices(labels, self.config.eval.pair_seed)
        mapped = embeddings[torch.as_tensor(picked, device=embeddings.device)].cpu().numpy()
        return EmbeddingViews(
            far=FAR_GRID,
            tar=roc_at_grid(curve),
            map_xy=tsne_map(mapped, self.config.eval.pair_seed),
            map_labels=labels[picked],
        )

    def reference_metrics(self) -> dict[str, dict[str, float]]:
        """Test metrics of raw features and of the untrained network: what training must beat.

        Raw features only for a dataset held in memory: pixels of images read from disk at the
        literature's 224 px are 150,528 numbers a sample, a distance matrix nobody reads.
        """
        evaluator = self.test_evaluator
        untrained = build_untrained_model(self.config, self.dataset.sample_shape).to(self.device)
        if self.precision.channels_last:
            _channels_last(untrained)
        untrained.eval()
        with torch.no_grad():
            embedded = torch.cat(
                [self.forward(chunk, untrained) for chunk in self.feed.evaluation("test")]
            )
        reference = {"untrained": evaluator(embedded)}
        if isinstance(self.dataset, Dataset):
            features = torch.cat(list(self.feed.evaluation("test")))
            reference = {"raw_features": evaluate_raw_features(evaluator, features), **reference}
        return reference

    def train_step(
        self, inputs: torch.Tensor, labels: torch.Tensor, margin: float
    ) -> tuple[BatchGeometry, LossTerms]:
        """One optimiser step on a batch at ``margin``: what every training batch costs (the
        benchmarks time it alone)."""
        geometry = BatchGeometry.from_embeddings(self.forward(inputs), labels)
        terms = self.loss(geometry, margin)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.step(terms.total, self.optimizer)
        return geometry, terms

    def _train_epoch(self) -> dict[str, float]:
        started = time.perf_counter()
        self.epoch += 1
        margin = self.scheduler.margin
        learning_rate = self._set_learning_rate()
        seed = epoch_seed(self.config.seed, self.epoch)
        context = EpochContext(
            epoch=self.epoch,
            rng=np.random.default_rng(seed),
            embed=lambda positions: self.embed("train", positions),
            seed=self.config.seed,
        )
        generator = torch.Generator(device=self.device).manual_seed(seed)
        reservoir = EffectiveMarginReservoir(generator=generator)
        counts = DifficultyCounts.zero(self.device)
        # Running sums of the total, positive and entropy terms, synced once per epoch.
        loss_sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        batches = 0
        self.model.train()
        inputs_of = self.feed.training(self.sampler.batches(context), self.config.seed, self.epoch)
        for inputs, positions in inputs_of:
            index = torch.as_tensor(positions, device=self.device)
            geometry, terms = self.train_step(inputs, self.train_labels[index], margin)
            with torch.no_grad():
                counts = counts + self.loss.difficulty(geometry, margin)
                reservoir.add(geometry)
                loss_sums += torch.stack(terms).detach()
            batches += 1
        train_loss, loss_positive, loss_entropy = (loss_sums / max(batches, 1)).tolist()
        if not math.isfinite(train_loss):
            raise TrainingDivergedError(
                f"train_loss became {train_loss} in epoch {self.epoch} (margin {margin:.4g}, "
                f"lr {self.config.train.lr:g}); the trial cannot continue"
            )
        stats = EpochStats(**counts.to_dict(), train_loss=train_loss)
        valid = stats.valid
        self.scheduler.step(self.epoch, stats)
        val_embeddings = self.embed("val")
        validation = self.val_evaluator(val_embeddings)
        spread = embedding_spread(val_embeddings[self.probe])
        collapsed = self.collapse.update(spread)
        if collapsed:
            _logger.warning(
                "epoch %d: embeddings collapsed (mean pairwise distance %.4g below "
                "collapse.threshold %g for %d epochs); stopping the trial",
                self.epoch,
                spread.mean_pairwise_distance,
                self.config.collapse.threshold,
                self.collapse.epochs_below,
            )
        return {
            names.EPOCH: float(self.epoch),
            names.MARGIN: margin,
            names.LEARNING_RATE: learning_rate,
            names.EASY_RATIO: stats.easy_ratio,
            names.SEMIHARD_RATIO: stats.semihard_ratio,
            names.HARD_RATIO: stats.hard_ratio,
            names.VALID_TRIPLETS: float(valid),
            names.TRAIN_LOSS: train_loss,
            names.LOSS_POSITIVE: loss_positive,
            names.LOSS_ENTROPY: loss_entropy,
            **reservoir.quantiles(),
            **{names.on_validation(name): value for name, value in validation.items()},
            names.EPOCH_SECONDS: time.perf_counter() - started,
            names.EMBEDDING_SPREAD: spread.mean_pairwise_distance,
            names.TOP_DIRECTION_VARIANCE: spread.top_direction_variance,
            names.COLLAPSED: float(collapsed),
        }


def build_untrained_model(config: Config, input_shape: tuple[int, ...]) -> SiameseEmbedder:
    """The network exactly as a trial with this seed starts, before any step."""
    torch.manual_seed(config.seed)
    return build_model(config.model, input_shape)


def _build_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    train = config.train
    groups = _parameter_groups(config, model)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=0.9, weight_decay=train.weight_decay)
    optimizer_class = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(groups, lr=train.lr, weight_decay=train.weight_decay)


def _parameter_groups(config: Config, model: torch.nn.Module) -> Any:
    """Every parameter at ``train.lr``; with ``train.head_lr``, the trunk's ``head`` (its
    embedding layer) in a group of its own at that rate.

    Raises:
        ConfigError: ``head_lr`` for a network without a head.
    """
    if config.train.head_lr is None:
        return model.parameters()
    head = getattr(getattr(model, "trunk", model), "head", None)
    if not isinstance(head, torch.nn.Module):
        raise ConfigError(
            "train.head_lr",
            f"model {config.model.name!r} has no separate embedding head; allowed: null",
        )
    head_ids = {id(parameter) for parameter in head.parameters()}
    rest = [parameter for parameter in model.parameters() if id(parameter) not in head_ids]
    return [{"params": rest}, {"params": list(head.parameters()), "lr": config.train.head_lr}]


def _channels_last(model: torch.nn.Module) -> None:
    """Convolution weights stored NHWC (``Module.to`` takes ``memory_format``; its stubs
    do not say so)."""
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


class Precision:
    """``train.precision`` and ``train.channels_last`` for one trial: autocast around forward
    passes, and for fp16 a gradient scaler (fp16's 5 exponent bits underflow small gradients)
    whose state a checkpoint keeps.

    Raises:
        ConfigError: fp16 without CUDA (torch's CPU autocast is bf16), or channels_last for
            a network of vectors.
    """

    def __init__(self, config: Config, device: torch.device) -> None:
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.train.precision)
        if config.train.precision == "fp16" and device.type != "cuda":
            raise ConfigError(
                "train.precision",
                f"fp16 needs a CUDA device, this trial runs on {device.type}; "
                "allowed here: fp32, bf16",
            )
        self.scaler = torch.amp.GradScaler("cuda") if config.train.precision == "fp16" else None
        self.channels_last = config.train.channels_last

    def autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and an optimiser step, scaled where fp16 needs it."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else {"grad_scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])


def train(
    config: Config,
    on_epoch: EpochCallback | None = None,
    *,
    checkpoint: dict[str, Any] | None = None,
    evaluate_test: bool = False,
    keep_test_embeddings: bool = False,
) -> TrialResult:
    """Train one trial, optionally resuming from a checkpoint made by an earlier ``on_epoch``.

    A resumed trial produces the same subsequent metrics as an uninterrupted one: every epoch's
    random streams derive from (seed, epoch), and model, optimiser, scheduler and collapse-monitor
    state are restored.
    """
    trial = Trial(config)
    if checkpoint is not None:
        trial.load_state_dict(checkpoint)
    return trial.run(
        on_epoch, evaluate_test=evaluate_test, keep_test_embeddings=keep_test_embeddings
    )
