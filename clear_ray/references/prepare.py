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
from typing import Any, NamedTuple

from clear_ray.cache import build_lock, cached_dir, usable
from clear_ray.config import ROLES, Config, EvalConfig
from clear_ray.console import log as console_log
from clear_ray.data.folds import REPORT, SELECTION, Fold, PersonFolds, person_folds
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


Model = tuple[str | DriverDir, str]  # what tasks and trials open, and the model's cache id
RanAt = dict[str, dict[str, Any]]  # task name -> where() of the task that made it


def prepare_references(cfg: Config, log: Callable[[str], None]) -> References:
    """Data on the driver; models and evaluations from Ray tasks (or the caches)."""
    source = resolve_source(cfg)
    log(f"data: {source}")
    folds = person_folds(
        source, cfg.data.forget_split, cfg.search.report_fraction, cfg.search.fold_seed
    )
    staged = stage(source)
    models, ran_at = brought_models(cfg, log)
    finetuned = [role for role in ROLES if not getattr(cfg.model, role)]
    made, made_at = finetuned_models(cfg, source, staged, finetuned, log)
    models.update(made)
    ran_at.update(made_at)

    log("evaluating Gold and Original on workers (cached after the first run)")
    evaluator = ReferenceEvaluator(
        cfg=cfg,
        source=source,
        staged=staged,
        settings=evaluation_settings(cfg, folds),
        task=trial_task(evaluation_task, cfg.search),
        cache=Path(cfg.output_dir) / "cache" / "evaluations",
    )
    gold, gold_at = evaluator.evaluate("gold", models["gold"])
    original, original_at = evaluator.evaluate("original", models["original"], gold)
    ran_at.update(gold_at)
    ran_at.update(original_at)
    for name, ran in ran_at.items():
        log(f"{name}: ran in pid {ran['pid']} on node {ran['node']}, {ran['resources']}")
    original_model = models["original"][0]
    shown = original_model.path if isinstance(original_model, DriverDir) else original_model
    return References(
        source=source,
        staged_source=staged,
        original_dir=shown,
        original_model=original_model,
        gold=gold.epoch,
        original=original.epoch,
        gold_full=gold.full,
        original_full=original.full,
        ran_at=ran_at,
        folds=folds,
        gold_model=models["gold"][0],
    )


def brought_models(cfg: Config, log: Callable[[str], None]) -> tuple[dict[str, Model], RanAt]:
    """The models the user brought (``model.original``, ``model.gold``): a directory is staged
    from this node, a hub id is downloaded by a task on a worker."""
    models: dict[str, Model] = {}
    pending = {}
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
    ran_at: RanAt = {}
    for role, (model, model_id, ran) in each_result(pending, "downloading models", cfg.search):
        models[role], ran_at[f"{role}_model"] = (model, model_id), ran
    return models, ran_at


def finetuned_models(
    cfg: Config,
    source: str,
    staged: str | DriverDir,
    roles: list[str],
    log: Callable[[str], None],
) -> tuple[dict[str, Model], RanAt]:
    """``roles``' finetuned models: cached on the driver's node, else made by Ray Train jobs
    (after the pretrained base they start from, when the recipe has one)."""
    models_dir = Path(cfg.output_dir) / "cache" / "models"  # on the node that made them
    names = {role: model_name(cfg, source, role) for role in roles}
    models: dict[str, Model] = {}
    ran_at: RanAt = {}
    with ExitStack() as locks:  # another search in this output dir builds them: wait, reuse
        for role in sorted(roles, key=names.get):  # one order for every search: no deadlock
            locks.enter_context(
                build_lock(models_dir / names[role], role, cfg.search.reference_wait_s)
            )
        for role in roles:
            found = on_driver_node(models_dir / names[role], role, log)
            if found:
                models[role] = (found, names[role])
        start = None
        missing = [role for role in roles if role not in models]
        if missing and pretrain_applies(cfg):
            start, ran_at = pretrained_base(cfg, source, staged, models_dir, log)
        made = finetune_jobs(cfg, missing, staged, names, str(models_dir), start, log)
    for role, (model, ran) in made.items():
        models[role], ran_at[f"{role}_model"] = (model, names[role]), ran
    return models, ran_at


