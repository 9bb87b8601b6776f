"""Gold's per-item values that every forget-quality comparison needs, as plain data.

A trial compares its truth ratios on each forget-quality task with Gold's. Both forms (our
per-item TR and CLEAR's scalar-mean TR, ``eval/metrics.py``) derive from the same NLLs, so the
reference carries the NLLs, not one form of the ratio. It is plain lists (JSON for the
reference cache, pickled as it is for Ray) and this module imports nothing heavy: Ray
unpickles it in every trial actor (``train/worker.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class HasTruthRatioNLLs(Protocol):
    """What a reference is taken from (``eval.suite.TaskResult``)."""

    nll_paraphrased: Any  # [n]
    nll_perturbed: Any  # per item [k_i]


@dataclass(frozen=True)
class TaskReference:
    """Gold's NLLs on one task: the paraphrased answer's and each perturbed answer's, per item."""

    nll_paraphrased: list[float]  # [n]
    nll_perturbed: list[list[float]]  # per item [k_i]

    @classmethod
    def of(cls, result: HasTruthRatioNLLs) -> TaskReference:
        return cls(
            [float(value) for value in result.nll_paraphrased],
            [[float(value) for value in row] for row in result.nll_perturbed],
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
        return {
            name: {"nll_paraphrased": task.nll_paraphrased, "nll_perturbed": task.nll_perturbed}
            for name, task in self.tasks.items()
        }

    @classmethod
    def from_json(cls, values: dict[str, dict[str, list]]) -> GoldReference:
        return cls({name: TaskReference(**task) for name, task in values.items()})
