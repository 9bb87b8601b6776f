"""Supervised finetuning (SFT) on answer tokens: how Original and Gold are made.

One plain PyTorch loop (no DeepSpeed: it runs once per recipe, not per trial) with the
schedule and precision of ``FinetuneConfig``. CLEAR's ``mm/finetune.py`` uses HF Trainer with
``warmup_steps = steps per epoch``, HF's default linear decay and ``bf16=True``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from clear_ray.config import FinetuneConfig
from clear_ray.console import step_progress
from clear_ray.data.collate import Collator, EncodedExample, Example
from clear_ray.models.forward import forward_logits, to_device

DECAYS: dict[str, Callable[[float], float]] = {  # progress in [0, 1) -> lr factor
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "linear": lambda progress: 1.0 - progress,
}


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Standard SFT loss: mean over all answer tokens of the batch."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
    )


def lr_factor(total_steps: int, warmup_steps: int, decay: str) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then ``decay`` towards 0 at ``total_steps``.

    The factor of optimiser step s (0-based). Warm-up is (s + 1) / warmup, so the first step
    already learns (HF's s / warmup spends it at lr 0); linear decay is HF's (T − s)/(T − w).
    """
    shape = DECAYS[decay]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return shape((step - warmup_steps) / max(1, total_steps - warmup_steps))

    return factor


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on GPU as CLEAR's ``bf16=True``; on CPU the recipe runs in fp32."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_supervised(
    model: torch.nn.Module,
    collator: Collator,
    examples: Sequence[Example],
    recipe: FinetuneConfig,
    description: str,
) -> list[float]:
    """AdamW SFT on answer tokens; returns the mean loss of each epoch.

    An optimiser step averages ``recipe.grad_accum`` micro-batches of ``recipe.batch_size``.
    """
    encoded: list[EncodedExample] = [collator.encode(example) for example in examples]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    micro_batches = math.ceil(len(encoded) / recipe.batch_size)
    steps_per_epoch = math.ceil(micro_batches / recipe.grad_accum)
    total = steps_per_epoch * recipe.epochs
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(total, warmup, recipe.decay))
    device = next(model.parameters()).device
    rng = np.random.default_rng(recipe.seed)
    epoch_losses = []
    model.train()
    with step_progress(total, description) as bar:
        for epoch in range(recipe.epochs):
            order = rng.permutation(len(encoded))
            starts = range(0, len(order), recipe.batch_size)
            losses = []
            for index, start in enumerate(starts):
                rows = [encoded[i] for i in order[start : start + recipe.batch_size]]
                batch = to_device(collator.pad(rows), model)
                with autocast(recipe.precision, device):
                    logits = forward_logits(model, batch)
                loss = token_cross_entropy(logits, batch["labels"])
                # The last step of an epoch may gather fewer micro-batches: average those.
                group = min(recipe.grad_accum, micro_batches - index + index % recipe.grad_accum)
                (loss / group).backward()
                losses.append(loss.item())
                if (index + 1) % recipe.grad_accum == 0 or index + 1 == micro_batches:
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
                    bar.update()
            epoch_losses.append(float(np.mean(losses)))
    model.eval()
    return epoch_losses
