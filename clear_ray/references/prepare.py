"""Original and Gold with their evaluations, for a search: found in the caches or built by
Ray jobs (references/jobs.py), then evaluated on workers.

The driver (a CPU head on the documented cluster) only orchestrates: data on the driver, models
and evaluations from Ray tasks. Models stay where they were made and reach trials through
runtime/staging.py.

Every model and evaluation here is a cache entry with a manifest (clear_ray/cache.py), checked
before use: a cached or published one that fails the check is built again. Each entry is built
under its lock, so two searches in one output directory build it once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clear_ray.cache import build_lock, cached_dir, usable
from clear_ray.config import ROLES, Config
from clear_ray.console import log as console_log
from clear_ray.data.folds import REPORT, SELECTION, PersonFolds, person_folds
from clear_ray.data.source import resolve_source
from clear_ray.eval.final import epoch_eval_config, full_eval_config
from clear_ray.eval.gold import ReferenceEvaluation, evaluation_entry, read_evaluation
from clear_ray.references.checkpoints import brought_id
from clear_ray.references.jobs import download_task, evaluation_task, finetune_job, finetune_jobs
from clear_ray.references.recipes import BASE, model_name, pretrain_applies
from clear_ray.runtime.cluster import local_ray
from clear_ray.runtime.driver_tasks import DriverTask, each_result, trial_task
from clear_ray.runtime.staging import DriverDir, stage


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
        if missing and pretrain_applies(cfg):
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


@dataclass(frozen=True)
class ReferenceModels:
    original: Path
    gold: Path


def reference_models(cfg: Config, source: str, cache_root: Path) -> ReferenceModels:
    """Original and Gold for this (preset, data, recipe, split), trained only if not cached.

    Each missing one is made by a Ray Train job (references/jobs.py), in the Ray of this
    process or in a local one started for it.
    """

    models = cache_root / "models"
    paths = {role: models / model_name(cfg, source, role) for role in ROLES}
    missing = [role for role, path in paths.items() if not usable(path, f"cached {role}")]
    for role in ROLES:
        if role not in missing:
            print(f"[clear_ray] {role}: cached at {paths[role]}", file=sys.stderr)
    if missing:
        with local_ray(cfg.search):
            start = None
            if pretrain_applies(cfg):
                base = models / model_name(cfg, source, BASE)
                if not usable(base, "cached pretrained base"):
                    finetune_job(cfg, BASE, source, base.name, str(models))
                start = str(base)
            names = {role: paths[role].name for role in missing}
            finetune_jobs(cfg, missing, source, names, str(models), start, console_log)
    return ReferenceModels(**paths)
