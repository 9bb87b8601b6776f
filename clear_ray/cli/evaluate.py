"""python -m clear_ray.evaluate CHECKPOINT: the CLEAR evaluation of one model, outside a search.

Parses the flags, resolves the config and checks every path, then hands the evaluation to
``clear_ray/pipeline/evaluation.py`` (data, model, evaluation, table, files, MLflow run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clear_ray.cli.flags import (
    DATA_FLAGS,
    HelpFormatter,
    add_config_flags,
    add_set_flag,
    overrides_from,
)
from clear_ray.config import Config
from clear_ray.errors import ConfigError
from clear_ray.eval.names import FORGET_QUALITY_TASKS, named_tasks

# flag -> dotted config path; defaults and types come from Config, never from here.
FLAGS = {
    **DATA_FLAGS,
    "--forget-split": ("data.forget_split", "forget01 | forget05 | forget10"),
    "--modality": (
        "data.modality",
        "what was forgotten: the forget-quality task(s) of the objective metrics (visual: "
        "forget_captions, text: forget_text_perturbed, both: Fisher's combination of the two)",
    ),
    "--tasks": ("eval.tasks", "comma-separated task names, or all"),
    "--proxy-items": (
        "eval.proxy_items",
        "proxy evaluation on this many seeded rows per task (scoring only, no ROUGE); 0 = full",
    ),
    "--proxy-seed": ("eval.proxy_seed", "seed choosing the proxy rows"),
    "--batch-size": ("eval.batch_size", "evaluation batch size"),
    "--output-dir": ("output_dir", "where the synthetic data lives (as for clear_ray.tune)"),
}
TRACKING_FLAGS = {
    "--tracking-uri": (
        "tracking.tracking_uri",
        "log the evaluation as a new MLflow run at this URI (sqlite:///..., http://host:port), "
        f"in experiment {Config().tracking.experiment} unless --experiment names another",
    ),
    "--experiment": (
        "tracking.experiment",
        "log the evaluation as a new MLflow run in this experiment, at --tracking-uri or else "
        "in OUTPUT_DIR/mlflow.db",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    defaults = Config().to_flat()
    parser = argparse.ArgumentParser(
        prog="python -m clear_ray.evaluate",
        description=(
            "Evaluate a finetuned checkpoint (a directory with model + processor, e.g. "
            "<output>/cache/models/tiny-llava-original-*), optionally with a LoRA adapter on "
            "top, on the CLEAR tasks. Forget quality needs --gold. Prints a table; --out writes "
            "metrics.json and <task>.parquet with per-item values. Nothing is logged to MLflow "
            "unless --tracking-uri or --experiment is given."
        ),
        epilog=(
            "Tasks: forget_captions, retain_captions, forget_face_naming, retain_face_naming, "
            "forget_text_qa, retain_text_qa, real_faces, real_world, forget_text_perturbed "
            "(when the data has forgetNN_tofu_perturbed). A proxy evaluation "
            "(--proxy-items N) is marked by the metric eval/proxy = 1 and is not comparable "
            "to a full one. Any config field can be set with --set PATH=VALUE, "
            "e.g. --set eval.generate=false."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="finetuned model directory")
    parser.add_argument(
        "--adapter", type=Path, default=None, help="LoRA adapter directory (peft) to apply"
    )
    parser.add_argument(
        "--gold",
        type=Path,
        default=None,
        help="Gold model directory: reference for forget quality (cached evaluation); "
        "none = no forget quality",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write metrics.json and per-task parquet here"
    )
    add_config_flags(parser, FLAGS, defaults)
    # Default None = not given: an MLflow run is logged only when one of these is.
    add_config_flags(parser, TRACKING_FLAGS, {})
    parser.add_argument(
        "--run-name",
        default=None,
        help="name of the MLflow run, when one is logged (default: eval-<time>)",
    )
    add_set_flag(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    return Config().replace(overrides_from(args, {**FLAGS, **TRACKING_FLAGS}))


def wants_tracking(args: argparse.Namespace) -> bool:
    return any(getattr(args, path, None) is not None for path, _ in TRACKING_FLAGS.values())


def check_inputs(args: argparse.Namespace, cfg: Config) -> tuple[str, ...]:
    """Every path and name checked before anything is loaded or written; the tasks to run."""
    for what, directory, marker in (
        ("checkpoint", args.checkpoint, "config.json"),
        ("adapter", args.adapter, "adapter_config.json"),
        ("gold", args.gold, "config.json"),
    ):
        if directory is None:
            continue
        if not directory.is_dir():
            raise ConfigError(f"{what} directory {directory} does not exist")
        if not (directory / marker).is_file():
            raise ConfigError(f"{what} directory {directory} has no {marker}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a directory")
    names = named_tasks(cfg.eval.tasks)
    if args.gold is not None and not set(FORGET_QUALITY_TASKS) & set(names):
        tasks = " or ".join(FORGET_QUALITY_TASKS)
        raise ConfigError(f"--gold needs the {tasks} task (forget quality uses it)")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        check_inputs(args, cfg)
        # lazy: torch and transformers load after the checks: --help and bad input answer at once
        from clear_ray.pipeline.evaluation import ModelEvaluation, run_evaluation

        request = ModelEvaluation(
            checkpoint=args.checkpoint,
            adapter=args.adapter,
            gold=args.gold,
            out=args.out,
            tracked=wants_tracking(args),
            run_name=args.run_name,
        )
        return run_evaluation(request, cfg)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
