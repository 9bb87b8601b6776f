"""DeepSpeed for a trial worker: its import and its engine configuration from the train config."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from clear_ray.config import TrainConfig


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


def deepspeed_config(train: TrainConfig, steps_per_epoch: int) -> dict[str, Any]:
    """ZeRO stage and precision from config; micro-batch based so worker counts can change.

    ``torch_adam`` avoids JIT-compiling DeepSpeed's fused Adam (slow, needs a toolchain),
    which buys nothing for the small LoRA parameter set.
    """
    config: dict[str, Any] = {
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
        "wall_clock_breakdown": False,
    }
    warmup_steps = int(train.warmup_epochs * steps_per_epoch / train.grad_accum)
    if warmup_steps > 0:
        config["scheduler"] = {
            "type": "WarmupLR",
            "params": {
                "warmup_min_lr": 0.0,
                "warmup_max_lr": train.lr,
                "warmup_num_steps": warmup_steps,
                "warmup_type": "linear",
            },
        }
    return config
