"""One forward pass convention for every model: batch dict in, logits out."""

from __future__ import annotations

import torch
from torch import nn

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values")


def to_device(batch: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Move a batch to the model's device; pixel values take the model's float dtype."""
    param = next(model.parameters())
    moved = {key: value.to(param.device) for key, value in batch.items()}
    if "pixel_values" in moved:
        moved["pixel_values"] = moved["pixel_values"].to(param.dtype)
    return moved


def forward_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits [B, T, V] for a padded batch; labels are never passed (losses are ours)."""
    inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch}
    return model(**inputs, use_cache=False).logits
