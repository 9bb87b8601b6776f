"""The per-worker unlearning loop: DeepSpeed LoRA training, per-epoch evaluation, reports.

``unlearn`` is plain Python (rank, world size and a ``report`` callback in), so it runs inside
a Ray Train worker (``train/worker.py``) or alone in a test process with a one-rank group.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from clear_ray.config import Config
from clear_ray.data.clear import load_clear
from clear_ray.data.collate import Collator, row_example
from clear_ray.data.schema import retain_split_for
from clear_ray.data.unlearning import UnlearningData, epoch_views, select_modality
from clear_ray.eval.final import epoch_eval_config
from clear_ray.eval.suite import Shard, TaskData, evaluate
from clear_ray.methods import get_method
from clear_ray.methods.base import Method
from clear_ray.models.forward import to_device
from clear_ray.models.introspection import steering_layer
from clear_ray.models.loading import load_checkpoint
from clear_ray.models.lora import attach_lora
from clear_ray.models.presets import get_preset
from clear_ray.train.checkpoint_files import (
    ADAPTER_WEIGHTS,
    BEST_ADAPTER_DIR,
    DIVERGED_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
)
from clear_ray.train.deepspeed import deepspeed_config, import_deepspeed, trial_lr_scheduler
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.keys import DIVERGED_KEY, EPOCH, EPOCH_SCORE, REASON, RELEARN_RECOVERY
from clear_ray.train.schedule import (
    micro_steps_per_pass,
    trial_warmup_epochs,
    updates_per_epoch,
)
from clear_ray.train.selection import BestEpoch
from clear_ray.train.step import train_epoch

Report = Callable[[dict[str, float], Path | None], None]


def load_unlearning_data(source: str, forget_split: str, modality: str) -> UnlearningData:
    forget = [row_example(row) for row in load_clear(source, f"{forget_split}+tofu")]
    retain_config = f"{retain_split_for(forget_split)}+tofu"
    retain = [row_example(row) for row in load_clear(source, retain_config)]
    return UnlearningData(select_modality(forget, modality), retain)


def unlearn(
    cfg: Config,
    inputs: TrialInputs,
    rank: int,
    world_size: int,
    report: Report,
    resume_from: Path | None = None,
) -> None:
    """Unlearn from Original for ``cfg.train.epochs`` epochs, evaluating after each one.

    ``resume_from`` is an epoch checkpoint of this trial (a retried worker crash or a resumed
    search): its adapter weights and best-epoch state are restored and training goes on at
    the next epoch, with the same batches an uninterrupted run would see there (the optimiser
    moments start afresh). A diverged loss ends the trial with a report of the reason.
    """
    if resume_from and replay_end(report, resume_from, cfg.train.epochs, rank):
        return
    deepspeed = import_deepspeed()

    torch.manual_seed(cfg.train.seed)
    method = get_method(cfg.method.name)
    preset = get_preset(cfg.model.preset)
    model, processor = load_checkpoint(inputs.original_dir, cfg.train.precision)
    if torch.cuda.is_available():
        model = model.to(torch.device("cuda", torch.cuda.current_device()))
    model = attach_lora(model, cfg.lora, preset.lora_target_modules)
    best = BestEpoch(inputs.thresholds)
    start = _restore(model, best, resume_from) if resume_from else TrialProgress()
    history = _history(resume_from) if resume_from else []
    constrained = inputs.thresholds.max_relearn_recovery is not None
    best_adapter = None
    if constrained and resume_from:
        best_adapter = _restored_best_adapter(model, best, start, resume_from)
    collator = Collator(processor)
    data = load_unlearning_data(inputs.source, cfg.data.forget_split, cfg.data.modality)
    steps_per_epoch = data.batches_per_epoch(cfg.train.batch_size, world_size)
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(data.forget)} forget items cannot fill one batch of {cfg.train.batch_size} "
            f"on {world_size} workers"
        )
    micro_steps = micro_steps_per_pass(steps_per_epoch, cfg.train.grad_accum)
    per_epoch = updates_per_epoch(
        method, cfg.method, cfg.train.epochs, micro_steps // cfg.train.grad_accum
    )
    warmup_epochs = trial_warmup_epochs(method, cfg.method, cfg.train.warmup_epochs)
    engine, *_ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_config(cfg.train),
        lr_scheduler=trial_lr_scheduler(
            replace(cfg.train, warmup_epochs=warmup_epochs),
            per_epoch,
            sum(per_epoch[: start.epoch]),
        ),
    )
    task_data = TaskData(inputs.source)  # loaded on the first evaluation, kept for the others
    layer = steering_layer(model, cfg.method.layer_fraction) if _reads_hidden(method) else None
    step = start.step
    for epoch in range(start.epoch, cfg.train.epochs):
        engine.train()
        pass_batches = partial(_device_batches, data, collator, model, cfg, epoch, rank, world_size)
        try:
            logs = train_epoch(engine, method, cfg, epoch, pass_batches, micro_steps, layer)
            step += len(logs)
        except FloatingPointError as error:  # every rank raises it (step.py agrees on NaN)
            _report_divergence(report, f"epoch {epoch + 1}: {error}", rank)
            return
        metrics = _epoch_means(logs)
        metrics.update(_evaluate(engine.module, collator, task_data, cfg, inputs, rank, world_size))
        metrics[EPOCH] = float(epoch + 1)
        metrics.update(best.epoch_values(metrics))
        if best.update(epoch + 1, metrics) and constrained:
            best_adapter = _adapter_files(engine.module)
        if constrained and epoch + 1 == cfg.train.epochs:
            metrics.update(_relearn_constraint(cfg, inputs, best, best_adapter))
        metrics.update(best.summary())
        with tempfile.TemporaryDirectory() as checkpoint_dir:
            if rank == 0:
                progress = TrialProgress(epoch + 1, step, best.state())
                history = _save_checkpoint(
                    engine.module, Path(checkpoint_dir), progress, metrics, history
                )
                if best_adapter is not None and best.epoch != epoch + 1:
                    _write_files(Path(checkpoint_dir) / BEST_ADAPTER_DIR, best_adapter)
            report(metrics, Path(checkpoint_dir) if rank == 0 else None)


def _relearn_constraint(
    cfg: Config, inputs: TrialInputs, best: BestEpoch, adapter: dict[str, bytes] | None
) -> dict[str, float]:
    """The relearning attack on the best epoch (robust/constraint.py), once, at the trial's
    end; sets ``best.relearn_recovery``. A best epoch already infeasible is not attacked: it
    cannot become feasible, and unmeasured counts as infeasible (train/selection.py)."""
    from clear_ray.robust.constraint import relearn_at_trial_end

    if adapter is None or inputs.thresholds.constraint(best.metrics) > 0:
        return {}
    values = relearn_at_trial_end(cfg, inputs, adapter)
    best.relearn_recovery = values[RELEARN_RECOVERY]
    return values


def _adapter_files(model) -> dict[str, bytes]:
    """The adapter's files as ``save_pretrained`` writes them (LoRA weights only: small)."""
    from clear_ray.eval.final import read_adapter

    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)
        return read_adapter(Path(scratch))


