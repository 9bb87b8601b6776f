"""python -m clear_ray.tune --method dpo: a constrained hyperparameter search for one method.

Reads top to bottom: parse → resolve config → prepare data and Original/Gold → build the
Tuner → run → report. Objective: maximise ``search.objective`` (log forget quality) subject to
``retain_metric ≥ min_retain × Original's retain_metric``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from clear_ray.cli import add_config_flags, add_set_flag, overrides_from
from clear_ray.config import Config, ConfigError
from clear_ray.methods import METHODS
from clear_ray.search.space import describe, load_space
from clear_ray.train.selection import Thresholds

# flag -> dotted config path; defaults and types come from Config, never from here.
FLAGS = {
    "--data": ("data.source", "hub id (therem/CLEAR) or local CLEAR dir; default: synthetic"),
    "--model": ("model.preset", "model preset (tiny-llava, llava-1.5-7b)"),
    "--forget-split": ("data.forget_split", "forget01 | forget05 | forget10"),
    "--modality": ("data.modality", "forget text QA rows, visual image rows, or both"),
    "--num-samples": ("search.num_samples", "number of trials"),
    "--epochs": ("train.epochs", "unlearning epochs per trial"),
    "--max-concurrent": ("search.max_concurrent", "trials running at once"),
    "--workers-per-trial": ("search.workers_per_trial", "Ray Train workers per trial"),
    "--gpus-per-trial": ("search.gpus_per_trial", "GPUs per trial (0 = CPU with gloo)"),
    "--min-retain": ("search.min_retain", "feasible iff retain_metric >= this x Original's"),
    "--tracking-uri": (
        "tracking.tracking_uri",
        "MLflow tracking URI; default: sqlite in output dir",
    ),
    "--experiment": ("tracking.experiment", "MLflow experiment name"),
    "--output-dir": ("output_dir", "where data, model cache, Ray results and MLflow go"),
    "--seed": ("search.seed", "seed of the Optuna sampler"),
}


def build_parser() -> argparse.ArgumentParser:
    defaults = Config().to_flat()
    parser = argparse.ArgumentParser(
        prog="python -m clear_ray.tune",
        description=(
            "Search one unlearning method's hyperparameters with Ray Tune + Optuna (TPE): "
            "maximise forget quality subject to a retain threshold. Each trial unlearns with "
            "LoRA under Ray Train + DeepSpeed; every trial is an MLflow child run."
        ),
        epilog="Any config field can be set with --set PATH=VALUE, e.g. --set train.lr=1e-4.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--method",
        default=defaults["method.name"],
        choices=sorted(METHODS),
        help="unlearning method; its space is search_spaces/<method>.yaml",
    )
    parser.add_argument(
        "--search-space",
        type=Path,
        default=None,
        help="YAML search space (default: search_spaces/<method>.yaml)",
    )
    add_config_flags(parser, FLAGS, defaults)
    add_set_flag(parser)
    return parser


def resolve_config(args: argparse.Namespace) -> Config:
    overrides = {"method.name": args.method, **overrides_from(args, FLAGS)}
    return Config().replace(overrides)


def log(message: str) -> None:
    print(f"[clear_ray] {message}", file=sys.stderr, flush=True)


def run_search(cfg: Config, space: dict, space_origin: str) -> int:
    import ray
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    # Heavy imports (torch, transformers, mlflow, ray) come after argument parsing, so that
    # --help and bad input answer at once.
    from clear_ray.data.clear import data_fingerprint
    from clear_ray.data.source import resolve_source
    from clear_ray.eval.gold import reference_evaluation
    from clear_ray.eval.suite import FORGET_QUALITY_TASK
    from clear_ray.eval.tasks import resolve_task_names
    from clear_ray.finetune import reference_models
    from clear_ray.search.constrained import ConstrainedOptunaSearch
    from clear_ray.search.progress import ProgressPrinter
    from clear_ray.search.results import markdown_table, trial_rows, write_csv
    from clear_ray.search.trainable import DRIVER_CPUS, make_trainable
    from clear_ray.tracking import SearchTracker, TrialLogger, ui_command
    from clear_ray.train.loop import TrialInputs

    output = Path(cfg.output_dir).resolve()
    cfg = cfg.replace({"output_dir": str(output)})
    started = time.time()

    if FORGET_QUALITY_TASK not in resolve_task_names(cfg.eval.tasks):
        raise ConfigError(f"eval.tasks must include {FORGET_QUALITY_TASK} (the search objective)")
    source = resolve_source(cfg)
    log(f"data: {source}")
    models = reference_models(cfg, source, output / "cache")
    log("evaluating Gold and Original (cached after the first run)")
    gold = reference_evaluation(models.gold, source, cfg.data.forget_split, cfg.eval)
    original = reference_evaluation(
        models.original, source, cfg.data.forget_split, cfg.eval, gold.forget_truth_ratios
    )
    thresholds = Thresholds(
        objective=cfg.search.objective,
        min_retain_metric=cfg.search.min_retain * original.metrics["retain_metric"],
    )
    print(reference_table(original.metrics, gold.metrics, thresholds), flush=True)

    tracker = SearchTracker(cfg)
    run_name = f"{cfg.method.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent_id = tracker.start_parent(
        run_name,
        params={
            **cfg.to_flat(),
            **{f"search_space.{k}": v for k, v in describe(space).items()},
            "search.min_retain_metric": thresholds.min_retain_metric,
        },
        tags={
            "clear_ray.role": "search",
            "method": cfg.method.name,
            "model": cfg.model.preset,
            "data": source,
            "data_fingerprint": data_fingerprint(source, [f"{cfg.data.forget_split}+tofu"]),
            "search_space": space_origin,
        },
    )
    tracker.log_metrics(parent_id, original.metrics, prefix="original/")
    tracker.log_metrics(parent_id, gold.metrics, prefix="gold/")
    log(f"MLflow parent run {parent_id} in {tracker.uri}")

    inputs = TrialInputs(source, str(models.original), gold.forget_truth_ratios, thresholds)
    adapters_dir = output / "adapters" / run_name
    searcher = ConstrainedOptunaSearch(
        space=space,
        metric="best_objective",
        mode="max",
        sampler=TPESampler(seed=cfg.search.seed, n_startup_trials=cfg.search.startup_trials),
    )
    # The dashboard stays on: its State API cleans up placement groups of stopped trials
    # (without it the next trial can hang, shared/STACK_NOTES.md). Worker output stays in
    # Ray's session logs; a failed trial prints where its traceback is.
    ray.init(
        ignore_reinit_error=True,
        log_to_driver=False,
        runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
    )
    tuner = tune.Tuner(
        tune.with_resources(
            make_trainable(cfg, inputs, str(output / "ray_train")), {"cpu": DRIVER_CPUS}
        ),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=cfg.search.max_concurrent),
            num_samples=cfg.search.num_samples,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=str(output / "ray_results"),
            callbacks=[
                TrialLogger(tracker, cfg.to_flat(), adapters_dir),
                ProgressPrinter(cfg.search.objective, cfg.search.num_samples),
            ],
            verbose=0,
        ),
    )
    results = tuner.fit()

    rows = trial_rows(results, adapters_dir)
    param_names = sorted(space)
    table = markdown_table(rows, param_names)
    report_dir = output / "reports" / run_name
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "trials.md").write_text(table + "\n")
    write_csv(rows, param_names, report_dir / "trials.csv")
    tracker.log_artifacts(parent_id, [report_dir / "trials.md", report_dir / "trials.csv"])
    best = next((row for row in rows if row.feasible), None)
    tracker.finish(parent_id, "FINISHED", {"best_trial": best.trial if best else "none feasible"})

    print(f"\nTrials (objective = {cfg.search.objective}, feasible first):\n{table}\n")
    if best:
        print(
            f"Best feasible trial {best.trial}: {cfg.search.objective} = "
            f"{best.best_objective:.4g} at epoch {best.best_epoch}"
        )
        for name in param_names:
            print(f"  {name} = {best.params[name]}")
        print(f"  adapter: {best.adapter}")
    else:
        print("No trial met the retain threshold; lower --min-retain or widen the space.")
    print(f"\nSearch took {time.time() - started:.0f} s. Open MLflow with:")
    print(f"  {ui_command(tracker.uri)}")
    return 0


def reference_table(original: dict, gold: dict, thresholds: Thresholds) -> str:
    keys = ("forget_metric", "retain_metric", "forget_quality", "log_forget_quality")
    lines = [f"{'':10}" + "".join(f"{k:>20}" for k in keys)]
    for name, values in (("Original", original), ("Gold", gold)):
        lines.append(f"{name:10}" + "".join(f"{values.get(k, float('nan')):>20.4g}" for k in keys))
    lines.append(f"feasible iff retain_metric >= {thresholds.min_retain_metric:.4g}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
        space = (
            load_space(cfg.method.name)
            if args.search_space is None
            else _load_file(args.search_space)
        )
        return run_search(
            cfg, space, str(args.search_space or f"search_spaces/{cfg.method.name}.yaml")
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _load_file(path: Path) -> dict:
    return load_space(path.stem, path.parent)


if __name__ == "__main__":
    sys.exit(main())
