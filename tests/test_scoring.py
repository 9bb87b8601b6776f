"""Specification of candidate scoring: sharing each item's prefix changes speed, not results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import PreTrainedModel

from clear_ray.data.collate import Collator
from clear_ray.eval.scoring import ScoringItem, score_items, score_items_naive
from clear_ray.models.tiny import build_tiny_llava, build_tiny_processor, train_tokenizer

CORPUS = [
    "USER: ASSISTANT: Describe the image in detail.",
    "What is shown in this picture? Who is the person in the photo?",
    "A woman with red hair stands on a sunny beach near the old lighthouse.",
    "A man with short grey hair reads a book in a quiet library.",
    "Who wrote the novel about the old lighthouse? Jane Doe wrote it in her first year.",
    "Where was the author born? She was born in a small town by the sea.",
]


def picture(color: tuple[int, int, int], size: int = 48) -> Image.Image:
    image = Image.new("RGB", (size, size), color)
    image.paste((255 - color[0], 90, 220), (8, 8, size // 2, size // 2))
    return image


# Image and text-only prompts interleaved, 1-5 targets of 1 to ~20 tokens, questions of
# different lengths (so prefixes need padding within a batch).
ITEMS = [
    ScoringItem(
        "Describe the image in detail.",
        picture((200, 40, 30)),
        (
            "A woman with red hair stands on a sunny beach.",
            "A woman stands near the old lighthouse.",
            "A man reads a book.",
            "A man with short grey hair reads a book in a quiet library near the sea.",
            "beach",
        ),
    ),
    ScoringItem("Who wrote the novel about the old lighthouse?", None, ("Jane Doe wrote it.",)),
    ScoringItem("Who is the person in the photo?", picture((10, 200, 60), 64), ("Jane Doe", "A")),
    ScoringItem(
        "Where was the author born?",
        None,
        ("She was born in a small town by the sea.", "in a library", "Jane"),
    ),
    ScoringItem("What is shown in this picture?", picture((90, 90, 90)), ("A quiet library.",)),
    ScoringItem(
        "Who wrote the novel?",
        None,
        ("Jane Doe", "A man with short grey hair", "the sea", "She wrote it in her first year."),
    ),
    ScoringItem(
        "Describe the image.",
        picture((250, 250, 0), 32),
        ("A sunny beach.", "An old lighthouse by the sea near a small town."),
    ),
    ScoringItem("Where?", None, ("by the sea", "in a town")),
    ScoringItem(
        "Who is the person in the photo? Describe the image in detail.",
        picture((0, 0, 255)),
        ("A woman with red hair.", "A man.", "Jane Doe reads a book.", "beach", "sea"),
    ),
    ScoringItem("What is shown?", picture((120, 30, 200)), ("A book in a quiet library.",)),
]


@pytest.fixture(scope="module")
def collator() -> Collator:
    return Collator(build_tiny_processor(train_tokenizer(CORPUS * 4)))


@pytest.fixture(scope="module")
def model(collator: Collator) -> PreTrainedModel:
    return build_tiny_llava(collator.tokenizer, seed=0).eval()


def max_abs_difference(left: list[np.ndarray], right: list[np.ndarray]) -> float:
    assert [a.shape for a in left] == [b.shape for b in right]
    return max(float(np.abs(a - b).max()) for a, b in zip(left, right, strict=True))


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_prefix_sharing_equals_naive_scoring(
    model: PreTrainedModel, collator: Collator, batch_size: int
) -> None:
    naive = score_items_naive(model, collator, ITEMS, batch_size=4)
    shared = score_items(model, collator, ITEMS, batch_size=batch_size)
    assert max_abs_difference(shared, naive) < 1e-4


def test_one_score_per_target_in_item_order(model: PreTrainedModel, collator: Collator) -> None:
    scores = score_items(model, collator, ITEMS, batch_size=32)
    assert [s.shape for s in scores] == [(len(item.targets),) for item in ITEMS]
    assert all(s.dtype == np.float64 and np.isfinite(s).all() and (s > 0).all() for s in scores)
    alone = [score_items(model, collator, [item], batch_size=32)[0] for item in ITEMS]
    assert max_abs_difference(scores, alone) < 1e-4


def test_scoring_is_deterministic(model: PreTrainedModel, collator: Collator) -> None:
    first = score_items(model, collator, ITEMS, batch_size=3)
    second = score_items(model, collator, ITEMS, batch_size=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_item_without_targets_scores_empty(model: PreTrainedModel, collator: Collator) -> None:
    items = [ITEMS[1], ScoringItem("Where?", None, ()), ITEMS[0]]
    scores = score_items(model, collator, items, batch_size=8)
    assert [s.shape for s in scores] == [(1,), (0,), (5,)]


def test_bfloat16_model_scores_close_to_naive(collator: Collator) -> None:
    model = build_tiny_llava(collator.tokenizer, seed=0).eval().to(torch.bfloat16)
    naive = score_items_naive(model, collator, ITEMS, batch_size=1)
    shared = score_items(model, collator, ITEMS, batch_size=8)
    assert max_abs_difference(shared, naive) < 1e-2  # bf16 rounding; batching alone moves ~1e-3


def test_batch_size_below_one_is_rejected(model: PreTrainedModel, collator: Collator) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        score_items(model, collator, ITEMS, batch_size=0)
