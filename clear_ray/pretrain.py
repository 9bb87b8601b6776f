"""Pretraining a random-init base: world knowledge older than Original and Gold.

CLEAR (arXiv 2410.18057, §3-4) finetunes LLaVA, which already knew the real_faces celebrities
and the real_world answers; its Real column measures how much of that older knowledge an
unlearning method destroys. The tiny preset's base is random, so without this stage its Real
column is chance for Original, Gold and every trial, and no collapse can show in it. Here the
base first learns the real_faces and real_world sets and captions of scenes without persons
(``clear_ray.data.drawing.scene_captions``); Original and Gold are then finetuned from this
checkpoint (``finetune.finetune``'s ``start``), by the same Ray Train job (role ``base``). It is
cached by content like them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, replace
from itertools import chain
from typing import TYPE_CHECKING

from clear_ray.cache import cache_key
from clear_ray.config import Config, FinetuneConfig
from clear_ray.models.presets import get_preset

if TYPE_CHECKING:
    from clear_ray.data.collate import Example

KNOWLEDGE_CONFIGS = ("real_faces", "real_world")


def applies(cfg: Config) -> bool:
    """Only random-init presets pretrain; a pretrained checkpoint (7B) knows the world."""
    return cfg.pretrain.epochs > 0 and get_preset(cfg.model.preset).finetune_full


def recipe(cfg: Config) -> FinetuneConfig:
    """The finetune's recipe with pretraining's epochs, learning rate and batch size."""
    p = cfg.pretrain
    return replace(cfg.finetune, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, grad_accum=1)


def replay_examples(cfg: Config, source: str) -> list[Example]:
    """What Original's and Gold's finetunes replay of the knowledge corpus (``pretrain.replay``)."""
    return knowledge_corpus(cfg, source)[0] if applies(cfg) and cfg.pretrain.replay else []


def knowledge_examples(source: str) -> list[Example]:
    """real_faces as CLEAR asks it (face -> name) and real_world as its VQA questions."""
    from clear_ray.data.clear import load_clear
    from clear_ray.data.collate import Example
    from clear_ray.data.prompts import FACE_NAME_PROMPT

    faces = [
        Example(FACE_NAME_PROMPT, row["answer"], row["image"])
        for row in load_clear(source, "real_faces")
    ]
    world = [
        Example(row["question"], row["answer"], row["image"])
        for row in load_clear(source, "real_world")
    ]
    return faces + world


def base_name(cfg: Config, source: str) -> str:
    """The cache name of the pretrained base: a key of (preset, data, pretrain + its recipe)."""
    from clear_ray.data.clear import data_fingerprint
    from clear_ray.finetune import CORPUS_CONFIGS

    key = cache_key(
        {
            "preset": cfg.model.preset,
            "data": data_fingerprint(source, CORPUS_CONFIGS),  # the tokenizer's corpus too
            "recipe": asdict(recipe(cfg)),
            "scene_images": cfg.pretrain.scene_images,
        }
    )
    return f"{cfg.model.preset}-base-{key}"


def knowledge_corpus(cfg: Config, source: str) -> tuple[list[Example], Iterator[str]]:
    """The examples the base learns (real sets, scene captions) and its tokenizer's corpus
    (everything a model may meet, scene captions included)."""
    from clear_ray.data.collate import caption_example
    from clear_ray.data.drawing import scene_captions
    from clear_ray.finetune import tokenizer_corpus

    scenes = scene_captions(cfg.pretrain.scene_images, cfg.finetune.seed)
    corpus = chain(tokenizer_corpus(source), (caption for _, caption in scenes))
    return knowledge_examples(source) + [caption_example(i, c) for i, c in scenes], corpus
