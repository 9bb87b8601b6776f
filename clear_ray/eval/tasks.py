"""CLEAR evaluation tasks: which config, which rows, which prompt, which candidate targets.

Every task scores, per item, a tuple of candidate targets under one prompt (CLEAR_SPEC §4), so
one scorer and one set of metric functions serve all of them. How those candidates are laid out
(and so which scores a task has) is the task's :class:`Layout`:

- ``CAPTIONS``: ``(true, paraphrase, *perturbed)``; ``prob`` = mean exp(−ℓ_true), truth ratio
  (captions, and TOFU's perturbed text QA of ``forget_text_perturbed``).
- ``OPTIONS``: ``(true, *distractors)``; the true answer doubles as the paraphrase (it is scored
  once, not twice), ``prob`` is normalised over the true answer and the distractors.
- ``ANSWER``: ``(true,)`` only (TOFU text QA has no paraphrase/distractors here): ``prob`` and
  ROUGE, no truth ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc

from clear_ray.config import EvalConfig
from clear_ray.data.collate import caption_example
from clear_ray.data.prompts import FACE_NAME_PROMPT
from clear_ray.data.schema import retain_split_for
from clear_ray.errors import ConfigError
from clear_ray.eval.names import ALL_TASKS, FORGET_CAPTIONS, FORGET_TEXT, TASKS, named_tasks
from clear_ray.eval.scoring import ScoringItem


@dataclass(frozen=True)
class Layout:
    """Where each candidate sits in ``ScoringItem.targets`` and which scores that allows."""

    name: str
    paraphrase_scored: bool  # targets[1] is a separate paraphrase (else the true target is it)
    prob_over_options: bool  # prob normalised over true + distractors (else mean exp(−ℓ_true))
    truth_ratio: bool

    def split(self, nll: np.ndarray) -> tuple[float, float | None, np.ndarray]:
        """One item's NLLs (target order) as (true, paraphrase or None, distractors)."""
        if not self.truth_ratio:
            return float(nll[0]), None, nll[1:]
        if self.paraphrase_scored:
            return float(nll[0]), float(nll[1]), nll[2:]
        return float(nll[0]), float(nll[0]), nll[1:]


CAPTIONS = Layout("captions", paraphrase_scored=True, prob_over_options=False, truth_ratio=True)
OPTIONS = Layout("options", paraphrase_scored=False, prob_over_options=True, truth_ratio=True)
ANSWER = Layout("answer", paraphrase_scored=False, prob_over_options=False, truth_ratio=False)


def _every_row(dataset: datasets.Dataset) -> np.ndarray:
    return np.arange(len(dataset))


def _text_rows(dataset: datasets.Dataset) -> np.ndarray:
    """The TOFU QA rows of a ``+tofu`` config (image None), found without decoding images."""
    images = dataset.with_format("arrow")["image"]  # struct<bytes, path>, null for QA rows
    no_image = pc.or_kleene(
        pc.is_null(images),
        pc.and_kleene(
            pc.is_null(pc.struct_field(images, "bytes")),
            pc.is_null(pc.struct_field(images, "path")),
        ),
    )
    return np.flatnonzero(no_image.to_numpy(zero_copy_only=False))


@dataclass(frozen=True)
class Task:
    name: str
    group: str  # forget | retain | real: which aggregate it feeds, and the truth-ratio rule
    config_for: Callable[[str], str]  # forget split -> CLEAR config holding the items
    build_item: Callable[[dict], ScoringItem]
    reference: Callable[[dict], str]  # ground truth for ROUGE
    layout: Layout
    eligible_rows: Callable[[datasets.Dataset], np.ndarray] = _every_row  # row indices to use
    # Its config is not one of therem/CLEAR's own: "all" takes the task only where it exists.
    optional: bool = False

    def items(self, rows: Sequence[dict]) -> list[ScoringItem]:
        return [self.build_item(row) for row in rows]


def distinct_distractors(true: str, options: Sequence[str]) -> tuple[str, ...]:
    """``options`` without the true answer and without repeats (CLEAR's lists may hold both).

    Compared after stripping and case folding, so "Paris " does not sneak in next to "paris".
    """
    seen = {_normalised(true)}
    kept = []
    for option in options:
        key = _normalised(option)
        if key not in seen:
            seen.add(key)
            kept.append(option)
    return tuple(kept)


def _normalised(text: str) -> str:
    return " ".join(text.split()).casefold()


def _option_item(question: str, image, true: str, options: Sequence[str]) -> ScoringItem:
    distractors = distinct_distractors(true, options)
    if not distractors:
        raise ConfigError(f"item with answer {true!r} has no option other than the true answer")
    return ScoringItem(question, image, (true, *distractors))


def register_task(
    name: str,
    group: str,
    config_for: Callable[[str], str],
    reference: Callable[[dict], str],
    layout: Layout,
    **options: Any,
) -> Callable[[Callable[[dict], ScoringItem]], Callable[[dict], ScoringItem]]:
    """Decorator over a row -> ``ScoringItem`` builder: registers ``Task(name, group,
    config_for, <it>, reference, layout, **options)`` in :data:`TASKS` (its order is the
    table's in ``eval/names.py``). One builder may serve several tasks."""

    def decorate(build_item: Callable[[dict], ScoringItem]) -> Callable[[dict], ScoringItem]:
        task = Task(name, group, config_for, build_item, reference, layout, **options)
        TASKS.register(name)(task)
        return build_item

    return decorate


