"""python -m clear_ray.tune --method dpo: a constrained hyperparameter search per method.

Reads top to bottom: parse → resolve config (or the saved one, ``--resume``) → check inputs
→ prepare data, Original/Gold and their evaluations → one Tune search per method (each an
MLflow run; ``--method all`` nests them under one parent) → final full evaluation of each
best trial → leaderboard. Objective: maximise ``search.objective`` (log forget quality on
the forget-quality task(s) of ``data.modality``) subject to ``search.retain_metric ≥
min_retain × Original's`` (CLEAR's Retain column by default; optionally a utility threshold).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from clear_ray.cli import (
    HelpFormatter,
    add_config_flags,
    add_set_flag,
    dry_run_lines,
    error_line,
    overrides_from,
)
from clear_ray.config import Config, ConfigError, resolve_config
from clear_ray.console import counted, log
from clear_ray.data.folds import FOLDS_FILE, REPORT, SELECTION, PersonFolds
from clear_ray.errors import SearchStopped
from clear_ray.methods import METHODS, TABLE_METHODS
from clear_ray.models.presets import get_preset
from clear_ray.search.driver import FINISHED, STOPPED, Driver, list_lines, resume_command
from clear_ray.search.outbox import OUTBOX_FILE
from clear_ray.search.session import (
    CONFIRM,
    FAILED,
    SEARCH,
    SearchDirs,
    SearchState,
    check_optuna_storage,
    check_storage_path,
    find_search,
)
from clear_ray.search.space import (
    SEARCH_SPACE_DIR,
    describe,
    load_defaults,
    load_space,
    scale_lr,
    space_lines,
)

if TYPE_CHECKING:  # heavy (torch, mlflow); imported where used, after argument parsing
    from clear_ray.references import References
    from clear_ray.tracking import SearchTracker
    from clear_ray.train.selection import Thresholds
    from clear_ray.train.worker import TrialInputs

ALL = "all"
STOPPED_EXIT = 3  # stopped, resumable (a tracking outage past tracking.max_outage_s)
FINAL_DIR = "final_evaluation"  # <method>/final_evaluation: the best trial's full evaluation
REAP_WAIT_S = 60  # for stopped trials' Train controllers to die, so their groups can go
METHOD_ORDER = TABLE_METHODS  # the paper's Table 1 order; variants are searched by name

# flag -> dotted config path; defaults and types come from Config, never from here.
FLAGS = {
    "--data": ("data.source", "hub id (therem/CLEAR) or local CLEAR dir; default: synthetic"),
    "--tofu": (
        "data.tofu_source",
        "local copy of locuslab/TOFU: the text forget-quality task of a local --data copy of "
        "therem/CLEAR (without it that task is left out)",
    ),
    "--model": ("model.preset", "model preset (tiny-llava, llava-1.5-7b)"),
    "--forget-split": ("data.forget_split", "forget01 | forget05 | forget10"),
    "--modality": ("data.modality", "forget text QA rows, visual image rows, or both"),
    "--num-samples": ("search.num_samples", "number of trials per method"),
    "--epochs": ("train.epochs", "unlearning epochs per trial"),
    "--max-concurrent": (
        "search.max_concurrent",
        "trials running at once; 0 = as many as the cluster holds (one per core or GPU)",
    ),
    "--workers-per-trial": ("search.workers_per_trial", "Ray Train workers per trial"),
    "--gpus-per-trial": ("search.gpus_per_trial", "GPUs per trial (0 = CPU with gloo)"),
    "--objective": (
        "search.objective",
        "log_forget_quality (log p of the KS test vs Gold; both modalities: Fisher's "
        "combination) | neg_forget_distance (-W1 between log truth ratios of model and Gold) | "
        "forget_quality_js (CLEAR's 1 - JS; blind to a TR level shift)",
    ),
    "--multi-objective": (
        "search.multi_objective",
        "Pareto search of the objective vs model_utility; reports the Pareto front",
    ),
    "--retain-metric": (
        "search.retain_metric",
        "metric of the retain constraint and floor: CLEAR's Retain column | our extended one",
    ),
    "--utility-metric": (
        "search.utility_metric",
        "metric of the utility constraint (and Pareto axis): CLEAR's | our extended one",
    ),
    "--min-retain": (
        "search.min_retain",
        "feasible iff the retain metric >= this (x Original's in relative mode)",
    ),
    "--min-utility": (
        "search.min_utility",
        "feasible iff the utility metric >= this (x Original's in relative mode); 0 = off",
    ),
    "--threshold-mode": ("search.threshold_mode", "relative (x Original's value) | absolute"),
    "--retain-floor": (
        "search.retain_floor",
        "stop a trial at once when the retain metric < this (same mode): it has collapsed",
    ),
    "--scheduler": ("search.scheduler", "asha | none: early stopping on the per-epoch score"),
    "--grace-period": (
        "search.grace_period",
        "ASHA: epochs every trial runs before it can be stopped (>= --epochs: none is)",
    ),
    "--reduction-factor": (
        "search.reduction_factor",
        "ASHA: 1/this of the trials go on at each rung",
    ),
    "--sampler": ("search.sampler", "tpe | grid (every combination of categorical choices)"),
    "--proxy-items": (
        "eval.proxy_items",
        "per-epoch proxy evaluation on this many seeded rows per task; 0 = full",
    ),
    "--tracking-uri": (
        "tracking.tracking_uri",
        "MLflow tracking URI (sqlite:///..., http://host:port); default: sqlite in output dir",
    ),
    "--experiment": ("tracking.experiment", "MLflow experiment name"),
    "--storage-path": (
        "search.storage_path",
        "Ray results and checkpoints: s3://bucket/prefix or a mount every node reaches "
        "(needed on a multi-node cluster); default: the search folder",
    ),
    "--optuna-storage": (
        "search.optuna_storage",
        "Optuna storage URL for the study (postgresql://user@head/optuna, ...); "
        "default: sqlite optuna.db in the search folder",
    ),
    "--original": (
        "model.original",
        "your own Original: checkpoint dir or hub id[@rev] of the preset's architecture; "
        "default: finetuned (on a worker) and cached",
    ),
    "--gold": ("model.gold", "your own Gold (as --original); default: finetuned and cached"),
    "--output-dir": ("output_dir", "where data, model cache, searches and MLflow go"),
    "--seed": ("search.seed", "seed of the Optuna sampler"),
    "--robustness": (
        "robust.checks",
        "checks of each best trial: all | none | comma list of relearn, quantize, prompts, "
        "cross_modal",
    ),
    "--constrain-relearn": (
        "search.constrain_relearn",
        "feasible only if the relearning attack at each trial's end (selection fold) recovers "
        "<= this fraction of the forgotten, in [0, 1]; default: off",
    ),
    "--report-fraction": (
        "search.report_fraction",
        "forget persons held out for the final report; selection uses the rest (0 = no folds)",
    ),
    "--confirm-seeds": (
        "search.confirm_seeds",
        "re-train the selected and the default configuration with this many fresh seeds",
    ),
    "--leaderboard": (
        "report.leaderboard",
        "compact: CLEAR's five columns, the objective with its D and n, tuned - default, net "
        "relearn recovery, feasible | full: every column (leaderboard_full.csv has them either "
        "way)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    defaults = Config().to_flat()
    parser = argparse.ArgumentParser(
        prog="python -m clear_ray.tune",
        description=(
            "Search unlearning hyperparameters with Ray Tune + Optuna: maximise forget quality "
            "subject to retain (and optionally utility) thresholds. Each trial unlearns with "
            "LoRA under Ray Train + DeepSpeed and is an MLflow child run; the best trial gets a "
            "full evaluation and is registered as the MLflow model clear_ray-<method>@best."
        ),
        epilog=(
            "Defaults shown are the tiny-llava preset's; another --model brings its own recipe "
            "(docs/models.md, Recipes), under your flags. "
            "Any config field can be set with --set PATH=VALUE, e.g. --set train.lr=1e-4. "
            "--dry-run prints the resolved configuration and search spaces and exits. "
            "Everything a search writes is under OUTPUT_DIR/searches/<name>/; --resume continues "
            "an interrupted search from there with its saved configuration; --list shows the "
            "searches there. Exit status: 0 done, 1 every trial of a method failed, 2 bad input, "
            "3 stopped because the MLflow server stayed away (resumable)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--method",
        default=defaults["method.name"],
        metavar="METHOD[,METHOD...]",
        help=f"unlearning method: one of {', '.join(METHODS)} (space: "
        "search_spaces/<method>.yaml); several, comma-separated, or 'all' (every method of "
        "CLEAR's table) are searched in turn under one MLflow run, with a leaderboard",
    )
    parser.add_argument(
        "--search-space",
        type=Path,
        default=None,
        help="YAML search space (default: search_spaces/<method>.yaml); one method only",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="NAME",
        help="continue an interrupted search in --output-dir (default: the latest one)",
    )
    add_config_flags(parser, FLAGS, defaults)
    add_set_flag(parser)
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the searches in --output-dir: running, finished, failed, stopped or died, "
        "and the command that resumes each one that did not finish",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved configuration and each method's search space, then exit "
        "without data, training, Ray or any folder",
    )
    return parser


def plan_search(args: argparse.Namespace) -> tuple[Config, SearchState, SearchDirs]:
    """The config and the search's saved state: new from the flags, or loaded to resume."""
    if args.resume:
        output = Path(getattr(args, "output_dir", None) or Config().output_dir).resolve()
        state = find_search(output, args.resume).load()
        cfg = Config.from_flat(state.config).validate()
        return cfg, state, SearchDirs(output, state.name, cfg.search.storage_path)
    cfg = resolve_config({"method.name": args.method, **overrides_from(args, FLAGS)}).validate()
    methods = method_names(args.method)
    if len(methods) > 1 and args.search_space is not None:
        raise ConfigError(f"--search-space applies to one method, not --method {args.method}")
    origins = {
        method: str((args.search_space or SEARCH_SPACE_DIR / f"{method}.yaml").resolve())
        for method in methods
    }
    output = Path(cfg.output_dir).resolve()
    storage = cfg.search.storage_path
    if storage and "://" not in storage:  # Ray wants an absolute path or a URI
        storage = str(Path(storage).resolve())
    cfg = cfg.replace(
        {"output_dir": str(output), "search.storage_path": storage, **absolute_local_paths(cfg)}
    )
    label = ALL if args.method == ALL else "+".join(methods)
    name = f"{label}-{time.strftime('%Y%m%d-%H%M%S')}"
    while (output / "searches" / name).exists():  # two searches started in one second
        name += "x"
    state = SearchState(name, cfg.to_flat(), methods, origins)
    return cfg, state, SearchDirs(output, name, storage)


