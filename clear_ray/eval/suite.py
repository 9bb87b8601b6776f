"""Run CLEAR evaluation tasks on a model and aggregate them into the metrics a search uses.

Two kinds of evaluation, told apart by the metric ``eval/proxy`` (1.0 proxy, 0.0 full):

- full (``eval.proxy_items = 0``): every row of every task, plus greedy generation for ROUGE
  when ``eval.generate`` is on (CLEAR_SPEC §4).
- proxy (``eval.proxy_items = N``): the same seeded N rows of each task every time
  (:func:`clear_ray.eval.tasks.proxy_subset`), teacher-forced scoring only. No generation, so
  ROUGE is missing from every aggregate and proxy numbers are not comparable to full ones; Gold's
  reference NLLs must come from a proxy evaluation with the same eval config (the Gold
  cache key includes it).

Two families of aggregates come from the same per-item values (CLEAR_SPEC §5):

- the project's extended ones, ``forget_metric``/``retain_metric``/``real_metric``/
  ``model_utility`` (every score of the group's tasks, ROUGE and TOFU text QA included) and the
  objective ``forget_quality``/``log_forget_quality``/``forget_quality_js``/``forget_distance``
  (per-item TRs on the forget-quality task(s) of ``data.modality``, :data:`OBJECTIVE_TASKS`,
  combined by :func:`with_objective`; each task's own values, with the KS statistic D and the
  item count, under ``<task>/``);
- CLEAR's table columns under ``clear/`` (:data:`CLEAR_AGGREGATES`), with CLEAR's scalar-mean
  truth ratio ``<task>/clear_truth_ratio`` and its forget quality on the forget captions.

Either kind can be split over the ranks of a process group (:class:`Shard`): each rank scores a
strided share of every task's rows, the per-item values are gathered, and every rank ends with
the result of the unsharded evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import datasets
import numpy as np
import torch.distributed as dist
from torch import nn

from clear_ray.config import DataConfig, EvalConfig
from clear_ray.data.clear import config_available, load_clear
from clear_ray.data.collate import Collator, Example
from clear_ray.data.folds import FOLDED_GROUPS, Fold
from clear_ray.errors import ConfigError
from clear_ray.eval import metrics
from clear_ray.eval.generation import generate_greedy
from clear_ray.eval.names import (
    FORGET_CAPTIONS,
    FORGET_DISTANCE,
    FORGET_QUALITY_TASKS,
    ITEM_COUNT,
    KS_STATISTIC,
    NEG_FORGET_DISTANCE,
    OBJECTIVE_METRICS,
    objective_tasks,
)
from clear_ray.eval.reference import GoldReference, TaskReference
from clear_ray.eval.scoring import score_items
from clear_ray.eval.tasks import CAPTIONS, TASKS, Layout, Task, evaluation_rows, resolve_task_names

# CLEAR's table columns: name -> (tasks that must all be evaluated, their scores in the
# harmonic mean). Real/Retain/Forget: CLEAR ``mm/build_vllm_table.py`` (no ROUGE, no TOFU text);
# model utility: ``mm/calculate_metrics.py`` (Prob, ROUGE, TR of every non-forget task; ROUGE
# only when generated). CLEAR's forget quality compares the forget captions (``eval_log_forget``).
CLEAR_AGGREGATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "clear/real_metric": (("real_faces", "real_world"), ("prob", "clear_truth_ratio")),
    "clear/retain_metric": (
        ("retain_captions", "retain_face_naming"),
        ("prob", "clear_truth_ratio"),
    ),
    "clear/forget_metric": (
        ("forget_captions", "forget_face_naming"),
        ("prob", "clear_truth_ratio"),
    ),
    "clear/model_utility": (
        ("retain_captions", "retain_face_naming", "real_faces", "real_world"),
        ("prob", "rougeL_recall", "clear_truth_ratio"),
    ),
}
CLEAR_FORGET_QUALITY_TASK = FORGET_CAPTIONS
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
    names: list[str | None] | None = None  # [n] the row's person, where its config names one

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
    def has_truth_ratio(self) -> bool:
        return self.layout.truth_ratio and self.nll_paraphrased is not None

    @property
    def truth_ratios(self) -> np.ndarray | None:
        """Per-item TR (each item averages its own distractors); None without a paraphrase."""
        if not self.has_truth_ratio:
            return None
        return metrics.truth_ratios(self.nll_paraphrased, self.nll_perturbed)

    @property
    def clear_truth_ratios(self) -> np.ndarray | None:
        """CLEAR's per-item TR (one perturbed mean over the task); None without a paraphrase."""
        if not self.has_truth_ratio:
            return None
        return metrics.clear_truth_ratios(self.nll_paraphrased, self.nll_perturbed)

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
        ratios, clear_ratios = self.truth_ratios, self.clear_truth_ratios
        return {
            "item_index": [int(i) for i in self.item_index],
            "nll_true": self.nll_true.tolist(),
            "nll_paraphrased": (
                [None] * n if self.nll_paraphrased is None else self.nll_paraphrased.tolist()
            ),
            "nll_perturbed": [row.tolist() for row in self.nll_perturbed],
            "truth_ratio": [None] * n if ratios is None else ratios.tolist(),
            "clear_truth_ratio": [None] * n if clear_ratios is None else clear_ratios.tolist(),
            "rouge": [None] * n if self.rouge_recall is None else self.rouge_recall.tolist(),
            "name": [None] * n if self.names is None else [name or None for name in self.names],
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
    fold: Fold | None = None,
) -> TaskResult:
    """Score (and, in a full evaluation, generate for) the task's rows of its CLEAR config.

    With a sharded ``shard`` this rank works on its share only and every rank returns the
    whole, unsharded result (a collective: all ranks must call it for the same task). A
    ``fold`` restricts a forget or retain task to that fold's persons (data/folds.py); real
    tasks keep every row. With a fold, every row's person (its ``name``, or the person its text
    names) is in the result's ``names``.
    """
    shard.check_group()
    eligible = task.eligible_rows(rows)
    if len(eligible) == 0:
        raise ConfigError(f"task {task.name}: its CLEAR config has no rows to evaluate")
    proxy = config.proxy_items > 0
    generate = config.generate and not proxy

    def in_fold(index: np.ndarray) -> list[bool]:
        return fold.keep(fold.persons_of(rows, index.tolist()), index.tolist())

    split = fold is not None and task.group in FOLDED_GROUPS
    chosen = evaluation_rows(eligible, config, in_fold if split else None)
    if len(chosen) == 0:
        raise ConfigError(f"task {task.name}: the {fold.name} fold holds none of its rows")
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
        names=row_names(rows, chosen, fold),
    )


