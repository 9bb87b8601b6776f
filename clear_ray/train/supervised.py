"""Supervised finetuning (SFT) on answer tokens: how Original and Gold are made.

The loop of CLEAR's ``mm/finetune.py`` (HF Trainer: AdamW, ``warmup_steps`` = steps per epoch,
a decay to 0, ``bf16=True``) on the DeepSpeed engine the trials use (``train/deepspeed.py``),
so it runs in a Ray Train job with any number of workers: each rank takes its share of every
epoch's shuffled rows and DeepSpeed averages the gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from clear_ray.config import FinetuneConfig
from clear_ray.console import step_progress
from clear_ray.data.collate import Collator, EncodedExample, Example
from clear_ray.models.forward import forward_logits, to_device


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Standard SFT loss: mean over all answer tokens of the batch."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
    )


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on GPU as CLEAR's ``bf16=True``; on CPU the recipe runs in fp32."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def updates_per_epoch(rows: int, recipe: FinetuneConfig, world_size: int) -> int:
    """Optimiser updates in an epoch: each rank's micro-batches, grouped by ``grad_accum``
    (the last group of an epoch may be short)."""
    return math.ceil(math.ceil(rows // world_size / recipe.batch_size) / recipe.grad_accum)


def sft_engine(model, recipe: FinetuneConfig, rows: int, world_size: int, zero_stage: int):
    """The DeepSpeed engine of an SFT run over ``rows`` examples: the trials' engine config
    (``train/deepspeed.py``) with the recipe's optimiser and warm-up/decay schedule. bf16 is
    autocast over fp32 trained weights (``autocast``), as CLEAR's HF Trainer, not DeepSpeed's."""
    from clear_ray.train.deepspeed import engine_config, import_deepspeed
    from clear_ray.train.schedule import lr_scheduler

    per_epoch = updates_per_epoch(rows, recipe, world_size)
    engine, *_ = import_deepspeed().initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=engine_config(
            recipe.batch_size,
            recipe.grad_accum,
            recipe.lr,
            recipe.weight_decay,
            zero_stage,
            bf16=False,
        ),
        lr_scheduler=lr_scheduler(
            per_epoch * recipe.epochs, int(recipe.warmup_epochs * per_epoch), recipe.decay
        ),
    )
    return engine


def train_supervised(
    engine,
    collator: Collator,
    examples: Sequence[Example],
    recipe: FinetuneConfig,
    description: str,
    rank: int = 0,
    world_size: int = 1,
) -> list[float]:
    """SFT on answer tokens with a DeepSpeed ``engine``; returns this rank's mean loss per epoch.

    An optimiser update averages ``recipe.grad_accum`` micro-batches of ``recipe.batch_size``
    rows per rank. The loop sets DeepSpeed's accumulation boundary itself, so an epoch whose
    micro-batches do not fill whole windows ends on a shorter one (averaged over what it has)
    instead of carrying gradients into the next epoch.
    """
    encoded: list[EncodedExample] = [collator.encode(example) for example in examples]
    per_rank = len(encoded) // world_size  # equal shares: ranks step together
    micro_batches = math.ceil(per_rank / recipe.batch_size)
    device = next(engine.module.parameters()).device
    rng = np.random.default_rng(recipe.seed)
    epoch_losses = []
    engine.train()
    total = updates_per_epoch(len(encoded), recipe, world_size) * recipe.epochs
    with step_progress(total, description, disable=rank != 0) as bar:
        for epoch in range(recipe.epochs):
            order = rng.permutation(len(encoded))[rank::world_size][:per_rank]
            losses = []
            for index, start in enumerate(range(0, per_rank, recipe.batch_size)):
                rows = [encoded[i] for i in order[start : start + recipe.batch_size]]
                batch = to_device(collator.pad(rows), engine.module)
                with autocast(recipe.precision, device):
                    logits = forward_logits(engine, batch)
                loss = token_cross_entropy(logits, batch["labels"])
                # The last window of an epoch may gather fewer micro-batches: average those.
                group = min(recipe.grad_accum, micro_batches - index + index % recipe.grad_accum)
                boundary = (index + 1) % recipe.grad_accum == 0 or index + 1 == micro_batches
                engine.set_gradient_accumulation_boundary(boundary)
                engine.backward(loss / group, scale_wrt_gas=False)
                engine.step()
                losses.append(loss.item())
                if boundary:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
                    bar.update()
            epoch_losses.append(float(np.mean(losses)))
    engine.eval()
    return epoch_losses