# Config fields that name a local directory or a hub id.
LOCAL_OR_HUB = ("data.source", "data.tofu_source", "model.original", "model.gold")


def absolute_local_paths(cfg: Config) -> dict[str, str]:
    """The fields of ``LOCAL_OR_HUB`` that name an existing directory, as absolute paths (``~``
    expanded): the search's saved config must resume from any working directory. Hub ids, and
    paths that do not exist (``check_inputs`` refuses them), stay as given."""
    flat = cfg.to_flat()
    return {
        path: str(Path(flat[path]).expanduser().resolve())
        for path in LOCAL_OR_HUB
        if flat[path] and Path(flat[path]).expanduser().exists()
    }


def method_names(spec: str) -> list[str]:
    """``--method``: one name, comma-separated names (searched in that order, each once), or
    "all" (CLEAR's Table 1 methods, in its order)."""
    if spec == ALL:
        return list(METHOD_ORDER)
    names = list(dict.fromkeys(name.strip() for name in spec.split(",")))
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ConfigError(
            f"--method: unknown method {unknown[0]!r}; known: {', '.join(METHODS)} or {ALL}"
        )
    return names


def load_spaces(cfg: Config, state: SearchState) -> dict[str, dict]:
    """Every method's space, checked (and grid sizes known) before anything starts."""
    from clear_ray.search.strategy import trial_count

    spaces = {}
    for method, origin in state.space_origins.items():
        path = Path(origin)
        spaces[method] = scale_lr(load_space(path.stem, path.parent), cfg.search.lr_scale)
        load_defaults(path.stem, path.parent)  # a published setting outside its range fails now
        trial_count(cfg.search, spaces[method])  # a grid needs categorical dimensions
    return spaces


def dry_run(args: argparse.Namespace, cfg: Config, state: SearchState, spaces: dict) -> str:
    """What a search would run with, as YAML: the config, then each method's space."""
    recipe = {} if args.resume else get_preset(cfg.model.preset).recipe
    overrides = {} if args.resume else overrides_from(args, FLAGS)
    lines = [
        f"# dry run of search {state.name}: nothing was generated, trained or written",
        f"# configuration ('# preset {cfg.model.preset}': from the preset's recipe)",
        *dry_run_lines(cfg, recipe, overrides),
    ]
    for method, space in spaces.items():
        lines.append(
            f"# search space of {method}: {state.space_origins[method]}, "
            f"train.lr bounds x search.lr_scale = {cfg.search.lr_scale:g}"
        )
        lines.extend(space_lines(space))
    return "\n".join([*lines, *memory_lines(cfg, state.methods)])


