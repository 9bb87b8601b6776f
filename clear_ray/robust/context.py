"""What every robustness check is handed, and the evaluation pieces they share.

A check is a function of (Original, adapter, data, persons): it loads the unlearned model
(Original with the adapter merged, as the final evaluation, eval/final.py), evaluates the
forget tasks of ``data.modality`` on the report persons' rows only, and compares with Gold
on exactly those rows. Checks score (teacher forcing) and never generate: ROUGE would
multiply the cost of every variant they evaluate, and the knowledge a check looks for shows
in the NLLs (the probability and the truth ratio), which all models are compared on alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from clear_ray.cache import cache_key, cached_dir
from clear_ray.config import Config, EvalConfig
from clear_ray.data.collate import Collator
from clear_ray.data.folds import benchmark_persons, row_persons
from clear_ray.eval.gold import ReferenceEvaluation, reference_evaluation
from clear_ray.eval.names import FORGET_QUALITY_TASKS
from clear_ray.eval.reference import GoldReference
from clear_ray.eval.suite import EvalResult, TaskData, evaluate
from clear_ray.eval.tasks import TASKS

# The forget tasks that show each modality's knowledge (eval/tasks.py).
VISUAL_TASKS = ("forget_captions", "forget_face_naming")
TEXT_TASKS = ("forget_text_qa", "forget_text_perturbed")
FORGET_TASKS = {"visual": VISUAL_TASKS, "text": TEXT_TASKS, "both": VISUAL_TASKS + TEXT_TASKS}
SCORED_FILE = "scored.json"
# What a Scored entry holds and how its conditions are computed; part of its key.
SCORED_FORMAT = 1
# A condition (attack, rounding, prompt) under which Original leads Gold by less than this
# fraction of their lead as evaluated cannot tell knowledge from noise on a few items.
MIN_GAP = 0.05


def knowledge(value: float, gold: float, original: float, min_gap: float = 0.0) -> float:
    """Where ``value`` lies between Gold (0, never knew) and Original (1, knows all), each
    scored under the same condition as ``value``; NaN when Original leads Gold by ``min_gap``
    or less (no scale to measure on: a zero or inverted denominator)."""
    lead = original - gold
    return (value - gold) / lead if lead > min_gap else float("nan")


def worst_knowledge(by_condition: dict[str, float]) -> tuple[float, str | None]:
    """The condition that reveals most knowledge and its value, over those that measured
    one (not NaN); (NaN, None) when none did."""
    measured = {name: value for name, value in by_condition.items() if value == value}
    if not measured:
        return float("nan"), None
    worst = max(measured, key=measured.__getitem__)
    return measured[worst], worst


@dataclass(frozen=True)
class CheckResult:
    """A check's named metrics (``robust/<check>/<name>``), per-item values and notes."""

    metrics: dict[str, float]
    items: dict[str, Any] = field(default_factory=dict)  # JSON-able per-item values
    notes: tuple[str, ...] = ()  # e.g. a part skipped and why


def prefixed(check: str, values: dict[str, float]) -> dict[str, float]:
    return {f"robust/{check}/{name}": float(value) for name, value in values.items()}


def row_mask(
    dataset: datasets.Dataset, persons: tuple[str, ...], everyone: tuple[str, ...]
) -> np.ndarray:
    """Which rows of a forget config belong to ``persons``: those whose person by the folds'
    rule (data/folds.py ``person_of``, matched against ``everyone``) is one of them. A row
    naming no one belongs to no person's check."""
    found = row_persons(dataset, range(len(dataset)), everyone)
    return np.array([person in persons for person in found], dtype=bool)


def forget_configs(forget_split: str) -> set[str]:
    return {TASKS[name].config_for(forget_split) for name in FORGET_TASKS["both"]}


class PersonData(TaskData):
    """The forget configs restricted to some persons' rows; other configs as they are."""

    def __init__(self, source: str, forget_split: str, persons: tuple[str, ...]) -> None:
        super().__init__(source)
        self.persons = tuple(sorted(persons))
        self.restricted = forget_configs(forget_split)
        self.everyone = benchmark_persons(source, forget_split)
        self._subsets: dict[str, datasets.Dataset] = {}

    def __getitem__(self, clear_config: str) -> datasets.Dataset:
        whole = super().__getitem__(clear_config)
        if clear_config not in self.restricted:
            return whole
        if clear_config not in self._subsets:
            rows = np.flatnonzero(row_mask(whole, self.persons, self.everyone))
            self._subsets[clear_config] = whole.select(rows)
        return self._subsets[clear_config]


