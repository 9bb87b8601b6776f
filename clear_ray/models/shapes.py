"""The sizes of the models the presets build: read by the GPU memory estimate and by the tiny
model's builder, without importing either."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a LLaVA-1.5-architecture model (CLIP vision tower, 2-layer projector,
    Llama decoder with as many key/value heads as query heads): what the GPU memory estimate
    (``clear_ray/memory.py``) and the shape-only models of ``bench/`` are built from."""

    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    vision_heads: int
    image_size: int
    patch_size: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    vocab: int
    tied_embeddings: bool = False

    @property
    def image_tokens(self) -> int:
        """Tokens one image becomes in the language model (CLIP's CLS token is dropped)."""
        return (self.image_size // self.patch_size) ** 2


# models/tiny.py builds this (vocab: at most its tokenizer's VOCAB_SIZE).
TINY_SHAPE = ModelShape(64, 128, 2, 4, 32, 8, 128, 256, 2, 4, 1024, tied_embeddings=True)
# llava-hf/llava-1.5-7b-hf's config.json: CLIP ViT-L/14 at 336 px, Vicuna-7B (vocab 32064).
LLAVA_7B_SHAPE = ModelShape(1024, 4096, 24, 16, 336, 14, 4096, 11008, 32, 32, 32064)
