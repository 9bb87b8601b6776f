"""Gold's per-item values that every forget-quality comparison needs, as plain data.

A trial compares its truth ratios on each forget-quality task with Gold's. Both forms (our
per-item TR and CLEAR's scalar-mean TR, ``eval/metrics.py``) derive from the same NLLs, so the
reference carries the NLLs, not one form of the ratio. It is plain lists (JSON for the
reference cache, pickled as it is for Ray) and this module imports nothing heavy: Ray
unpickles it in every trial actor (``train/worker.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class HasTruthRatioNLLs(Protocol):
    """What a reference is taken from (``eval.suite.TaskResult``)."""

    nll_paraphrased: Any  # [n]
    nll_perturbed: Any  # per item [k_i]
    item_index: Any  # [n]


@dataclass(frozen=True)
class TaskReference:
    """Gold's NLLs on one task: the paraphrased answer's and each perturbed answer's, per item,
    with each item's row index in the task's CLEAR config.

    The indices let every comparison check that it pairs the model's items with Gold's own
    (:meth:`check_items`): JS pairs them item by item, and a reference from another fold,
    split or proxy subset of the same length would otherwise be compared without an error.
    """

    nll_paraphrased: list[float]  # [n]
    nll_perturbed: list[list[float]]  # per item [k_i]
    item_index: list[int]  # [n]

    def __post_init__(self) -> None:
        if not len(self.nll_paraphrased) == len(self.nll_perturbed) == len(self.item_index):
            raise ValueError(
                f"a task reference needs as many item indices ({len(self.item_index)}) as "
                f"paraphrase NLLs ({len(self.nll_paraphrased)}) and distractor rows "
                f"({len(self.nll_perturbed)})"
            )

    @classmethod
    def of(cls, result: HasTruthRatioNLLs) -> TaskReference:
        return cls(
            [float(value) for value in result.nll_paraphrased],
            [[float(value) for value in row] for row in result.nll_perturbed],
            [int(index) for index in result.item_index],
        )

    def check_items(self, task: str, item_index: Sequence[int]) -> None:
        """Raise ValueError unless ``item_index`` names exactly Gold's items, in Gold's order."""
        model = [int(index) for index in item_index]
        if model == self.item_index:
            return
        pairs = zip(model, self.item_index, strict=False)
        first = next((i for i, (mine, gold) in enumerate(pairs) if mine != gold), None)
        where = (
            f"item {first} is row {model[first]}, Gold's row {self.item_index[first]}"
            if first is not None
            else "one list of rows extends the other"
        )
        raise ValueError(
            f"{task}: the model was scored on {len(model)} items, Gold's reference holds "
            f"{len(self.item_index)} ({where}); the reference must come from an evaluation of "
            "the same rows (fold, split, eval config)"
        )


@dataclass(frozen=True)
class GoldReference:
    """Gold's :class:`TaskReference` per forget-quality task it was evaluated on."""

    tasks: dict[str, TaskReference] = field(default_factory=dict)

    @classmethod
    def of(
        cls, results: dict[str, HasTruthRatioNLLs], task_names: tuple[str, ...]
    ) -> GoldReference:
        """The reference held by ``results`` for those of ``task_names`` it has."""
        return cls(
            {name: TaskReference.of(results[name]) for name in task_names if name in results}
        )

    def to_json(self) -> dict[str, dict[str, list]]:
        return {name: asdict(task) for name, task in self.tasks.items()}

    @classmethod
    def from_json(cls, values: dict[str, dict[str, list]]) -> GoldReference:
        return cls({name: TaskReference(**task) for name, task in values.items()})
