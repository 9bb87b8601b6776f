"""The Ray Train worker's entry point and what it is handed.

Kept light at import time on purpose: the Tune trial actor and the Train controller unpickle
``ray_train_loop`` and ``TrialInputs`` by reference, so whatever this module imports, every
trial pays for three times over. The training code (torch models, transformers, peft,
DeepSpeed) is imported inside the worker only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from clear_ray.config import Config
from clear_ray.data.folds import Fold
from clear_ray.eval.reference import GoldReference
from clear_ray.staging import DriverDir, on_this_node
from clear_ray.train.keys import NODE_KEY
from clear_ray.train.selection import Thresholds


@dataclass(frozen=True)
class TrialInputs:
    """Everything a worker needs besides the config.

    ``source`` (a hub id or a dataset directory) and ``original_dir`` may be ``DriverDir``s:
    a worker on another node then opens its own copy (``on_this_node``).
    """

    source: str | DriverDir
    original_dir: str | DriverDir
    gold: GoldReference  # Gold's per-item NLLs on the forget-quality tasks, on ``fold``
    thresholds: Thresholds
    # The selection fold: every per-epoch evaluation (hence ASHA, best epoch, Optuna) scores
    # its forget persons only; None without folds (data/folds.py).
    fold: Fold | None = None
    # For search.constrain_relearn (robust/constraint.py): Gold's checkpoint and the selection
    # fold's forget persons the attack splits into attacked and held-out halves.
    gold_dir: str | DriverDir | None = None
    relearn_persons: tuple[str, ...] = ()

    def on_this_node(self) -> TrialInputs:
        return replace(
            self,
            source=on_this_node(self.source),
            original_dir=on_this_node(self.original_dir),
            gold_dir=on_this_node(self.gold_dir) if self.gold_dir is not None else None,
        )


def ray_train_loop(loop_config: dict) -> None:
    """Entry point of each Ray Train worker (the process group already exists)."""
    import ray.train

    from clear_ray.train.loop import unlearn

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


def ray_finetune_loop(loop_config: dict) -> None:
    """Entry point of each worker of an Original/Gold finetune job (``references.finetune_job``).

    Rank 0 reports where the model is in a small checkpoint (Train's result keeps only
    checkpointed reports); every rank reports, as Train requires.
    """
    import json
    import tempfile

    import ray.train

    from clear_ray.references import MADE_FILE, model_on_rank

    context = ray.train.get_context()
    start = loop_config["start"]
    made = model_on_rank(
        Config.from_flat(loop_config["config"]),
        loop_config["role"],
        on_this_node(loop_config["source"]),
        Path(loop_config["models"]) / loop_config["name"],
        on_this_node(start) if start else None,
        context.get_world_rank(),
        context.get_world_size(),
        loop_config.get("seed"),
    )
    with tempfile.TemporaryDirectory() as directory:
        if made is not None:
            (Path(directory) / MADE_FILE).write_text(json.dumps(made))
        checkpoint = ray.train.Checkpoint.from_directory(directory) if made else None
        ray.train.report({}, checkpoint=checkpoint)
