"""python -m clear_ray.references: make Original (on full+tofu) and Gold (on retainNN+tofu).

CLEAR protocol step 1 (references/recipes.py), without a search: each model missing from the
cache is made by a Ray Train job, in a local Ray started for it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clear_ray.cli.flags import (
    HelpFormatter,
    add_config_flags,
    add_set_flag,
    dry_run_lines,
    overrides_from,
)
from clear_ray.config import Config, resolve_config
from clear_ray.errors import ConfigError
from clear_ray.models.presets import get_preset

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
        prog="python -m clear_ray.references",
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
        # After parsing: --help and --dry-run stay light (the data and evaluation stack).
        from clear_ray.data.source import resolve_source
        from clear_ray.references.prepare import reference_models

        source = resolve_source(cfg)
        models = reference_models(cfg, source, Path(cfg.output_dir).resolve() / "cache")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"original: {models.original}\ngold:     {models.gold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
