"""Before anything runs: the search's config and saved state, its spaces, its inputs checked,
and the memory a trial worker needs. Nothing here trains, starts Ray or writes a folder."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from clear_ray.config import Config
from clear_ray.console import log
from clear_ray.data.source import check_source
from clear_ray.errors import ConfigError
from clear_ray.eval.names import OBJECTIVE_TASKS, named_tasks, objective_tasks
from clear_ray.memory import TEXT_TOKENS, estimate_lines, estimate_trial_memory
from clear_ray.methods import METHODS, TABLE_METHODS, check_space_fields, get_method
from clear_ray.models.presets import get_preset
from clear_ray.nodes import CLUSTER_YAML, fit_lines, node_types, workers_per_gpu
from clear_ray.references.checkpoints import check_brought
from clear_ray.search.session import (
    SearchDirs,
    SearchState,
    check_optuna_storage,
    check_storage_path,
    find_search,
)
from clear_ray.search.space import (
    SEARCH_SPACE_DIR,
    default_params,
    load_defaults,
    load_space,
    scale_lr,
)

ALL = "all"
METHOD_ORDER = TABLE_METHODS  # the paper's Table 1 order; variants are searched by name

# Config fields that name a local directory or a hub id.
LOCAL_OR_HUB = ("data.source", "data.tofu_source", "model.original", "model.gold")


def resumed_search(output: Path, name: str) -> tuple[Config, SearchState, SearchDirs]:
    """The saved config and state of search ``name`` (or "latest") in ``output``."""
    state = find_search(output, name).load()
    cfg = Config.from_flat(state.config).validate()
    return cfg, state, SearchDirs(output, state.name, cfg.search.storage_path)


def new_search(
    cfg: Config, spec: str, search_space: Path | None
) -> tuple[Config, SearchState, SearchDirs]:
    """A new search of the ``--method`` ``spec``'s methods: its name, absolute paths (so that
    it resumes from any working directory) and each method's space file."""
    methods = method_names(spec)
    if len(methods) > 1 and search_space is not None:
        raise ConfigError(f"--search-space applies to one method, not --method {spec}")
    origins = {
        method: str((search_space or SEARCH_SPACE_DIR / f"{method}.yaml").resolve())
        for method in methods
    }
    output = Path(cfg.output_dir).resolve()
    storage = cfg.search.storage_path
    if storage and "://" not in storage:  # Ray wants an absolute path or a URI
        storage = str(Path(storage).resolve())
    cfg = cfg.replace(
        {"output_dir": str(output), "search.storage_path": storage, **absolute_local_paths(cfg)}
    )
    label = ALL if spec == ALL else "+".join(methods)
    name = f"{label}-{time.strftime('%Y%m%d-%H%M%S')}"
    state = SearchState(name, cfg.to_flat(), methods, origins)
    dirs = SearchDirs(output, name, storage)
    while dirs.root.exists():
        state, dirs = next_name(cfg, state)
    return cfg, state, dirs


def next_name(cfg: Config, state: SearchState) -> tuple[SearchState, SearchDirs]:
    """The same new search under the next free name of its second (``dpo-…-2``, ``-3``):
    another search started in the same second took this one."""
    stem, _, number = state.name.rpartition("-")  # a count, or the time's HHMMSS
    base, count = (stem, int(number)) if len(number) < 6 and number.isdigit() else (state.name, 1)
    name = f"{base}-{count + 1}"
    output = Path(cfg.output_dir)
    return replace(state, name=name), SearchDirs(output, name, cfg.search.storage_path)


def absolute_local_paths(cfg: Config) -> dict[str, str]:
    """The fields of ``LOCAL_OR_HUB`` that name an existing directory, as absolute paths (``~``
    expanded): the search's saved config must resume from any working directory. Hub ids, and
    paths that do not exist (``check_inputs`` refuses them), stay as given."""
    flat = cfg.to_flat()
    return {
        path: str(Path(flat[path]).expanduser().resolve())
        for path in LOCAL_OR_HUB
        if flat[path] and Path(flat[path]).expanduser().exists()
    }


def method_names(spec: str) -> list[str]:
    """``--method``: one name, comma-separated names (searched in that order, each once), or
    "all" (CLEAR's Table 1 methods, in its order)."""
    if spec == ALL:
        return list(METHOD_ORDER)
    names = list(dict.fromkeys(name.strip() for name in spec.split(",")))
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ConfigError(
            f"--method: unknown method {unknown[0]!r}; known: {', '.join(METHODS)} or {ALL}"
        )
    return names