def _column(name: str) -> Callable[[dict], str]:
    return lambda row: row[name]


def _forget_perturbed(split: str) -> str:
    return f"{split}_perturbed"


def _retain_perturbed(split: str) -> str:
    return "retain_perturbed"


def _forget_text_perturbed(split: str) -> str:
    return f"{split}_tofu_perturbed"


def _forget_tofu(split: str) -> str:
    return f"{split}+tofu"


def _retain_tofu(split: str) -> str:
    return f"{retain_split_for(split)}+tofu"


def _fixed(config: str) -> Callable[[str], str]:
    return lambda split: config


@register_task(FORGET_CAPTIONS, "forget", _forget_perturbed, _column("caption"), CAPTIONS)
@register_task("retain_captions", "retain", _retain_perturbed, _column("caption"), CAPTIONS)
def _caption_item(row: dict) -> ScoringItem:
    prompt = caption_example(row["image"], row["caption"])
    candidates = (row["caption"], row["paraphrased_caption"], *row["perturbed_captions"])
    return ScoringItem(prompt.question, prompt.image, candidates)


@register_task("forget_face_naming", "forget", _forget_perturbed, _column("name"), OPTIONS)
@register_task("retain_face_naming", "retain", _retain_perturbed, _column("name"), OPTIONS)
def _face_name_item(row: dict) -> ScoringItem:
    return _option_item(FACE_NAME_PROMPT, row["image"], row["name"], row["perturbed_names"])


@register_task("real_faces", "real", _fixed("real_faces"), _column("answer"), OPTIONS)
def _real_face_item(row: dict) -> ScoringItem:
    return _option_item(FACE_NAME_PROMPT, row["image"], row["answer"], row["options"])


@register_task("real_world", "real", _fixed("real_world"), _column("answer"), OPTIONS)
def _real_world_item(row: dict) -> ScoringItem:
    return _option_item(row["question"], row["image"], row["answer"], row["options"])


@register_task(
    "forget_text_qa", "forget", _forget_tofu, _column("answer"), ANSWER, eligible_rows=_text_rows
)
@register_task(
    "retain_text_qa", "retain", _retain_tofu, _column("answer"), ANSWER, eligible_rows=_text_rows
)
def _text_qa_item(row: dict) -> ScoringItem:
    return ScoringItem(row["question"], None, (row["answer"],))


# TOFU's forget-set truth ratio on the persons' text; like TOFU, no image. Its config is not one
# of therem/CLEAR's own, hence optional.
@register_task(
    FORGET_TEXT, "forget", _forget_text_perturbed, _column("answer"), CAPTIONS, optional=True
)
def _text_perturbed_item(row: dict) -> ScoringItem:
    candidates = (row["answer"], row["paraphrased_answer"], *row["perturbed_answer"])
    return ScoringItem(row["question"], None, candidates)


def resolve_task_names(
    spec: str, has_config: Callable[[str], bool] | None = None, forget_split: str = ""
) -> tuple[str, ...]:
    """``eval.tasks`` ("all" or comma-separated names) as registry names, in registry order.

    With ``has_config`` (does the data hold this CLEAR config?), "all" leaves out an optional
    task whose config for ``forget_split`` is absent; a task named explicitly always stays, so
    its missing config fails loudly when loaded.
    """
    names = named_tasks(spec)
    if spec.strip() != ALL_TASKS or has_config is None:
        return names
    return tuple(
        name
        for name in names
        if not (TASKS[name].optional and not has_config(TASKS[name].config_for(forget_split)))
    )


def evaluation_rows(
    eligible: np.ndarray,
    config: EvalConfig,
    in_fold: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """The rows of a task an evaluation scores: the first ``clear_rows`` eligible ones (all when
    0; CLEAR's ``ds_size`` in ``config/mm/eval.yaml``), of those the ones ``in_fold`` (row
    indices -> bool mask: a person fold, data/folds.py) keeps, then, in a proxy evaluation, the
    seeded ``proxy_items`` of those (:func:`proxy_subset`)."""
    if config.clear_rows < 0:
        raise ConfigError(f"eval.clear_rows must be >= 0 (0 = every row), got {config.clear_rows}")
    first = eligible[: config.clear_rows] if config.clear_rows else eligible
    if in_fold is not None:
        first = first[np.asarray(in_fold(first), dtype=bool)]
    return first[proxy_subset(len(first), config.proxy_items, config.proxy_seed)]


def proxy_subset(n_rows: int, proxy_items: int, proxy_seed: int) -> np.ndarray:
    """Positions of a proxy evaluation's rows: ``min(n_rows, proxy_items)`` of ``range(n_rows)``.

    A pure function of its arguments (a fresh seeded generator, sorted output), so every epoch,
    every trial and Gold's reference evaluation score exactly the same rows. ``proxy_items`` 0
    means the full evaluation (every row).
    """
    if proxy_items < 0:
        raise ConfigError(f"eval.proxy_items must be >= 0 (0 = full evaluation), got {proxy_items}")
    if proxy_items == 0 or proxy_items >= n_rows:
        return np.arange(n_rows)
    chosen = np.random.default_rng(proxy_seed).choice(n_rows, size=proxy_items, replace=False)
    return np.sort(chosen)
