"""Forget/retain/IDK views for unlearning, paired item by item.

CLEAR protocol: an epoch is one pass over the forget set, and each forget item is paired with
a retain item (re-drawn every epoch). The IDK view is the forget prompt with an "I don't know"
target, used as the preferred answer by DPO-style methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from clear_ray.data.collate import Example
from clear_ray.data.prompts import idk_response


@dataclass(frozen=True)
class UnlearningData:
    forget: list[Example]
    retain: list[Example]

    def batches_per_epoch(self, batch_size: int, world_size: int) -> int:
        return len(self.forget) // world_size // batch_size


def select_modality(examples: Sequence[Example], modality: str) -> list[Example]:
    """``visual``: image rows only, ``text``: TOFU QA rows only, ``both``: everything."""
    if modality == "visual":
        return [e for e in examples if e.image is not None]
    if modality == "text":
        return [e for e in examples if e.image is None]
    return list(examples)


def idk_view(forget: Example) -> Example:
    return Example(forget.question, idk_response(forget.question + forget.target), forget.image)


def epoch_views(
    data: UnlearningData,
    views: Sequence[str],
    batch_size: int,
    epoch: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[dict[str, list[Example]]]:
    """Yield ``{view: examples}`` batches; every rank gets the same number of steps."""
    rng = np.random.default_rng([seed, epoch])
    forget_order = rng.permutation(len(data.forget))
    retain_order = rng.permutation(len(data.retain))
    per_rank = data.batches_per_epoch(batch_size, world_size) * batch_size
    mine = forget_order[rank::world_size][:per_rank]
    positions = np.arange(rank, len(forget_order), world_size)[:per_rank]
    for start in range(0, per_rank, batch_size):
        forget = [data.forget[i] for i in mine[start : start + batch_size]]
        retain = [
            data.retain[retain_order[p % len(data.retain)]]
            for p in positions[start : start + batch_size]
        ]
        batch = {"forget": forget, "retain": retain, "idk": [idk_view(e) for e in forget]}
        yield {view: batch[view] for view in views}
