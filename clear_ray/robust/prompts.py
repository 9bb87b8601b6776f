"""Prompt robustness: the forget captions under every caption prompt, reported at the worst.

CLEAR asks each image one captioning question drawn from its pool of nine (data/prompts.py);
forgetting tuned under that draw can still leak under another question, or on another
wording of the caption. Each variant scores the forget captions with:

- ``default``: the task as evaluated (each item's own drawn question), for comparison;
- ``prompt_<i>``: every item asked CLEAR's question i;
- ``paraphrase``: the item's own question with the roles of the two true captions swapped:
  the probability is the paraphrased caption's, and the truth ratio sets the caption itself
  against the perturbed ones (the task's truth ratio, TOFU's and CLEAR's, sets the
  paraphrase). A model that suppressed the trained wording but not the content leaks in the
  first; the second tests the wording the model was trained on, so this variant's forget
  quality is not ``default``'s.

Gold and Original are scored under the same variant, so forget quality compares like with
like and each variant's forget metric becomes knowledge, (m − Gold)/(Original − Gold), all
three under that variant (a prompt that shifts every model's NLLs is not a leak). The worst
variant is the one that reveals the most knowledge (``worst_normalised``); a variant under
which Original leads Gold by under ``MIN_GAP`` of their lead as evaluated measures nothing
and is left out. The lowest forget quality is reported separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from clear_ray.config import EvalConfig
from clear_ray.data.collate import Collator, caption_example
from clear_ray.data.prompts import CAPTION_QUESTIONS
from clear_ray.eval.names import FORGET_CAPTIONS
from clear_ray.eval.reference import GoldReference, TaskReference
from clear_ray.eval.scoring import ScoringItem
from clear_ray.eval.suite import TaskData, TaskResult, aggregate, run_task
from clear_ray.eval.tasks import TASKS, Task
from clear_ray.robust.checks import register_check
from clear_ray.robust.context import (
    MIN_GAP,
    CheckContext,
    CheckResult,
    PersonData,
    knowledge,
    prefixed,
    worst_knowledge,
)

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
    targets = (row["paraphrased_caption"], row["caption"], *row["perturbed_captions"])
    return ScoringItem(prompt.question, prompt.image, targets)


def variants() -> dict[str, Task]:
    """The forget-captions task under each variant, by name."""
    task = TASKS[FORGET_CAPTIONS]
    asked = {
        f"prompt_{i}": replace(task, build_item=_asked(q)) for i, q in enumerate(CAPTION_QUESTIONS)
    }
    return {DEFAULT: task, **asked, PARAPHRASE: replace(task, build_item=_paraphrase_as_truth)}


def variant_metrics(
    model: TaskResult, gold: TaskResult, original: TaskResult, min_gap: float
) -> dict[str, float]:
    """The captions' forget metric and forget quality under one variant vs Gold's under it,
    and the knowledge between Gold and Original under it (NaN: Original leads by ``min_gap``
    or less)."""
    reference = GoldReference({FORGET_CAPTIONS: TaskReference.of(gold)})
    flat = aggregate({FORGET_CAPTIONS: model}, reference, modality="visual")
    values = {key: flat[key] for key in METRICS}
    values["gold_forget_metric"] = aggregate({FORGET_CAPTIONS: gold})["forget_metric"]
    values["original_forget_metric"] = aggregate({FORGET_CAPTIONS: original})["forget_metric"]
    values["knowledge"] = knowledge(
        values["forget_metric"],
        values["gold_forget_metric"],
        values["original_forget_metric"],
        min_gap,
    )
    return values


def worst_case(by_variant: dict[str, dict[str, float]]) -> dict[str, float | str]:
    """The most revealing variant: most knowledge; lowest forget quality (each its own)."""
    most, leak = worst_knowledge({name: m["knowledge"] for name, m in by_variant.items()})
    unlike_gold = min(by_variant, key=lambda name: by_variant[name]["log_forget_quality"])
    return {
        "worst_normalised": most,
        "worst_normalised_variant": leak or "none measured",
        "worst_log_forget_quality": by_variant[unlike_gold]["log_forget_quality"],
        "worst_forget_quality_js": by_variant[unlike_gold]["forget_quality_js"],
        "worst_log_forget_quality_variant": unlike_gold,
    }


def variant_results(
    model, collator: Collator, data: TaskData, forget_split: str, config: EvalConfig
) -> dict[str, TaskResult]:
    """``model``'s forget-caption results under every variant, by name."""
    return {
        name: run_task(task, model, collator, data[task.config_for(forget_split)], config)
        for name, task in variants().items()
    }


def score_variants(
    model: dict[str, TaskResult], gold: dict[str, TaskResult], original: dict[str, TaskResult]
) -> dict[str, dict[str, float]]:
    """Every variant's metrics from the three models' results under it (variant_results)."""
    default = variant_metrics(model[DEFAULT], gold[DEFAULT], original[DEFAULT], 0.0)
    gap = max(default["original_forget_metric"] - default["gold_forget_metric"], 0.0)
    return {
        name: variant_metrics(model[name], gold[name], original[name], MIN_GAP * gap)
        for name in model
    }


def reference_results(
    ctx: CheckContext, model_dir: str, data: PersonData, config: EvalConfig
) -> dict[str, TaskResult]:
    """A reference model's (Gold's, Original's) variant_results, cached apart from the adapter
    (:meth:`CheckContext.cached`)."""
    from clear_ray.models.loading import load_for_evaluation

    def values() -> dict[str, dict]:
        model, processor = load_for_evaluation(model_dir, None, ctx.cfg.train.precision)
        results = variant_results(
            model.eval(), Collator(processor), data, ctx.cfg.data.forget_split, config
        )
        return {name: result.columns() for name, result in results.items()}

    questions = {"questions": list(CAPTION_QUESTIONS), "variants": list(variants())}
    stored = ctx.cached("prompt_variants", model_dir, questions, data, config, values)
    layout = TASKS[FORGET_CAPTIONS].layout
    return {
        name: TaskResult(
            c["nll_true"], c["nll_paraphrased"], c["nll_perturbed"], None, layout, c["item_index"]
        )
        for name, c in stored.items()
    }


@register_check(CHECK)
def check(ctx: CheckContext) -> CheckResult:
    data = ctx.data()
    config = ctx.eval_config(data, (FORGET_CAPTIONS,))
    gold = reference_results(ctx, ctx.gold, data, config)
    original = reference_results(ctx, ctx.original, data, config)
    model, processor = ctx.load_unlearned()
    split = ctx.cfg.data.forget_split
    results = variant_results(model.eval(), Collator(processor), data, split, config)
    by_variant = score_variants(results, gold, original)
    worst = worst_case(by_variant)
    values = {k: v for k, v in worst.items() if not isinstance(v, str)}
    values.update({f"{name}/{key}": v for name, m in by_variant.items() for key, v in m.items()})
    notes = tuple(f"{k}: {v}" for k, v in worst.items() if isinstance(v, str))
    items = {name: result.columns() for name, result in results.items()}
    items["questions"] = dict(enumerate(CAPTION_QUESTIONS))
    return CheckResult(prefixed(CHECK, values), items, notes)
