"""The packaged default config, shrunk so a trial takes a second or two."""

from __future__ import annotations

from margin_tune.pipeline.search.space import SearchSpace, parse_space
from margin_tune.trainables.config import Config

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


def set_flags(*overrides: str) -> list[str]:
    """``--set`` flags for :data:`TINY` and then ``overrides``: a command line's config."""
    return [item for override in (*TINY, *overrides) for item in ("--set", override)]


def lr_space(base: Config) -> SearchSpace:
    """A one-parameter space (the learning rate of a constant margin): searchers tested alone."""
    return parse_space(
        {
            "metric": "val_map_at_r",
            "parameters": {
                "margin.scheduler": {"distribution": "fixed", "value": "constant"},
                "train.lr": {"distribution": "uniform", "low": 1e-4, "high": 1e-2},
            },
        },
        base,
        name="small",
    )
