"""Relearning attack: does a little finetuning on related persons bring the forgotten back?

Deeb & Roger, "Do Unlearning Methods Remove Information from Language Model Weights?"
(arXiv 2410.08827), split the forgotten facts in two, finetune on one half and recover 88 %
of the other (their retraining on T); Hu et al., "Unlearning or Obfuscating?" (arXiv
2406.13356), relearn from a small related subset. Here the halves are the report persons
(``robust.seed``): the unlearned model gets a short LoRA finetune (``robust.relearn_steps``
steps) on one half's captions and QA, and the other half's forget tasks are scored before and
after.

- The floor: Gold, which never knew those persons, gets the same attack; what it gains is what
  learning the attacked half teaches about any person. Forget quality after the attack is
  measured against attacked Gold, and ``net_recovery`` counts only what comes back above that
  floor (``gross_recovery`` and ``gold_recovery`` are the plain ratios).
- The attacker's strength: the attack runs at each of ``robust.relearn_lrs`` (Deeb & Roger's
  code sweeps the attack's learning rate, ``conf/*.yaml`` ``ft.lrs``) and the top-level values
  are those of the learning rate that recovers most.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from clear_ray.config import EvalConfig, FinetuneConfig
from clear_ray.data.collate import Collator, Example, caption_example, row_example
from clear_ray.data.unlearning import select_modality
from clear_ray.eval.suite import EvalResult, TaskData
from clear_ray.models.loading import load_for_evaluation
from clear_ray.models.lora import attach_lora
from clear_ray.models.presets import get_preset
from clear_ray.robust.checks import register_check
from clear_ray.robust.context import (
    FORGET_TASKS,
    MIN_GAP,
    CheckContext,
    CheckResult,
    PersonData,
    Scored,
    knowledge,
    prefixed,
    split_persons,
    worst_knowledge,
)
from clear_ray.runtime.backend import ensure_process_group
from clear_ray.train.supervised import sft_engine, train_supervised

CHECK = "relearn"
METRIC = "forget_metric"  # harmonic mean of every forget task's prob and truth ratio
FORGET_QUALITY = ("log_forget_quality", "forget_quality_js")


def gross_recovery(after: float, before: float, original: float, gold: float) -> float:
    """Fraction of the Original–before gap that ``after`` closes, in [0, 1], gross of what
    the attack teaches a model that never knew (Gold's own gross recovery shows that).

    0: nothing came back, 1: all of it (or nothing had been removed: a gap under ``MIN_GAP``
    of Original–Gold). Clipped, because beyond either end the ratio says no more: an attack
    that lowers the metric recovered nothing, one that overshoots Original recovered all.
    """
    gap = original - before
    if gap <= MIN_GAP * abs(original - gold):
        return 1.0
    return float(np.clip((after - before) / gap, 0.0, 1.0))


def knowledge_after(after: float, original: float, gold_after: float, gold_before: float) -> float:
    """The attacked model's knowledge above attacked Gold, the floor of what the same attack
    teaches anyway: (after − Gold after)/(Original − Gold after). NaN when the attack alone
    brings Gold within ``MIN_GAP`` of Original's lead as evaluated (it can then show nothing)."""
    return knowledge(after, gold_after, original, MIN_GAP * max(original - gold_before, 0.0))


def net_recovery(
    after: float, before: float, original: float, gold_after: float, gold_before: float
) -> float:
    """Share of the removed knowledge that the attack brings back beyond its floor, in [0, 1].

    Knowledge before is placed between Gold and Original as evaluated, knowledge after
    between Gold and Original when Gold got the same attack (:func:`knowledge_after`); a model
    below Gold has removed all (it earns nothing for climbing back to Gold's level). 1 when
    under ``MIN_GAP`` was removed, as :func:`gross_recovery`; NaN when the attack's floor
    reaches Original or Original does not lead Gold.
    """
    known_after = knowledge_after(after, original, gold_after, gold_before)
    known_before = knowledge(before, gold_before, original)
    if known_after != known_after or known_before != known_before:
        return float("nan")
    known_before = max(known_before, 0.0)
    removed = 1.0 - known_before
    if removed <= MIN_GAP:
        return 1.0
    return float(np.clip((known_after - known_before) / removed, 0.0, 1.0))


def attack_examples(data: TaskData, forget_split: str, budget: int, seed: int) -> list[Example]:
    """The attacked persons' captions and QA, cycled to exactly ``budget`` examples."""
    captions = [
        caption_example(row["image"], row["caption"]) for row in data[f"{forget_split}_perturbed"]
    ]
    questions = select_modality([row_example(row) for row in data[f"{forget_split}+tofu"]], "text")
    examples = captions + questions
    if not examples:
        raise ValueError("the attacked persons have no captions or QA rows")
    order = np.random.default_rng(seed).permutation(len(examples))
    return [examples[i] for i in itertools.islice(itertools.cycle(order), budget)]


def attacked(model, processor, examples: list[Example], ctx: CheckContext, lr: float):
    """``model`` after the attack at ``lr``: a LoRA finetune on ``examples``, merged into
    ``model`` itself (the caller loads a fresh copy for each attack)."""
    robust = ctx.cfg.robust
    recipe = FinetuneConfig(
        lr=lr,
        epochs=1,  # the examples are already the budget: one pass is relearn_steps steps
        batch_size=robust.relearn_batch_size,
        warmup_epochs=0.0,
        precision=ctx.cfg.finetune.precision,
        seed=robust.seed,
    )
    targets = get_preset(ctx.cfg.model.preset).lora_target_modules
    # LoRA's initialisation (and dropout) draw from torch's global generator, whose state in a
    # reused Ray task process is whatever ran there before: seeded, the attack is the same
    # every run (as the trials' loop seeds before its adapter, train/loop.py).
    torch.manual_seed(robust.seed)
    model = attach_lora(model, ctx.cfg.lora, targets)
    ensure_process_group()  # a Ray task, not a Train job: DeepSpeed needs a (1-rank) group
    engine = sft_engine(model, recipe, len(examples), world_size=1, zero_stage=0)
    train_supervised(engine, Collator(processor), examples, recipe, "relearning attack")
    return engine.module.merge_and_unload()


def gold_attack(
    ctx: CheckContext,
    attack_persons: tuple[str, ...],
    held: PersonData,
    config: EvalConfig,
    examples: list[Example],
    lr: float,
) -> Scored:
    """Gold after the attack at ``lr``, evaluated on ``held``: the floor at that lr, cached
    apart from the adapter (:meth:`CheckContext.scored`)."""
    cfg, robust = ctx.cfg, ctx.cfg.robust

    def score() -> EvalResult:
        model, processor = load_for_evaluation(ctx.gold, None, cfg.train.precision)
        model = attacked(model, processor, examples, ctx, lr)
        return ctx.evaluate(model, processor, held, config, None)

    condition = {
        "attacked": sorted(attack_persons),
        "lr": lr,
        "attack": [robust.relearn_steps, robust.relearn_batch_size, robust.seed],
        "preset": cfg.model.preset,
        "lora": asdict(cfg.lora),
        "finetune_precision": cfg.finetune.precision,
    }
    return ctx.scored("gold_attacks", ctx.gold, condition, held, config, score)


def lr_values(before: dict[str, float], gold_after: Scored, after: EvalResult) -> dict[str, float]:
    """One learning rate's values; ``before`` holds Original's and the values before attacks."""
    o, u0 = before["original_forget_metric"], before["forget_metric_before"]
    g0, g1 = before["gold_forget_metric_before"], gold_after.metrics[METRIC]
    u1 = after.metrics[METRIC]
    values = {
        "net_recovery": net_recovery(u1, u0, o, g1, g0),
        "gross_recovery": gross_recovery(u1, u0, o, g0),
        "gold_recovery": gross_recovery(g1, g0, o, g0),
        "knowledge_after": knowledge_after(u1, o, g1, g0),
        "forget_metric_after": u1,
        "gold_forget_metric_after": g1,
    }
    values.update(
        {f"{key}_after": after.metrics[key] for key in FORGET_QUALITY if key in after.metrics}
    )
    return values


@register_check(CHECK)
def check(ctx: CheckContext) -> CheckResult:
    if len(ctx.persons) < 2:
        return CheckResult({}, notes=(f"skipped: {len(ctx.persons)} person(s), 2 needed",))
    robust, split = ctx.cfg.robust, ctx.cfg.data.forget_split
    attack_persons, held_persons = split_persons(ctx.persons, robust.seed)
    held = ctx.data(held_persons)
    config = ctx.eval_config(held, FORGET_TASKS[ctx.modality])
    budget = robust.relearn_steps * robust.relearn_batch_size
    examples = attack_examples(ctx.data(attack_persons), split, budget, robust.seed)

    # Gold's evaluation before the attack is the reference the before values compare with.
    gold_before = ctx.reference(ctx.gold, held, config, None)
    original = ctx.reference(ctx.original, held, config, gold_before.reference)
    model, processor = ctx.load_unlearned()
    unlearned = ctx.evaluate(model, processor, held, config, gold_before.reference)
    del model
    before = {
        "original_forget_metric": original.metrics[METRIC],
        "forget_metric_before": unlearned.metrics[METRIC],
        "gold_forget_metric_before": gold_before.metrics[METRIC],
    }
    before["knowledge_before"] = knowledge(
        before["forget_metric_before"],
        before["gold_forget_metric_before"],
        before["original_forget_metric"],
    )
    before.update(
        {
            f"{key}_before": unlearned.metrics[key]
            for key in FORGET_QUALITY
            if key in unlearned.metrics
        }
    )
    by_lr: dict[str, dict[str, float]] = {}
    items: dict[str, Any] = {
        "attacked_persons": list(attack_persons),
        "held_out_persons": list(held_persons),
    }
    items.update({f"before/{task}": result.columns() for task, result in unlearned.tasks.items()})
    for lr in robust.lrs():
        floor = gold_attack(ctx, attack_persons, held, config, examples, lr)
        # Each attack starts from a fresh load: the attack merges into the model it is given.
        model, processor = ctx.load_unlearned()
        # Forget quality after the attack compares with Gold after the same attack.
        after = ctx.evaluate(
            attacked(model, processor, examples, ctx, lr), processor, held, config, floor.reference
        )
        del model
        label = f"lr_{lr:g}"
        by_lr[label] = lr_values(before, floor, after)
        items.update({f"{label}/after/{task}": after.tasks[task].columns() for task in after.tasks})
        items.update(
            {f"{label}/gold_after/{task}": columns for task, columns in floor.items.items()}
        )
    worst_value, worst = worst_knowledge(
        {label: v["knowledge_after"] for label, v in by_lr.items()}
    )
    values = {
        **before,
        "steps": robust.relearn_steps,
        "held_out_persons": len(held_persons),
        **{f"{label}/{key}": value for label, lr in by_lr.items() for key, value in lr.items()},
    }
    notes = []
    if worst is None:
        notes.append(
            "no learning rate measured a recovery: the attack alone brought Gold to "
            "Original's level (or Original does not lead Gold) on the held-out persons"
        )
    else:
        values.update(by_lr[worst])
        values["worst_normalised"] = worst_value
        values["worst_lr"] = float(worst.removeprefix("lr_"))
        notes.append(f"worst learning rate: {worst.removeprefix('lr_')}")
    if len(held_persons) < 2:
        notes.append(
            f"{len(held_persons)} held-out person: the recovery rests on one person's items "
            "(4 or more report persons hold out 2)"
        )
    return CheckResult(prefixed(CHECK, values), items, tuple(notes))
