"""Run CLEAR evaluation tasks on a model and aggregate them into the metrics a search uses.

Two kinds of evaluation, told apart by the metric ``eval/proxy`` (1.0 proxy, 0.0 full):

- full (``eval.proxy_items = 0``): every row of every task, plus greedy generation for ROUGE
  when ``eval.generate`` is on (CLEAR_SPEC §4).
- proxy (``eval.proxy_items = N``): the same seeded N rows of each task every time
  (:func:`clear_ray.eval.tasks.proxy_subset`), teacher-forced scoring only. No generation, so
  ROUGE is missing from every aggregate and proxy numbers are not comparable to full ones; Gold's
  reference truth ratios must come from a proxy evaluation with the same eval config (the Gold
  cache key includes it).

Either kind can be split over the ranks of a process group (:class:`Shard`): each rank scores a
strided share of every task's rows, the per-item values are gathered, and every rank ends with
the result of the unsharded evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import datasets
import numpy as np
import torch.distributed as dist
from torch import nn

from clear_ray.config import ConfigError, EvalConfig
from clear_ray.data.clear import config_available, load_clear
from clear_ray.data.collate import Collator, Example
from clear_ray.eval import metrics
from clear_ray.eval.generation import generate_greedy
from clear_ray.eval.scoring import score_items
from clear_ray.eval.tasks import CAPTIONS, TASKS, Layout, Task, evaluation_rows, resolve_task_names

FORGET_QUALITY_TASK = "forget_captions"
PROXY_METRIC = "eval/proxy"

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """This process's share of an evaluation: rank ``rank`` of ``world_size`` takes every
    ``world_size``-th chosen row from position ``rank`` (strided, so shares differ by at most
    one row and each spans the whole task). The default is the whole, unsharded evaluation.
    """

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside a world of {self.world_size}")

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def check_group(self) -> None:
        """Fail before any work, not at the gather, when no matching process group exists."""
        if self.sharded and not (
            dist.is_initialized() and dist.get_world_size() == self.world_size
        ):
            raise RuntimeError(
                f"a {self.world_size}-rank evaluation needs an initialised process group of "
                "that size"
            )

    def take(self, rows: np.ndarray) -> np.ndarray:
        return rows[self.rank :: self.world_size]

    def gather(self, values: list[T]) -> list[T]:
        """Every rank's ``values`` (its :meth:`take` share), in the unsharded order."""
        if not self.sharded:
            return values
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, values)
        return interleave(parts)


def interleave(parts: Sequence[Sequence[T]]) -> list[T]:
    """Undo a strided split: ``parts[r]`` holds items ``r, r + len(parts), ...`` of the whole.

    Raises ValueError when the part lengths cannot come from one strided split.
    """
    merged: list[Any] = [None] * sum(len(part) for part in parts)
    for rank, part in enumerate(parts):
        merged[rank :: len(parts)] = part
    return merged


