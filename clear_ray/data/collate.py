"""Prompt rendering, answer-span labels and batching.

Labels are built by construction: the prompt is encoded through the processor (which expands
``<image>`` into one token per patch), the target is encoded on its own, and only the target's
positions carry labels. Nothing is masked by counting prompt tokens, which breaks as soon as
a processor expands image tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL.Image import Image
from transformers import ProcessorMixin

from clear_ray.data.prompts import caption_question

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One prompt/target pair: a captioning row, a QA row, or an evaluation candidate."""

    question: str
    target: str
    image: Image | None = None


def caption_example(image: Image, caption: str, target: str | None = None) -> Example:
    """An image row: a captioning question drawn deterministically for this caption."""
    return Example(caption_question(caption), caption if target is None else target, image)


def row_example(row: dict) -> Example:
    """A row of a CLEAR ``+tofu`` config: image rows caption (or, with a question, answer it:
    the synthetic data's face-naming rows), TOFU rows are QA."""
    if row.get("image") is not None and not row.get("question"):
        return caption_example(row["image"], row["caption"])
    return Example(row["question"], row["answer"], row.get("image"))


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    pixel_values: torch.Tensor | None  # [3, H, W] for image rows


class Collator:
    """Turns :class:`Example` lists into padded model batches with answer-only labels."""

    def __init__(self, processor: ProcessorMixin) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer

    def render_prompt(self, example: Example) -> str:
        content = [{"type": "image"}] if example.image is not None else []
        content.append({"type": "text", "text": example.question})
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    def encode_prompt(self, example: Example) -> tuple[list[int], torch.Tensor | None]:
        text = self.render_prompt(example)
        if example.image is None:
            return self.tokenizer(text)["input_ids"], None
        encoded = self.processor(text=text, images=[example.image.convert("RGB")])
        return list(encoded["input_ids"][0]), torch.as_tensor(encoded["pixel_values"][0])

    def encode_target(self, target: str) -> list[int]:
        ids = self.tokenizer(" " + target, add_special_tokens=False)["input_ids"]
        return [*ids, self.tokenizer.eos_token_id]

    def encode(self, example: Example) -> EncodedExample:
        prompt_ids, pixel_values = self.encode_prompt(example)
        target_ids = self.encode_target(example.target)
        return EncodedExample(
            input_ids=prompt_ids + target_ids,
            labels=[IGNORE_INDEX] * len(prompt_ids) + target_ids,
            pixel_values=pixel_values,
        )

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        return self.pad([self.encode(example) for example in examples])

    def pad(self, encoded: Sequence[EncodedExample], left: bool = False) -> dict[str, torch.Tensor]:
        """Pad to the longest row; left padding is for generation, right for scoring/training."""
        width = max(len(row.input_ids) for row in encoded)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, row in enumerate(encoded):
            n = len(row.input_ids)
            span = slice(width - n, width) if left else slice(0, n)
            input_ids[i, span] = torch.tensor(row.input_ids)
            labels[i, span] = torch.tensor(row.labels)
            attention_mask[i, span] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        images = [row.pixel_values for row in encoded if row.pixel_values is not None]
        if images:
            batch["pixel_values"] = torch.stack(images)
        return batch
