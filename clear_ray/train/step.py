"""One unlearning optimiser step: forward the views a method asks for, take its loss(es).

The trainer, not the method, does every forward pass (policy, and reference with adapters
disabled) and reduces logits to what the method declared it reads; methods stay pure
functions of tensors. Slicing batches once here is what keeps each method a dozen lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import torch
import torch.distributed as dist
from torch import Tensor, nn

from clear_ray.config import Config
from clear_ray.methods.base import (
    LossInputs,
    Method,
    SequenceScores,
    answer_hidden,
    answer_logprobs,
    sequence_scores,
)
from clear_ray.models.forward import forward_logits
from clear_ray.models.lora import reference_model
from clear_ray.regularizers import l1_penalty, lora_parameters

Batches = dict[str, dict[str, Tensor]]


@contextmanager
def capture_output(layer: nn.Module | None) -> Iterator[list[Tensor]]:
    """Collect ``layer``'s output tensor during the forward passes inside the context."""
    captured: list[Tensor] = []
    if layer is None:
        yield captured
        return

    def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def score_views(
    model: nn.Module,
    method: Method,
    views: tuple[str, ...],
    batches: Batches,
    layer: nn.Module | None,
) -> tuple[dict[str, SequenceScores], dict[str, Tensor], dict[str, Tensor]]:
    """Scores of ``views`` plus the distributions and hidden states ``method`` declared."""
    scores, logprobs, hidden = {}, {}, {}
    for view in views:
        batch = batches[view]
        wants_hidden = view in method.hidden_views
        with capture_output(layer if wants_hidden else None) as captured:
            logits = forward_logits(model, batch)
        scores[view] = sequence_scores(logits, batch["labels"])
        if view in method.distribution_views:
            logprobs[view] = answer_logprobs(logits, batch["labels"])
        if wants_hidden:
            hidden[view] = answer_hidden(captured[-1], batch["labels"])
    return scores, logprobs, hidden


def phase_loss(
    engine, method: Method, batches: Batches, cfg: Config, layer: nn.Module | None
) -> tuple[Tensor, dict[str, float]]:
    """The method's loss on policy (and reference) outputs, plus L1 on the LoRA weights."""
    policy, policy_logprobs, policy_hidden = score_views(
        engine, method, method.views, batches, layer
    )
    reference, reference_logprobs, reference_hidden = {}, {}, {}
    if method.reference_views:
        with torch.no_grad(), reference_model(engine.module):
            reference, reference_logprobs, reference_hidden = score_views(
                engine.module, method, method.reference_views, batches, layer
            )
    inputs = LossInputs(
        policy, reference, policy_logprobs, reference_logprobs, policy_hidden, reference_hidden
    )
    loss, logs = method.loss(inputs, cfg.method)
    if cfg.regularizer.l1 > 0:
        lora = lora_parameters(engine.module, cfg.regularizer.l1_targets)
        penalty = l1_penalty([param for _, param in lora])
        loss = loss + cfg.regularizer.l1 * penalty
        logs["loss/l1"] = float(penalty.detach())  # Σ|w| over regularizer.l1_targets
        logs["loss/l1_weighted"] = cfg.regularizer.l1 * logs["loss/l1"]  # what the loss adds
    if not finite_on_every_rank(loss):
        raise FloatingPointError(f"{method.name} loss became {loss.item()}")
    return loss, logs


def finite_on_every_rank(loss: Tensor) -> bool:
    """True iff the loss is finite on all ranks, so every worker stops together on a NaN."""
    finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def training_step(
    engine, phase: Method, batches: Batches, cfg: Config, layer: nn.Module | None
) -> dict[str, float]:
    """One micro-step of one phase: its loss (L1 included once) backward, then engine.step.

    DeepSpeed applies the optimiser update on accumulation boundaries only; the loop keeps a
    phase's micro-steps within whole windows (``train/schedule.py``), so SCRUB's max and min
    gradients never meet in one update.
    """
    loss, logs = phase_loss(engine, phase, batches, cfg, layer)
    engine.backward(loss)
    engine.step()
    logs[f"loss/{phase.name}"] = float(loss.detach())
    return logs


def train_epoch(
    engine,
    method: Method,
    cfg: Config,
    epoch: int,
    pass_batches: Callable[[tuple[str, ...]], Iterable[Batches]],
    micro_steps: int,
    layer: nn.Module | None,
) -> list[dict[str, float]]:
    """Every pass the method takes in ``epoch`` (SCRUB: max then min), ``micro_steps`` each.

    ``pass_batches(views)`` yields the epoch's batches of those views; ``micro_steps`` is a
    whole number of accumulation windows (``schedule.micro_steps_per_pass``), so each pass
    ends on an update boundary and no update mixes two phases' gradients.
    """
    logs = []
    for phase in method.epoch_passes(epoch, cfg.method):
        for batches in islice(pass_batches(phase.views), micro_steps):
            logs.append(training_step(engine, phase, batches, cfg, layer))
    return logs
