"""How a trial's inputs reach its device: indexed from memory, or decoded by ``DataLoader`` workers.

A trial asks for two things: the batches its sampler chose, as training inputs, and every sample
of a part (or some of them) in the evaluation view, in chunks. :class:`MemoryFeed` indexes a
tensor kept on the device (what every in-memory dataset has always done, unchanged).
:class:`FileFeed` builds the same batches from image files in ``train.num_workers`` processes,
pinned and copied without blocking on CUDA.

The sampler still decides every batch: the loader's ``batch_sampler`` pulls the sampler's next
batch in the trial's process. Each training image is augmented with a generator seeded by
(trial seed, epoch, batch, position), so a batch is the same whichever worker decodes it and a
resumed trial sees the crops and flips it would have seen. With workers, a sampler that embeds
its class representatives mid-epoch (``class_representative`` with mining) is advanced up to
``2 x num_workers`` batches ahead of the step being trained (the loader's prefetch), so its
mining sees the network of those few steps earlier; deterministically so, for a given
``num_workers``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from margin_tune.trainables.config import Config
from margin_tune.trainables.data.dataset import Dataset, Samples
from margin_tune.trainables.data.files import ImageFiles
from margin_tune.trainables.data.split import ClassSplit
from margin_tune.trainables.data.transforms import UnreadableImageError
from margin_tune.trainables.errors import ConfigError

Part = Literal["train", "val", "test"]

MEMORY_CHUNK = 2048
"""Samples embedded at once from memory (the evaluation of an in-memory dataset)."""

AUGMENT_STREAM = 0x61756D
"""First word of every augmentation seed, so that no other stream of a trial shares it."""


class Feed(ABC):
    """A trial's inputs: ``training`` batches and ``evaluation`` chunks, on ``device``."""

    def __init__(self, split: ClassSplit, device: torch.device) -> None:
        self.device = device
        self.indices: dict[Part, np.ndarray] = {
            "train": split.train_indices,
            "val": split.val_indices,
            "test": split.test_indices,
        }

    @abstractmethod
    def training(
        self, batches: Iterable[np.ndarray], seed: int, epoch: int
    ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """Each of ``batches`` (positions in the training part) with its inputs, in order."""

    @abstractmethod
    def evaluation(self, part: Part, positions: np.ndarray | None = None) -> Iterator[torch.Tensor]:
        """The evaluation view of ``part`` (or of its ``positions``), in order, in chunks."""

    def close(self) -> None:  # noqa: B027 - a feed without workers has nothing to stop
        """Stop any worker processes (a feed is usable again afterwards)."""


class MemoryFeed(Feed):
    """Samples held in memory, copied to the device once per part and indexed there."""

    def __init__(self, dataset: Dataset, split: ClassSplit, device: torch.device) -> None:
        super().__init__(split, device)
        self.dataset = dataset
        self._tensors: dict[Part, torch.Tensor] = {}
        for part in ("train", "val"):
            self.tensor(part)

    def tensor(self, part: Part) -> torch.Tensor:
        """The part's samples on the device (the test part only once asked for)."""
        if part not in self._tensors:
            features = self.dataset.features[self.indices[part]]
            self._tensors[part] = torch.as_tensor(features, device=self.device)
        return self._tensors[part]

    def training(
        self, batches: Iterable[np.ndarray], seed: int, epoch: int
    ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        features = self.tensor("train")
        for positions in batches:
            yield features[torch.as_tensor(positions, device=self.device)], positions

    def evaluation(self, part: Part, positions: np.ndarray | None = None) -> Iterator[torch.Tensor]:
        features = self.tensor(part)
        if positions is not None:
            features = features[torch.as_tensor(positions)]
        yield from torch.split(features, MEMORY_CHUNK)


class _Images(torch.utils.data.Dataset[torch.Tensor]):
    """Items ``(dataset index, augmentation seed or None)``: the training or evaluation view."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, tuple[int, ...] | None]) -> torch.Tensor:
        index, key = item
        path = self.files.path(index)
        if key is None:
            return torch.from_numpy(self.files.view.evaluation(path))
        rng = np.random.default_rng([AUGMENT_STREAM, *key])
        return torch.from_numpy(self.files.view.training(path, rng))


class _Batches:
    """A ``batch_sampler`` whose batches are set before each pass: one loader, and one pool of
    persistent workers, serves every epoch."""

    def __init__(self) -> None:
        self.current: Iterable[list[Any]] = ()

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self.current)


class FileFeed(Feed):
    """Image files decoded, augmented and batched in ``DataLoader`` workers."""

    def __init__(
        self, files: ImageFiles, split: ClassSplit, device: torch.device, config: Config
    ) -> None:
        super().__init__(split, device)
        self.files = files
        self.eval_batch_size = config.train.eval_batch_size
        self.workers = config.train.num_workers
        self._batches = {"train": _Batches(), "eval": _Batches()}
        self._loaders: dict[str, DataLoader[torch.Tensor]] = {}

    def _loader(self, name: str) -> DataLoader[torch.Tensor]:
        """One loader per use, made on first use; its workers persist until :meth:`close`."""
        if name not in self._loaders:
            self._loaders[name] = DataLoader(
                _Images(self.files),
                batch_sampler=self._batches[name],  # items are (index, augmentation key) pairs
                num_workers=self.workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0,
            )
        return self._loaders[name]

    def _copy(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, non_blocking=True)

    def training(
        self, batches: Iterable[np.ndarray], seed: int, epoch: int
    ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        train = self.indices["train"]
        chosen: list[np.ndarray] = []

        def items() -> Iterator[list[Any]]:
            for number, positions in enumerate(batches):
                chosen.append(positions)
                yield [
                    (int(index), (seed, epoch, number, place))
                    for place, index in enumerate(train[positions].tolist())
                ]

        self._batches["train"].current = items()
        for number, batch in enumerate(self._read("train")):
            yield self._copy(batch), chosen[number]
            chosen[number] = chosen[number][:0]  # what was trained on is not kept

    def evaluation(self, part: Part, positions: np.ndarray | None = None) -> Iterator[torch.Tensor]:
        indices = self.indices[part] if positions is None else self.indices[part][positions]
        size = self.eval_batch_size
        self._batches["eval"].current = [
            [(int(index), None) for index in indices[start : start + size].tolist()]
            for start in range(0, len(indices), size)
        ]
        for batch in self._read("eval"):
            yield self._copy(batch)

    def _read(self, name: str) -> Iterator[torch.Tensor]:
        try:
            yield from self._loader(name)
        except UnreadableImageError as error:
            raise ConfigError(
                "dataset.path", f"cannot read image {_worker_message(error)}"
            ) from None

    def close(self) -> None:
        """Drop the loaders: a dropped loader's iterator stops its worker processes."""
        self._loaders.clear()


def _worker_message(error: Exception) -> str:
    """The original message of an error re-raised from a ``DataLoader`` worker, which torch
    prefixes with the worker and its traceback."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    prefix = f"{UnreadableImageError.__name__}: "
    return last.split(prefix, 1)[1] if prefix in last else last


def build_feed(dataset: Samples, split: ClassSplit, device: torch.device, config: Config) -> Feed:
    """The feed for ``dataset``: from memory or from its files."""
    if isinstance(dataset, ImageFiles):
        return FileFeed(dataset, split, device, config)
    if isinstance(dataset, Dataset):
        return MemoryFeed(dataset, split, device)
    raise TypeError(f"no feed for {type(dataset).__name__}")
