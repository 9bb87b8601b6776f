"""The compute inside a CPU search, without Ray: the tiny preset at the demo's shapes
(models/tiny.py), seeded, so two processes that dispatch the same kernels give the same bits.

bench/pin_cost.py times it; bench/cross_cpu.py compares its bits across CPU types. Training
steps update the whole model (AdamW, batch 8 of image + 48 text tokens); a scoring pass is a
no-grad forward of batch 32, as evaluation's scoring runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TRAIN_BATCH, SCORE_BATCH, TEXT_TOKENS = 8, 32, 48


@dataclass
class TinyWorkload:
    """A seeded tiny LLaVA, its optimiser and its batch maker (one generator, so the batches
    depend on nothing but the seed and the order of the calls)."""

    model: Any
    optimizer: Any
    vocabulary: int
    generator: Any

    def batch(self, size: int) -> dict:
        import torch

        from clear_ray.models.shapes import TINY_SHAPE

        image_token = self.model.config.image_token_index
        text = torch.randint(4, self.vocabulary, (size, TEXT_TOKENS), generator=self.generator)
        images = torch.full((size, TINY_SHAPE.image_tokens), image_token)
        ids = torch.cat([text[:, :1], images, text[:, 1:]], dim=1)
        shape = (size, 3, TINY_SHAPE.image_size, TINY_SHAPE.image_size)
        pixels = torch.randn(shape, generator=self.generator)
        return {"input_ids": ids, "pixel_values": pixels, "labels": ids.clone()}

    def train_step(self) -> float:
        """One AdamW step on a fresh batch; its loss."""
        loss = self.model(**self.batch(TRAIN_BATCH)).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss)

    def score_pass(self) -> Any:
        """Per-sequence mean next-token NLL of a fresh batch of ``SCORE_BATCH`` (no grad)."""
        import torch

        batch = self.batch(SCORE_BATCH)
        with torch.no_grad():
            logits = self.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"])
        targets = batch["input_ids"][:, 1:]
        log_p = torch.log_softmax(logits.logits[:, :-1].float(), dim=-1)
        return -log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean(dim=1)


def tiny_workload(seed: int = 0) -> TinyWorkload:
    """The tiny model built from ``seed``, with a tokenizer of 400 made-up words."""
    import torch

    from clear_ray.models.tiny import build_tiny_llava, train_tokenizer

    torch.manual_seed(seed)
    words = [f"w{i}" for i in range(400)]
    tokenizer = train_tokenizer(" ".join(words[i : i + 20]) for i in range(0, 400, 5))
    model = build_tiny_llava(tokenizer, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(seed)
    return TinyWorkload(model, optimizer, len(tokenizer), generator)
