"""Reference evaluations of Gold and Original, computed once and cached next to the model.

Every trial's forget quality compares its per-item truth ratios to Gold's, and the default
feasibility threshold is relative to Original's retain metric; both are deterministic in
(model, data, split, eval config), so they are cached by a key of exactly those inputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clear_ray.cache import cache_key
from clear_ray.config import EvalConfig
from clear_ray.data.clear import data_fingerprint
from clear_ray.data.collate import Collator
from clear_ray.eval.suite import FORGET_QUALITY_TASK, aggregate, evaluate
from clear_ray.eval.tasks import TASKS
from clear_ray.models.loading import load_checkpoint


@dataclass(frozen=True)
class ReferenceEvaluation:
    metrics: dict[str, float]
    forget_truth_ratios: list[float]  # per item, on the forget-quality task


def reference_evaluation(
    model_dir: Path,
    source: str,
    forget_split: str,
    config: EvalConfig,
    gold_truth_ratios: list[float] | None = None,
) -> ReferenceEvaluation:
    """Evaluate the checkpoint in ``model_dir`` (cached under ``model_dir/evaluations``)."""
    configs = sorted({task.config_for(forget_split) for task in TASKS.values()})
    key = cache_key(
        {
            "data": data_fingerprint(source, configs),
            "split": forget_split,
            "eval": asdict(config),
            "gold": gold_truth_ratios,
        }
    )
    path = model_dir / "evaluations" / f"{forget_split}-{key}.json"
    if path.is_file():
        return ReferenceEvaluation(**json.loads(path.read_text()))
    model, processor = load_checkpoint(model_dir)
    result = evaluate(model, Collator(processor), source, forget_split, config)
    own = result.tasks[FORGET_QUALITY_TASK].truth_ratios
    # Without a given reference the model is its own (Gold vs itself: FQ 1, log FQ 0, JS 1).
    reference = own if gold_truth_ratios is None else np.asarray(gold_truth_ratios)
    result.metrics = aggregate(result.tasks, reference)
    evaluation = ReferenceEvaluation(
        metrics=result.metrics,
        forget_truth_ratios=own.tolist(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(evaluation), indent=2))
    return evaluation
