"""Original and Gold with their evaluations: built where the GPUs are, cached by content.

The driver (a CPU head on the documented cluster) only orchestrates. Each finetune is a Ray
Train job shaped like a trial (its workers, resources and DeepSpeed engine: LoRA for pretrained
presets, every weight for tiny ones), and each reference evaluation a Ray task with one trial
worker's resources (as the final evaluation, eval/final.py), so they land on GPU workers; on the
local CPU default the same jobs and tasks get CPUs.
A job or task keeps what it made in its node's cache (``<output_dir>/cache``) and, with
``--storage-path``, publishes it under ``<storage>/references``, where the next search finds
it whichever node made it. The driver gets back small things only: the evaluations' metrics,
Gold's per-item reference and their files (for MLflow); models stay where they were made and
reach trials through staging.py.

Users may bring their own Original/Gold (``--original``/``--gold``, CLEAR protocol step 1 done
elsewhere): a checkpoint directory or a hub id of the preset's architecture. Its finetune is
skipped; its evaluations are cached under a key of the checkpoint's fingerprint
(:func:`checkpoint_fingerprint`).

Every model and evaluation here is a cache entry with a manifest (clear_ray/cache.py), checked
before use: a cached or published one that fails the check is built again, a brought one with a
manifest that fails it is refused. Each entry is built under its lock, so two searches in one
output directory build it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clear_ray import pretrain
from clear_ray.cache import (
    MANIFEST,
    CacheError,
    build_lock,
    cache_key,
    cached_dir,
    manifest_problem,
    usable,
)
from clear_ray.config import Config, SearchConfig
from clear_ray.console import log as console_log
from clear_ray.data.folds import REPORT, SELECTION, PersonFolds, person_folds
from clear_ray.errors import ConfigError
from clear_ray.models.presets import ModelPreset, get_preset
from clear_ray.staging import DriverDir, on_this_node, stage

if TYPE_CHECKING:
    from clear_ray.eval.gold import ReferenceEvaluation

ROLES = ("original", "gold")  # as finetune.ROLES, without importing the finetune stack
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
COMPLETE = ".complete"  # marker written after a published folder's files, in the store
MADE_FILE = "reference.json"  # in a finetune job's checkpoint: where its model is


# ---- bring your own ------------------------------------------------------------------------


def check_architecture(config: dict, preset: ModelPreset, what: str) -> None:
    architectures = config.get("architectures") or []
    if config.get("model_type") != preset.model_type or preset.architecture not in architectures:
        raise ConfigError(
            f"{what} is a {config.get('model_type')} model ({', '.join(architectures) or '?'}); "
            f"preset {preset.name} needs {preset.model_type} ({preset.architecture})"
        )


def check_checkpoint(value: str, preset: ModelPreset, path: str) -> None:
    """A brought checkpoint that cannot be the preset's model fails here, in one line.

    A local directory needs a config.json of the preset's architecture and weight files, and
    must match its manifest if it has one (a cached or published reference copied from
    another output directory). A hub id can only be checked for its shape offline; its
    architecture is checked on the worker that downloads it.
    """
    directory = Path(value).expanduser()
    if directory.is_dir():
        config = directory / "config.json"
        if not config.is_file():
            raise ConfigError(f"{path}: {value} has no config.json (not a checkpoint directory)")
        try:
            check_architecture(json.loads(config.read_text()), preset, f"{path}: {value}")
        except ValueError as error:
            raise ConfigError(f"{path}: {value}/config.json is not JSON ({error})") from None
        if not weight_files(directory):
            raise ConfigError(f"{path}: {value} has no weight files (*.safetensors, *.bin)")
        if (directory / MANIFEST).is_file() and (problem := manifest_problem(directory)):
            raise ConfigError(
                f"{path}: {value} does not match its {MANIFEST} ({problem}); copy it again"
            )
    elif directory.exists() or value.startswith((".", "/", "~")) or not HUB_ID.match(value):
        raise ConfigError(
            f"{path}: {value} is neither a checkpoint directory nor a hub id (owner/name[@rev])"
        )


def check_brought(cfg: Config) -> None:
    preset = get_preset(cfg.model.preset)
    for role in ROLES:
        if value := getattr(cfg.model, role):
            check_checkpoint(value, preset, f"model.{role}")


def weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def checkpoint_fingerprint(value: str) -> dict[str, Any]:
    """What identifies a brought checkpoint in the evaluation cache key, cheaply.

    Local: the sha256 of config.json (and of the sharded-weights index, if any) plus the name,
    size and mtime of every weight file: rewriting the weights changes the key; hashing every
    byte of a 14 GB checkpoint on each search would cost minutes. Hub: the id and the revision
    asked for (``owner/name@rev``, default main): pin a commit to be exact.
    """
    directory = Path(value).expanduser()
    if not directory.is_dir():
        repo, _, revision = value.partition("@")
        return {"hub": repo, "revision": revision or "main"}
    digest = hashlib.sha256((directory / "config.json").read_bytes())
    for index in sorted(directory.glob("*.index.json")):
        digest.update(index.read_bytes())
    files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weight_files(directory)]
    return {"config": digest.hexdigest(), "weights": files}


def brought_id(value: str) -> str:
    return f"brought-{cache_key(checkpoint_fingerprint(value))}"


# ---- the store under --storage-path ---------------------------------------------------------


class Store:
    """``<storage>/references/<kind>/<name>``: folders any node's next search finds again.

    A folder counts once its ``<name>.complete`` marker exists (written after its files; an
    object store has no atomic rename). No storage path: a store that holds nothing.
    """

    def __init__(self, storage: str) -> None:
        self.storage = storage

    def _fs(self):
        from clear_ray.search.session import storage_filesystem

        filesystem, root = storage_filesystem(self.storage)
        return filesystem, f"{root.rstrip('/')}/references"

    def names(self, kind: str) -> list[str]:
        if not self.storage:
            return []
        from pyarrow import fs

        filesystem, base = self._fs()
        found = filesystem.get_file_info(fs.FileSelector(f"{base}/{kind}", allow_not_found=True))
        return [Path(i.path).name[: -len(COMPLETE)] for i in found if i.path.endswith(COMPLETE)]

    def pull(self, kind: str, local: Path, names: list[str] | None = None) -> None:
        """Copy the store's complete folders of ``kind`` that ``local`` lacks (or holds
        corrupt) into it. A published folder that fails its manifest is removed from the store
        with a warning: the caller builds it again, and publishes it again."""
        from pyarrow import fs

        filesystem, base = self._fs() if self.storage else (None, "")
        for name in self.names(kind):
            if (names is None or name in names) and not usable(local / name, f"cached {kind}"):
                source = f"{base}/{kind}/{name}"
                try:
                    cached_dir(
                        local / name,
                        lambda out, s=source: fs.copy_files(
                            s, str(out), filesystem, fs.LocalFileSystem()
                        ),
                        f"published {kind}/{name}",
                    )
                except CacheError as error:
                    console_log(f"warning: {error}; removing it from {self.storage}")
                    filesystem.delete_file(source + COMPLETE)
                    filesystem.delete_dir(source)

    def push(self, kind: str, local: Path, names: list[str] | None = None) -> None:
        """Publish ``local``'s folders (or ``names`` of them) the store lacks."""
        if not self.storage or not local.is_dir():
            return
        from pyarrow import fs

        filesystem, base = self._fs()
        held = set(self.names(kind))
        for folder in sorted(local.iterdir()):
            if folder.name.startswith(".") or folder.name in held or not folder.is_dir():
                continue  # a hidden folder is a build under way (cache.cached_dir)
            if names is None or folder.name in names:
                target = f"{base}/{kind}/{folder.name}"
                filesystem.create_dir(target, recursive=True)  # copy_files makes subfolders only
                fs.copy_files(str(folder), target, fs.LocalFileSystem(), filesystem)
                with filesystem.open_output_stream(target + COMPLETE):
                    pass


