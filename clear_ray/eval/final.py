"""The final, full evaluation of a search's best trial at its best epoch.

Per-epoch reports may be proxies (a seeded subset, scoring only) and generate only when a
selection metric needs ROUGE (:func:`epoch_eval_config`); the numbers a user compares come from
this one: every row of every task with generation, against Gold's full evaluation.
It runs as a Ray task with a trial's resources (a GPU when trials have one), and the adapter
travels as bytes, so it does not depend on the driver's filesystem.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from transformers import PreTrainedModel, ProcessorMixin

from clear_ray.config import Config, EvalConfig, SearchConfig
from clear_ray.data.collate import Collator
from clear_ray.data.folds import Fold
from clear_ray.eval.reference import GoldReference
from clear_ray.eval.suite import EvalResult, evaluate
from clear_ray.models.loading import load_for_evaluation
from clear_ray.runtime.staging import DriverDir, on_this_node


def full_eval_config(config: EvalConfig) -> EvalConfig:
    return replace(config, proxy_items=0)


def selects_on_rouge(search: SearchConfig) -> bool:
    """Does a per-epoch decision read ROUGE? The objectives (truth-ratio forget quality) and
    CLEAR's Retain column do not (``eval/suite.py`` ``CLEAR_AGGREGATES``); the extended retain
    metric and every utility metric do, once a utility constraint or the Pareto search uses one.
    """
    return (
        not search.retain_metric.startswith("clear/")
        or search.min_utility > 0
        or search.multi_objective
    )


def epoch_eval_config(cfg: Config) -> EvalConfig:
    """The per-epoch evaluation (trials, and Original's and Gold's references for them):
    ``cfg.eval`` without greedy generation unless :func:`selects_on_rouge`.

    Why: generating up to ``eval.max_new_tokens`` for every item is about half of an evaluation
    (the tiny Original on every row: 2.3-2.9 s with it, 1.2-1.5 s without; more on a 7B model),
    and nothing that selects reads it by default.
    Final and confirm evaluations keep ``cfg.eval.generate``.
    """
    return replace(cfg.eval, generate=cfg.eval.generate and selects_on_rouge(cfg.search))


def read_adapter(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def load_adapted(
    original_dir: str | DriverDir, adapter_files: dict[str, bytes] | None, precision: str = "fp32"
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Original with the adapter (files as bytes) merged in; Original itself without one."""
    if adapter_files is None:
        return load_for_evaluation(on_this_node(original_dir), None, precision)
    with tempfile.TemporaryDirectory() as scratch:
        for name, blob in adapter_files.items():
            (Path(scratch) / name).write_bytes(blob)
        return load_for_evaluation(on_this_node(original_dir), scratch, precision)


def evaluate_adapter(
    original_dir: str | DriverDir,
    adapter_files: dict[str, bytes],
    source: str | DriverDir,
    forget_split: str,
    config: EvalConfig,
    gold: GoldReference,
    modality: str,
    precision: str = "fp32",
    fold: Fold | None = None,
) -> EvalResult:
    """Original + the adapter (merged), evaluated on ``config``'s tasks against Gold, in the
    precision of the trials and of Gold's reference evaluation; forget tasks on ``fold``'s
    persons (the report fold: Gold's reference must be of the same fold)."""
    model, processor = load_adapted(original_dir, adapter_files, precision)
    data = on_this_node(source)
    collator = Collator(processor)
    return evaluate(model, collator, data, forget_split, config, gold, modality=modality, fold=fold)


def run_final_evaluation(
    cfg: Config,
    original_dir: str | DriverDir,
    adapter: Path,
    source: str | DriverDir,
    gold: GoldReference,
    fold: Fold | None = None,
) -> EvalResult:
    """``evaluate_adapter`` as a Ray task with one trial worker's resources."""
    from clear_ray.runtime.driver_tasks import result_of, trial_task

    launch = trial_task(evaluate_adapter, cfg.search).remote(
        original_dir,
        read_adapter(adapter),
        source,
        cfg.data.forget_split,
        full_eval_config(cfg.eval),
        gold,
        cfg.data.modality,
        cfg.train.precision,
        fold,
    )
    return result_of(launch, "the final evaluation", cfg.search)