def memory_lines(cfg: Config, methods: list[str]) -> list[str]:
    """The GPU memory a trial worker needs (for the method that scores the most views at
    once) and which node types of the checkout's cluster.yaml hold it."""
    from clear_ray.memory import TEXT_TOKENS, estimate_lines, estimate_trial_memory
    from clear_ray.methods import get_method
    from clear_ray.nodes import CLUSTER_YAML, fit_lines, node_types, workers_per_gpu

    def grad_views(name: str) -> int:
        method = get_method(name)
        return max(len(phase.views) for phase in (method, method.ascent) if phase is not None)

    widest = max(methods, key=grad_views)
    shape = get_preset(cfg.model.preset).shape
    tokens = shape.image_tokens + TEXT_TOKENS
    train, search = cfg.train, cfg.search
    estimate = estimate_trial_memory(
        shape,
        train.precision,
        cfg.lora.r,
        train.zero_stage,
        search.workers_per_trial,
        train.batch_size,
        grad_views(widest),
        tokens,
    )
    heading = (
        f"GPU memory per trial worker, estimated (clear_ray/memory.py): {cfg.model.preset}, "
        f"{train.precision}, LoRA r{cfg.lora.r}, ZeRO-{train.zero_stage} over "
        f"{search.workers_per_trial} worker(s), micro-batch {train.batch_size}"
    )
    lines = estimate_lines(
        estimate,
        heading,
        f"{widest} ({grad_views(widest)} views)",
        f"{tokens} tokens = {shape.image_tokens} image + {TEXT_TOKENS} text",
    )
    if search.gpus_per_trial == 0:
        lines.append("# trials run on CPU (--gpus-per-trial 0); on GPUs each worker needs this")
        sharing = 1
    else:
        sharing = workers_per_gpu(search.gpus_per_trial, search.workers_per_trial)
    lines.append(
        f"# node types of {CLUSTER_YAML.name} ({sharing} worker(s) per GPU), "
        "GPU memory from AWS's instance specifications (clear_ray/nodes.py):"
    )
    if not CLUSTER_YAML.is_file():
        return [*lines, f"#   no {CLUSTER_YAML} in this checkout"]
    return [*lines, *fit_lines(node_types(CLUSTER_YAML), sharing * estimate.total)]


def check_inputs(cfg: Config) -> None:
    """Bad input fails here with one line, before any data, model or run is written."""
    from clear_ray.data.source import check_source
    from clear_ray.eval.names import OBJECTIVE_TASKS, named_tasks, objective_tasks
    from clear_ray.references import check_brought

    if not objective_tasks(cfg.data.modality, named_tasks(cfg.eval.tasks)):
        needed = " or ".join(OBJECTIVE_TASKS[cfg.data.modality])
        raise ConfigError(
            f"eval.tasks must include {needed} (the objective of --modality {cfg.data.modality})"
        )
    for note in check_source(cfg):  # what the data lacks, before anything is trained
        log(note)
    if cfg.tracking.tracking_uri:
        from clear_ray.tracking import check_tracking_uri  # imports MLflow (~2.5 s)

        check_tracking_uri(cfg.tracking.tracking_uri)
    if cfg.search.storage_path:
        check_storage_path(cfg.search.storage_path)
    if cfg.search.optuna_storage:
        check_optuna_storage(cfg.search.optuna_storage)
    check_brought(cfg)  # --original/--gold: a checkpoint of the preset's architecture
    if cfg.train.zero_stage == 3 and cfg.search.workers_per_trial > 1:
        # Each rank evaluates its own share of rows, and under ZeRO-3 every forward pass is a
        # collective: ranks with different row counts would wait on each other for ever.
        raise ConfigError("train.zero_stage=3 needs --workers-per-trial 1 (sharded evaluation)")


@dataclass
class Search:
    """What every method's search shares: config, saved state, references, tracker, inputs."""

    cfg: Config
    state: SearchState
    dirs: SearchDirs
    refs: References
    thresholds: Thresholds
    tracker: SearchTracker
    tags: dict[str, str]
    inputs: TrialInputs  # data and Original as trials on any node open them


