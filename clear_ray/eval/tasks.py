"""CLEAR evaluation tasks: which config, which prompt, which candidate targets.

Every task scores, per item, the candidates ``(true, paraphrase, *distractors)`` under one
prompt (CLEAR_SPEC §4), so one scorer and one set of metric functions serve all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from clear_ray.data.collate import caption_example
from clear_ray.eval.scoring import ScoringItem

GROUPS = ("forget", "retain", "real")


@dataclass(frozen=True)
class Task:
    name: str
    group: str  # forget | retain | real: which aggregate it feeds, and the truth-ratio rule
    config_for: Callable[[str], str]  # forget split -> CLEAR config holding the items
    build_item: Callable[[dict], ScoringItem]
    reference: Callable[[dict], str]  # ground truth for ROUGE

    def items(self, rows: Iterable[dict]) -> list[ScoringItem]:
        return [self.build_item(row) for row in rows]


def _caption_item(row: dict) -> ScoringItem:
    prompt = caption_example(row["image"], row["caption"])
    candidates = (row["caption"], row["paraphrased_caption"], *row["perturbed_captions"])
    return ScoringItem(prompt.question, prompt.image, candidates)


def _caption(row: dict) -> str:
    return row["caption"]


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "forget_captions", "forget", lambda split: f"{split}_perturbed", _caption_item, _caption
        ),
        Task(
            "retain_captions", "retain", lambda split: "retain_perturbed", _caption_item, _caption
        ),
    )
}
