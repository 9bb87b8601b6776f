"""DeepSpeed for a trial worker: its import and its engine configuration from the train config."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from clear_ray.config import TrainConfig
from clear_ray.train.schedule import warmup_updates


def import_deepspeed() -> ModuleType:
    """Import DeepSpeed with MLflow hidden from it.

    DeepSpeed's autotuner (unused here) imports MLflow whenever it is installed: ~1 s of every
    trial worker's start-up, for a module the worker never uses (trials log to MLflow from the
    driver). Hidden, that guarded import takes its ``except`` branch. A process that has
    already imported either package is left as it is.
    """
    if "deepspeed" in sys.modules or "mlflow" in sys.modules:
        return importlib.import_module("deepspeed")
    sys.modules["mlflow"] = None  # type: ignore[assignment]  # makes `import mlflow` fail
    try:
        return importlib.import_module("deepspeed")
    finally:
        del sys.modules["mlflow"]


def deepspeed_config(train: TrainConfig, updates_per_epoch: Sequence[int]) -> dict[str, Any]:
    """ZeRO stage and precision from config; micro-batch based so worker counts can change.

    ``torch_adam`` avoids JIT-compiling DeepSpeed's fused Adam (slow, needs a toolchain),
    which buys nothing for the small LoRA parameter set. The LR follows :func:`lr_schedule`.

    Args:
        train: the unlearning recipe.
        updates_per_epoch: optimiser updates of each epoch (``train/schedule.py``).
    """
    return {
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "gradient_clipping": 1.0,
        "steps_per_print": 10**9,
        "zero_optimization": {"stage": train.zero_stage},
        "bf16": {"enabled": train.precision == "bf16"},
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": train.lr, "weight_decay": train.weight_decay, "torch_adam": True},
        },
        "scheduler": lr_schedule(train, updates_per_epoch),
        "wall_clock_breakdown": False,
    }


def lr_schedule(train: TrainConfig, updates_per_epoch: Sequence[int]) -> dict[str, Any]:
    """Linear warm-up from 0 over ``train.warmup_epochs``, then linear decay to 0 at the end.

    As CLEAR (``mm/forget.py``: HF Trainer, ``warmup_steps`` = one epoch, linear decay) and
    open-unlearning (``warmup_epochs: 1``): the last epochs take small steps, so per-epoch
    trajectories are comparable. DeepSpeed's ``WarmupDecayLR`` counts optimiser updates
    (``total_num_steps`` = all updates of the run) and warms up over at least 2 of them; a
    warm-up as long as the run (e.g. one epoch of a one-epoch run) is capped at half of it,
    so the rate still rises and decays to 0 instead of never reaching ``train.lr``.
    :func:`start_lr_schedule` must position the scheduler before the first update.
    """
    total = sum(updates_per_epoch)
    warmup = warmup_updates(list(updates_per_epoch), train.warmup_epochs)
    if warmup >= total:
        warmup = total // 2
    return {
        "type": "WarmupDecayLR",
        "params": {
            "total_num_steps": total,
            "warmup_min_lr": 0.0,
            "warmup_max_lr": train.lr,
            "warmup_num_steps": max(warmup, 1),
            "warmup_type": "linear",
        },
    }


def start_lr_schedule(scheduler, updates_done: int) -> None:
    """Put DeepSpeed's LR scheduler where update number ``updates_done`` (0-based) is next.

    The engine steps the scheduler *after* each update and a fresh ``WarmupDecayLR`` sits
    before iteration 0, so unpositioned its first two updates both run at lr 0 and the last
    one at 2/(total − warm-up) of the peak instead of HF's 1/(total − warm-up). Positioned,
    update k runs at HF's rate: k/warm-up, then (total − k)/(total − warm-up). A resumed
    trial passes the updates its finished epochs made, so its rate goes on where it was.
    """
    scheduler.step(updates_done)
