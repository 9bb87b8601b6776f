"""Run CLEAR evaluation tasks on a model and aggregate them into the metrics a search uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from clear_ray.config import EvalConfig
from clear_ray.data.clear import load_clear
from clear_ray.data.collate import Collator, Example
from clear_ray.eval import metrics
from clear_ray.eval.generation import generate_greedy
from clear_ray.eval.scoring import score_items
from clear_ray.eval.tasks import TASKS, Task

FORGET_QUALITY_TASK = "forget_captions"


@dataclass
class TaskResult:
    """Per-item values of one task; aggregates are recomputed from these, never stored alone."""

    nll_true: np.ndarray  # [n]
    nll_paraphrased: np.ndarray  # [n]
    nll_perturbed: np.ndarray  # [n, k]
    rouge_recall: np.ndarray | None  # [n], None when generation is off

    @property
    def truth_ratios(self) -> np.ndarray:
        return metrics.truth_ratios(self.nll_paraphrased, self.nll_perturbed)

    def scores(self, forget: bool) -> dict[str, float]:
        values = {
            "prob": metrics.probability(self.nll_true),
            "truth_ratio": metrics.truth_ratio_score(self.truth_ratios, forget=forget),
        }
        if self.rouge_recall is not None:
            values["rougeL_recall"] = float(np.mean(self.rouge_recall))
        return values


@dataclass
class EvalResult:
    tasks: dict[str, TaskResult]
    metrics: dict[str, float] = field(default_factory=dict)


def run_task(
    task: Task, model: nn.Module, collator: Collator, rows: Sequence[dict], config: EvalConfig
) -> TaskResult:
    items = task.items(rows)
    k = min(len(item.targets) for item in items) - 2  # ragged distractor lists: keep the common k
    nll = np.stack(
        [scores[: k + 2] for scores in score_items(model, collator, items, config.batch_size)]
    )
    rouge = None
    if config.generate:
        prompts = [Example(item.question, "", item.image) for item in items]
        predictions = generate_greedy(
            model, collator, prompts, config.max_new_tokens, config.batch_size
        )
        rouge = metrics.rouge_l_recall(predictions, [task.reference(row) for row in rows])
    return TaskResult(nll[:, 0], nll[:, 1], nll[:, 2:], rouge)


def aggregate(
    results: dict[str, TaskResult], gold_truth_ratios: np.ndarray | None
) -> dict[str, float]:
    """Per-task scores, per-group harmonic means, and forget quality against Gold."""
    flat: dict[str, float] = {}
    by_group: dict[str, list[float]] = {}
    for name, result in results.items():
        group = TASKS[name].group
        scores = result.scores(forget=group == "forget")
        flat.update({f"{name}/{key}": value for key, value in scores.items()})
        by_group.setdefault(group, []).extend(scores.values())
    for group, values in by_group.items():
        flat[f"{group}_metric"] = metrics.harmonic_mean(values)
    if gold_truth_ratios is not None and FORGET_QUALITY_TASK in results:
        model_tr = results[FORGET_QUALITY_TASK].truth_ratios
        p_value = metrics.forget_quality(model_tr, gold_truth_ratios)
        flat["forget_quality"] = p_value
        flat["log_forget_quality"] = metrics.log_forget_quality(p_value)
        flat["forget_quality_js"] = metrics.forget_quality_js(model_tr, gold_truth_ratios)
    return flat


def evaluate(
    model: nn.Module,
    collator: Collator,
    source: str,
    forget_split: str,
    config: EvalConfig,
    gold_truth_ratios: np.ndarray | None = None,
    task_names: Sequence[str] = tuple(TASKS),
) -> EvalResult:
    """Evaluate ``model`` on every row of each task (deterministic prompts, no sampling)."""
    was_training = model.training
    model.eval()
    results = {
        name: run_task(
            TASKS[name],
            model,
            collator,
            list(load_clear(source, TASKS[name].config_for(forget_split))),
            config,
        )
        for name in task_names
    }
    model.train(was_training)
    return EvalResult(results, aggregate(results, gold_truth_ratios))