def run(cfg: Config, state: SearchState, dirs: SearchDirs, spaces: dict[str, dict]) -> int:
    # Heavy imports (torch, transformers, mlflow, ray) come after argument parsing, so that
    # --help and bad input answer at once.
    from clear_ray.cache import build_lock
    from clear_ray.eval.names import named_tasks, objective_tasks
    from clear_ray.kernels import kernels_tag
    from clear_ray.provenance import system_tags
    from clear_ray.references import prepare_references
    from clear_ray.report.inputs import read_search
    from clear_ray.report.write import write_report
    from clear_ray.robust.constraint import check_relearn_persons
    from clear_ray.search.confirm import CONFIRM_FILE
    from clear_ray.search.driver import close_orphans
    from clear_ray.search.quiet import quiet_console
    from clear_ray.search.results import (
        LEADERBOARD_CSV,
        LEADERBOARD_FILE,
        Leaderboard,
        LeaderboardRow,
        method_rows,
        paired_section,
        write_leaderboard,
    )
    from clear_ray.search.session import dashboard_command
    from clear_ray.search.trainable import check_cluster, concurrent_trials, init_ray
    from clear_ray.tracking import SearchTracker, ui_command, where_to_look
    from clear_ray.train.selection import Thresholds
    from clear_ray.train.worker import TrialInputs

    started = time.time()
    quiet_console()
    # A failed trial prints its reason. Ray starts first: a trial shape the cluster can never
    # run is refused before anything is written.
    init_ray(cfg.search)
    check_cluster(cfg.search)
    cfg = cfg.replace({"search.max_concurrent": concurrent_trials(cfg.search)})
    log(f"search {state.name}: files in {dirs.root}")
    # Another search starting in this output directory creates the same MLflow store and
    # experiment: one at a time, or the second fails on tables or a name the first just made.
    with build_lock(Path(cfg.output_dir) / "mlflow.db", "MLflow store", 60.0):
        tracker = SearchTracker(cfg, dirs.root / OUTBOX_FILE)  # delivers what a stop left there
    log(f"MLflow: {where_to_look(tracker.uri, tracker.experiment_id)}")
    for line in close_orphans(dirs.output, tracker.client, tracker.tracks, state.name):
        log(line)
    optuna_storage = dirs.optuna_storage(cfg.search.optuna_storage)
    log(f"Optuna studies {state.name}/<method>, live: {dashboard_command(optuna_storage)}")
    refs = prepare_references(cfg, log)
    check_relearn_persons(cfg.search, refs.folds.selection)  # before any trial runs
    announce_folds(refs.folds, dirs)
    thresholds = Thresholds.from_search(cfg.search, refs.original.metrics)
    print(reference_table(refs.original.metrics, refs.gold.metrics, thresholds), flush=True)

    tags = {
        "clear_ray.search": state.name,
        "model": cfg.model.preset,
        "data": refs.source,
        # The forget-quality task(s) the objective combines (eval/suite.py with_objective).
        "objective_task": ",".join(objective_tasks(cfg.data.modality, named_tasks(cfg.eval.tasks))),
        **system_tags(
            cfg.search.workers_per_trial,
            cfg.train.zero_stage,
            cfg.search.seed,
            kernels_tag(cfg.search),
        ),
        "folds": fold_tag(refs.folds),
    }
    if len(state.methods) > 1:
        if state.top_parent_id:
            tracker.reopen(state.top_parent_id)
        else:
            state.top_parent_id = tracker.start_parent(
                state.name,
                untuned(cfg.to_flat(), *spaces.values()),
                {**tags, "clear_ray.role": "comparison"},
            )
            log_references(tracker, state.top_parent_id, refs)
            tracker.log_artifacts(state.top_parent_id, [dirs.root / FOLDS_FILE])
        dirs.save(state)
    inputs = TrialInputs(
        refs.staged_source,
        refs.original_model,
        refs.gold.reference,
        thresholds,
        refs.folds.fold(SELECTION),
        refs.gold_model,
        refs.folds.selection,
    )
    search = Search(cfg, state, dirs, refs, thresholds, tracker, tags, inputs)
    for method in state.methods:
        if method in state.runs and state.runs[method].status == "done":
            log(f"{method}: done before the resume, kept")
            continue
        search_method(search, method, spaces[method])
    failures = [state.runs[m].failure for m in state.methods if state.runs[m].status == FAILED]
    if len(failures) == len(state.methods):  # no leaderboard of Original and Gold alone
        if state.top_parent_id:
            tracker.finish(state.top_parent_id, "FAILED", {"error": "; ".join(failures)})
        tracker.wait_delivered()
        for failure in failures:
            log(failure)
        return 1

    comparisons = {
        method: comparison_of(search, json.loads(path.read_text()))
        for method in state.methods
        if (path := dirs.method(method) / CONFIRM_FILE).is_file()
    }
    rows = [
        LeaderboardRow("Original", refs.original_full.metrics, ""),
        LeaderboardRow("Gold", refs.gold_full.metrics, ""),
        *(
            row
            for method in state.methods
            for row in method_rows(
                state.runs[method].outcome,
                state.runs[method].default_outcome,
                comparisons.get(method),
            )
        ),
    ]
    heading = leaderboard_heading(refs.folds, cfg.search.confirm_seeds, thresholds)
    board = Leaderboard(rows, heading, cfg.search.objective, cfg.data.modality)
    section = paired_section(comparisons, cfg.search.objective)
    table = write_leaderboard(dirs.root, board, cfg.report.leaderboard, section)
    summary_run = state.top_parent_id or state.runs[state.methods[0]].parent_id
    tracker.log_artifacts(summary_run, [dirs.root / LEADERBOARD_FILE, dirs.root / LEADERBOARD_CSV])
    report = write_report(read_search(dirs.root))  # report.md, report.html (clear_ray/report)
    tracker.log_artifacts(summary_run, report)
    if state.top_parent_id:
        tracker.finish(state.top_parent_id)
    tracker.wait_delivered()
    print(f"\nLeaderboard:\n{table}\n")
    print(f"Report (Table 1, L1 question, plots): {report[1]}")
    print(f"Search {state.name} took {time.time() - started:.0f} s; files in {dirs.root}")
    page = tracker.run_page(summary_run)
    serve = "" if tracker.run_url(summary_run) else f"{ui_command(tracker.uri)}\n  then open "
    print(f"Open MLflow with:\n  {serve}{page}")
    print(f"Open the Optuna studies with:\n  {dashboard_command(optuna_storage)}")
    for failure in failures:
        log(failure)
    return 1 if failures else 0


def log_references(tracker, run_id: str, refs: References) -> None:
    """Original/Gold metrics and Gold's per-item values, once per search."""
    for name in ("original", "gold"):
        evaluation, full = getattr(refs, name), getattr(refs, f"{name}_full")
        tracker.log_metrics(run_id, evaluation.metrics, prefix=f"{name}/")
        tracker.log_artifacts(run_id, [Path(evaluation.directory)], f"reference/{name}")
        if Path(full.directory) != Path(evaluation.directory):  # else the same evaluation
            tracker.log_metrics(run_id, full.metrics, prefix=f"{name}_full/")
            tracker.log_artifacts(run_id, [Path(full.directory)], f"reference/{name}_full")


def untuned(params: dict, *spaces: dict) -> dict:
    """Config params without the searched ones: their defaults were never used (each trial's
    value is its child run's param; the space is the parent's ``search_space.*``)."""
    return {key: value for key, value in params.items() if not any(key in s for s in spaces)}