def _write_files(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (directory / name).write_bytes(blob)


def _restored_best_adapter(
    model, best: BestEpoch, progress: TrialProgress, checkpoint: Path
) -> dict[str, bytes] | None:
    """The best epoch's adapter of a resumed trial: the checkpoint's own when its epoch is the
    best, else the copy it carries (written only then, to keep best-epoch checkpoints, which
    become the trial's adapter, as they were)."""
    from clear_ray.eval.final import read_adapter

    if best.epoch == progress.epoch:
        return _adapter_files(model)
    directory = checkpoint / BEST_ADAPTER_DIR
    return read_adapter(directory) if directory.is_dir() else None


def _report_divergence(report: Report, reason: str, rank: int) -> None:
    """End the trial with the reason, as a checkpointed report: Train's result carries only
    checkpointed metrics, and the trial driver reads the reason from there (search/trainable).
    """
    metrics = {DIVERGED_KEY: 1.0, REASON: reason, EPOCH_SCORE: -math.inf}
    with tempfile.TemporaryDirectory() as checkpoint_dir:
        if rank == 0:
            (Path(checkpoint_dir) / DIVERGED_FILE).write_text(reason + "\n")
        report(metrics, Path(checkpoint_dir) if rank == 0 else None)


def replay_end(report: Report, checkpoint: Path, epochs: int, rank: int) -> bool:
    """Report again how a trial ended, if its checkpoint says it already has; True if so.

    A search killed just after a trial's last report can restore a Tune state saved before it
    (remote storage is synced only now and then), and the trial runs again: it must end the
    same way instead of reporting nothing, which Tune refuses.
    """
    if (checkpoint / DIVERGED_FILE).is_file():
        _report_divergence(report, (checkpoint / DIVERGED_FILE).read_text().strip(), rank)
        return True
    if json.loads((checkpoint / PROGRESS_FILE).read_text())["epoch"] < epochs:
        return False
    metrics = json.loads((checkpoint / METRICS_FILE).read_text())
    with tempfile.TemporaryDirectory() as copy:
        if rank == 0:
            shutil.copytree(checkpoint, copy, dirs_exist_ok=True)
        report(metrics, Path(copy) if rank == 0 else None)
    return True


@dataclass(frozen=True)
class TrialProgress:
    """Where a trial stands after an epoch: what a checkpoint must carry to go on from it."""

    epoch: int = 0  # epochs done
    step: int = 0  # micro-steps done
    best: dict | None = None  # BestEpoch.state()


def _restore(model, best: BestEpoch, checkpoint: Path) -> TrialProgress:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(checkpoint / ADAPTER_WEIGHTS)))
    progress = TrialProgress(**json.loads((checkpoint / PROGRESS_FILE).read_text()))
    if progress.best:
        best.restore(progress.best)
    return progress


