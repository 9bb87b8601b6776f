"""Teacher-forced per-item NLL: every candidate target of an item under the same prompt."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from PIL.Image import Image
from torch import nn

from clear_ray.data.collate import IGNORE_INDEX, Collator, EncodedExample, Example
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
    """Mean answer-token NLL of each target, per item (``result[i][j]`` = item i, target j).

    Every CLEAR item scores 5+ candidates (true, paraphrase, perturbed) under one prompt whose
    576 image positions dominate the sequence, so the image+prompt prefix runs once per item
    and its KV cache is shared by all of the item's targets. Results equal
    :func:`score_items_naive` up to floating-point reordering.

    Args:
        model: a causal (vision-)language model taking ``past_key_values``/``position_ids``;
            put it in eval mode (gradient checkpointing in training mode drops the cache).
        collator: renders and tokenizes prompts and targets exactly as for training.
        items: prompts with their candidate targets; image and text-only items may mix.
        batch_size: roughly the number of candidate rows per forward pass; whole items are
            kept together, so an item with more targets than this runs alone.

    Returns:
        One float64 array per item, of shape ``[len(item.targets)]``, in the items' order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    results = [np.empty(0, dtype=np.float64) for _ in items]
    for group in _item_groups(items, batch_size):
        group_nll = _score_shared_prefix(model, collator, [items[i] for i in group])
        for index, nll in zip(group, group_nll, strict=True):
            results[index] = nll
    return results


def _item_groups(items: Sequence[ScoringItem], batch_size: int) -> Iterator[list[int]]:
    """Indices of items to score together, about ``batch_size`` target rows per group.

    Image prompts (~600 positions) and text-only prompts (~30) go to separate groups: left
    padding a text prefix to an image prefix's width would cost more than sharing saves.
    """
    order = sorted(
        (i for i, item in enumerate(items) if item.targets), key=lambda i: items[i].image is None
    )
    group: list[int] = []
    rows = 0
    for index in order:
        item = items[index]
        same_kind = not group or (items[group[0]].image is None) == (item.image is None)
        if group and (rows + len(item.targets) > batch_size or not same_kind):
            yield group
            group, rows = [], 0
        group.append(index)
        rows += len(item.targets)
    if group:
        yield group


def _score_shared_prefix(
    model: nn.Module, collator: Collator, items: Sequence[ScoringItem]
) -> list[np.ndarray]:
    """Two forwards: the items' prefixes once (cached), then every target on its item's cache.

    Prefixes are left-padded so they all end at the last cache position and the right-padded
    targets continue each of them directly; position ids are passed explicitly because the
    model would otherwise count the left padding as positions. The first target token is
    predicted by the prefix's last logit, so the target forward needs no prompt token.
    """
    device = next(model.parameters()).device
    prompts = [collator.encode_prompt(Example(item.question, "", item.image)) for item in items]
    prefix = to_device(
        collator.pad(
            [EncodedExample(ids, [IGNORE_INDEX] * len(ids), pixels) for ids, pixels in prompts],
            left=True,
        ),
        model,
    )
    prefix_mask = prefix["attention_mask"]
    prefix_out = model(
        input_ids=prefix["input_ids"],
        attention_mask=prefix_mask,
        pixel_values=prefix.get("pixel_values"),
        position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = prefix_out.past_key_values
    if cache is None:
        raise RuntimeError("the model returned no KV cache; call model.eval() before scoring")

    row_item = torch.tensor(
        [i for i, item in enumerate(items) for _ in item.targets], dtype=torch.long, device=device
    )
    targets = to_device(
        collator.pad(
            [
                EncodedExample(ids, ids, None)
                for item in items
                for ids in map(collator.encode_target, item.targets)
            ]
        ),
        model,
    )
    cache.batch_select_indices(row_item)  # one copy of its item's prefix per target row
    target_width = targets["input_ids"].shape[1]
    prefix_lengths = prefix_mask.sum(-1)[row_item]
    target_logits = model(
        input_ids=targets["input_ids"],
        attention_mask=torch.cat([prefix_mask[row_item], targets["attention_mask"]], dim=1),
        position_ids=prefix_lengths[:, None] + torch.arange(target_width, device=device),
        past_key_values=cache,
        use_cache=True,
    ).logits
    logits = torch.cat([prefix_out.logits[row_item, -1:], target_logits], dim=1)
    no_label = torch.full_like(targets["labels"][:, :1], IGNORE_INDEX)
    labels = torch.cat([no_label, targets["labels"]], dim=1)
    nll = sequence_scores(logits, labels).mean_nll.double().cpu().numpy()
    bounds = np.cumsum([0, *(len(item.targets) for item in items)])
    return [nll[lo:hi] for lo, hi in pairwise(bounds)]


@torch.no_grad()
def score_items_naive(
    model: nn.Module, collator: Collator, items: Sequence[ScoringItem], batch_size: int
) -> list[np.ndarray]:
    """:func:`score_items` without prefix sharing: one full prompt+target row per candidate.

    Kept only as the reference that ``tests/test_scoring.py`` and
    ``bench/eval_throughput.py`` compare :func:`score_items` against; do not use it for
    evaluation (it recomputes the 576 image positions for every candidate).
    """
    rows = [Example(item.question, target, item.image) for item in items for target in item.targets]
    nll = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), batch_size):
        batch = to_device(collator(rows[start : start + batch_size]), model)
        scores = sequence_scores(forward_logits(model, batch), batch["labels"])
        nll[start : start + len(scores.mean_nll)] = scores.mean_nll.float().cpu().numpy()
    bounds = np.cumsum([0, *(len(item.targets) for item in items)])
    return [nll[lo:hi] for lo, hi in pairwise(bounds)]
