"""Teacher-forced per-item NLL: every candidate target of an item under the same prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from PIL.Image import Image
from torch import nn

from clear_ray.data.collate import Collator, Example
from clear_ray.methods.base import sequence_scores
from clear_ray.models.forward import forward_logits, to_device


@dataclass(frozen=True)
class ScoringItem:
    """One evaluation item: a prompt (question + optional image) and its candidate targets."""

    question: str
    image: Image | None
    targets: tuple[str, ...]


@torch.no_grad()
def score_items(
    model: nn.Module, collator: Collator, items: Sequence[ScoringItem], batch_size: int
) -> list[np.ndarray]:
    """Mean answer-token NLL of each target, per item (``result[i][j]`` = item i, target j)."""
    rows = [Example(item.question, target, item.image) for item in items for target in item.targets]
    nll = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), batch_size):
        batch = to_device(collator(rows[start : start + batch_size]), model)
        scores = sequence_scores(forward_logits(model, batch), batch["labels"])
        nll[start : start + len(scores.mean_nll)] = scores.mean_nll.float().cpu().numpy()
    bounds = np.cumsum([0, *(len(item.targets) for item in items)])
    return [nll[lo:hi] for lo, hi in pairwise(bounds)]
