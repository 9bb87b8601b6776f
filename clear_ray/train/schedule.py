"""The LR schedule of every DeepSpeed engine, and the update counts that size it.

One schedule for the Original/Gold finetune and the unlearning trials: linear warm-up from 0,
then a decay to 0 at the last update (HF Trainer's, which CLEAR used for both: ``mm/finetune.py``
and ``mm/forget.py``). For trials, every pass over an epoch's batches (SCRUB: a max pass, then a
min pass) is cut to a whole number of gradient-accumulation windows, so no optimiser update
mixes two phases' gradients and every epoch's gradients are applied before it is evaluated.
A method that opens with an ascent pass (SCRUB) gets no warm-up (:func:`trial_warmup_epochs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from clear_ray.config import MethodConfig
from clear_ray.errors import ConfigError
from clear_ray.methods.base import Method

DECAYS: dict[str, Callable[[float], float]] = {  # progress in [0, 1) -> lr factor
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "linear": lambda progress: 1.0 - progress,
}


def lr_factor(total: int, warmup: int, decay: str) -> Callable[[int], float]:
    """The lr factor of update ``s`` (0-based): ``s / warmup``, then ``decay`` to 0 at ``total``.

    HF's ``get_linear_schedule_with_warmup`` / ``..._cosine_...``: the first update runs at lr 0
    when there is a warm-up, and linear decay is (total − s)/(total − warmup). A warm-up as long
    as the run (e.g. one epoch of a one-epoch run) is capped at half of it, so the rate still
    rises and decays to 0 instead of never reaching its peak.
    """
    shape = DECAYS[decay]
    if warmup >= total:
        warmup = total // 2

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return shape((step - warmup) / max(1, total - warmup))

    return factor


def lr_scheduler(
    total: int, warmup: int, decay: str, updates_done: int = 0
) -> Callable[[object], object]:
    """A DeepSpeed client scheduler (``deepspeed.initialize(lr_scheduler=...)``) of
    :func:`lr_factor` whose next update is number ``updates_done``: a resumed trial goes on at
    the rate it stopped at. DeepSpeed steps it after each optimiser update."""
    factor = lr_factor(total, warmup, decay)

    def build(optimizer):
        from torch.optim.lr_scheduler import LambdaLR

        return LambdaLR(optimizer, lambda step: factor(step + updates_done))

    return build


def micro_steps_per_pass(batches_per_epoch: int, grad_accum: int) -> int:
    """The epoch's batches rounded down to whole accumulation windows (the rest is dropped).

    Raises:
        ConfigError: if not even one window fits (too few forget items for the batch size).
    """
    steps = batches_per_epoch // grad_accum * grad_accum
    if steps == 0:
        raise ConfigError(
            f"an epoch has {batches_per_epoch} batches, fewer than train.grad_accum = "
            f"{grad_accum}: not one optimiser update"
        )
    return steps


def updates_per_epoch(
    method: Method, config: MethodConfig, epochs: int, updates_per_pass: int
) -> list[int]:
    """Optimiser updates of each epoch: one pass's updates times the method's passes."""
    return [len(method.epoch_passes(epoch, config)) * updates_per_pass for epoch in range(epochs)]


def warmup_updates(per_epoch: list[int], warmup_epochs: float) -> int:
    """The updates of the first ``warmup_epochs`` epochs (a fraction counts that share)."""
    whole = int(warmup_epochs)
    updates = sum(per_epoch[:whole])
    if whole < len(per_epoch):
        updates += round((warmup_epochs - whole) * per_epoch[whole])
    return updates


def trial_warmup_epochs(method: Method, config: MethodConfig, warmup_epochs: float) -> float:
    """``train.warmup_epochs``, or 0 for a method whose first epoch opens with an ascent pass.

    SCRUB's max passes come first, so any warm-up would run them at a fraction of the peak
    rate (with the defaults, every max step below half of it). SCRUB's own code has no
    warm-up: ``meghdadk/SCRUB`` ``scrub.py`` sets the rate per epoch with
    ``adjust_learning_rate`` (step decay) only.
    """
    return 0.0 if len(method.epoch_passes(0, config)) > 1 else warmup_epochs