# ---- the Ray tasks --------------------------------------------------------------------------


@contextmanager
def local_ray(search: SearchConfig) -> Iterator[None]:
    """The Ray this process is connected to, else the running one or a local one for the
    duration."""
    import ray

    if ray.is_initialized():
        yield
        return
    from clear_ray.search.trainable import init_ray

    init_ray(search)
    try:
        yield
    finally:
        ray.shutdown()


def where() -> dict[str, Any]:
    """Where a task ran: for the driver's log, and for tests that it was not the driver."""
    import ray

    context = ray.get_runtime_context()
    return {
        "node": context.get_node_id(),
        "pid": os.getpid(),
        "resources": context.get_assigned_resources(),
    }


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

    The trials' Train run (``search/trainable.py``): their workers, resources, process group,
    DeepSpeed engine and failure handling. Its rank 0 finds the model in its node's cache or
    the store, else all ranks finetune it (from ``start`` when given) and rank 0 saves and
    publishes it; it reports where the model is (and where it ran) in a small checkpoint.
    ``name`` must key ``start`` too (``finetune.model_name(..., start_id=...)``). ``seed``:
    the finetune's own seed instead of ``finetune.seed``, everything else of the recipe kept
    (the pretraining corpus replayed included), and ``name`` must key it too: a second Gold
    from the same start differs from the first only in its finetuning randomness.
    """
    from clear_ray.search.trainable import data_parallel_trainer, fit
    from clear_ray.train.worker import ray_finetune_loop

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


def room_for(search: SearchConfig, jobs: int, wait_s: float = 15.0) -> bool:
    """Whether the cluster's free resources hold ``jobs`` trial-shaped worker groups at once.

    Waits up to ``wait_s`` for them when the cluster's total could: a job that has just ended
    (the pretrained base's) frees its placement group asynchronously, a few seconds later."""
    import ray

    from clear_ray.search.trainable import worker_resources

    needed = {
        name: jobs * search.workers_per_trial * amount
        for name, amount in worker_resources(search).items()
    }

    def holds(resources: dict[str, float]) -> bool:
        return all(resources.get(name, 0.0) >= amount for name, amount in needed.items())

    if not holds(ray.cluster_resources()):
        return False
    deadline = time.monotonic() + wait_s
    while not holds(ray.available_resources()):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


def side_by_side(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Each job in its own thread (Train's ``fit`` runs outside the main thread, as under Tune);
    their results, or the first job's error once all have ended. Daemon threads: an interrupted
    driver exits at once, and Ray's shutdown ends the jobs it owns."""
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, job: Callable[[], Any]) -> None:
        try:
            results[name] = job()
        except BaseException as error:  # re-raised in the caller's thread
            errors[name] = error

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in jobs:
        if name in errors:
            raise errors[name]
    return {name: results[name] for name in jobs}


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
    import torch.distributed as dist

    from clear_ray.finetune import finetune, training_set
    from clear_ray.models.loading import save_checkpoint

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


def download_task(value: str, preset_name: str) -> tuple[DriverDir, str, dict[str, Any]]:
    """A brought hub checkpoint in this node's hub cache, checked against the preset."""
    from huggingface_hub import snapshot_download

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


# ---- the driver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class References:
    """Data, Original/Gold and their evaluations: computed once, shared by every search."""

    source: str
    staged_source: str | DriverDir  # what tasks and trials on any node open
    original_dir: str  # where Original is, for people (a path on some node, or a hub id)
    original_model: str | DriverDir  # what tasks and trials on any node open
    gold: ReferenceEvaluation  # per-epoch eval config (proxy or full), selection fold
    original: ReferenceEvaluation
    gold_full: ReferenceEvaluation  # full, report fold: the final evaluation and the leaderboard
    original_full: ReferenceEvaluation
    ran_at: dict[str, dict[str, Any]]  # task name -> where() of the task that made it
    folds: PersonFolds  # the forget persons' selection and report folds (data/folds.py)
    gold_model: str | DriverDir | None = None  # as original_model; the robustness checks use it


def prepare_references(cfg: Config, log: Callable[[str], None]) -> References:
    """Data on the driver; models and evaluations from Ray tasks (or the caches)."""
    from clear_ray.data.source import resolve_source
    from clear_ray.eval.final import epoch_eval_config, full_eval_config
    from clear_ray.eval.gold import evaluation_entry, read_evaluation
    from clear_ray.finetune import BASE, model_name
    from clear_ray.search.driver_tasks import DriverTask, each_result, trial_task

    source = resolve_source(cfg)
    log(f"data: {source}")
    folds = person_folds(
        source, cfg.data.forget_split, cfg.search.report_fraction, cfg.search.fold_seed
    )
    staged = stage(source)
    ran_at: dict[str, dict[str, Any]] = {}
    pending = {}
    models: dict[str, tuple[str | DriverDir, str]] = {}
    finetuned = []
    for role in ROLES:
        brought = getattr(cfg.model, role)
        if brought and Path(brought).expanduser().is_dir():
            path = str(Path(brought).expanduser().resolve())
            models[role] = (stage(path), brought_id(path))
            log(f"{role}: brought, {path}")
        elif brought:
            log(f"{role}: brought, {brought} (downloaded on a worker)")
            task = DriverTask(download_task, cfg.search.cpus_per_worker)
            pending[role] = task.remote(brought, cfg.model.preset)
        else:
            finetuned.append(role)
    for role, (model, model_id, ran) in each_result(pending, "downloading models", cfg.search):
        models[role], ran_at[f"{role}_model"] = (model, model_id), ran
    models_dir = Path(cfg.output_dir) / "cache" / "models"  # on the node that made them
    names = {role: model_name(cfg, source, role) for role in finetuned}
    wait_s = cfg.search.reference_wait_s
    with ExitStack() as locks:  # another search in this output dir builds them: wait, reuse
        for role in sorted(finetuned, key=names.get):  # one order for every search: no deadlock
            locks.enter_context(build_lock(models_dir / names[role], role, wait_s))
        for role in finetuned:
            found = on_driver_node(models_dir / names[role], role, log)
            if found:
                models[role] = (found, names[role])
        start = None
        missing = [role for role in finetuned if role not in models]
        if missing and pretrain.applies(cfg):
            name = model_name(cfg, source, BASE)
            with build_lock(models_dir / name, "pretrained base", wait_s):
                start = on_driver_node(models_dir / name, "pretrained base", log)
                if start is None:
                    log("pretrained base: trained by a Ray Train job unless cached")
                    start, ran_at["pretrained_base"] = finetune_job(
                        cfg, BASE, staged, name, str(models_dir)
                    )
        made = finetune_jobs(cfg, missing, staged, names, str(models_dir), start, log)
    for role, (model, ran) in made.items():
        models[role], ran_at[f"{role}_model"] = (model, names[role]), ran

    log("evaluating Gold and Original on workers (cached after the first run)")
    evaluate = trial_task(evaluation_task, cfg.search)
    cache = Path(cfg.output_dir) / "cache" / "evaluations"

    # When the per-epoch evaluation config is the full one (no proxy items, the same generation
    # setting, no folds): one task, not two racing on the same cache entry. With folds, per-epoch =
    # selection, full = report fold.
    eval_config = {False: epoch_eval_config(cfg), True: full_eval_config(cfg.eval)}
    kinds = (False, True) if eval_config[False] != eval_config[True] or folds.active else (False,)
    fold_of = {False: folds.fold(SELECTION), True: folds.fold(REPORT)}

    def run(role: str, golds=(None, None)) -> list[ReferenceEvaluation]:
        """``role``'s proxy and full evaluations, each against Gold's of the same config:
        read from the driver node's cache, else computed (or found) by a task, under their
        build locks."""
        model, model_id = models[role]
        results, refs = {}, {}
        entries = {}
        for full in kinds:
            entries[full] = evaluation_entry(
                cache / model_id, source, cfg.data.forget_split, eval_config[full],
                golds[full], cfg.train.precision, fold_of[full],
            )  # fmt: skip
        what = f"{role}'s evaluation"
        with ExitStack() as locks:
            for entry in sorted(entries.values()):
                locks.enter_context(build_lock(entry, what, wait_s))
            for full, entry in entries.items():
                if usable(entry, what):
                    results[full] = read_evaluation(entry, cfg.data.modality)
                else:
                    refs[full] = evaluate.remote(
                        model, model_id, staged, cfg, full, golds[full], fold_of[full]
                    )
            done = each_result(refs, f"{role} evaluation", cfg.search)
            for full, (evaluation, files, ran) in done:
                ran_at[f"{role}{'_full' if full else ''}_evaluation"] = ran
                results[full] = on_driver(evaluation, files, cache / model_id)
        ordered = [results[full] for full in kinds]
        return ordered * 2 if len(ordered) == 1 else ordered  # [proxy, full]

    gold, gold_full = run("gold")
    original, original_full = run("original", (gold.reference, gold_full.reference))
    for name, ran in ran_at.items():
        log(f"{name}: ran in pid {ran['pid']} on node {ran['node']}, {ran['resources']}")
    original_model = models["original"][0]
    shown = original_model.path if isinstance(original_model, DriverDir) else original_model
    return References(
        source,
        staged,
        shown,
        original_model,
        gold,
        original,
        gold_full,
        original_full,
        ran_at,
        folds,
        models["gold"][0],
    )


def on_driver_node(model: Path, role: str, log: Callable[[str], None]) -> DriverDir | None:
    """``model`` if this (the driver's) node holds it already: a cached model needs no job.

    Only a local look: on a cluster the models live on the workers that made them (and in the
    store), where the finetune job finds them; a single node or a shared filesystem finds them
    here and spares the job's start-up (~10-20 s per model on 2 CPU cores).
    """
    if not usable(model, f"cached {role}"):
        return None
    log(f"{role}: cached at {model}")
    return DriverDir.of(model)


def on_driver(evaluation: ReferenceEvaluation, files: dict[str, bytes], cache: Path):
    """The evaluation with its files in the driver's cache (MLflow logs them from there)."""
    directory = cache / Path(evaluation.directory).name
    cached_dir(
        directory,
        lambda out: [(out / n).write_bytes(b) for n, b in files.items()],
        "reference evaluation",
    )
    return replace(evaluation, directory=str(directory))
