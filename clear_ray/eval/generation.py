"""Batched greedy generation (left padding, stop at EOS) for ROUGE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clear_ray.data.collate import IGNORE_INDEX, Collator, EncodedExample, Example
from clear_ray.models.forward import to_device


@torch.no_grad()
def generate_greedy(
    model: nn.Module,
    collator: Collator,
    prompts: Sequence[Example],
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy continuations of each prompt (its ``target`` is ignored), decoded to text."""
    tokenizer = collator.tokenizer
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = []
        for example in prompts[start : start + batch_size]:
            ids, pixel_values = collator.encode_prompt(example)
            encoded.append(EncodedExample(ids, [IGNORE_INDEX] * len(ids), pixel_values))
        batch = to_device(collator.pad(encoded, left=True), model)
        batch.pop("labels")
        generated = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        outputs.extend(
            text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        )
    return outputs
