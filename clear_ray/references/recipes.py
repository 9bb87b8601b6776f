"""What Original, Gold and the pretrained base are trained on, how, and under which cache name.

CLEAR protocol step 1: Original (on full+tofu) and Gold (on retainNN+tofu) come from the same
base model and recipe; only the training data differs, so Gold is what a perfectly unlearned
Original would look like. Results are cached under a key of (preset, data fingerprint, recipe,
split, base, kernels): a second search reuses them.

Pretraining a random-init base: world knowledge older than Original and Gold. CLEAR (arXiv
2410.18057, §3-4) finetunes LLaVA, which already knew the real_faces celebrities and the
real_world answers; its Real column measures how much of that older knowledge an unlearning
method destroys. The tiny preset's base is random, so without this stage its Real column is
chance for Original, Gold and every trial, and no collapse can show in it. Here the base first
learns the real_faces and real_world sets and captions of scenes without persons
(``clear_ray.data.drawing.scene_captions``); Original and Gold are then finetuned from this
checkpoint (:func:`finetune`'s ``start``), by the same Ray Train job (role ``base``). It is
cached by content like them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from itertools import chain

import torch

from clear_ray.cache import cache_key
from clear_ray.config import ROLES, Config, FinetuneConfig, LoraConfig
from clear_ray.data.clear import data_fingerprint, load_clear
from clear_ray.data.collate import Collator, Example, caption_example, row_example
from clear_ray.data.drawing import scene_captions
from clear_ray.data.prompts import CAPTION_QUESTIONS, FACE_NAME_PROMPT, idk_responses
from clear_ray.data.schema import CORPUS_CONFIGS, training_config_for
from clear_ray.kernels import kernels_key
from clear_ray.models.loading import load_checkpoint
from clear_ray.models.lora import attach_lora, finetune_targets
from clear_ray.models.presets import ModelPreset, get_preset
from clear_ray.train.supervised import sft_engine, train_supervised

BASE = "base"  # the pretrained base both start from, for presets that pretrain


def tokenizer_corpus(source: str) -> Iterator[str]:
    """All text a model may meet: a locally trained tokenizer then has no unknown words."""
    yield from (*CAPTION_QUESTIONS, FACE_NAME_PROMPT, "USER: ASSISTANT:", *idk_responses())
    for config in CORPUS_CONFIGS:
        for row in load_clear(source, config).remove_columns("image"):
            for value in row.values():
                if isinstance(value, str):
                    yield value
                elif isinstance(value, list):
                    yield from value


@dataclass(frozen=True)
class TrainingSet:
    """What one finetune job trains on: examples, recipe, and the tokenizer corpus (used only
    when the preset's base is built, i.e. without a starting checkpoint)."""

    examples: list[Example]
    recipe: FinetuneConfig
    corpus: Iterable[str]
    description: str


def training_set(cfg: Config, source: str, role: str) -> TrainingSet:
    """``role``'s training set: Original's or Gold's split with the finetune recipe, or the
    pretrained base's knowledge corpus with pretraining's."""
    if role == BASE:
        examples, corpus = knowledge_corpus(cfg, source)
        return TrainingSet(examples, pretrain_recipe(cfg), corpus, "pretrain")

    train_config = training_config_for(role, cfg.data.forget_split)
    examples = [row_example(row) for row in load_clear(source, train_config)]
    replay = replay_examples(cfg, source)
    label = f"finetune {train_config}" + (f" + {len(replay)} replayed" if replay else "")
    return TrainingSet(examples + replay, cfg.finetune, tokenizer_corpus(source), label)


def finetune(
    preset: ModelPreset,
    data: TrainingSet,
    zero_stage: int,
    rank: int = 0,
    world_size: int = 1,
    start: str | None = None,
):
    """The base model (or the checkpoint ``start``) trained on ``data``, on this rank.

    Runs in every worker of a Ray Train job (``references/jobs.py``), with the trials'
    DeepSpeed engine. Pretrained presets train a LoRA (r8/α32, CLEAR's) and merge it; with bf16
    on GPU their frozen base weights are loaded in bf16 (as CLEAR's ``torch_dtype=torch.bfloat16``),
    while weights that are trained themselves stay fp32 under autocast (AdamW needs fp32
    masters). ``start``: a checkpoint of the preset's architecture to finetune instead of the
    preset's base (e.g. a pretrained tiny model). Returns (model on CPU, processor).
    """
    recipe = data.recipe
    on_gpu = torch.cuda.is_available()
    bf16_base = recipe.precision == "bf16" and on_gpu and not preset.finetune_full
    precision = "bf16" if bf16_base else "fp32"
    if start:
        model, processor = load_checkpoint(start, precision)
    else:
        model, processor = preset.build_base(data.corpus, recipe.seed, precision)
    if on_gpu:
        model = model.to(torch.device("cuda", torch.cuda.current_device()))
    if not preset.finetune_full:
        targets = finetune_targets(model, recipe.lora_targets, preset.lora_target_modules)
        # CLEAR's finetune LoRA (config/mm/finetune.yaml: r8/α32, no dropout), not cfg.lora,
        # which is the unlearning adapter's and may be searched.
        model = attach_lora(model, LoraConfig(), targets)
    # ZeRO-3 would leave each rank a shard of the weights to merge and save: at most 2.
    engine = sft_engine(model, recipe, len(data.examples), world_size, min(zero_stage, 2))
    collator = Collator(processor)
    train_supervised(engine, collator, data.examples, recipe, data.description, rank, world_size)
    model = engine.module
    if not preset.finetune_full:
        model = model.merge_and_unload()
    return model.cpu(), processor


def model_name(cfg: Config, source: str, role: str) -> str:
    """The cache name of ``role``'s model: a key of (preset, data, recipe, split[, base])."""
    if role == BASE:
        return base_name(cfg, source)
    preset = get_preset(cfg.model.preset)
    fingerprint = data_fingerprint(
        source, (*CORPUS_CONFIGS, *(training_config_for(r, cfg.data.forget_split) for r in ROLES))
    )
    inputs = {
        "preset": preset.name,
        "data": fingerprint,
        "train_config": training_config_for(role, cfg.data.forget_split),
        "recipe": {k: v for k, v in cfg.to_flat().items() if k.startswith("finetune.")},
        "kernels": kernels_key(cfg.search),
    }
    if pretrain_applies(cfg):
        inputs["base"] = base_name(cfg, source)
        inputs["replay"] = cfg.pretrain.replay
    return f"{preset.name}-{role}-{cache_key(inputs)}"


def pretrain_applies(cfg: Config) -> bool:
    """Only random-init presets pretrain; a pretrained checkpoint (7B) knows the world."""
    return cfg.pretrain.epochs > 0 and get_preset(cfg.model.preset).finetune_full


def pretrain_recipe(cfg: Config) -> FinetuneConfig:
    """The finetune's recipe with pretraining's epochs, learning rate and batch size."""
    p = cfg.pretrain
    return replace(cfg.finetune, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, grad_accum=1)


def replay_examples(cfg: Config, source: str) -> list[Example]:
    """What Original's and Gold's finetunes replay of the knowledge corpus (``pretrain.replay``)."""
    return knowledge_corpus(cfg, source)[0] if pretrain_applies(cfg) and cfg.pretrain.replay else []


def knowledge_examples(source: str) -> list[Example]:
    """real_faces as CLEAR asks it (face -> name) and real_world as its VQA questions."""
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
    key = cache_key(
        {
            "preset": cfg.model.preset,
            "data": data_fingerprint(source, CORPUS_CONFIGS),  # the tokenizer's corpus too
            "recipe": asdict(pretrain_recipe(cfg)),
            "scene_images": cfg.pretrain.scene_images,
            "kernels": kernels_key(cfg.search),
        }
    )
    return f"{cfg.model.preset}-base-{key}"


def knowledge_corpus(cfg: Config, source: str) -> tuple[list[Example], Iterator[str]]:
    """The examples the base learns (real sets, scene captions) and its tokenizer's corpus
    (everything a model may meet, scene captions included)."""
    scenes = scene_captions(cfg.pretrain.scene_images, cfg.finetune.seed)
    corpus = chain(tokenizer_corpus(source), (caption for _, caption in scenes))
    return knowledge_examples(source) + [caption_example(i, c) for i, c in scenes], corpus