def pretrained_base(
    cfg: Config,
    source: str,
    staged: str | DriverDir,
    models_dir: Path,
    log: Callable[[str], None],
) -> tuple[DriverDir, RanAt]:
    """The pretrained base Original and Gold start from: cached on the driver's node, else
    trained by a Ray Train job, under its build lock."""
    name = model_name(cfg, source, BASE)
    with build_lock(models_dir / name, "pretrained base", cfg.search.reference_wait_s):
        start = on_driver_node(models_dir / name, "pretrained base", log)
        if start is not None:
            return start, {}
        log("pretrained base: trained by a Ray Train job unless cached")
        start, ran = finetune_job(cfg, BASE, staged, name, str(models_dir))
    return start, {"pretrained_base": ran}


@dataclass(frozen=True)
class EvaluationSetting:
    """One reference evaluation a search reads: the per-epoch one (``full`` false) or the
    full one, with its config and fold."""

    full: bool
    config: EvalConfig
    fold: Fold | None


def evaluation_settings(cfg: Config, folds: PersonFolds) -> tuple[EvaluationSetting, ...]:
    """The per-epoch evaluation (proxy or full config; selection fold) and the full one
    (report fold). When the per-epoch config is the full one (no proxy items, the same
    generation setting) and there are no folds: one evaluation, not two tasks racing on the
    same cache entry."""
    epoch = EvaluationSetting(False, epoch_eval_config(cfg), folds.fold(SELECTION))
    full = EvaluationSetting(True, full_eval_config(cfg.eval), folds.fold(REPORT))
    if epoch.config == full.config and not folds.active:
        return (epoch,)
    return (epoch, full)


class Evaluations(NamedTuple):
    """A reference's per-epoch and full evaluations (the same one when one serves both)."""

    epoch: ReferenceEvaluation
    full: ReferenceEvaluation

    def of(self, setting: EvaluationSetting) -> ReferenceEvaluation:
        return self.full if setting.full else self.epoch


@dataclass(frozen=True)
class ReferenceEvaluator:
    """Gold's and Original's evaluations: on the same data, settings and task resources."""

    cfg: Config
    source: str
    staged: str | DriverDir
    settings: tuple[EvaluationSetting, ...]
    task: DriverTask
    cache: Path  # the driver's cache of evaluations, one folder per model

    def evaluate(
        self, role: str, model: Model, gold: Evaluations | None = None
    ) -> tuple[Evaluations, RanAt]:
        """``role``'s evaluations, each against ``gold``'s of the same setting: read from the
        driver node's cache, else computed (or found) by a task, under their build locks."""
        cfg, (path, model_id) = self.cfg, model
        golds = {s.full: gold.of(s).reference if gold else None for s in self.settings}
        entries = {
            s.full: evaluation_entry(
                self.cache / model_id, self.source, cfg.data.forget_split, s.config,
                golds[s.full], cfg.train.precision, s.fold,
            )
            for s in self.settings
        }  # fmt: skip
        results: dict[bool, ReferenceEvaluation] = {}
        launches = {}
        ran_at: RanAt = {}
        what = f"{role}'s evaluation"
        with ExitStack() as locks:
            for entry in sorted(entries.values()):
                locks.enter_context(build_lock(entry, what, cfg.search.reference_wait_s))
            for s in self.settings:
                if usable(entries[s.full], what):
                    results[s.full] = read_evaluation(entries[s.full], cfg.data.modality)
                else:
                    launches[s.full] = self.task.remote(
                        path, model_id, self.staged, cfg, s.full, golds[s.full], s.fold
                    )
            done = each_result(launches, f"{role} evaluation", cfg.search)
            for full, (evaluation, files, ran) in done:
                ran_at[f"{role}{'_full' if full else ''}_evaluation"] = ran
                results[full] = on_driver(evaluation, files, self.cache / model_id)
        return Evaluations(results[False], results[self.settings[-1].full]), ran_at


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


def on_driver(
    evaluation: ReferenceEvaluation, files: dict[str, bytes], cache: Path
) -> ReferenceEvaluation:
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
