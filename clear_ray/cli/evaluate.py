"""python -m clear_ray.evaluate CHECKPOINT: the CLEAR evaluation of one model, outside a search.

Reads top to bottom: parse → resolve config and check every path → load data, the model (and a
LoRA adapter on top) and Gold's cached reference → evaluate → print a table → write
``metrics.json`` and one per-item parquet per task → optionally log them to a new MLflow run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from clear_ray.cli.flags import (
    DATA_FLAGS,
    HelpFormatter,
    add_config_flags,
    add_set_flag,
    overrides_from,
)
from clear_ray.config import Config
from clear_ray.console import log
from clear_ray.errors import ConfigError
from clear_ray.eval.names import SUMMARY_METRICS

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
TABLE_SCORES = ("prob", "truth_ratio", "clear_truth_ratio", "rougeL_recall")


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
    from clear_ray.eval.names import FORGET_QUALITY_TASKS, named_tasks

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


def run_evaluation(args: argparse.Namespace, cfg: Config) -> int:
    # Heavy imports (torch, transformers, peft, mlflow) come after argument parsing, so that
    # --help and bad input answer at once.
    from clear_ray.data.clear import check_disjoint_persons
    from clear_ray.data.collate import Collator
    from clear_ray.data.source import resolve_source
    from clear_ray.eval.gold import reference_evaluation
    from clear_ray.eval.names import objective_tasks
    from clear_ray.eval.outputs import write_outputs
    from clear_ray.eval.suite import TaskData, evaluate
    from clear_ray.eval.tasks import resolve_task_names
    from clear_ray.models.loading import load_for_evaluation

    source = resolve_source(cfg)
    log(f"data: {source}")
    check_disjoint_persons(source, cfg.data.forget_split)  # before minutes of model loading
    data = TaskData(source)  # "all" takes an optional task only where its config exists
    task_names = resolve_task_names(cfg.eval.tasks, data.has, cfg.data.forget_split)
    gold = None
    if args.gold is not None:
        log("evaluating Gold (cached after the first run)")
        gold = reference_evaluation(
            args.gold, data, cfg.data.forget_split, cfg.eval, precision=cfg.train.precision
        ).reference
    model, processor = load_for_evaluation(args.checkpoint, args.adapter, cfg.train.precision)
    log(f"evaluating {', '.join(task_names)}")
    result = evaluate(
        model,
        Collator(processor),
        data,
        cfg.data.forget_split,
        cfg.eval,
        gold,
        task_names,
        modality=cfg.data.modality,
    )
    print(results_table(result.metrics, task_names, result.eval_kind), flush=True)

    summary = {
        "eval_kind": result.eval_kind,
        "checkpoint": str(args.checkpoint.resolve()),
        "adapter": str(args.adapter.resolve()) if args.adapter else None,
        "gold": str(args.gold.resolve()) if args.gold else None,
        "data": source,
        "forget_split": cfg.data.forget_split,
        "modality": cfg.data.modality,
        "objective_task": list(objective_tasks(cfg.data.modality, task_names)),
        "tasks": list(task_names),
        "eval": asdict(cfg.eval),
        "metrics": result.metrics,
    }
    if args.out is not None:
        write_outputs(args.out, summary, result.tasks)
        log(f"wrote {args.out / 'metrics.json'} and per-item parquet files")
    if wants_tracking(args):
        log_to_mlflow(args, cfg, summary, result.tasks)
    return 0


def results_table(metrics: dict[str, float], task_names: Sequence[str], eval_kind: str) -> str:
    lines = [f"{'task':20}" + "".join(f"{score:>18}" for score in TABLE_SCORES)]
    for name in task_names:
        cells = (metrics.get(f"{name}/{score}") for score in TABLE_SCORES)
        lines.append(
            f"{name:20}" + "".join(f"{'-':>18}" if v is None else f"{v:>18.4g}" for v in cells)
        )
    lines.append("")
    lines.extend(f"{key:26}{metrics[key]:>18.4g}" for key in SUMMARY_METRICS if key in metrics)
    if eval_kind == "proxy":
        lines.append("proxy evaluation (eval/proxy = 1): seeded subset, no ROUGE in aggregates")
    return "\n".join(lines)


def log_to_mlflow(args: argparse.Namespace, cfg: Config, summary: dict, tasks: dict) -> None:
    from clear_ray.eval.outputs import write_outputs
    from clear_ray.tracking import SearchTracker

    tracker = SearchTracker(cfg)
    run_id = tracker.start_parent(
        args.run_name or f"eval-{time.strftime('%Y%m%d-%H%M%S')}",
        params={
            **{k: v for k, v in cfg.to_flat().items() if k.startswith(("data.", "eval."))},
            "checkpoint": summary["checkpoint"],
            "adapter": summary["adapter"] or "none",
            "gold": summary["gold"] or "none",
        },
        tags={
            "clear_ray.role": "evaluation",
            "eval_kind": summary["eval_kind"],
            "objective_task": ",".join(summary["objective_task"]),
        },
    )
    tracker.log_metrics(run_id, summary["metrics"])
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out if args.out is not None else Path(scratch)
        files = [out / "metrics.json", *(out / f"{name}.parquet" for name in tasks)]
        if args.out is None:
            files = write_outputs(out, summary, tasks)
        tracker.log_artifacts(run_id, files, artifact_path="evaluation")
    tracker.finish(run_id)
    log(f"MLflow run {run_id} in {tracker.uri}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        check_inputs(args, cfg)
        return run_evaluation(args, cfg)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
