"""bf16 autocast, channels_last and a head learning rate on CPU, so that CI covers what CUDA
runs use; fp16 is refused off CUDA."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from image_files_data import files_dataset, resumed_losses, trial_config

from margin_tune.trainables.config import Config
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.trial import Trial


def with_train(**train: object) -> Config:
    """The lazy-loading test config with a margin wide enough (1.5 of at most 2) that every
    batch has a loss to step on, so that precision changes the trajectory."""
    config = trial_config()
    margin = replace(config.margin, initial_margin=1.5)
    return replace(config, margin=margin, train=replace(config.train, **train))


def test_bf16_channels_last_trains_and_resumes_exactly(tmp_path: Path) -> None:
    config = with_train(precision="bf16", channels_last=True)
    dataset = files_dataset(tmp_path, config.dataset)
    trial = Trial(config, dataset)
    seen: dict[str, torch.dtype] = {}
    conv = next(m for m in trial.model.modules() if isinstance(m, torch.nn.Conv2d))

    def note_dtype(_module: object, _inputs: object, output: torch.Tensor) -> None:
        seen.setdefault("dtype", output.dtype)

    conv.register_forward_hook(note_dtype)
    straight = trial.run(evaluate_test=True)
    assert seen["dtype"] == torch.bfloat16  # the convolutions ran under autocast
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert straight.test_metrics is not None
    assert straight.history[0]["train_loss"] > 0
    assert all(0 <= row["val_map_at_r"] <= 1 for row in straight.history)
    assert resumed_losses(config, dataset) == [row["train_loss"] for row in straight.history]
    fp32 = Trial(with_train(), dataset).run()
    assert [row["train_loss"] for row in fp32.history] != [
        row["train_loss"] for row in straight.history
    ]


def test_head_lr_puts_the_head_in_a_group_of_its_own(tmp_path: Path) -> None:
    config = with_train(head_lr=0.05)
    trial = Trial(config, files_dataset(tmp_path, config.dataset))
    low, high = trial.optimizer.param_groups
    assert (low["lr"], high["lr"]) == (config.train.lr, 0.05)
    head = trial.model.trunk.head
    assert {id(p) for p in high["params"]} == {id(p) for p in head.parameters()}
    assert not {id(p) for p in low["params"]} & {id(p) for p in head.parameters()}


def test_fp16_off_cuda_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = with_train(precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match=r"train\.precision: fp16 needs a CUDA device"):
        Trial(config, files_dataset(tmp_path, config.dataset))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_with_a_scaler_and_bf16_on_cuda(tmp_path: Path) -> None:
    for precision in ("fp16", "bf16"):
        config = with_train(precision=precision, channels_last=True, device="cuda", num_workers=2)
        trial = Trial(config, files_dataset(tmp_path / precision, config.dataset))
        result = trial.run(evaluate_test=True)
        assert result.test_metrics is not None
        assert ("grad_scaler" in trial.state_dict()) == (precision == "fp16")
