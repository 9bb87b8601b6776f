"""Pretraining a random-init base: world knowledge older than Original and Gold.

CLEAR (arXiv 2410.18057, §3-4) finetunes LLaVA, which already knew the real_faces celebrities
and the real_world answers; its Real column measures how much of that older knowledge an
unlearning method destroys. The tiny preset's base is random, so without this stage its Real
column is chance for Original, Gold and every trial, and no collapse can show in it. Here the
base first learns the real_faces and real_world sets and captions of scenes without persons
(``clear_ray.data.synthetic.scene_captions``); Original and Gold are then finetuned from this
checkpoint (``finetune.finetune``'s ``base``). It is cached by content like them.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

from clear_ray.cache import cache_key, cached_dir
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


def pretrain(cfg: Config, source: str, out: Path) -> None:
    """Build the preset's base (tokenizer included), train it on the corpus, save it to ``out``."""
    import torch

    from clear_ray.data.collate import Collator, caption_example
    from clear_ray.data.synthetic import scene_captions
    from clear_ray.finetune import tokenizer_corpus
    from clear_ray.models.loading import save_checkpoint
    from clear_ray.train.supervised import train_supervised

    scenes = scene_captions(cfg.pretrain.scene_images, cfg.finetune.seed)
    corpus = chain(tokenizer_corpus(source), (caption for _, caption in scenes))
    model, processor = get_preset(cfg.model.preset).build_base(corpus, cfg.finetune.seed)
    if torch.cuda.is_available():
        model = model.cuda()
    examples = knowledge_examples(source) + [caption_example(i, c) for i, c in scenes]
    train_supervised(model, Collator(processor), examples, recipe(cfg), "pretrain")
    save_checkpoint(model.cpu(), processor, out)


def pretrained_base(cfg: Config, source: str, models: Path) -> Path:
    """The pretrained base in the ``models`` cache folder, trained only if not there."""
    target = models / base_name(cfg, source)
    if target.is_dir():
        print(f"[clear_ray] pretrained base: cached at {target}", file=sys.stderr)
    return cached_dir(target, lambda out: pretrain(cfg, source, out))
