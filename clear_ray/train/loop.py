"""The per-worker unlearning loop: DeepSpeed LoRA training, per-epoch evaluation, reports.

``unlearn`` is plain Python (rank, world size and a ``report`` callback in), so it runs inside
a Ray Train worker (``ray_train_loop``) or alone in a test process with a one-rank group.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from clear_ray.config import Config
from clear_ray.data.clear import load_clear
from clear_ray.data.collate import Collator, row_example
from clear_ray.data.schema import retain_split_for
from clear_ray.data.unlearning import UnlearningData, epoch_views, select_modality
from clear_ray.eval.suite import evaluate
from clear_ray.methods import Method, get_method
from clear_ray.models.forward import to_device
from clear_ray.models.introspection import steering_layer
from clear_ray.models.loading import load_checkpoint
from clear_ray.models.lora import attach_lora
from clear_ray.models.presets import get_preset
from clear_ray.train.deepspeed import deepspeed_config
from clear_ray.train.selection import BestEpoch, Thresholds
from clear_ray.train.step import training_step

Report = Callable[[dict[str, float], Path | None], None]


@dataclass(frozen=True)
class TrialInputs:
    """Everything a worker needs besides the config; plain values so Ray can ship it."""

    source: str
    original_dir: str
    gold_truth_ratios: list[float]
    thresholds: Thresholds

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrialInputs:
        return cls(**{**values, "thresholds": Thresholds(**values["thresholds"])})


def load_unlearning_data(source: str, forget_split: str, modality: str) -> UnlearningData:
    forget = [row_example(row) for row in load_clear(source, f"{forget_split}+tofu")]
    retain_config = f"{retain_split_for(forget_split)}+tofu"
    retain = [row_example(row) for row in load_clear(source, retain_config)]
    return UnlearningData(select_modality(forget, modality), retain)


def unlearn(cfg: Config, inputs: TrialInputs, rank: int, world_size: int, report: Report) -> None:
    """Unlearn from Original for ``cfg.train.epochs`` epochs, evaluating after each one."""
    import deepspeed

    torch.manual_seed(cfg.train.seed)
    method = get_method(cfg.method.name)
    preset = get_preset(cfg.model.preset)
    model, processor = load_checkpoint(inputs.original_dir)
    if torch.cuda.is_available():
        model = model.to(torch.device("cuda", torch.cuda.current_device()))
    model = attach_lora(model, cfg.lora, preset.lora_target_modules)
    collator = Collator(processor)
    data = load_unlearning_data(inputs.source, cfg.data.forget_split, cfg.data.modality)
    steps_per_epoch = data.batches_per_epoch(cfg.train.batch_size, world_size)
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(data.forget)} forget items cannot fill one batch of {cfg.train.batch_size} "
            f"on {world_size} workers"
        )
    engine, *_ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_config(cfg.train, steps_per_epoch),
    )
    gold = np.asarray(inputs.gold_truth_ratios)
    best = BestEpoch(inputs.thresholds)
    layer = steering_layer(model, cfg.method.layer_fraction) if _reads_hidden(method) else None
    step = 0
    for epoch in range(cfg.train.epochs):
        engine.train()
        logs = []
        for views in epoch_views(
            data, method.all_views, cfg.train.batch_size, epoch, cfg.train.seed, rank, world_size
        ):
            batches = {
                view: to_device(collator(examples), model) for view, examples in views.items()
            }
            logs.append(training_step(engine, method, batches, cfg, step, layer))
            step += 1
        metrics = _epoch_means(logs)
        metrics.update(_evaluate_on_rank0(engine.module, collator, inputs, cfg, gold, rank))
        metrics["epoch"] = float(epoch + 1)
        metrics.update(best.epoch_values(metrics))
        best.update(epoch + 1, metrics)
        metrics.update(best.summary())
        with tempfile.TemporaryDirectory() as checkpoint_dir:
            if rank == 0:
                _save_adapter(engine.module, Path(checkpoint_dir), epoch + 1, metrics)
            report(metrics, Path(checkpoint_dir) if rank == 0 else None)


def _reads_hidden(method: Method) -> bool:
    return any(phase.hidden_views for phase in (method, method.ascent) if phase is not None)


def _epoch_means(logs: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each logged value over the steps that logged it (SCRUB's max-steps are sparse)."""
    keys = dict.fromkeys(key for log in logs for key in log)
    return {key: float(np.mean([log[key] for log in logs if key in log])) for key in keys}


def _evaluate_on_rank0(model, collator, inputs, cfg, gold, rank) -> dict[str, float]:
    """Rank 0 evaluates, every rank gets the same numbers (reports must agree)."""
    payload = [None]
    if rank == 0:
        payload[0] = evaluate(
            model, collator, inputs.source, cfg.data.forget_split, cfg.eval, gold
        ).metrics
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(payload, src=0)
    return payload[0]


def _save_adapter(model, directory: Path, epoch: int, metrics: dict[str, float]) -> None:
    model.save_pretrained(str(directory))  # peft: adapter weights only, as safetensors
    (directory / "epoch_metrics.json").write_text(json.dumps({"epoch": epoch, **metrics}, indent=2))


def ray_train_loop(loop_config: dict) -> None:
    """Entry point of each Ray Train worker (the process group already exists)."""
    import ray.train

    cfg = Config.from_flat(loop_config["config"])
    inputs = TrialInputs.from_dict(loop_config["inputs"])
    context = ray.train.get_context()

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = (
            ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        )
        ray.train.report(metrics, checkpoint=checkpoint)

    unlearn(cfg, inputs, context.get_world_rank(), context.get_world_size(), report)
