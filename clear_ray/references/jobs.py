"""The Ray jobs and tasks that make Original, Gold and their evaluations where the GPUs are.

Each finetune is a Ray Train job shaped like a trial (its workers, resources and DeepSpeed
engine: LoRA for pretrained presets, every weight for tiny ones), and each reference evaluation
a Ray task with one trial worker's resources (as the final evaluation, eval/final.py), so they
land on GPU workers; on the local CPU default the same jobs and tasks get CPUs. A job or task
keeps what it made in its node's cache (``<output_dir>/cache``) and, with ``--storage-path``,
publishes it under ``<storage>/references`` (runtime/store.py), where the next search finds it
whichever node made it. The driver gets back small things only: where a model is, the
evaluations' metrics and their files.

Kept light at import time: each finetune job's Train controller unpickles
:func:`ray_finetune_loop` from this module, so the training and evaluation stack (torch,
transformers) is imported inside the functions that run on the workers.
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.train

from clear_ray.cache import cached_dir, usable
from clear_ray.config import Config
from clear_ray.models.presets import get_preset
from clear_ray.references.checkpoints import brought_id, check_architecture
from clear_ray.runtime.cluster import room_for, side_by_side, where
from clear_ray.runtime.staging import DriverDir, on_this_node
from clear_ray.runtime.store import Store
from clear_ray.runtime.train_run import data_parallel_trainer, fit

if TYPE_CHECKING:
    from clear_ray.eval.gold import ReferenceEvaluation

MADE_FILE = "reference.json"  # in a finetune job's checkpoint: where its model is


def train_storage(cfg: Config) -> str:
    """Where finetune jobs keep Train's run records: the storage path when given."""
    if cfg.search.storage_path:
        return f"{cfg.search.storage_path.rstrip('/')}/references/ray_train"
    return str(Path(cfg.output_dir).resolve() / "cache" / "ray_train")


def finetune_job(
    cfg: Config,
    role: str,
    source: str | DriverDir,
    name: str,
    models: str,
    start: str | DriverDir | None = None,
    seed: int | None = None,
) -> tuple[DriverDir, dict[str, Any]]:
    """``role``'s model, cached as ``<models>/<name>`` on a worker's node: a Ray Train job.

    The trials' Train run (``runtime/train_run.py``): their workers, resources, process group,
    DeepSpeed engine and failure handling. Its rank 0 finds the model in its node's cache or
    the store, else all ranks finetune it (from ``start`` when given) and rank 0 saves and
    publishes it; it reports where the model is (and where it ran) in a small checkpoint.
    ``name`` must key ``start`` too (``recipes.model_name``). ``seed``:
    the finetune's own seed instead of ``finetune.seed``, everything else of the recipe kept
    (the pretraining corpus replayed included), and ``name`` must key it too: a second Gold
    from the same start differs from the first only in its finetuning randomness.
    """
    loop_config = {
        "config": cfg.to_flat(),
        "role": role,
        "source": source,
        "name": name,
        "models": models,
        "start": start,
        "seed": seed,
    }
    run = f"finetune-{name}-{uuid.uuid4().hex[:8]}"  # a fresh run: the cache decides reuse
    trainer = data_parallel_trainer(
        ray_finetune_loop, loop_config, cfg.search, run, train_storage(cfg)
    )
    result = fit(trainer, cfg.search)
    with result.checkpoint.as_directory() as directory:
        made = json.loads((Path(directory) / MADE_FILE).read_text())
    files = tuple((path, size) for path, size in made["files"])
    return DriverDir(made["path"], made["node_id"], files), made["where"]


def finetune_jobs(
    cfg: Config,
    roles: list[str],
    source: str | DriverDir,
    names: dict[str, str],
    models: str,
    start: str | DriverDir | None,
    log: Callable[[str], None],
) -> dict[str, tuple[DriverDir, dict[str, Any]]]:
    """``finetune_job`` per role: side by side when the cluster has room for all their workers
    now (Original's and Gold's finetunes are independent: on the 7B recipe each is 30-50 min of
    GPU time), else one after the other, so that no job waits past the worker start timeout
    for resources another holds."""
    jobs = {
        role: partial(finetune_job, cfg, role, source, names[role], models, start) for role in roles
    }
    if len(jobs) > 1 and room_for(cfg.search, len(jobs)):
        log(f"{', '.join(roles)}: finetuned side by side by Ray Train jobs unless cached")
        return side_by_side(jobs)
    made = {}
    for role, job in jobs.items():
        log(f"{role}: finetuned by a Ray Train job unless cached")
        made[role] = job()
    return made


