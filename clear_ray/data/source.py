"""Where the data comes from: a hub id, a local CLEAR directory, or the synthetic default.

A local copy of therem/CLEAR has no ``forgetNN_tofu_perturbed`` (TOFU's perturbed QA, which
the hub id reads from locuslab/TOFU, data/clear.py). With ``data.tofu_source``, a local copy of
locuslab/TOFU, a search reads a view of the CLEAR copy with TOFU's QA added
(``clear.write_tofu_view``, cached in the output directory); without it the text
forget-quality task is left out and the objective uses the captions. :func:`check_source` finds
what a search needs and the data lacks before anything is built.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

from clear_ray.config import ROLES, Config
from clear_ray.errors import ConfigError

TOFU_HINT = "--tofu DIR (a local copy of locuslab/TOFU)"


def synthetic_dir(cfg: Config) -> Path:
    from clear_ray.data.synthetic import LAYOUT_VERSION

    name = f"synthetic-v{LAYOUT_VERSION}-p{cfg.data.synthetic_persons}-s{cfg.data.synthetic_seed}"
    return Path(cfg.output_dir).resolve() / "data" / name


def given_source(cfg: Config) -> str:
    """``data.source`` as a hub id or an absolute directory, checked for its shape."""
    path = Path(cfg.data.source)
    if path.exists():
        if not (path / "README.md").is_file():
            raise ConfigError(f"{path} is not a CLEAR dataset directory (no README.md)")
        return str(path.resolve())
    if cfg.data.source.startswith((".", "/", "~")):
        raise ConfigError(f"data directory {cfg.data.source} does not exist")
    if cfg.data.source.count("/") != 1:
        raise ConfigError(f"data source {cfg.data.source!r} is neither a directory nor a hub id")
    return cfg.data.source


def text_config(cfg: Config) -> str:
    return f"{cfg.data.forget_split}_tofu_perturbed"


def tofu_root(cfg: Config, source: str) -> Path:
    """``data.tofu_source``: a directory listing TOFU's ``forgetNN_perturbed`` of the split,
    for the local directory ``source``."""
    from clear_ray.data.clear import HUB_REDIRECTS, config_available

    if not Path(source).is_dir():
        raise ConfigError(f"data.tofu_source is for a local --data directory, not {source}")

    root = Path(cfg.data.tofu_source).expanduser()
    if not (root / "README.md").is_file():
        raise ConfigError(
            f"data.tofu_source: {cfg.data.tofu_source} is not a local copy of locuslab/TOFU "
            "(a directory with its README.md)"
        )
    tofu_config = HUB_REDIRECTS[text_config(cfg)].config
    if not config_available(str(root), tofu_config):
        raise ConfigError(f"data.tofu_source: {root}/README.md does not list {tofu_config}")
    return root.resolve()


def check_source(cfg: Config) -> list[str]:
    """Raise ConfigError, one line, for data a search cannot use; return a line per task that
    the data leaves out. Writes nothing: bad data fails before any model is trained.

    Every config that training, the folds and the evaluation tasks read must be there;
    ``forgetNN_tofu_perturbed`` only where a task names it or the objective has nothing else.
    """
    if not cfg.data.source:
        if cfg.data.tofu_source:
            raise ConfigError(
                "data.tofu_source is for a local copy of therem/CLEAR (--data DIR); the "
                "synthetic data has its own forgetNN_tofu_perturbed"
            )
        return []
    source = given_source(cfg)
    from clear_ray.data.clear import config_available
    from clear_ray.data.schema import CORPUS_CONFIGS, retain_split_for, training_config_for
    from clear_ray.eval.names import ALL_TASKS, FORGET_TEXT, named_tasks, objective_tasks
    from clear_ray.eval.tasks import TASKS

    split, text = cfg.data.forget_split, text_config(cfg)
    has_text = config_available(source, text)
    if cfg.data.tofu_source:
        if has_text:
            raise ConfigError(
                f"data.tofu_source: {source} holds {text} itself; --tofu is for a local copy "
                "of therem/CLEAR, which does not"
            )
        from clear_ray.data.clear import tofu_perturbed_table

        tofu_perturbed_table(tofu_root(cfg, source), split)  # small: its rows are checked here
        has_text = True
    tasks = [n for n in named_tasks(cfg.eval.tasks) if has_text or n != FORGET_TEXT]
    needed = {
        *CORPUS_CONFIGS,
        *(training_config_for(role, split) for role in ROLES),
        split,  # the person folds
        f"{split}+tofu",  # unlearning's forget and retain sets
        f"{retain_split_for(split)}+tofu",
        *(TASKS[name].config_for(split) for name in tasks),
    }
    missing = sorted(c for c in needed - {text} if not config_available(source, c))
    if missing:
        raise ConfigError(
            f"{source} lacks {', '.join(missing)}, which a search reads (not in its README.md)"
        )
    if has_text:
        return []
    if cfg.eval.tasks.strip() != ALL_TASKS and FORGET_TEXT in named_tasks(cfg.eval.tasks):
        raise ConfigError(
            f"eval.tasks names {FORGET_TEXT}, but {source} has no {text}; give {TOFU_HINT}"
        )
    if not objective_tasks(cfg.data.modality, tasks):
        raise ConfigError(
            f"--modality {cfg.data.modality} is scored on {FORGET_TEXT}, but {source} has no "
            f"{text} (TOFU's perturbed QA); give {TOFU_HINT}"
        )
    used = ", ".join(objective_tasks(cfg.data.modality, tasks))
    return [
        f"data: {source} has no {text} (TOFU's perturbed QA): {FORGET_TEXT} is left out and "
        f"the objective uses {used}; give {TOFU_HINT} to include it"
    ]


def resolve_source(cfg: Config) -> str:
    """A loadable source string; the synthetic dataset (or a CLEAR copy's view with TOFU) is
    written on first use, and checked against its manifest on every later one."""
    from clear_ray.cache import build_lock, cached_dir, usable

    wait_s = cfg.search.reference_wait_s
    if cfg.data.source:
        source = given_source(cfg)
        if not cfg.data.tofu_source:
            return source
        from clear_ray.data.clear import write_tofu_view

        clear, tofu = Path(source), tofu_root(cfg, source)
        readmes = (clear / "README.md").read_bytes() + (tofu / "README.md").read_bytes()
        key = hashlib.sha256(f"{clear}\n{tofu}\n".encode() + readmes).hexdigest()[:16]
        view = Path(cfg.output_dir).resolve() / "data" / f"{clear.name}+tofu-{key}"
        with build_lock(view, "data with TOFU", wait_s):
            cached_dir(view, partial(write_tofu_view, clear, tofu), "data with TOFU")
        return str(view)
    from clear_ray.console import log
    from clear_ray.data.synthetic import generate

    target = synthetic_dir(cfg)
    with build_lock(target, "synthetic data", wait_s):
        if not usable(target, "synthetic data"):
            log(f"generating synthetic CLEAR data in {target}")
            generate(target, persons=cfg.data.synthetic_persons, seed=cfg.data.synthetic_seed)
    return str(target)
