"""Brought Original/Gold checkpoints (``--original``/``--gold``): checked before any job starts,
and identified cheaply for the evaluation cache.

CLEAR protocol step 1 done elsewhere: a checkpoint directory or a hub id of the preset's
architecture. Its finetune is skipped; its evaluations are cached under a key of the checkpoint's
fingerprint (:func:`checkpoint_fingerprint`). A brought directory with a manifest
(clear_ray/cache.py) that fails it is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from clear_ray.cache import MANIFEST, cache_key, manifest_problem
from clear_ray.config import ROLES, Config
from clear_ray.errors import ConfigError
from clear_ray.models.presets import ModelPreset, get_preset

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def check_architecture(config: dict, preset: ModelPreset, what: str) -> None:
    architectures = config.get("architectures") or []
    if config.get("model_type") != preset.model_type or preset.architecture not in architectures:
        raise ConfigError(
            f"{what} is a {config.get('model_type')} model ({', '.join(architectures) or '?'}); "
            f"preset {preset.name} needs {preset.model_type} ({preset.architecture})"
        )


def check_checkpoint(value: str, preset: ModelPreset, path: str) -> None:
    """A brought checkpoint that cannot be the preset's model fails here, in one line.

    A local directory needs a config.json of the preset's architecture and weight files, and
    must match its manifest if it has one (a cached or published reference copied from
    another output directory). A hub id can only be checked for its shape offline; its
    architecture is checked on the worker that downloads it.
    """
    directory = Path(value).expanduser()
    if directory.is_dir():
        config = directory / "config.json"
        if not config.is_file():
            raise ConfigError(f"{path}: {value} has no config.json (not a checkpoint directory)")
        try:
            check_architecture(json.loads(config.read_text()), preset, f"{path}: {value}")
        except ValueError as error:
            raise ConfigError(f"{path}: {value}/config.json is not JSON ({error})") from None
        if not weight_files(directory):
            raise ConfigError(f"{path}: {value} has no weight files (*.safetensors, *.bin)")
        if (directory / MANIFEST).is_file() and (problem := manifest_problem(directory)):
            raise ConfigError(
                f"{path}: {value} does not match its {MANIFEST} ({problem}); copy it again"
            )
    elif directory.exists() or value.startswith((".", "/", "~")) or not HUB_ID.match(value):
        raise ConfigError(
            f"{path}: {value} is neither a checkpoint directory nor a hub id (owner/name[@rev])"
        )


def check_brought(cfg: Config) -> None:
    preset = get_preset(cfg.model.preset)
    for role in ROLES:
        if value := getattr(cfg.model, role):
            check_checkpoint(value, preset, f"model.{role}")


def weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def checkpoint_fingerprint(value: str) -> dict[str, Any]:
    """What identifies a brought checkpoint in the evaluation cache key, cheaply.

    Local: the sha256 of config.json (and of the sharded-weights index, if any) plus the name,
    size and mtime of every weight file: rewriting the weights changes the key; hashing every
    byte of a 14 GB checkpoint on each search would cost minutes. Hub: the id and the revision
    asked for (``owner/name@rev``, default main): pin a commit to be exact.
    """
    directory = Path(value).expanduser()
    if not directory.is_dir():
        repo, _, revision = value.partition("@")
        return {"hub": repo, "revision": revision or "main"}
    digest = hashlib.sha256((directory / "config.json").read_bytes())
    for index in sorted(directory.glob("*.index.json")):
        digest.update(index.read_bytes())
    files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weight_files(directory)]
    return {"config": digest.hexdigest(), "weights": files}


def brought_id(value: str) -> str:
    return f"brought-{cache_key(checkpoint_fingerprint(value))}"
