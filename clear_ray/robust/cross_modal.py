"""Cross-modal leakage: after forgetting one modality, what does the other still know?

CLEAR forgets a person through their images, their text, or both (``data.modality``);
knowledge forgotten through images can survive in text. After ``visual`` forgetting this
scores the persons' text QA, after ``text`` forgetting their image tasks, against Gold on the
same rows; with ``both`` there is no other modality and the check says so.
"""

from __future__ import annotations

from clear_ray.eval.suite import with_objective
from clear_ray.robust.checks import register_check
from clear_ray.robust.context import FORGET_TASKS, CheckContext, CheckResult, knowledge, prefixed

CHECK = "cross_modal"
OTHER = {"visual": "text", "text": "visual"}
REPORTED = ("forget_metric", "log_forget_quality", "forget_quality_js")


def other_tasks(modality: str) -> tuple[str, ...]:
    """The forget tasks of the modality that was not forgotten (none after ``both``)."""
    return FORGET_TASKS[OTHER[modality]] if modality in OTHER else ()


@register_check(CHECK)
def check(ctx: CheckContext) -> CheckResult:
    tasks = other_tasks(ctx.modality)
    if not tasks:
        return CheckResult({}, notes=(f"skipped: modality {ctx.modality} leaves no other",))
    other = OTHER[ctx.modality]
    data = ctx.data()
    config = ctx.eval_config(data, tasks)
    if not config.tasks:
        return CheckResult({}, notes=(f"skipped: the data has no {other} forget task",))
    gold = ctx.reference(ctx.gold, data, config, None)
    original = ctx.reference(ctx.original, data, config, gold.reference)
    model, processor = ctx.load_unlearned()
    result = ctx.evaluate(model, processor, data, config, gold.reference)
    # The other modality's objective: with_objective takes its forget-quality tasks.
    metrics = with_objective(result.metrics, other)
    values = {key: metrics[key] for key in REPORTED if key in metrics}
    values["original_forget_metric"] = original.metrics["forget_metric"]
    values["gold_forget_metric"] = gold.metrics["forget_metric"]
    # One condition, so its knowledge (Gold 0, Original 1) is the check's worst case.
    values["worst_normalised"] = knowledge(
        metrics["forget_metric"], values["gold_forget_metric"], values["original_forget_metric"]
    )
    items = {task: tr.columns() for task, tr in result.tasks.items()}
    return CheckResult(prefixed(CHECK, values), items, (f"scored the {other} forget tasks",))