def _device_batches(
    data, collator, model, cfg, epoch, rank, world_size, views: tuple[str, ...]
) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """The epoch's batches of ``views``, collated and on the model's device."""
    for batch in epoch_views(
        data, views, cfg.train.batch_size, epoch, cfg.train.seed, rank, world_size
    ):
        yield {view: to_device(collator(items), model) for view, items in batch.items()}


def _reads_hidden(method: Method) -> bool:
    return any(phase.hidden_views for phase in (method, method.ascent) if phase is not None)


def _epoch_means(logs: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each logged value over the steps that logged it (SCRUB's max pass is not every
    epoch's); ``loss/l1`` and ``loss/l1_weighted`` become the epoch's mean L1 terms."""
    keys = dict.fromkeys(key for log in logs for key in log)
    return {key: float(np.mean([log[key] for log in logs if key in log])) for key in keys}


def _evaluate(model, collator, task_data, cfg, inputs, rank, world_size) -> dict[str, float]:
    """Every rank scores its shard of the items; all get the same metrics (reports must agree).
    Forget tasks score the selection fold's persons only (``inputs.fold``), against Gold's
    values on the same fold."""
    shard = Shard(rank, world_size)
    split, modality = cfg.data.forget_split, cfg.data.modality
    return evaluate(
        model,
        collator,
        task_data,
        split,
        epoch_eval_config(cfg),
        inputs.gold,
        shard=shard,
        modality=modality,
        fold=inputs.fold,
    ).metrics


def _save_checkpoint(
    model,
    directory: Path,
    progress: TrialProgress,
    metrics: dict[str, float],
    history: list[dict[str, float]],
) -> list[dict[str, float]]:
    """Write the epoch's checkpoint; the history with this epoch's metrics appended.

    The history lets the search driver record epochs that Tune never saw, or whose record
    a resume did not restore (search/trial_history.py)."""
    model.save_pretrained(str(directory))  # peft: adapter weights only, as safetensors
    (directory / PROGRESS_FILE).write_text(json.dumps(asdict(progress)))
    reported = {"epoch": progress.epoch, **metrics}
    (directory / METRICS_FILE).write_text(json.dumps(reported, indent=2))
    history = [*history, reported]
    (directory / HISTORY_FILE).write_text(json.dumps(history))
    return history


def _history(checkpoint: Path) -> list[dict[str, float]]:
    """The epochs a checkpoint's trial reported (none for a checkpoint written without)."""
    path = checkpoint / HISTORY_FILE
    return json.loads(path.read_text()) if path.is_file() else []