def search_method(search: Search, method: str, space: dict) -> None:
    """One Tune search for ``method``: trials, reports, final evaluation, registered adapter."""
    from ray import tune

    from clear_ray.data.clear import data_fingerprint
    from clear_ray.search.cleanup import TrainGroupReaper
    from clear_ray.search.progress import ProgressPrinter
    from clear_ray.search.results import (
        LeaderboardRow,
        TrialMetrics,
        all_failed,
        trial_ids,
        trial_rows,
    )
    from clear_ray.search.session import MethodRun, storage_filesystem
    from clear_ray.search.strategy import (
        RetainCollapseStopper,
        build_scheduler,
        build_searcher,
        trial_count,
    )
    from clear_ray.search.trainable import trial_trainable
    from clear_ray.tracking import TrialLogger
    from clear_ray.train.selection import Thresholds

    cfg = search.cfg.replace({"method.name": method})
    state, dirs, refs, tracker = search.state, search.dirs, search.refs, search.tracker
    thresholds = search.thresholds
    method_dir = dirs.method(method)
    resuming = method in state.runs
    if resuming:
        parent_id = tracker.reopen(state.runs[method].parent_id)
    else:
        parent_id = tracker.start_parent(
            f"{state.name}-{method}" if state.top_parent_id else state.name,
            params={
                **untuned(cfg.to_flat(), space),
                **{f"search_space.{k}": v for k, v in describe(space).items()},
                "search.min_retain_metric": thresholds.min_retain_metric,
                "search.min_model_utility": thresholds.min_model_utility,
                "search.retain_floor_metric": thresholds.retain_floor,
            },
            tags={
                **search.tags,
                "clear_ray.role": "search",
                "method": method,
                "modality": cfg.data.modality,
                "data_fingerprint": data_fingerprint(
                    refs.source, [f"{cfg.data.forget_split}+tofu"]
                ),
                "search_space": state.space_origins[method],
            },
            parent_id=state.top_parent_id,
        )
        state.runs[method] = MethodRun(parent_id)
        dirs.save(state)
        if not state.top_parent_id:
            log_references(tracker, parent_id, refs)
        tracker.log_artifacts(parent_id, [dirs.root / FOLDS_FILE])
    log(f"{method}: MLflow run {tracker.run_page(parent_id)}")

    num_samples = trial_count(cfg.search, space)
    trainable = trial_trainable(cfg, search.inputs, dirs.ray_train)
    experiment = dirs.tune_experiment(method)
    reaper = TrainGroupReaper()  # frees what a stopped trial's Train run held (cleanup.py)
    callbacks = [
        TrialLogger(
            tracker,
            cfg.to_flat(),
            dirs.adapters(method),
            thresholds,
            cfg.train.epochs,
            search.tags,
            storage_filesystem(dirs.storage)[0],
        ),
        ProgressPrinter(
            cfg.search.objective,
            num_samples,
            thresholds,
            cfg.train.epochs,
            cfg.search.max_concurrent,
        ),
        reaper,
    ]
    restorable = resuming and tune.Tuner.can_restore(experiment)
    searched = restorable and state.runs[method].stage != SEARCH
    if restorable:
        log(
            f"{method}: the search finished before the resume; reading its results from "
            f"{experiment}"
            if searched
            else f"{method}: resuming the Tune experiment in {experiment}"
        )
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=False)
        use_callbacks(tuner, callbacks)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=build_searcher(
                    cfg.search,
                    space,
                    dirs.optuna_storage(cfg.search.optuna_storage),
                    dirs.study_name(method),
                    str(method_dir / "optuna_trials.csv"),
                ),
                scheduler=build_scheduler(cfg.search, cfg.train.epochs),
                num_samples=num_samples,
            ),
            run_config=tune.RunConfig(
                name=method,
                storage_path=dirs.ray_results,
                # A trial whose driver died with its node starts again (from its last epoch
                # checkpoint); errors the driver raises are not retried (trainable.FinalError).
                failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures),
                stop=RetainCollapseStopper(thresholds),
                callbacks=callbacks,
                verbose=0,
            ),
        )
    results = tuner.get_results() if searched else tuner.fit()
    # A restored Tuner calls its own unpickled copy of the reaper (search/cleanup.py), so the
    # trials are named here; the final evaluation and the next method need those CPUs.
    reaper.track(trial_ids(results))
    reaper.reap(wait_s=REAP_WAIT_S)
    if tracker.outage:  # Tune stopped (its state saved) because MLflow stayed away
        raise tracker.outage
    rows = trial_rows(results, dirs.adapters(method), TrialMetrics.of(cfg.search))
    run_ids = tracker.child_ids()
    rewrite_optuna_csv(cfg, dirs, method, run_ids)
    failure = all_failed(method, rows)
    if failure:  # nothing to report, evaluate or rank: the search ends saying why (run)
        failure += f"; tracebacks: error.txt in each trial's folder under {experiment}"
        tracker.finish(parent_id, "FAILED", {"error": failure})
        state.runs[method].status, state.runs[method].failure = FAILED, failure
        dirs.save(state)
        return
    references = {
        name: (
            evaluation.metrics.get(thresholds.retain_metric, math.nan),
            evaluation.metrics.get(cfg.search.objective, math.nan),
        )
        for name, evaluation in (("Original", refs.original), ("Gold", refs.gold))
    }
    report_trials(cfg, rows, sorted(space), method_dir, thresholds, tracker, parent_id, references)
    summarise_parent(cfg, rows, sorted(space), thresholds, tracker, parent_id, run_ids)

    best = rows[0] if rows and rows[0].adapter else None
    outcome = LeaderboardRow(method, {}, "no", "none")
    if best is None:
        log(f"{method}: no trial produced an adapter")
    else:
        final = (searched and read_final_evaluation(method_dir, best.adapter)) or {}
        if not final:
            final = final_evaluation(cfg, best.adapter, search, method_dir / FINAL_DIR)
            tracker.log_metrics(parent_id, final, prefix="final/")
            tracker.log_artifacts(parent_id, [method_dir / FINAL_DIR], "final_evaluation")
            state.runs[method].stage = CONFIRM
            dirs.save(state)
        report_diagnostics(cfg, rows, space, best, final, refs, tracker, parent_id)
        # Feasible at full evaluation: thresholds from Original's full evaluation.
        full_thresholds = Thresholds.from_search(cfg.search, refs.original_full.metrics)
        feasible = full_thresholds.constraint(final) <= 0
        outcome = LeaderboardRow(method, final, "yes" if feasible else "no", best.trial)
        if cfg.search.confirm_seeds:
            tuned, default = confirm_method(search, method, space, best, full_thresholds)
            outcome, state.runs[method].default_outcome = tuned, asdict(default)
        # After the confirm runs, so that their adapters are checked too; the leaderboard row
        # shows the checks of the models its numbers come from (the seeds' mean, or the best).
        robust = robustness(cfg, search, method, Path(best.adapter), parent_id)
        final = {**final, **robust}
        outcome = replace(outcome, metrics={**outcome.metrics, **robust})
        if best.feasible:
            child = tracker.find_child(best.trial)
            if child:
                from clear_ray.serving import best_model_card, original_reference, register_best

                original = original_reference(refs.original_model, cfg.model.original)
                card = best_model_card(cfg, search, best, final, feasible, original)
                model_name = f"clear_ray-{method}"
                adapter, precision = Path(best.adapter), cfg.train.precision
                register_best(tracker, model_name, child, adapter, original, card, precision)
                log(
                    f"{method}: best model registered, mlflow.pyfunc.load_model"
                    f'("models:/{model_name}@best")'
                )
    tracker.finish(parent_id, "FINISHED", {"best_trial": best.trial if best else "none"})
    state.runs[method].status = "done"
    state.runs[method].outcome = asdict(outcome)
    dirs.save(state)


def use_callbacks(tuner, callbacks: list) -> None:
    """A restored Tuner calls these callbacks, not the copies Tune pickled when the search
    first started: those hold that process's tracker (its outage state, which this driver
    reads after ``fit``), reaper and clock. ``Tuner.restore`` takes no callbacks, so they are
    set on its run config (``Tuner._local_tuner``, private Ray API; the slow resume tests
    exercise it)."""
    tuner._local_tuner.get_run_config().callbacks = callbacks


def announce_folds(folds: PersonFolds, dirs: SearchDirs) -> None:
    """Say which forget persons the search selects on and reports on; write folds.json."""
    folds.save(dirs.root / FOLDS_FILE)
    if folds.active:
        log(f"selects on the {folds.describe(SELECTION)}")
        log(f"reports on the {folds.describe(REPORT)}")
        log(folds.describe_unassigned())
    else:
        log(f"{folds.describe(SELECTION)}: reported numbers are optimistic (winner's curse)")


def fold_tag(folds: PersonFolds) -> str:
    """The runs' ``folds`` tag: how selection and report are separated."""
    if not folds.active:
        return "none (report_fraction 0: selection and report on the same persons)"
    return f"selection {len(folds.selection)} / report {len(folds.report)} persons"


