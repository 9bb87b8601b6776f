"""python -m clear_ray.finetune: make Original (on full+tofu) and Gold (on retainNN+tofu).

CLEAR protocol step 1: both come from the same base model and recipe; only the training data
differs, so Gold is what a perfectly unlearned Original would look like. Results are cached
under a key of (preset, data fingerprint, recipe, split): a second search reuses them.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from clear_ray.cache import cache_key, cached_dir
from clear_ray.config import Config, ConfigError, FinetuneConfig, LoraConfig
from clear_ray.data.clear import data_fingerprint, load_clear
from clear_ray.data.collate import Collator, EncodedExample, Example, row_example
from clear_ray.data.prompts import CAPTION_QUESTIONS, FACE_NAME_PROMPT, idk_responses
from clear_ray.data.schema import retain_split_for
from clear_ray.models.forward import forward_logits, to_device
from clear_ray.models.loading import save_checkpoint
from clear_ray.models.lora import attach_lora
from clear_ray.models.presets import ModelPreset, get_preset

ROLES = ("original", "gold")
CORPUS_CONFIGS = ("full+tofu", "forget10_perturbed", "retain_perturbed", "real_faces", "real_world")


@dataclass(frozen=True)
class ReferenceModels:
    original: Path
    gold: Path


def training_config_for(role: str, forget_split: str) -> str:
    """Original sees everything; Gold never sees the forget persons."""
    return "full+tofu" if role == "original" else f"{retain_split_for(forget_split)}+tofu"


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


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Standard SFT loss: mean over all answer tokens of the batch."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
    )


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.05):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def train_supervised(
    model: torch.nn.Module,
    collator: Collator,
    examples: Sequence[Example],
    recipe: FinetuneConfig,
    description: str,
) -> list[float]:
    """Plain AdamW SFT on answer tokens; returns the mean loss of each epoch."""
    encoded: list[EncodedExample] = [collator.encode(example) for example in examples]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(encoded) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total))
    rng = np.random.default_rng(recipe.seed)
    epoch_losses = []
    model.train()
    # Redraw at most every few seconds when stderr is a log file, not a terminal.
    interval = 0.1 if sys.stderr.isatty() else 5.0
    with tqdm(
        total=total, desc=description, unit="step", file=sys.stderr, mininterval=interval
    ) as bar:
        for epoch in range(recipe.epochs):
            order = rng.permutation(len(encoded))
            losses = []
            for start in range(0, len(order), recipe.batch_size):
                batch = to_device(
                    collator.pad([encoded[i] for i in order[start : start + recipe.batch_size]]),
                    model,
                )
                loss = token_cross_entropy(forward_logits(model, batch), batch["labels"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            epoch_losses.append(float(np.mean(losses)))
    model.eval()
    return epoch_losses


def finetune(
    preset: ModelPreset, source: str, train_config: str, recipe: FinetuneConfig, out: Path
) -> None:
    """Build the base model, train it on ``train_config`` and save model + processor to ``out``."""
    model, processor = preset.build_base(tokenizer_corpus(source), recipe.seed)
    if torch.cuda.is_available():
        model = model.cuda()
    if not preset.finetune_full:  # the paper's recipe: LoRA r8/α32, merged afterwards
        model = attach_lora(model, LoraConfig(), preset.lora_target_modules)
    examples = [row_example(row) for row in load_clear(source, train_config)]
    train_supervised(model, Collator(processor), examples, recipe, f"finetune {train_config}")
    if not preset.finetune_full:
        model = model.merge_and_unload()
    save_checkpoint(model.cpu(), processor, out)


def reference_models(cfg: Config, source: str, cache_root: Path) -> ReferenceModels:
    """Original and Gold for this (preset, data, recipe, split), trained only if not cached."""
    preset = get_preset(cfg.model.preset)
    fingerprint = data_fingerprint(
        source, (*CORPUS_CONFIGS, *(training_config_for(r, cfg.data.forget_split) for r in ROLES))
    )
    paths = {}
    for role in ROLES:
        train_config = training_config_for(role, cfg.data.forget_split)
        key = cache_key(
            {
                "preset": preset.name,
                "data": fingerprint,
                "train_config": train_config,
                "recipe": {k: v for k, v in cfg.to_flat().items() if k.startswith("finetune.")},
            }
        )
        target = cache_root / "models" / f"{preset.name}-{role}-{key}"
        if target.is_dir():
            print(f"[clear_ray] {role}: cached at {target}", file=sys.stderr)
        paths[role] = cached_dir(
            target, lambda out, tc=train_config: finetune(preset, source, tc, cfg.finetune, out)
        )
    return ReferenceModels(**paths)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clear_ray.finetune",
        description="Train (or find in the cache) the Original and Gold models for a forget split.",
    )
    parser.add_argument("--data", default="", help="hub id or local CLEAR dir (default: synthetic)")
    parser.add_argument("--model", default=Config().model.preset, help="model preset")
    parser.add_argument("--forget-split", default=Config().data.forget_split)
    parser.add_argument("--output-dir", default=Config().output_dir)
    parser.add_argument("--epochs", type=int, default=Config().finetune.epochs)
    parser.add_argument("--lr", type=float, default=Config().finetune.lr)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from clear_ray.data.source import resolve_source

    args = build_parser().parse_args(argv)
    try:
        cfg = Config().replace(
            {
                "data.source": args.data,
                "model.preset": args.model,
                "data.forget_split": args.forget_split,
                "output_dir": args.output_dir,
                "finetune.epochs": args.epochs,
                "finetune.lr": args.lr,
            }
        )
        source = resolve_source(cfg)
        models = reference_models(cfg, source, Path(cfg.output_dir).resolve() / "cache")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"original: {models.original}\ngold:     {models.gold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