def row_names(rows: datasets.Dataset, index: np.ndarray, fold: Fold | None) -> list[str | None]:
    """The person of each row of ``index``: by the folds' rule with a fold, else the ``name``
    column ("" in TOFU's rows; None: no name column)."""
    if fold is not None:
        return fold.persons_of(rows, index.tolist())
    if "name" not in rows.column_names:
        return [None] * len(index)
    return rows.select_columns(["name"]).select(index.tolist())["name"]


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
    results: dict[str, TaskResult],
    reference: GoldReference | None = None,
    modality: str = DataConfig.modality,
) -> dict[str, float]:
    """Per-task scores, the extended and CLEAR aggregates, and forget quality vs Gold.

    ``{group}_metric`` is the harmonic mean of every score (prob, truth ratio, ROUGE) of that
    group's tasks; ``model_utility`` that of every retain and real score (CLEAR_SPEC §5).
    ``clear/*`` are CLEAR's table columns (:data:`CLEAR_AGGREGATES`); one whose tasks were not
    all evaluated is absent. With a ``reference``, every forget-quality task it shares with
    ``results`` gets ``<task>/forget_quality`` (and log, JS), the objective for ``modality``
    is set from them (:func:`with_objective`), and ``clear/forget_quality`` (and log, JS) come
    from the forget captions.
    """
    flat: dict[str, float] = {}
    by_group: dict[str, list[float]] = {}
    for name, result in results.items():
        group = TASKS[name].group
        forget = group == "forget"
        scores = result.scores(forget=forget)
        flat.update({f"{name}/{key}": value for key, value in scores.items()})
        by_group.setdefault(group, []).extend(scores.values())
        if result.has_truth_ratio:
            flat[f"{name}/clear_truth_ratio"] = metrics.clear_truth_ratio_score(
                result.nll_paraphrased, result.nll_perturbed, forget=forget
            )
    for group, values in by_group.items():
        flat[f"{group}_metric"] = metrics.harmonic_mean(values)
    utility = [value for group, values in by_group.items() if group != "forget" for value in values]
    if utility:
        flat["model_utility"] = metrics.harmonic_mean(utility)
    flat.update(clear_aggregates(flat, results.keys()))
    flat[PROXY_METRIC] = float(any(result.proxy for result in results.values()))
    if reference is not None:
        for name, gold in reference.tasks.items():
            if name in results:
                flat.update(_forget_quality(results[name], gold, f"{name}/"))
        if CLEAR_FORGET_QUALITY_TASK in results and CLEAR_FORGET_QUALITY_TASK in reference.tasks:
            model = results[CLEAR_FORGET_QUALITY_TASK]
            gold = reference.tasks[CLEAR_FORGET_QUALITY_TASK]
            flat.update(_clear_forget_quality(model, gold))
    return with_objective(flat, modality)


def clear_aggregates(flat: dict[str, float], evaluated: Iterable[str]) -> dict[str, float]:
    """CLEAR's table columns from the per-task scores in ``flat``, where their tasks ran."""
    done = set(evaluated)
    values = {}
    for name, (tasks, scores) in CLEAR_AGGREGATES.items():
        if done.issuperset(tasks):
            terms = [flat[f"{t}/{s}"] for t in tasks for s in scores if f"{t}/{s}" in flat]
            values[name] = metrics.harmonic_mean(terms)
    return values


