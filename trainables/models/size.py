"""The bound on a network's size, checked from its config and input shape before it is built."""

from __future__ import annotations

from margin_tune.trainables.config import ModelConfig
from margin_tune.trainables.errors import ConfigError, shorten


def check_parameter_count(config: ModelConfig, input_shape: tuple[int, ...], count: int) -> None:
    """Refuse a network of more than ``model.max_parameters`` weights and biases.

    Raises:
        ConfigError: for ``model.hidden_dims``, giving the count, the limit and the field that
            raises it.
    """
    if count > config.max_parameters:
        raise ConfigError(
            "model.hidden_dims",
            f"model {config.name!r} with hidden_dims {shorten(str(list(config.hidden_dims)))} "
            f"and embedding_dim {config.embedding_dim} on samples of shape {input_shape} has "
            f"{count:,} parameters, above model.max_parameters ({config.max_parameters:,}); use "
            "narrower layers or raise model.max_parameters",
        )
