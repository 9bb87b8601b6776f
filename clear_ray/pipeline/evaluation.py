"""One model's CLEAR evaluation outside a search (``python -m clear_ray.evaluate`` calls it).

Reads top to bottom: load data, the model (and a LoRA adapter on top) and Gold's cached
reference → evaluate → print a table → write ``metrics.json`` and one per-item parquet per
task → optionally log them to a new MLflow run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from clear_ray.config import Config
from clear_ray.console import log
from clear_ray.data.clear import check_disjoint_persons
from clear_ray.data.collate import Collator
from clear_ray.data.source import resolve_source
from clear_ray.eval.gold import reference_evaluation
from clear_ray.eval.names import SUMMARY_METRICS, objective_tasks
from clear_ray.eval.outputs import write_outputs
from clear_ray.eval.suite import TaskData, evaluate
from clear_ray.eval.tasks import resolve_task_names
from clear_ray.models.loading import load_for_evaluation

TABLE_SCORES = ("prob", "truth_ratio", "clear_truth_ratio", "rougeL_recall")


@dataclass(frozen=True)
class ModelEvaluation:
    """What is evaluated (a checkpoint, with a LoRA adapter on top if given; Gold's evaluation
    for forget quality if given) and where the results go (a folder, an MLflow run)."""

    checkpoint: Path
    adapter: Path | None = None
    gold: Path | None = None
    out: Path | None = None
    tracked: bool = False  # log a new MLflow run (at cfg.tracking)
    run_name: str | None = None  # its name; default eval-<time>


def run_evaluation(request: ModelEvaluation, cfg: Config) -> int:
    """The model of ``request`` evaluated on ``cfg.eval.tasks``: the table printed, then the
    files and the MLflow run it asks for."""
    source = resolve_source(cfg)
    log(f"data: {source}")
    check_disjoint_persons(source, cfg.data.forget_split)  # before minutes of model loading
    data = TaskData(source)  # "all" takes an optional task only where its config exists
    task_names = resolve_task_names(cfg.eval.tasks, data.has, cfg.data.forget_split)
    gold = None
    if request.gold is not None:
        log("evaluating Gold (cached after the first run)")
        gold = reference_evaluation(
            request.gold, data, cfg.data.forget_split, cfg.eval, precision=cfg.train.precision
        ).reference
    model, processor = load_for_evaluation(request.checkpoint, request.adapter, cfg.train.precision)
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
        "checkpoint": str(request.checkpoint.resolve()),
        "adapter": str(request.adapter.resolve()) if request.adapter else None,
        "gold": str(request.gold.resolve()) if request.gold else None,
        "data": source,
        "forget_split": cfg.data.forget_split,
        "modality": cfg.data.modality,
        "objective_task": list(objective_tasks(cfg.data.modality, task_names)),
        "tasks": list(task_names),
        "eval": asdict(cfg.eval),
        "metrics": result.metrics,
    }
    if request.out is not None:
        write_outputs(request.out, summary, result.tasks)
        log(f"wrote {request.out / 'metrics.json'} and per-item parquet files")
    if request.tracked:
        log_to_mlflow(request, cfg, summary, result.tasks)
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


def log_to_mlflow(request: ModelEvaluation, cfg: Config, summary: dict, tasks: dict) -> None:
    from clear_ray.tracking import SearchTracker  # lazy: MLflow (~2.5 s), only for a logged run

    tracker = SearchTracker(cfg)
    run_id = tracker.start_parent(
        request.run_name or f"eval-{time.strftime('%Y%m%d-%H%M%S')}",
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
        out = request.out if request.out is not None else Path(scratch)
        files = [out / "metrics.json", *(out / f"{name}.parquet" for name in tasks)]
        if request.out is None:
            files = write_outputs(out, summary, tasks)
        tracker.log_artifacts(run_id, files, artifact_path="evaluation")
    tracker.finish(run_id)
    log(f"MLflow run {run_id} in {tracker.uri}")
