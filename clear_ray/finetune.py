"""python -m clear_ray.finetune: make Original (on full+tofu) and Gold (on retainNN+tofu).

CLEAR protocol step 1: both come from the same base model and recipe; only the training data
differs, so Gold is what a perfectly unlearned Original would look like. A random-init preset
first pretrains its base (clear_ray/pretrain.py), the same job on a knowledge corpus. Results are
cached under a key of (preset, data fingerprint, recipe, split, base): a second search reuses
them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clear_ray.cache import cache_key, usable
from clear_ray.cli.flags import (
    HelpFormatter,
    add_config_flags,
    add_set_flag,
    dry_run_lines,
    overrides_from,
)
from clear_ray.config import Config, FinetuneConfig, LoraConfig, resolve_config
from clear_ray.errors import ConfigError
from clear_ray.models.presets import ModelPreset, get_preset

if TYPE_CHECKING:
    from clear_ray.data.collate import Example

ROLES = ("original", "gold")
BASE = "base"  # the pretrained base both start from, for presets that pretrain (pretrain.py)
CORPUS_CONFIGS = ("full+tofu", "forget10_perturbed", "retain_perturbed", "real_faces", "real_world")


@dataclass(frozen=True)
class ReferenceModels:
    original: Path
    gold: Path


def training_config_for(role: str, forget_split: str) -> str:
    """Original sees everything; Gold never sees the forget persons."""
    from clear_ray.data.schema import retain_split_for

    return "full+tofu" if role == "original" else f"{retain_split_for(forget_split)}+tofu"


def tokenizer_corpus(source: str) -> Iterator[str]:
    """All text a model may meet: a locally trained tokenizer then has no unknown words."""
    from clear_ray.data.clear import load_clear
    from clear_ray.data.prompts import CAPTION_QUESTIONS, FACE_NAME_PROMPT, idk_responses

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
    pretrained base's knowledge corpus with pretraining's (clear_ray/pretrain.py)."""
    from clear_ray import pretrain

    if role == BASE:
        examples, corpus = pretrain.knowledge_corpus(cfg, source)
        return TrainingSet(examples, pretrain.recipe(cfg), corpus, "pretrain")
    from clear_ray.data.clear import load_clear
    from clear_ray.data.collate import row_example

    train_config = training_config_for(role, cfg.data.forget_split)
    examples = [row_example(row) for row in load_clear(source, train_config)]
    replay = pretrain.replay_examples(cfg, source)
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

    Runs in every worker of a Ray Train job (``references.finetune_job``), with the trials'
    DeepSpeed engine. Pretrained presets train a LoRA (r8/α32, CLEAR's) and merge it; with bf16
    on GPU their frozen base weights are loaded in bf16 (as CLEAR's ``torch_dtype=torch.bfloat16``),
    while weights that are trained themselves stay fp32 under autocast (AdamW needs fp32
    masters). ``start``: a checkpoint of the preset's architecture to finetune instead of the
    preset's base (e.g. a pretrained tiny model). Returns (model on CPU, processor).
    """
    import torch

    from clear_ray.data.collate import Collator
    from clear_ray.models.loading import load_checkpoint
    from clear_ray.models.lora import attach_lora, finetune_targets
    from clear_ray.train.supervised import sft_engine, train_supervised

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
    from clear_ray import pretrain
    from clear_ray.data.clear import data_fingerprint

    if role == BASE:
        return pretrain.base_name(cfg, source)
    preset = get_preset(cfg.model.preset)
    fingerprint = data_fingerprint(
        source, (*CORPUS_CONFIGS, *(training_config_for(r, cfg.data.forget_split) for r in ROLES))
    )
    inputs = {
        "preset": preset.name,
        "data": fingerprint,
        "train_config": training_config_for(role, cfg.data.forget_split),
        "recipe": {k: v for k, v in cfg.to_flat().items() if k.startswith("finetune.")},
    }
    if pretrain.applies(cfg):
        inputs["base"] = pretrain.base_name(cfg, source)
        inputs["replay"] = cfg.pretrain.replay
    return f"{preset.name}-{role}-{cache_key(inputs)}"


def reference_models(cfg: Config, source: str, cache_root: Path) -> ReferenceModels:
    """Original and Gold for this (preset, data, recipe, split), trained only if not cached.

    Each missing one is made by a Ray Train job (``references.finetune_job``), in the Ray of
    this process or in a local one started for it.
    """
    from clear_ray import pretrain
    from clear_ray.console import log
    from clear_ray.references import finetune_job, finetune_jobs, local_ray

    models = cache_root / "models"
    paths = {role: models / model_name(cfg, source, role) for role in ROLES}
    missing = [role for role, path in paths.items() if not usable(path, f"cached {role}")]
    for role in ROLES:
        if role not in missing:
            print(f"[clear_ray] {role}: cached at {paths[role]}", file=sys.stderr)
    if missing:
        with local_ray(cfg.search):
            start = None
            if pretrain.applies(cfg):
                base = models / model_name(cfg, source, BASE)
                if not usable(base, "cached pretrained base"):
                    finetune_job(cfg, BASE, source, base.name, str(models))
                start = str(base)
            names = {role: paths[role].name for role in missing}
            finetune_jobs(cfg, missing, source, names, str(models), start, log)
    return ReferenceModels(**paths)


# flag -> dotted config path; defaults and types come from Config (and the preset's recipe).
FLAGS = {
    "--data": ("data.source", "hub id or local CLEAR dir; default: synthetic"),
    "--model": ("model.preset", "model preset (tiny-llava, llava-1.5-7b): brings its recipe"),
    "--forget-split": ("data.forget_split", "forget01 | forget05 | forget10"),
    "--output-dir": ("output_dir", "where data and the model cache go"),
    "--epochs": ("finetune.epochs", "finetune epochs"),
    "--lr": ("finetune.lr", "finetune peak learning rate"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clear_ray.finetune",
        description="Train (or find in the cache) the Original and Gold models for a forget split.",
        epilog=(
            "Defaults shown are the tiny-llava preset's; another --model brings its own recipe "
            "(docs/models.md, Recipes). Any config field can be set with --set PATH=VALUE, e.g. "
            "--set finetune.lora_targets=all_linear; --dry-run prints the resolved values."
        ),
        formatter_class=HelpFormatter,
    )
    add_config_flags(parser, FLAGS, Config().to_flat())
    add_set_flag(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved configuration and exit, without data, training or files",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = overrides_from(args, FLAGS)
        cfg = resolve_config(overrides)
        if args.dry_run:
            recipe = get_preset(cfg.model.preset).recipe
            print("\n".join(dry_run_lines(cfg, recipe, overrides)))
            return 0
        from clear_ray.data.source import resolve_source

        source = resolve_source(cfg)
        models = reference_models(cfg, source, Path(cfg.output_dir).resolve() / "cache")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"original: {models.original}\ngold:     {models.gold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