def load_spaces(cfg: Config, state: SearchState) -> dict[str, dict]:
    """Every method's space, checked (and grid sizes known) before anything starts: a space
    that searches a method field its method does not read is refused."""
    from clear_ray.search.strategy import trial_count  # lazy: Ray, not loaded by --help

    spaces = {}
    for method, origin in state.space_origins.items():
        path = Path(origin)
        spaces[method] = scale_lr(load_space(path.stem, path.parent), cfg.search.lr_scale)
        check_space_fields(method, tuple(spaces[method]), str(path))
        load_defaults(path.stem, path.parent)  # a published setting outside its range fails now
        trial_count(cfg.search, spaces[method])  # a grid needs categorical dimensions
    return spaces


def method_fields_line(cfg: Config, method: str, origin: Path) -> str:
    """The method fields ``method`` reads, each at its space's published ``default:`` where
    it gives one, else the config's value: what its runs log, as its default configuration
    sets them."""
    published = load_defaults(origin.stem, origin.parent)
    settings = default_params(cfg.to_flat(), get_method(method).reads, published)
    shown = ", ".join(f"{path}={value}" for path, value in settings.items()) or "none"
    return f"# method fields {method} reads (published default, else the config's): {shown}"


def check_inputs(cfg: Config) -> None:
    """Bad input fails here with one line, before any data, model or run is written."""
    if not objective_tasks(cfg.data.modality, named_tasks(cfg.eval.tasks)):
        needed = " or ".join(OBJECTIVE_TASKS[cfg.data.modality])
        raise ConfigError(
            f"eval.tasks must include {needed} (the objective of --modality {cfg.data.modality})"
        )
    for note in check_source(cfg):  # what the data lacks, before anything is trained
        log(note)
    if cfg.tracking.tracking_uri:
        from clear_ray.tracking import check_tracking_uri  # lazy: MLflow (~2.5 s), only with a URI

        check_tracking_uri(cfg.tracking.tracking_uri)
    if cfg.search.storage_path:
        check_storage_path(cfg.search.storage_path)
    if cfg.search.optuna_storage:
        check_optuna_storage(cfg.search.optuna_storage)
    check_brought(cfg)  # --original/--gold: a checkpoint of the preset's architecture
    if cfg.train.zero_stage == 3 and cfg.search.workers_per_trial > 1:
        # Each rank evaluates its own share of rows, and under ZeRO-3 every forward pass is a
        # collective: ranks with different row counts would wait on each other for ever.
        raise ConfigError("train.zero_stage=3 needs --workers-per-trial 1 (sharded evaluation)")


def grad_views(name: str) -> int:
    """The views method ``name`` scores at once with gradients (its widest phase)."""
    method = get_method(name)
    return max(len(phase.views) for phase in (method, method.ascent) if phase is not None)


def memory_lines(cfg: Config, methods: list[str]) -> list[str]:
    """The GPU memory a trial worker needs (for the method that scores the most views at
    once) and which node types of the checkout's cluster.yaml hold it."""
    widest = max(methods, key=grad_views)
    shape = get_preset(cfg.model.preset).shape
    tokens = shape.image_tokens + TEXT_TOKENS
    train, search = cfg.train, cfg.search
    estimate = estimate_trial_memory(
        shape,
        precision=train.precision,
        lora_rank=cfg.lora.r,
        zero_stage=train.zero_stage,
        workers=search.workers_per_trial,
        batch_size=train.batch_size,
        views=grad_views(widest),
        tokens=tokens,
    )
    heading = (
        f"GPU memory per trial worker, estimated (clear_ray/memory.py): {cfg.model.preset}, "
        f"{train.precision}, LoRA r{cfg.lora.r}, ZeRO-{train.zero_stage} over "
        f"{search.workers_per_trial} worker(s), micro-batch {train.batch_size}"
    )
    lines = estimate_lines(
        estimate,
        heading,
        f"{widest} ({grad_views(widest)} views)",
        f"{tokens} tokens = {shape.image_tokens} image + {TEXT_TOKENS} text",
    )
    if search.gpus_per_trial == 0:
        lines.append("# trials run on CPU (--gpus-per-trial 0); on GPUs each worker needs this")
        sharing = 1
    else:
        sharing = workers_per_gpu(search.gpus_per_trial, search.workers_per_trial)
    lines.append(
        f"# node types of {CLUSTER_YAML.name} ({sharing} worker(s) per GPU), "
        "GPU memory from AWS's instance specifications (clear_ray/nodes.py):"
    )
    if not CLUSTER_YAML.is_file():
        return [*lines, f"#   no {CLUSTER_YAML} in this checkout"]
    return [*lines, *fit_lines(node_types(CLUSTER_YAML), sharing * estimate.total)]
