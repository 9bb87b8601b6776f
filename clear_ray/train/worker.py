"""The Ray Train worker's entry point (what it is handed: train/inputs.py).

Kept light at import time on purpose: the Tune trial actor and the Train controller unpickle
``ray_train_loop`` and ``TrialInputs`` by reference, so whatever this module imports, every
trial pays for three times over. The training code (torch models, transformers, peft,
DeepSpeed) is imported inside the worker only.
"""

from __future__ import annotations

from pathlib import Path

import ray
import ray.train

from clear_ray.config import Config
from clear_ray.train.keys import NODE_KEY


def ray_train_loop(loop_config: dict) -> None:
    """Entry point of each Ray Train worker (the process group already exists)."""
    from clear_ray.train.loop import unlearn  # the training stack: in the worker only

    cfg = Config.from_flat(loop_config["config"])
    inputs = loop_config["inputs"].on_this_node()
    context = ray.train.get_context()

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = (
            ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        )
        where = {NODE_KEY: ray.get_runtime_context().get_node_id()}
        ray.train.report({**metrics, **where}, checkpoint=checkpoint)

    checkpoint = ray.train.get_checkpoint()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    if checkpoint is None:
        unlearn(cfg, inputs, rank, world_size, report)
        return
    with checkpoint.as_directory() as resume_from:
        unlearn(cfg, inputs, rank, world_size, report, Path(resume_from))
