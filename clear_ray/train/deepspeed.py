"""DeepSpeed for a trial worker: its import and its engine configuration from the train config."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from clear_ray.config import TrainConfig
from clear_ray.train.schedule import lr_scheduler, warmup_updates

SHM_COMM_OP = "deepspeed_shm_comm"  # deepspeed/ops/op_builder/cpu/comm.py ShareMemCommBuilder


def import_deepspeed() -> ModuleType:
    """Import DeepSpeed with MLflow hidden from it, and its shared-memory all-reduce op off.

    DeepSpeed's autotuner (unused here) imports MLflow whenever it is installed: ~1 s of every
    trial worker's start-up, for a module the worker never uses (trials log to MLflow from the
    driver). Hidden, that guarded import takes its ``except`` branch. A process that has
    already imported either package is left as it is.

    On the CPU accelerator, DeepSpeed's communication backend JIT-compiles a C++ op at its
    first ``initialize`` (``deepspeed/comm/torch.py`` ``build_shm_op``) that only its
    inference tensor-parallel all-reduce uses: 27 s of both cores of a 2-core machine the
    first time, before the first pretraining step of a new user's demo, and a C++ toolchain.
    Marked incompatible, the backend skips it; training's all-reduce is torch.distributed's.
    """
    deepspeed = _import_without_mlflow()
    deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False  # a module-level dict, read per init
    return deepspeed


def _import_without_mlflow() -> ModuleType:
    if "deepspeed" in sys.modules or "mlflow" in sys.modules:
        return importlib.import_module("deepspeed")
    sys.modules["mlflow"] = None  # type: ignore[assignment]  # makes `import mlflow` fail
    try:
        return importlib.import_module("deepspeed")
    finally:
        del sys.modules["mlflow"]


def engine_config(
    batch_size: int, grad_accum: int, lr: float, weight_decay: float, zero_stage: int, bf16: bool
) -> dict[str, Any]:
    """ZeRO stage and precision from config; micro-batch based so worker counts can change.

    ``torch_adam`` avoids JIT-compiling DeepSpeed's fused Adam (slow, needs a toolchain),
    which buys nothing for small models and LoRA parameter sets. No ``scheduler``: every
    engine gets :func:`clear_ray.train.schedule.lr_scheduler` as its client scheduler.
    """
    return {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": 1.0,
        "steps_per_print": 10**9,
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": bf16},
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": lr, "weight_decay": weight_decay, "torch_adam": True},
        },
        "wall_clock_breakdown": False,
    }


def deepspeed_config(train: TrainConfig) -> dict[str, Any]:
    """The unlearning trials' engine (LoRA adapters; bf16 as the recipe says)."""
    return engine_config(
        train.batch_size,
        train.grad_accum,
        train.lr,
        train.weight_decay,
        train.zero_stage,
        train.precision == "bf16",
    )


def trial_lr_scheduler(train: TrainConfig, updates_per_epoch: Sequence[int], updates_done: int):
    """Linear warm-up over ``train.warmup_epochs``, then linear decay to 0 at the last update.

    As CLEAR (``mm/forget.py``: HF Trainer, ``warmup_steps`` = one epoch, linear decay) and
    open-unlearning (``warmup_epochs: 1``): the last epochs take small steps, so per-epoch
    trajectories are comparable. A resumed trial passes the updates its finished epochs made.
    """
    total = sum(updates_per_epoch)
    warmup = warmup_updates(list(updates_per_epoch), train.warmup_epochs)
    return lr_scheduler(total, warmup, "linear", updates_done)