def split_persons(persons: tuple[str, ...], seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Two seeded halves of ``persons`` (the first gets the odd one): attacked, held out."""
    if len(persons) < 2:
        raise ValueError(f"splitting persons in two needs at least 2, got {len(persons)}")
    order = np.random.default_rng(seed).permutation(sorted(persons))
    half = (len(order) + 1) // 2
    return tuple(sorted(order[:half])), tuple(sorted(order[half:]))


@dataclass(frozen=True)
class Scored:
    """A reference model's (Gold's, Original's) evaluation under one condition of a check (an
    attack, a rounding): what the checks compare an adapter with, cached apart from it."""

    metrics: dict[str, float]
    reference: GoldReference  # its own NLLs on the forget-quality tasks
    items: dict[str, dict[str, Any]]  # per task, per-item values (TaskResult.columns)


@dataclass(frozen=True)
class CheckContext:
    """One check's inputs on the node it runs on (paths already local)."""

    cfg: Config
    original: str  # Original's checkpoint
    gold: str  # Gold's checkpoint
    adapter: dict[str, bytes] | None  # the unlearned model's adapter; None = Original itself
    source: str
    persons: tuple[str, ...]  # the forget persons a check looks at (the report fold)
    cache: Path  # this node's cache for the checks' reference evaluations

    @property
    def modality(self) -> str:
        return self.cfg.data.modality

    def data(self, persons: tuple[str, ...] | None = None) -> PersonData:
        return PersonData(self.source, self.cfg.data.forget_split, persons or self.persons)

    def eval_config(self, data: TaskData, tasks: tuple[str, ...]) -> EvalConfig:
        """The full eval config, scoring only, on those of ``tasks`` the data holds."""
        split = self.cfg.data.forget_split
        present = [name for name in tasks if data.has(TASKS[name].config_for(split))]
        return replace(self.cfg.eval, proxy_items=0, generate=False, tasks=",".join(present))

    def load_unlearned(self):
        from clear_ray.eval.final import load_adapted

        return load_adapted(self.original, self.adapter, self.cfg.train.precision)

    def evaluate(
        self, model, processor, data: TaskData, config: EvalConfig, gold: GoldReference | None
    ) -> EvalResult:
        split, modality = self.cfg.data.forget_split, self.modality
        return evaluate(model, Collator(processor), data, split, config, gold, modality=modality)

    def reference(
        self, model_dir: str, data: PersonData, config: EvalConfig, gold: GoldReference | None
    ) -> ReferenceEvaluation:
        """A reference model's (Original's, Gold's) evaluation on ``data``'s persons, cached
        on this node by the checkpoint, the persons and everything reference_evaluation keys."""
        from clear_ray.references.checkpoints import checkpoint_fingerprint

        key = cache_key({"model": checkpoint_fingerprint(model_dir), "persons": data.persons})
        return reference_evaluation(
            Path(model_dir),
            data,
            self.cfg.data.forget_split,
            config,
            gold,
            modality=self.modality,
            precision=self.cfg.train.precision,
            cache_dir=self.cache / "references" / key,
        )

    def cached(
        self,
        kind: str,
        model_dir: str,
        condition: dict[str, Any],
        data: PersonData,
        config: EvalConfig,
        values: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """``values()`` (JSON-able scores of a reference model under ``condition``), cached on
        this node under ``kind`` by the checkpoint, the data, the persons, the eval config and
        the condition, so every adapter checked on the same persons (a method's best trial
        and confirm runs, each trial of ``search.constrain_relearn``) shares them."""
        from clear_ray.data.clear import data_fingerprint
        from clear_ray.references.checkpoints import checkpoint_fingerprint

        split = self.cfg.data.forget_split
        key = cache_key(
            {
                "model": checkpoint_fingerprint(model_dir),
                "data": data_fingerprint(self.source, sorted(forget_configs(split))),
                "split": split,
                "persons": data.persons,
                "eval": asdict(config),
                "precision": self.cfg.train.precision,
                "condition": condition,
                "format": SCORED_FORMAT,
            }
        )

        def build(directory: Path) -> None:
            (directory / SCORED_FILE).write_text(json.dumps(values(), default=float))

        entry = cached_dir(self.cache / kind / key, build, f"robustness check: {kind}")
        return json.loads((entry / SCORED_FILE).read_text())

    def scored(
        self,
        kind: str,
        model_dir: str,
        condition: dict[str, Any],
        data: PersonData,
        config: EvalConfig,
        score: Callable[[], EvalResult],
    ) -> Scored:
        """``score()``, a reference model's evaluation under ``condition``, :meth:`cached`."""

        def values() -> dict[str, Any]:
            result = score()
            return {
                "metrics": result.metrics,
                "reference": GoldReference.of(result.tasks, FORGET_QUALITY_TASKS).to_json(),
                "items": {task: result.tasks[task].columns() for task in result.tasks},
            }

        stored = self.cached(kind, model_dir, condition, data, config, values)
        return Scored(
            stored["metrics"], GoldReference.from_json(stored["reference"]), stored["items"]
        )
