"""Where the data comes from: a hub id, a local CLEAR directory, or the synthetic default."""

from __future__ import annotations

import sys
from pathlib import Path

from clear_ray.config import Config, ConfigError


def synthetic_dir(cfg: Config) -> Path:
    from clear_ray.data.synthetic import LAYOUT_VERSION

    name = f"synthetic-v{LAYOUT_VERSION}-p{cfg.data.synthetic_persons}-s{cfg.data.synthetic_seed}"
    return Path(cfg.output_dir).resolve() / "data" / name


def resolve_source(cfg: Config) -> str:
    """A loadable source string; the synthetic dataset is generated on first use."""
    if cfg.data.source:
        path = Path(cfg.data.source)
        if path.exists():
            if not (path / "README.md").is_file():
                raise ConfigError(f"{path} is not a CLEAR dataset directory (no README.md)")
            return str(path.resolve())
        if cfg.data.source.startswith((".", "/", "~")):
            raise ConfigError(f"data directory {cfg.data.source} does not exist")
        if cfg.data.source.count("/") != 1:
            raise ConfigError(
                f"data source {cfg.data.source!r} is neither a directory nor a hub id"
            )
        return cfg.data.source
    from clear_ray.data.synthetic import generate

    target = synthetic_dir(cfg)
    if not (target / "README.md").is_file():
        print(f"[clear_ray] generating synthetic CLEAR data in {target}", file=sys.stderr)
        generate(target, persons=cfg.data.synthetic_persons, seed=cfg.data.synthetic_seed)
    return str(target)