def leaderboard_heading(
    folds: PersonFolds, confirm_seeds: int, thresholds: Thresholds | None = None
) -> str:
    where = (
        f"report fold ({', '.join(folds.report)}), selected on the selection fold "
        f"({', '.join(folds.selection)}); feasibility out of sample, on the report fold's "
        f"{len(folds.retain_report)} retain persons"
        if folds.active
        else "NO FOLDS (--report-fraction 0): selected and reported on the same forget persons"
    )
    seeds = (
        f"tuned and default rows: mean ± sd over {counted(confirm_seeds, 'confirm seed')}"
        if confirm_seeds
        else "each method: its best trial's checkpoint (no confirm seeds)"
    )
    selected = ""
    if thresholds is not None and thresholds.max_relearn_recovery is not None:
        selected = (
            f" Trials selected feasible only with relearn recovery <= "
            f"{thresholds.max_relearn_recovery:g} at their end, on the selection fold."
        )
    return f"Full evaluations on the {where}; {seeds}.{selected}"


def report_diagnostics(
    cfg: Config, rows, space: dict, best, final: dict, refs: References, tracker, run_id
) -> None:
    """Top-k mean, the winner's optimism and bests at a range's edge: console and parent run.

    Optimism compares the winner's share of the Original-to-Gold gap closed on each fold, with
    Original's and Gold's values on that fold: the per-epoch references (``refs.original``,
    ``refs.gold``) on the selection fold, the full ones on the report fold.
    """
    from clear_ray.search.diagnostics import FoldObjectives, diagnostics_metrics, edge_dimensions

    objective, k = cfg.search.objective, cfg.search.top_k
    feasible = [row.best_objective for row in rows if row.feasible]
    selection = FoldObjectives(
        best.best_objective,
        refs.original.metrics.get(objective, math.nan),
        refs.gold.metrics.get(objective, math.nan),
    )
    report = FoldObjectives(
        final.get(objective, math.nan),
        refs.original_full.metrics.get(objective, math.nan),
        refs.gold_full.metrics.get(objective, math.nan),
    )
    proxy = cfg.eval.proxy_items > 0
    values = diagnostics_metrics(feasible, k, selection, report, proxy)
    tracker.log_metrics(run_id, values)
    edges = edge_dimensions(best.params, space)
    tracker.set_tags(run_id, {"diagnostics.edge_params": ",".join(edges) or "none"})
    optimism = (
        f"optimism {values['diagnostics/optimism']:+.3g}"
        if not proxy
        else f"no optimism: the per-epoch evaluation is a proxy of {cfg.eval.proxy_items} items "
        "per task, not comparable with the report's full evaluation"
    )
    print(
        f"{cfg.method.name}: mean {objective} of the top {min(k, len(feasible))} feasible "
        f"trial(s) {values[f'diagnostics/top{k}_mean_objective']:.4g} (each its best epoch on "
        f"the selection fold); winner {selection.winner:.4g} on selection, {report.winner:.4g} "
        f"on report, closing {values['diagnostics/winner_selection_gap_closed']:.0%} and "
        f"{values['diagnostics/winner_report_gap_closed']:.0%} of each fold's Original-to-Gold "
        f"gap ({optimism})",
        flush=True,
    )
    for path, side in edges.items():
        print(
            f"WARNING {cfg.method.name}: best {path}={best.params[path]:.4g} is in the outer "
            f"10% of its range ({side} end): widen the space",
            flush=True,
        )


def confirm_method(search: Search, method: str, space: dict, best, thresholds):
    """The selected and the default configuration, each trained with fresh seeds and fully
    evaluated on the report fold (search/confirm.py); writes confirm.json and returns the two
    leaderboard rows (mean ± sd). Resumed, it keeps what confirm.json or the seed records on
    disk hold and runs only what ``plan_confirm`` says is left."""
    from clear_ray.search.confirm import (
        CONFIRM_FILE,
        DEFAULT,
        TUNED,
        Configuration,
        confirm_seeds,
        default_params,
        read_confirm,
        write_confirm,
    )

    cfg = search.cfg.replace({"method.name": method})
    tracker = search.tracker
    origin = Path(search.state.space_origins[method])
    published = load_defaults(origin.stem, origin.parent)
    seeds = confirm_seeds(cfg.train.seed, cfg.search.confirm_seeds)
    path = search.dirs.method(method) / CONFIRM_FILE
    record = read_confirm(path, seeds)
    if record is not None:
        log(f"{method}: confirm runs done before the resume, kept ({path})")
        tracker.log_artifacts(tracker.parent_id, [path])
        log_comparison(search, method, record)
        return confirm_rows(method, record)
    configurations = {
        TUNED: Configuration(
            {p: best.params[p] for p in sorted(space)}, best.best_epoch, best.trial
        ),
        DEFAULT: Configuration(
            default_params(cfg.to_flat(), space, published), cfg.train.epochs, None
        ),
    }
    log(
        f"{method}: default configuration = the published setting: "
        + "; ".join(
            f"{path}={value:g} ({published[path].source})"
            if isinstance(value, float)
            else f"{path}={value} ({published[path].source})"
            for path, value in configurations[DEFAULT].params.items()
        )
    )
    confirm_configurations(search, method, configurations, seeds, thresholds)
    written = write_confirm(path, method, seeds, configurations)
    tracker.log_artifacts(tracker.parent_id, [path])
    log_comparison(search, method, written)
    return confirm_rows(method, written)


def comparison_of(search: Search, record: dict):
    """Tuned − default of a confirm.json record on the objective, paired by seed, infeasible
    runs at Original's value on the report fold (search/confirm.py ``seed_comparison``)."""
    from clear_ray.search.confirm import seed_comparison

    objective = search.cfg.search.objective
    original = search.refs.original_full.metrics.get(objective, math.nan)
    return seed_comparison(record, objective, original)


def log_comparison(search: Search, method: str, record: dict) -> None:
    """The paired difference on the method's run (``confirm/*``, tag ``confirm.verdict``) and
    the console."""
    from clear_ray.report.paired import comparison_metrics

    comparison, tracker = comparison_of(search, record), search.tracker
    tracker.log_metrics(tracker.parent_id, comparison_metrics(comparison))
    for seed, difference in zip(comparison.seeds, comparison.differences, strict=True):
        tracker.log_metrics(tracker.parent_id, {"confirm/difference": difference}, step=seed)
    tracker.set_tags(tracker.parent_id, {"confirm.verdict": comparison.verdict()})
    log(f"{method}: tuned − default on {search.cfg.search.objective}: {comparison.verdict()}")


