"""Prompt robustness: the forget captions under every caption prompt, reported at the worst.

CLEAR asks each image one captioning question drawn from its pool of nine (data/prompts.py);
forgetting tuned under that draw can still leak under another question, or on the
paraphrased caption instead of the caption itself. Each variant scores the forget captions
(true, paraphrase and perturbed captions, as the task does) with:

- ``default``: the task as evaluated (each item's own drawn question), for comparison;
- ``prompt_<i>``: every item asked CLEAR's question i;
- ``paraphrase``: the item's own question, the paraphrased caption as the true target.

Gold is scored under the same variant, so forget quality compares like with like (a prompt
that shifts every model's NLLs is not a leak). The worst variant is the one that reveals the
most: the highest forget metric, and separately the lowest forget quality.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from clear_ray.data.collate import Collator, caption_example
from clear_ray.data.prompts import CAPTION_QUESTIONS
from clear_ray.eval.names import FORGET_CAPTIONS
from clear_ray.eval.reference import GoldReference, TaskReference
from clear_ray.eval.scoring import ScoringItem
from clear_ray.eval.suite import TaskData, TaskResult, aggregate, run_task
from clear_ray.eval.tasks import TASKS, Task
from clear_ray.robust.context import CheckContext, CheckResult, prefixed

CHECK = "prompts"
DEFAULT = "default"  # the task as the evaluation asks it: each item its own drawn question
PARAPHRASE = "paraphrase"
METRICS = ("forget_metric", "log_forget_quality", "forget_quality_js")


def _asked(question: str) -> Callable[[dict], ScoringItem]:
    def build(row: dict) -> ScoringItem:
        candidates = (row["caption"], row["paraphrased_caption"], *row["perturbed_captions"])
        return ScoringItem(question, row["image"], candidates)

    return build


def _paraphrase_as_truth(row: dict) -> ScoringItem:
    prompt = caption_example(row["image"], row["caption"])
    paraphrase = row["paraphrased_caption"]
    return ScoringItem(
        prompt.question, prompt.image, (paraphrase, paraphrase, *row["perturbed_captions"])
    )


def variants() -> dict[str, Task]:
    """The forget-captions task under each variant, by name."""
    task = TASKS[FORGET_CAPTIONS]
    asked = {
        f"prompt_{i}": replace(task, build_item=_asked(q)) for i, q in enumerate(CAPTION_QUESTIONS)
    }
    return {DEFAULT: task, **asked, PARAPHRASE: replace(task, build_item=_paraphrase_as_truth)}


def variant_metrics(model_result: TaskResult, gold_result: TaskResult) -> dict[str, float]:
    """Forget metric and forget quality of the captions under one variant, vs Gold's."""
    reference = GoldReference({FORGET_CAPTIONS: TaskReference.of(gold_result)})
    flat = aggregate({FORGET_CAPTIONS: model_result}, reference, modality="visual")
    return {key: flat[key] for key in METRICS}


def worst_case(by_variant: dict[str, dict[str, float]]) -> dict[str, float | str]:
    """The most revealing variant: highest forget metric; lowest forget quality (each its own)."""
    leak = max(by_variant, key=lambda name: by_variant[name]["forget_metric"])
    unlike_gold = min(by_variant, key=lambda name: by_variant[name]["log_forget_quality"])
    return {
        "worst_forget_metric": by_variant[leak]["forget_metric"],
        "worst_forget_metric_variant": leak,
        "worst_log_forget_quality": by_variant[unlike_gold]["log_forget_quality"],
        "worst_forget_quality_js": by_variant[unlike_gold]["forget_quality_js"],
        "worst_log_forget_quality_variant": unlike_gold,
    }


def score_variants(
    model, gold_model, collator: Collator, data: TaskData, forget_split: str, config
):
    """(model's results, metrics) of every variant; Gold is scored under the same variant."""
    results, metrics = {}, {}
    for name, task in variants().items():
        rows = data[task.config_for(forget_split)]
        results[name] = run_task(task, model, collator, rows, config)
        gold = run_task(task, gold_model, collator, rows, config)
        metrics[name] = variant_metrics(results[name], gold)
    return results, metrics


def check(ctx: CheckContext) -> CheckResult:
    from clear_ray.models.loading import load_for_evaluation

    data = ctx.data()
    config = ctx.eval_config(data, (FORGET_CAPTIONS,))
    model, processor = ctx.load_unlearned()
    gold_model, _ = load_for_evaluation(ctx.gold, None, ctx.cfg.train.precision)
    model.eval()
    gold_model.eval()
    results, by_variant = score_variants(
        model, gold_model, Collator(processor), data, ctx.cfg.data.forget_split, config
    )
    worst = worst_case(by_variant)
    values = {k: v for k, v in worst.items() if not isinstance(v, str)}
    values.update({f"{name}/{key}": v for name, m in by_variant.items() for key, v in m.items()})
    notes = tuple(f"{k}: {v}" for k, v in worst.items() if isinstance(v, str))
    items = {name: result.columns() for name, result in results.items()}
    items["questions"] = dict(enumerate(CAPTION_QUESTIONS))
    return CheckResult(prefixed(CHECK, values), items, notes)
