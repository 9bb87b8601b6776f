"""How many micro-steps each pass takes and how many optimiser updates each epoch makes.

Every pass over an epoch's batches (SCRUB: a max pass, then a min pass) is cut to a whole
number of gradient-accumulation windows, so no optimiser update mixes two phases' gradients
and every epoch's gradients are applied before it is evaluated. The same counts size the LR
schedule, so its decay ends exactly at the last update of the run.
"""

from __future__ import annotations

from clear_ray.config import ConfigError, MethodConfig
from clear_ray.methods.base import Method


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
