"""The unlearning LR schedule (warm-up, then linear decay to 0) and the update counts behind it."""

from __future__ import annotations

import pytest
import torch

from clear_ray.config import MethodConfig, TrainConfig
from clear_ray.errors import ConfigError
from clear_ray.methods import get_method
from clear_ray.train.deepspeed import deepspeed_config, import_deepspeed, trial_lr_scheduler
from clear_ray.train.schedule import (
    micro_steps_per_pass,
    trial_warmup_epochs,
    updates_per_epoch,
    warmup_updates,
)


def lrs_of_updates(train: TrainConfig, per_epoch: list[int], updates_done: int = 0) -> list[float]:
    """The lr each update runs at, in DeepSpeed's order: optimiser step, then scheduler step."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=train.lr)
    scheduler = trial_lr_scheduler(train, per_epoch, updates_done)(optimizer)
    lrs = []
    for _ in range(sum(per_epoch) - updates_done):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    return lrs


def test_one_epoch_of_linear_warm_up_then_linear_decay_to_zero_over_the_run() -> None:
    # 3 epochs of 2 updates, warm-up 2: k/2, then (6 - k)/(6 - 2), as HF's linear schedule
    lrs = lrs_of_updates(TrainConfig(lr=1.0, warmup_epochs=1.0), [2, 2, 2])
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25])


def test_the_default_recipe_warms_up_for_one_epoch() -> None:
    assert TrainConfig().warmup_epochs == 1.0
    lrs = lrs_of_updates(TrainConfig(lr=7.0), [7, 7, 7])
    assert lrs[:8] == pytest.approx([0, 1, 2, 3, 4, 5, 6, 7])
    assert "scheduler" not in deepspeed_config(TrainConfig())  # the client scheduler decides


def test_no_warm_up_starts_at_the_peak() -> None:
    lrs = lrs_of_updates(TrainConfig(lr=1.0, warmup_epochs=0.0), [2, 2])
    assert lrs == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_a_warm_up_as_long_as_the_run_is_capped_at_half_of_it() -> None:
    lrs = lrs_of_updates(TrainConfig(lr=1.0, warmup_epochs=1.0), [4])
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.5])


def test_a_resumed_run_goes_on_at_the_rate_of_the_uninterrupted_one() -> None:
    train = TrainConfig(lr=1.0, warmup_epochs=1.0)
    full = lrs_of_updates(train, [2, 2, 2])
    assert lrs_of_updates(train, [2, 2, 2], updates_done=4) == pytest.approx(full[4:])


def test_updates_count_whole_accumulation_windows_and_scrubs_max_passes() -> None:
    assert micro_steps_per_pass(7, 2) == 6 and micro_steps_per_pass(7, 1) == 7
    config = MethodConfig(scrub_max_epochs=2)
    assert updates_per_epoch(get_method("scrub"), config, 4, 3) == [6, 6, 3, 3]
    assert updates_per_epoch(get_method("ga"), config, 3, 3) == [3, 3, 3]
    assert warmup_updates([6, 6, 3, 3], 1.0) == 6
    assert warmup_updates([4, 4, 4], 1.5) == 6
    assert warmup_updates([4], 3.0) == 4


def test_scrubs_max_passes_run_at_the_peak_rate_not_inside_a_warm_up() -> None:
    # Default warm-up of one epoch; SCRUB's epoch 0 opens with a max pass (3 updates), then a
    # min pass (3). SCRUB's code has no warm-up: its first max step runs at the peak rate.
    config = MethodConfig(scrub_max_epochs=1)
    scrub = get_method("scrub")
    warmup = trial_warmup_epochs(scrub, config, TrainConfig().warmup_epochs)
    assert warmup == 0.0
    per_epoch = updates_per_epoch(scrub, config, 2, 3)  # [6, 3]
    lrs = lrs_of_updates(TrainConfig(lr=1.0, warmup_epochs=warmup), per_epoch)
    assert lrs[:3] == pytest.approx([1.0, 8 / 9, 7 / 9])  # the max pass: decay from the peak
    # Without a max pass, or for any other method, the configured warm-up stays.
    assert trial_warmup_epochs(scrub, MethodConfig(scrub_max_epochs=0), 1.0) == 1.0
    assert trial_warmup_epochs(get_method("npo"), config, 1.0) == 1.0


def test_fewer_batches_than_one_accumulation_window_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="grad_accum"):
        micro_steps_per_pass(1, 2)


@pytest.mark.slow
def test_a_deepspeed_engine_runs_the_schedule_with_gradient_accumulation(one_rank_group) -> None:
    model = torch.nn.Linear(2, 1)
    train = TrainConfig(lr=1.0, batch_size=1, grad_accum=2, zero_stage=0)
    engine, *_ = import_deepspeed().initialize(
        model=model,
        model_parameters=list(model.parameters()),
        config=deepspeed_config(train),
        lr_scheduler=trial_lr_scheduler(train, [2, 2, 2], 0),
    )
    lrs = []
    for _ in range(12):  # 6 updates of 2 micro-steps
        if engine.is_gradient_accumulation_boundary():
            lrs.append(engine.optimizer.param_groups[0]["lr"])
        engine.backward(engine(torch.ones(1, 2)).sum())
        engine.step()
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25])
