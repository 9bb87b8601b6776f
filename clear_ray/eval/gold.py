"""Reference evaluations of Gold and Original, computed once and cached next to the model.

Every trial's forget quality compares its per-item truth ratios to Gold's, and the default
feasibility threshold is relative to Original's retain metric; both are deterministic in
(model, data, split, eval config, the reference compared with), so they are cached by a key of
exactly those inputs and of what the cache holds (:data:`CACHE_FORMAT`). The cache directory
holds ``reference.json`` (metrics and the model's own :class:`GoldReference`) and each task's
per-item values as parquet, and is logged as it is to the search's MLflow parent run. Which
tasks form the objective (``data.modality``) is applied on reading, so one cached evaluation
serves every modality.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from clear_ray.cache import cache_key, cached_dir
from clear_ray.config import DataConfig, EvalConfig
from clear_ray.data.clear import data_fingerprint
from clear_ray.data.collate import Collator
from clear_ray.data.folds import Fold
from clear_ray.eval.names import FORGET_QUALITY_TASKS
from clear_ray.eval.outputs import write_item_tables
from clear_ray.eval.reference import GoldReference
from clear_ray.eval.suite import TaskData, aggregate, evaluate, with_objective
from clear_ray.eval.tasks import TASKS
from clear_ray.models.loading import load_checkpoint

REFERENCE_FILE = "reference.json"
# What reference.json holds; part of the key, so a change of its content is a new entry.
# 2: metrics with clear/* and per-task forget quality, plus the model's own GoldReference.
# 3: per-item parquet files with the row's person (``name``).
# 4: the reference's item indices; per-task KS statistic, item count and W1 distance.
# 5: folds place a row without a name by the person its text names, and split retain persons.
CACHE_FORMAT = 5


@dataclass(frozen=True)
class ReferenceEvaluation:
    metrics: dict[str, float]
    reference: GoldReference  # this model's own NLLs on the forget-quality tasks it ran
    directory: str  # the cache directory: reference.json + <task>.parquet


def evaluation_entry(
    cache_dir: Path,
    source: str | TaskData,
    forget_split: str,
    config: EvalConfig,
    gold: GoldReference | None = None,
    precision: str = "fp32",
    fold: Fold | None = None,
) -> Path:
    """Where an evaluation under these inputs is cached in ``cache_dir`` (which names the
    model): ``<split>-<key>``, a key of everything the values depend on but the model."""
    data = TaskData.of(source)
    configs = sorted({task.config_for(forget_split) for task in TASKS.values()})
    key = cache_key(
        {
            "data": data_fingerprint(data.source, configs),
            "split": forget_split,
            "eval": asdict(config),
            "gold": None if gold is None else gold.to_json(),
            "format": CACHE_FORMAT,
            "precision": precision,
            # Absent without folds, so caches made before folds existed stay valid.
            **(
                {"fold": [fold.name, sorted(fold.persons), fold.seed, fold.report_fraction]}
                if fold
                else {}
            ),
        }
    )
    return Path(cache_dir) / f"{forget_split}-{key}"


def read_evaluation(directory: Path, modality: str = DataConfig.modality) -> ReferenceEvaluation:
    """A cached evaluation (``evaluation_entry``) as it was written."""
    values = json.loads((directory / REFERENCE_FILE).read_text())
    return ReferenceEvaluation(
        metrics=with_objective(values["metrics"], modality),
        reference=GoldReference.from_json(values["reference"]),
        directory=str(directory),
    )


def reference_evaluation(
    model_dir: Path,
    source: str | TaskData,
    forget_split: str,
    config: EvalConfig,
    gold: GoldReference | None = None,
    modality: str = DataConfig.modality,
    precision: str = "fp32",  # the trials' train.precision: the same dtype for both
    cache_dir: Path | None = None,
    fold: Fold | None = None,
) -> ReferenceEvaluation:
    """Evaluate the checkpoint in ``model_dir``, cached under ``cache_dir`` (default
    ``model_dir/evaluations``; a search keeps them apart from the model, which may be the
    user's own: clear_ray/references/).

    Forget quality compares with ``gold`` (Gold's own ``reference``); without one the model is
    its own reference (Gold against itself: FQ 1, log FQ 0, JS 1). A ``TaskData`` source lets a
    search's reference evaluations share one load of the data. A ``fold`` restricts the forget
    tasks to its persons (data/folds.py): a search compares trials with Gold on the fold they
    are evaluated on.
    """
    data = TaskData.of(source)

    def build(directory: Path) -> None:
        model, processor = load_checkpoint(model_dir, precision)
        result = evaluate(model, Collator(processor), data, forget_split, config, fold=fold)
        own = GoldReference.of(result.tasks, FORGET_QUALITY_TASKS)
        values = {
            "metrics": aggregate(result.tasks, own if gold is None else gold),
            "reference": own.to_json(),
        }
        write_item_tables(directory, result.tasks)
        (directory / REFERENCE_FILE).write_text(json.dumps(values, indent=2))

    cache_dir = Path(model_dir) / "evaluations" if cache_dir is None else cache_dir
    entry = evaluation_entry(cache_dir, data, forget_split, config, gold, precision, fold)
    return read_evaluation(cached_dir(entry, build, "reference evaluation"), modality)