@dataclass
class TaskResult:
    """Per-item values of one task; aggregates are recomputed from these, never stored alone."""

    nll_true: np.ndarray  # [n]
    nll_paraphrased: np.ndarray | None  # [n]; None for layouts without a truth ratio
    nll_perturbed: Sequence[np.ndarray]  # per item [k_i]: distractor counts may differ per item
    rouge_recall: np.ndarray | None  # [n], None when generation is off (or a proxy evaluation)
    layout: Layout = CAPTIONS
    item_index: np.ndarray | None = None  # [n] row index in the task's CLEAR config
    proxy: bool = False

    def __post_init__(self) -> None:
        self.nll_true = np.asarray(self.nll_true, dtype=np.float64)
        if self.nll_paraphrased is not None:
            self.nll_paraphrased = np.asarray(self.nll_paraphrased, dtype=np.float64)
        self.nll_perturbed = [np.asarray(row, dtype=np.float64) for row in self.nll_perturbed]
        if self.item_index is None:
            self.item_index = np.arange(len(self.nll_true))
        if len(self.nll_perturbed) != len(self.nll_true):
            raise ValueError(
                f"{len(self.nll_perturbed)} distractor rows for {len(self.nll_true)} items"
            )

    def _by_width(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(item positions, their distractor NLLs [m, k]) for each distractor count k."""
        widths = np.array([len(row) for row in self.nll_perturbed])
        for width in np.unique(widths):
            rows = np.flatnonzero(widths == width)
            yield rows, np.stack([self.nll_perturbed[i] for i in rows]).reshape(len(rows), width)

    @property
    def truth_ratios(self) -> np.ndarray | None:
        """Per-item TR (each item averages its own distractors); None without a paraphrase."""
        if not self.layout.truth_ratio or self.nll_paraphrased is None:
            return None
        ratios = np.empty(len(self.nll_true))
        for rows, perturbed in self._by_width():
            ratios[rows] = metrics.truth_ratios(self.nll_paraphrased[rows], perturbed)
        return ratios

    @property
    def probability(self) -> float:
        if not self.layout.prob_over_options:
            return metrics.probability(self.nll_true)
        # Items with different option counts are scored in groups, weighted by group size.
        total = sum(
            len(rows) * metrics.probability_with_options(self.nll_true[rows], perturbed)
            for rows, perturbed in self._by_width()
        )
        return float(total / len(self.nll_true))

    def scores(self, forget: bool) -> dict[str, float]:
        values = {"prob": self.probability}
        ratios = self.truth_ratios
        if ratios is not None:
            values["truth_ratio"] = metrics.truth_ratio_score(ratios, forget=forget)
        if self.rouge_recall is not None:
            values["rougeL_recall"] = float(np.mean(self.rouge_recall))
        return values

    def columns(self) -> dict[str, list]:
        """Per-item values as columns (None where a task has no such value), e.g. for parquet."""
        n = len(self.nll_true)
        ratios = self.truth_ratios
        return {
            "item_index": [int(i) for i in self.item_index],
            "nll_true": self.nll_true.tolist(),
            "nll_paraphrased": (
                [None] * n if self.nll_paraphrased is None else self.nll_paraphrased.tolist()
            ),
            "nll_perturbed": [row.tolist() for row in self.nll_perturbed],
            "truth_ratio": [None] * n if ratios is None else ratios.tolist(),
            "rouge": [None] * n if self.rouge_recall is None else self.rouge_recall.tolist(),
        }


@dataclass
class EvalResult:
    tasks: dict[str, TaskResult]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def eval_kind(self) -> str:
        return "proxy" if self.metrics.get(PROXY_METRIC) == 1.0 else "full"


def run_task(
    task: Task,
    model: nn.Module,
    collator: Collator,
    rows: datasets.Dataset,
    config: EvalConfig,
    shard: Shard = Shard(),
) -> TaskResult:
    """Score (and, in a full evaluation, generate for) the task's rows of its CLEAR config.

    With a sharded ``shard`` this rank works on its share only and every rank returns the
    whole, unsharded result (a collective: all ranks must call it for the same task).
    """
    shard.check_group()
    eligible = task.eligible_rows(rows)
    if len(eligible) == 0:
        raise ConfigError(f"task {task.name}: its CLEAR config has no rows to evaluate")
    proxy = config.proxy_items > 0
    generate = config.generate and not proxy
    chosen = evaluation_rows(eligible, config)
    mine = list(rows.select(shard.take(chosen)))
    values = shard.gather(_score_rows(task, model, collator, mine, config, generate))
    nll_true, nll_paraphrased, nll_perturbed, rouge = zip(*values, strict=True)
    return TaskResult(
        nll_true=np.array(nll_true),
        nll_paraphrased=np.array(nll_paraphrased) if task.layout.truth_ratio else None,
        nll_perturbed=nll_perturbed,
        rouge_recall=np.array(rouge) if generate else None,
        layout=task.layout,
        item_index=np.asarray(chosen),
        proxy=proxy,
    )


def _score_rows(
    task: Task,
    model: nn.Module,
    collator: Collator,
    rows: list[dict],
    config: EvalConfig,
    generate: bool,
) -> list[tuple[float, float | None, np.ndarray, float | None]]:
    """Per row (true NLL, paraphrase NLL, distractor NLLs, ROUGE-L recall), ready to gather.

    A rank can get no rows when a task has fewer rows than there are ranks.
    """
    if not rows:
        return []
    items = task.items(rows)
    split = [
        task.layout.split(nll) for nll in score_items(model, collator, items, config.batch_size)
    ]
    rouge: list[float | None] = [None] * len(rows)
    if generate:
        prompts = [Example(item.question, "", item.image) for item in items]
        predictions = generate_greedy(
            model, collator, prompts, config.max_new_tokens, config.batch_size
        )
        rouge = metrics.rouge_l_recall(predictions, [task.reference(row) for row in rows]).tolist()
    return [(*nll, recall) for nll, recall in zip(split, rouge, strict=True)]


def aggregate(
    results: dict[str, TaskResult], gold_truth_ratios: np.ndarray | None
) -> dict[str, float]:
    """Per-task scores, per-group and model-utility harmonic means, forget quality vs Gold.

    ``{group}_metric`` is the harmonic mean of every score (prob, truth ratio, ROUGE) of that
    group's tasks; ``model_utility`` that of every retain and real score (CLEAR_SPEC §5).
    """
    flat: dict[str, float] = {}
    by_group: dict[str, list[float]] = {}
    for name, result in results.items():
        group = TASKS[name].group
        scores = result.scores(forget=group == "forget")
        flat.update({f"{name}/{key}": value for key, value in scores.items()})
        by_group.setdefault(group, []).extend(scores.values())
    for group, values in by_group.items():
        flat[f"{group}_metric"] = metrics.harmonic_mean(values)
    utility = [value for group, values in by_group.items() if group != "forget" for value in values]
    if utility:
        flat["model_utility"] = metrics.harmonic_mean(utility)
    flat[PROXY_METRIC] = float(any(result.proxy for result in results.values()))
    if gold_truth_ratios is not None and FORGET_QUALITY_TASK in results:
        model_tr = results[FORGET_QUALITY_TASK].truth_ratios
        p_value = metrics.forget_quality(model_tr, gold_truth_ratios)
        flat["forget_quality"] = p_value
        flat["log_forget_quality"] = metrics.log_forget_quality(p_value)
        flat["forget_quality_js"] = metrics.forget_quality_js(model_tr, gold_truth_ratios)
    return flat


class TaskData:
    """The CLEAR configs an evaluation reads, each loaded at most once.

    Forget captions and face naming share a config, and a trial evaluates after every epoch:
    loading again would re-read (and, for ``datasets``' fingerprint, re-hash) the parquet
    files each time, which on the real 3.7k-image set is repeated I/O per epoch.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._loaded: dict[str, datasets.Dataset] = {}

    @classmethod
    def of(cls, source: str | TaskData) -> TaskData:
        """``source`` itself if it is already a ``TaskData``, else a fresh one for the path/id."""
        return source if isinstance(source, TaskData) else cls(source)

    def has(self, clear_config: str) -> bool:
        """Whether the source holds ``clear_config`` (without loading it)."""
        return clear_config in self._loaded or config_available(self.source, clear_config)

    def __getitem__(self, clear_config: str) -> datasets.Dataset:
        if clear_config not in self._loaded:
            self._loaded[clear_config] = load_clear(self.source, clear_config)
        return self._loaded[clear_config]


def evaluate(
    model: nn.Module,
    collator: Collator,
    source: str | TaskData,
    forget_split: str,
    config: EvalConfig,
    gold_truth_ratios: np.ndarray | None = None,
    task_names: Sequence[str] | None = None,
    shard: Shard = Shard(),
) -> EvalResult:
    """Evaluate ``model`` on the tasks ``config.tasks`` names (or ``task_names`` if given).

    Deterministic: fixed prompts, greedy generation, and in a proxy evaluation the same rows
    every call. ``gold_truth_ratios`` are Gold's per-item TR on the forget-quality task from an
    evaluation with the same ``config`` (so a proxy compares the same rows). A sharded
    ``shard`` splits the work over the process group's ranks, which must all call this with
    the same arguments; each gets the unsharded result. ``source`` is a hub id or directory,
    or a ``TaskData`` that keeps its datasets loaded between calls.
    """
    data = TaskData.of(source)
    spec = config.tasks if task_names is None else ",".join(task_names)
    names = resolve_task_names(spec, data.has, forget_split)
    was_training = model.training
    model.eval()
    try:
        results = {}
        for name in names:
            task = TASKS[name]
            dataset = data[task.config_for(forget_split)]
            results[name] = run_task(task, model, collator, dataset, config, shard)
    finally:
        model.train(was_training)
    return EvalResult(results, aggregate(results, gold_truth_ratios))