def confirm_configurations(
    search: Search, method: str, configurations: dict, seeds: list[int], thresholds
) -> None:
    """Fixed configurations (label -> Configuration) trained once per seed, together (child
    runs tagged ``configuration: label``), and fully evaluated on the report fold; sets each
    ``configuration.runs``. Resumed, it keeps the seeds whose records are complete and trains
    or evaluates only the rest."""
    from clear_ray.search.confirm import (
        confirm_children,
        confirm_dir,
        plan_confirm,
        read_seed_records,
        train_fixed,
    )

    cfg = search.cfg.replace({"method.name": method})
    tracker = search.tracker
    outs = {label: confirm_dir(search.dirs, method, label) for label in configurations}
    every_child = tracker.children()  # one MLflow query for all configurations
    plans = {}
    for label, configuration in configurations.items():
        children = confirm_children(every_child, label)
        plan = plan_confirm(configuration, seeds, read_seed_records(outs[label]), children)
        if plan.keep or plan.evaluate or plan.discard:
            log(
                f"{method}: {label} configuration resumed: seeds {sorted(plan.keep)} kept, "
                f"{sorted(plan.evaluate)} to evaluate, {plan.train} to train; "
                f"{len(plan.discard)} unfinished MLflow run(s) deleted"
            )
        tracker.delete_runs(plan.discard)
        plans[label] = plan
    runs = {
        label: (configurations[label], plan.train) for label, plan in plans.items() if plan.train
    }
    for label, (configuration, train) in runs.items():
        log(
            f"{method}: confirming the {label} configuration "
            f"({counted(configuration.epochs, 'epoch')}) with seeds {train}"
        )
    trained = {}
    if runs:
        trained = train_fixed(
            cfg, search.inputs, search.dirs, method, runs, tracker, search.tags,
            lambda line: log(f"{method}: {line}"),
        )  # fmt: skip
    pending = {
        outs[label]: {**plan.evaluate, **trained.get(label, {})} for label, plan in plans.items()
    }
    evaluated = evaluate_confirm_runs(search, cfg, pending, thresholds)
    for label, configuration in configurations.items():
        done = {**plans[label].keep, **evaluated[outs[label]]}
        configuration.runs = [done[seed].run() for seed in sorted(done)]


def evaluate_confirm_runs(
    search: Search, cfg: Config, trained: dict[Path, dict], thresholds
) -> dict[Path, dict]:
    """Full evaluation of trained confirm runs (by configuration folder, by seed) on the report
    fold, as Ray tasks all at once: per seed, its evaluation folder, ``final/*`` and the
    adapter on its child run, and its seed record completed (so that a resumed search keeps
    it)."""
    from clear_ray.eval.final import evaluate_adapter, full_eval_config, read_adapter
    from clear_ray.evaluate import write_outputs
    from clear_ray.search.confirm import write_seed_record
    from clear_ray.search.driver_tasks import each_result, trial_task

    refs, tracker = search.refs, search.tracker
    task = trial_task(evaluate_adapter, cfg.search)
    pending = {
        (out, seed): task.remote(
            search.inputs.original_dir,
            read_adapter(Path(record.adapter)),
            search.inputs.source,
            cfg.data.forget_split,
            full_eval_config(cfg.eval),
            refs.gold_full.reference,
            cfg.data.modality,
            cfg.train.precision,
            refs.folds.fold(REPORT),
        )
        for out, records in trained.items()
        for seed, record in records.items()
    }
    run_ids = tracker.child_ids()
    evaluated: dict[Path, dict] = {out: {} for out in trained}
    for (out, seed), result in each_result(pending, "the confirm evaluations", cfg.search):
        record = trained[out][seed]
        write_outputs(out / f"seed-{seed}-evaluation", {"metrics": result.metrics}, result.tasks)
        run_id = run_ids.get(record.trial, "")
        if run_id:
            tracker.log_metrics(run_id, result.metrics, prefix="final/")
            tracker.log_artifacts(run_id, [Path(record.adapter)], "adapter")
        feasible = thresholds.constraint(result.metrics) <= 0
        done = replace(record, run_id=run_id, metrics=result.metrics, feasible=feasible)
        evaluated[out][seed] = done
        write_seed_record(out, done)
    return evaluated


def confirm_rows(method: str, record: dict):
    """The tuned and the default leaderboard rows (mean ± sd over seeds) of a confirm.json."""
    from clear_ray.search.confirm import DEFAULT, TUNED
    from clear_ray.search.results import LeaderboardRow

    rows = []
    for label in (TUNED, DEFAULT):
        summary = record["configurations"][label]
        runs = summary["runs"]
        rows.append(
            LeaderboardRow(
                f"{method} ({label}, {counted(len(runs), 'seed')})",
                summary["mean"],
                f"{sum(run['feasible'] for run in runs)}/{len(runs)}",
                summary["trial"] or "defaults",
                summary["sd"],
            )
        )
    return rows[0], rows[1]


def rewrite_optuna_csv(cfg: Config, dirs: SearchDirs, method: str, run_ids: dict) -> None:
    """optuna_trials.csv again, now with each trial's MLflow run id (the searcher wrote it
    after every trial without them: it does not know the runs)."""
    import optuna

    from clear_ray.search.constrained import write_trials_csv
    from clear_ray.search.strategy import objective_keys

    study = optuna.load_study(
        study_name=dirs.study_name(method),
        storage=dirs.optuna_storage(cfg.search.optuna_storage),
    )
    path = dirs.method(method) / "optuna_trials.csv"
    write_trials_csv(study, path, objective_keys(cfg.search), run_ids)


def summarise_parent(cfg, rows, param_names, thresholds, tracker, run_id, run_ids) -> None:
    """The best feasible trial on its search's run: ``best/*`` metrics, ``best.<path>``
    params and a Description that says how to open it."""
    from clear_ray.tracking import best_metrics, search_description

    best = rows[0] if rows and rows[0].feasible else None
    params = {name: best.params[name] for name in param_names} if best else {}
    if best:
        tracker.log_metrics(run_id, best_metrics(best.best, cfg.search.objective))
        tracker.log_params(run_id, {f"best.{name}": value for name, value in params.items()})
    text = search_description(
        cfg.method.name,
        cfg.search.objective,
        thresholds,
        best.trial if best else None,
        run_ids.get(best.trial) if best else None,
        params,
    )
    tracker.describe(run_id, text)


