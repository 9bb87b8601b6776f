"""Reference evaluations of Gold and Original, computed once and cached next to the model.

Every trial's forget quality compares its per-item truth ratios to Gold's, and the default
feasibility threshold is relative to Original's retain metric; both are deterministic in
(model, data, split, eval config), so they are cached by a key of exactly those inputs. The
cache directory holds ``reference.json`` and each task's per-item values as parquet, and is
logged as it is to the search's MLflow parent run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clear_ray.cache import cache_key, cached_dir
from clear_ray.config import EvalConfig
from clear_ray.data.clear import data_fingerprint
from clear_ray.data.collate import Collator
from clear_ray.eval.outputs import write_item_tables
from clear_ray.eval.suite import FORGET_QUALITY_TASK, TaskData, aggregate, evaluate
from clear_ray.eval.tasks import TASKS
from clear_ray.models.loading import load_checkpoint

REFERENCE_FILE = "reference.json"


@dataclass(frozen=True)
class ReferenceEvaluation:
    metrics: dict[str, float]
    forget_truth_ratios: list[float]  # per item, on the forget-quality task
    directory: str  # the cache directory: reference.json + <task>.parquet


def reference_evaluation(
    model_dir: Path,
    source: str | TaskData,
    forget_split: str,
    config: EvalConfig,
    gold_truth_ratios: list[float] | None = None,
    precision: str = "fp32",  # the trials' train.precision: the same dtype for both
) -> ReferenceEvaluation:
    """Evaluate the checkpoint in ``model_dir`` (cached under ``model_dir/evaluations``).

    A ``TaskData`` source lets a search's reference evaluations share one load of the data.
    """
    data = TaskData.of(source)
    configs = sorted({task.config_for(forget_split) for task in TASKS.values()})
    key = cache_key(
        {
            "data": data_fingerprint(data.source, configs),
            "split": forget_split,
            "eval": asdict(config),
            "gold": gold_truth_ratios,
            "precision": precision,
        }
    )

    def build(directory: Path) -> None:
        model, processor = load_checkpoint(model_dir, precision)
        result = evaluate(model, Collator(processor), data, forget_split, config)
        own = result.tasks[FORGET_QUALITY_TASK].truth_ratios
        # Without a given reference the model is its own (Gold vs itself: FQ 1, log FQ 0, JS 1).
        reference = own if gold_truth_ratios is None else np.asarray(gold_truth_ratios)
        values = {
            "metrics": aggregate(result.tasks, reference),
            "forget_truth_ratios": own.tolist(),
        }
        write_item_tables(directory, result.tasks)
        (directory / REFERENCE_FILE).write_text(json.dumps(values, indent=2))

    directory = cached_dir(model_dir / "evaluations" / f"{forget_split}-{key}", build)
    values = json.loads((directory / REFERENCE_FILE).read_text())
    return ReferenceEvaluation(**values, directory=str(directory))
