"""python -m clear_ray.tune --method dpo: a constrained hyperparameter search per method.

Parses the flags (or finds the search to ``--resume``), then hands the search to
``clear_ray.pipeline``: plan and checks, then the study (``pipeline/study.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from clear_ray.cli.flags import (
    DATA_FLAGS,
    HelpFormatter,
    add_config_flags,
    add_set_flag,
    dry_run_lines,
    error_line,
    overrides_from,
)
from clear_ray.config import Config, resolve_config
from clear_ray.console import log
from clear_ray.errors import ConfigError, SearchStopped
from clear_ray.methods import METHODS
from clear_ray.models.presets import get_preset
from clear_ray.pipeline.plan import (
    check_inputs,
    load_spaces,
    memory_lines,
    method_fields_line,
    new_search,
    next_name,
    resumed_search,
)
from clear_ray.pipeline.study import drive
from clear_ray.search.driver import Driver, list_lines
from clear_ray.search.session import SearchDirs, SearchState
from clear_ray.search.space import space_lines

# flag -> dotted config path; defaults and types come from Config, never from here.
FLAGS = {
    **DATA_FLAGS,
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
        "<= this fraction of the forgotten beyond what it teaches Gold (worst over "
        "robust.relearn_lrs), in [0, 1]; default: off",
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


def output_dir(args: argparse.Namespace) -> Path:
    """``--output-dir`` as given, else the config's default: where searches are found."""
    return Path(getattr(args, "output_dir", None) or Config().output_dir).resolve()


def plan_search(args: argparse.Namespace) -> tuple[Config, SearchState, SearchDirs]:
    """The config and the search's saved state: new from the flags, or loaded to resume."""
    if args.resume:
        return resumed_search(output_dir(args), args.resume)
    cfg = resolve_config({"method.name": args.method, **overrides_from(args, FLAGS)}).validate()
    return new_search(cfg, args.method, args.search_space)


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
        lines.append(method_fields_line(cfg, method, Path(state.space_origins[method])))
    return "\n".join([*lines, *memory_lines(cfg, state.methods)])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print("\n".join(list_lines(output_dir(args))))
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
        with ExitStack() as stack:
            while True:
                try:
                    driver = stack.enter_context(Driver(dirs.root, new=not args.resume))
                    break
                except FileExistsError:  # another search started in the same second
                    state, dirs = next_name(cfg, state)
            return drive(driver, cfg, state, dirs, spaces)
    except ConfigError as error:
        print(error_line(error, FLAGS), file=sys.stderr)
        return 2
    except SearchStopped as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
