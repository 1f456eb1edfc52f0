"""The packaged default config, shrunk so a trial takes a second or two."""

from __future__ import annotations

#: Overrides that shrink the packaged default without changing what runs.
TINY = (
    "dataset.num_classes=30",
    "dataset.samples_per_class=16",
    "dataset.train_fraction=0.5",
    "dataset.val_fraction=0.2",
    "model.hidden_dims=[32]",
    "model.embedding_dim=16",
    "sampler.classes_per_batch=6",
    "sampler.samples_per_class=4",
    "train.epochs=3",
    "train.num_threads=1",
    "train.device=cpu",
)