def _forget_quality(model: TaskResult, gold: TaskReference, prefix: str) -> dict[str, float]:
    """The model's TRs against Gold's on one task: KS p-value (and log), its D and n, 1 − JS
    and W1 of the log TRs; Gold's items must be the model's (:meth:`TaskReference.check_items`).
    """
    gold.check_items(prefix.rstrip("/"), model.item_index)
    model_log_tr = metrics.log_truth_ratios(model.nll_paraphrased, model.nll_perturbed)
    gold_log_tr = metrics.log_truth_ratios(gold.nll_paraphrased, gold.nll_perturbed)
    model_tr, gold_tr = np.exp(model_log_tr), np.exp(gold_log_tr)
    p_value = metrics.forget_quality(model_tr, gold_tr)
    return {
        f"{prefix}forget_quality": p_value,
        f"{prefix}log_forget_quality": metrics.log_forget_quality(p_value),
        f"{prefix}{KS_STATISTIC}": metrics.ks_statistic(model_tr, gold_tr),
        f"{prefix}{ITEM_COUNT}": float(len(model_tr)),
        f"{prefix}forget_quality_js": metrics.forget_quality_js(model_tr, gold_tr),
        f"{prefix}{FORGET_DISTANCE}": metrics.forget_distance(model_log_tr, gold_log_tr),
    }


def _clear_forget_quality(model: TaskResult, gold: TaskReference) -> dict[str, float]:
    gold.check_items(CLEAR_FORGET_QUALITY_TASK, model.item_index)
    nlls = (model.nll_paraphrased, model.nll_perturbed, gold.nll_paraphrased, gold.nll_perturbed)
    p_value = metrics.clear_forget_quality(*nlls)
    model_tr = metrics.clear_truth_ratios(*nlls[:2])
    gold_tr = metrics.clear_truth_ratios(*nlls[2:])
    return {
        "clear/forget_quality": p_value,
        "clear/log_forget_quality": metrics.log_forget_quality(p_value),
        f"clear/{KS_STATISTIC}": metrics.ks_statistic(model_tr, gold_tr),
        "clear/forget_quality_js": metrics.clear_forget_quality_js(*nlls),
    }


def with_objective(flat: dict[str, float], modality: str) -> dict[str, float]:
    """``flat`` with the objective metrics set for ``modality`` from the per-task values.

    Each column combines all of the modality's tasks, never one task per column:

    - ``log_forget_quality``/``forget_quality``: Fisher's combination of the tasks' KS tests
      (:func:`metrics.combined_log_p`), a p-value again, so a well-forgotten modality cannot
      hide one the model still knows and a coarse test (few items) does not decide alone;
    - ``forget_quality_js`` and ``forget_distance`` (W1 of log TRs): the mean over the tasks
      weighted by their items (``<task>/n_items``), so every item weighs the same;
    - ``neg_forget_distance``: −``forget_distance``, the form a search maximises.

    With one task each column is that task's own value, so ``visual``, ``text`` and ``both``
    share their meaning (Gold against itself: FQ 1, log FQ 0, 1 − JS 1, W1 0); the per-task
    values stay in ``flat``. Absent when none of the tasks was compared. Pure in the per-task
    values, so one cached Gold/Original evaluation serves every modality.
    """
    values = {key: value for key, value in flat.items() if key not in OBJECTIVE_METRICS}
    compared = [name for name in FORGET_QUALITY_TASKS if f"{name}/forget_quality" in flat]
    tasks = objective_tasks(modality, compared)
    if not tasks:
        return values
    log_p = metrics.combined_log_p([flat[f"{name}/log_forget_quality"] for name in tasks])
    items = [flat[f"{name}/{ITEM_COUNT}"] for name in tasks]

    def item_mean(key: str) -> float:
        return float(np.average([flat[f"{name}/{key}"] for name in tasks], weights=items))

    distance = item_mean(FORGET_DISTANCE)
    values.update(
        {
            "forget_quality": float(np.exp(log_p)),
            "log_forget_quality": log_p,
            "forget_quality_js": item_mean("forget_quality_js"),
            FORGET_DISTANCE: distance,
            NEG_FORGET_DISTANCE: -distance,
        }
    )
    return values


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
    reference: GoldReference | None = None,
    task_names: Sequence[str] | None = None,
    shard: Shard = Shard(),
    modality: str = DataConfig.modality,
    fold: Fold | None = None,
) -> EvalResult:
    """Evaluate ``model`` on the tasks ``config.tasks`` names (or ``task_names`` if given).

    Deterministic: fixed prompts, greedy generation, and in a proxy evaluation the same rows
    every call. ``reference`` holds Gold's per-item NLLs on the forget-quality tasks from an
    evaluation with the same ``config`` (so a proxy compares the same rows); ``modality``
    (``data.modality``) picks the objective's task(s). A sharded
    ``shard`` splits the work over the process group's ranks, which must all call this with
    the same arguments; each gets the unsharded result. ``source`` is a hub id or directory,
    or a ``TaskData`` that keeps its datasets loaded between calls. ``fold`` (a person fold,
    data/folds.py) restricts the forget tasks to its persons; ``reference`` must then come from
    the same fold.
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
            results[name] = run_task(task, model, collator, dataset, config, shard, fold)
    finally:
        model.train(was_training)
    return EvalResult(results, aggregate(results, reference, modality))