def model_on_rank(
    cfg: Config,
    role: str,
    source: str,
    target: Path,
    start: str | None,
    rank: int,
    world_size: int,
    seed: int | None = None,
) -> dict[str, Any] | None:
    """One finetune job worker's part; rank 0 returns where the model is and where it ran.
    ``seed``: the finetune's seed in place of ``finetune.seed`` (``finetune_job``)."""
    # On the workers only (module docstring): torch and the training stack.
    import torch.distributed as dist

    from clear_ray.models.loading import save_checkpoint
    from clear_ray.references.recipes import finetune, training_set

    store = Store(cfg.search.storage_path)
    if rank == 0 and not usable(target, f"cached {role}"):
        store.pull("models", target.parent, [target.name])
    found = [target.is_dir()]
    dist.broadcast_object_list(found, src=0)  # every rank trains, or none
    if found[0] and rank == 0:
        print(f"[clear_ray] {role}: cached at {target}", file=sys.stderr)
    if not found[0]:
        data = training_set(cfg, source, role)
        if seed is not None:
            data = replace(data, recipe=replace(data.recipe, seed=seed))
        model, processor = finetune(
            get_preset(cfg.model.preset),
            data,
            cfg.train.zero_stage,
            rank,
            world_size,
            start,
        )
        if rank == 0:
            cached_dir(target, lambda out: save_checkpoint(model, processor, out), role)
    if rank != 0:
        return None
    store.push("models", target.parent, [target.name])
    made = DriverDir.of(target)
    return {"path": made.path, "node_id": made.node_id, "files": made.files, "where": where()}


def ray_finetune_loop(loop_config: dict) -> None:
    """Entry point of each worker of an Original/Gold finetune job (:func:`finetune_job`).

    Rank 0 reports where the model is in a small checkpoint (Train's result keeps only
    checkpointed reports); every rank reports, as Train requires.
    """
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


def download_task(value: str, preset_name: str) -> tuple[DriverDir, str, dict[str, Any]]:
    """A brought hub checkpoint in this node's hub cache, checked against the preset."""
    from huggingface_hub import snapshot_download  # on the worker only (module docstring)

    repo, _, revision = value.partition("@")
    path = Path(snapshot_download(repo, revision=revision or None))
    check_architecture(
        json.loads((path / "config.json").read_text()), get_preset(preset_name), value
    )
    return DriverDir.of(path), brought_id(value), where()


def evaluation_task(
    model: str | DriverDir,
    model_id: str,
    source: str | DriverDir,
    cfg: Config,
    full: bool,
    gold: Any,  # GoldReference | None
    fold: Any = None,  # data.folds.Fold | None
) -> tuple[ReferenceEvaluation, dict[str, bytes], dict[str, Any]]:
    """One reference evaluation on this node (cached here and in the store), with its files."""
    # On the worker only (module docstring): the evaluation stack imports transformers.
    from clear_ray.eval.final import epoch_eval_config, full_eval_config
    from clear_ray.eval.gold import reference_evaluation

    kind = f"evaluations/{model_id}"
    local = Path(cfg.output_dir) / "cache" / kind
    store = Store(cfg.search.storage_path)
    store.pull(kind, local)
    evaluation = reference_evaluation(
        Path(on_this_node(model)),
        on_this_node(source),
        cfg.data.forget_split,
        full_eval_config(cfg.eval) if full else epoch_eval_config(cfg),
        gold,
        modality=cfg.data.modality,
        precision=cfg.train.precision,  # the trials': dtype offsets would shift forget quality
        cache_dir=local,
        fold=fold,
    )
    directory = Path(evaluation.directory)
    store.push(kind, local, [directory.name])  # only its own: the other config's may be writing
    files = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    return evaluation, files, where()