def report_trials(
    cfg, rows, param_names, method_dir, thresholds, tracker, run_id, references
) -> None:
    """Trial table, Optuna's own record, plots with Original and Gold marked (and the Pareto
    front): printed and logged."""
    from clear_ray.search.pareto import pareto_front
    from clear_ray.search.plots import TrialPoint, search_plots
    from clear_ray.search.results import TrialMetrics, markdown_table, write_csv

    shown = TrialMetrics.of(cfg.search)
    method_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, param_names, shown)
    files = [method_dir / "trials.md", method_dir / "trials.csv"]
    files[0].write_text(table + "\n")
    write_csv(rows, param_names, files[1], shown)
    if (method_dir / "optuna_trials.csv").is_file():
        files.append(method_dir / "optuna_trials.csv")
    print(f"\n{cfg.method.name}: trials (objective = {cfg.search.objective}, feasible first):")
    print(table, flush=True)
    if cfg.search.multi_objective:
        feasible = [row for row in rows if row.feasible]
        front = [
            feasible[i]
            for i in pareto_front([(r.best_objective, r.best_model_utility) for r in feasible])
        ]
        pareto = markdown_table(front, param_names, shown)
        (method_dir / "pareto_front.md").write_text(pareto + "\n")
        files.append(method_dir / "pareto_front.md")
        print(f"\nPareto front ({cfg.search.objective} vs {shown.utility}, feasible trials):")
        print(pareto, flush=True)
    points = [
        TrialPoint(
            number=row.number,
            objective=row.best_objective,
            retain=row.best_retain_metric,
            utility=row.best_model_utility,
            feasible=row.feasible,
            params=row.params,
        )
        for row in sorted(rows, key=lambda row: row.number)
    ]
    plots = search_plots(
        points,
        method_dir / "plots",
        cfg.search.objective,
        thresholds.min_retain_metric,
        cfg.search.multi_objective,
        references,
    )
    tracker.log_artifacts(run_id, files)
    tracker.log_artifacts(run_id, plots, "plots")
    best = rows[0] if rows else None
    if best and best.feasible:
        params = ", ".join(f"{name}={best.params[name]:.4g}" for name in param_names)
        print(f"Best feasible trial {best.trial} (epoch {best.best_epoch}): {params}")
    else:
        print("No trial met the thresholds; lower --min-retain or widen the space.")


def read_final_evaluation(method_dir: Path, adapter: str) -> dict[str, float]:
    """The best trial's final evaluation a resumed search finds on disk (empty if none, or of
    another adapter)."""
    path = method_dir / FINAL_DIR / "metrics.json"
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text())
    return summary["metrics"] if summary.get("adapter") == adapter else {}


def final_evaluation(cfg: Config, adapter: str, search: Search, out: Path) -> dict[str, float]:
    """Full evaluation of the best trial's best-epoch adapter; per-item values go to ``out``."""
    from clear_ray.eval.final import full_eval_config, run_final_evaluation
    from clear_ray.evaluate import write_outputs

    log(f"{cfg.method.name}: full evaluation of the best trial ({adapter})")
    refs = search.refs
    result = run_final_evaluation(
        cfg,
        search.inputs.original_dir,
        Path(adapter),
        search.inputs.source,
        refs.gold_full.reference,
        refs.folds.fold(REPORT),
    )
    summary = {
        "eval_kind": result.eval_kind,
        "checkpoint": refs.original_dir,
        "adapter": adapter,
        "data": refs.source,
        "forget_split": cfg.data.forget_split,
        "modality": cfg.data.modality,
        "fold": "report" if refs.folds.active else "none (report_fraction 0)",
        "eval": vars(full_eval_config(cfg.eval)),
        "metrics": result.metrics,
    }
    write_outputs(out, summary, result.tasks)
    return result.metrics


def robustness(
    cfg: Config, search: Search, method: str, adapter: Path, parent_id: str
) -> dict[str, float]:
    """``robust.checks`` on the best trial and the tuned configuration's confirm-seed runs:
    robustness.json in the method's folder, the best trial's ``robust/*`` on its run. Returns
    the seeds' mean when there are confirm runs (the leaderboard's tuned row), else the best's."""
    from clear_ray.robust.run import (
        BEST,
        confirm_adapters,
        mean_metrics,
        merged_metrics,
        report_persons,
        run_checks,
        write_robustness,
    )

    names = cfg.robust.names()
    if not names:
        return {}
    method_dir = search.dirs.method(method)
    adapters = {BEST: adapter, **confirm_adapters(method_dir)}
    refs = search.refs
    persons = report_persons(search.dirs.root, refs.source, cfg.data.forget_split)
    log(f"{method}: robustness checks {', '.join(names)} on {len(adapters)} model(s), "
        f"{len(persons)} forget persons (Ray tasks, cached)")  # fmt: skip
    outcomes = run_checks(
        cfg, names, adapters, refs.original_model, refs.gold_model, refs.staged_source, persons
    )
    summary, details = write_robustness(method_dir, outcomes)
    for label, checks in outcomes.items():
        for name, outcome in checks.items():
            notes = "".join(f"; {note}" for note in outcome.result.notes)
            log(f"{method}: {label} {name} took {outcome.seconds:.0f} s{notes}")
    best = merged_metrics(outcomes[BEST])
    search.tracker.log_metrics(parent_id, best)
    search.tracker.log_artifacts(parent_id, [summary])
    search.tracker.log_artifacts(parent_id, [details], "robustness")
    seeds = [merged_metrics(checks) for label, checks in outcomes.items() if label != BEST]
    return mean_metrics(seeds) if seeds else best


def reference_table(original: dict, gold: dict, thresholds) -> str:
    from clear_ray.search.results import task_summary

    keys = (
        "clear/forget_metric",
        thresholds.retain_metric,
        "clear/log_forget_quality",
        "log_forget_quality",
    )
    lines = [f"{'':10}" + "".join(f"{k:>26}" for k in keys)]
    for name, values in (("Original", original), ("Gold", gold)):
        lines.append(f"{name:10}" + "".join(f"{values.get(k, float('nan')):>26.4g}" for k in keys))
    lines.append(f"Original per task: {task_summary(original) or 'none compared'}")
    lines.append(f"feasible iff {thresholds.describe()}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        output = Path(getattr(args, "output_dir", None) or Config().output_dir).resolve()
        print("\n".join(list_lines(output)))
        return 0
    try:
        cfg, state, dirs = plan_search(args)
        spaces = load_spaces(cfg, state)
        if args.dry_run:
            print(dry_run(args, cfg, state, spaces))
            return 0
        check_inputs(cfg)
        if args.resume:
            log(f"resuming search {state.name} with its saved configuration")
        with Driver(dirs.root) as driver:
            return drive(driver, cfg, state, dirs, spaces)
    except ConfigError as error:
        print(error_line(error, FLAGS), file=sys.stderr)
        return 2
    except SearchStopped as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def drive(driver: Driver, cfg: Config, state: SearchState, dirs: SearchDirs, spaces) -> int:
    """``run``, with how it ended written for ``--list`` and the next search in the folder;
    a tracking outage past its limit ends in one line that says how to go on (exit 3)."""
    from clear_ray.tracking import TrackingOutage

    try:
        code = run(cfg, state, dirs, spaces)
    except TrackingOutage as outage:
        line = (
            f"{outage} (tracking.max_outage_s={cfg.tracking.max_outage_s:g}): search "
            f"{state.name} stopped; trial results and checkpoints are kept, and "
            f"{outage.pending} tracking call(s) wait in {dirs.root / OUTBOX_FILE}. Once the "
            f"server is back: {resume_command(dirs.output, state.name)}"
        )
        driver.end(STOPPED, line)
        print(line, file=sys.stderr, flush=True)
        return STOPPED_EXIT
    failures = [state.runs[m].failure for m in state.methods if state.runs[m].status == FAILED]
    driver.end(FAILED if code else FINISHED, "; ".join(failures))
    return code


if __name__ == "__main__":
    sys.exit(main())
