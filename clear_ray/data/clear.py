"""Load one CLEAR config from the hub (``therem/CLEAR``) or from a local hub-layout directory.

Local directories (the synthetic stand-in, an offline mirror) are read and validated here rather
than by ``datasets.load_dataset``: a broken mirror should fail before a Ray trial starts, with one
line naming the config, column or row, not deep inside a training step.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets.table import cast_array_to_feature
from PIL import Image

from clear_ray.config import FORGET_SPLITS
from clear_ray.data.schema import (
    CONFIG_ALIASES,
    CONFIG_FEATURES,
    LOADABLE_CONFIGS,
    TEXT_PERTURBED_SPLITS,
    retain_split_for,
)
from clear_ray.errors import ConfigError

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.DOTALL)

CLEAR_HUB_ID = "therem/CLEAR"
TOFU_HUB_ID = "locuslab/TOFU"


@dataclass(frozen=True)
class HubRedirect:
    """A config that the CLEAR hub repo lacks but another hub dataset holds in CLEAR's columns."""

    repo: str
    config: str
    fill: dict[str, str]  # contract columns the other dataset lacks, with their constant value


# TOFU's perturbed forget QA is the text counterpart of CLEAR's forgetNN_perturbed (TOFU paper
# §2.2, CLEAR builds on the same persons); TOFU does not name the author per row.
HUB_REDIRECTS: dict[str, HubRedirect] = {
    config: HubRedirect(TOFU_HUB_ID, config.replace("_tofu_perturbed", "_perturbed"), {"name": ""})
    for config in TEXT_PERTURBED_SPLITS
}


def load_clear(source: str, config: str, *, revision: str | None = None) -> datasets.Dataset:
    """The ``train`` split of a CLEAR config with the contract's features (images decode to PIL).

    ``source`` is a hub id or a local directory laid out like the hub repo. ``default`` reads
    ``full`` where a directory does not list it. From ``therem/CLEAR``, the configs
    ``forgetNN_tofu_perturbed`` are read from TOFU's ``forgetNN_perturbed`` (:data:`HUB_REDIRECTS`,
    at TOFU's main).
    Raises ConfigError, one line, for an unknown config, a missing column, an image that does not
    decode, or forget and retain configs that share a person (:func:`check_disjoint_persons`).
    """
    features = _features_for(config)
    root = _local_root(source)
    split = _guarded_split(config)
    if split is not None:
        check_disjoint_persons(source, split, revision=revision)
    if root is None:
        return _load_hub(source, config, features, revision)
    return _load_local(root, config, features)


def config_available(source: str, config: str) -> bool:
    """Whether ``source`` holds ``config`` without downloading it: a local directory's README
    lists it; of hub ids only therem/CLEAR is known to (its own configs plus the redirects)."""
    _features_for(config)
    root = _local_root(source)
    if root is None:
        return source == CLEAR_HUB_ID or config not in HUB_REDIRECTS
    configs = _readme_configs(root)
    return config in configs or CONFIG_ALIASES.get(config) in configs


def check_disjoint_persons(source: str, forget_split: str, *, revision: str | None = None) -> None:
    """Raise ConfigError naming a person found in both the forget and the retain side.

    Compares the ``name`` columns (no image is decoded) of ``forgetNN``, ``forgetNN_perturbed``
    (and ``forgetNN_tofu_perturbed``) with the complement ``retainNN`` and ``retain_perturbed``
    (a mirror mistake would otherwise let Gold learn forget persons). A local directory
    is checked on the configs its README lists. On the hub only ``forgetNN``,
    ``forgetNN_perturbed`` and ``retain_perturbed`` are compared: evaluation downloads them
    anyway, while ``retainNN`` is ~0.6 GB of images that nothing else here reads.
    """
    forget = [forget_split, f"{forget_split}_perturbed"]
    retain = ["retain_perturbed"]
    root = _local_root(source)
    if root is None:
        names = partial(_hub_name_set, source, revision=revision)
    else:
        listed = _readme_configs(root)
        forget = [c for c in (*forget, f"{forget_split}_tofu_perturbed") if c in listed]
        retain = [c for c in (retain_split_for(forget_split), *retain) if c in listed]
        names = partial(_local_name_set, root)
    forget_names = set().union(*(names(config) for config in forget)) - {""}
    for config in retain:
        shared = sorted(forget_names & names(config))
        if shared:
            raise ConfigError(
                f"{source}: person {shared[0]!r} is in both {forget_split} and {config} "
                f"({len(shared)} shared); forget and retain persons must be disjoint"
            )


def _guarded_split(config: str) -> str | None:
    """The forget split whose person partition ``config`` belongs to, or None (real_*, full)."""
    config = config.removesuffix("+tofu")
    if config == "retain_perturbed":
        return FORGET_SPLITS[-1]  # drawn from the largest retain split: disjoint from every forget
    for split in FORGET_SPLITS:
        family = (split, f"{split}_perturbed", f"{split}_tofu_perturbed", retain_split_for(split))
        if config in family:
            return split
    return None


def _local_name_set(root: Path, config: str) -> set[str]:
    tables = [pq.read_table(path, columns=["name"]) for path in _data_files(root, config)]
    return {name for table in tables for name in table.column("name").to_pylist()}


@lru_cache(maxsize=32)
def _hub_name_set(source: str, config: str, *, revision: str | None) -> frozenset[str]:
    dataset = _load_hub(source, config, LOADABLE_CONFIGS[config], revision)
    return frozenset(dataset.select_columns(["name"])["name"])


def data_fingerprint(source: str, configs: Iterable[str], *, revision: str | None = None) -> str:
    """A sha256 cache key for the data behind ``configs``.

    Local: the bytes of the parquet files of those of ``configs`` the directory lists (a copy of
    therem/CLEAR has no ``forgetNN_tofu_perturbed``: the key is of the data that is there).
    Hub: the id and the commit ``revision`` resolves to (the literal revision if the hub cannot
    be asked, with a warning).
    """
    names = sorted(set(configs))
    for name in names:
        _features_for(name)
    digest = hashlib.sha256()
    root = _local_root(source)
    if root is None:
        digest.update(f"hub:{source}@{_resolve_revision(source, revision)}\n".encode())
        digest.update("\n".join(names).encode())
        for redirect in (HUB_REDIRECTS[n] for n in names if n in HUB_REDIRECTS):
            if source == CLEAR_HUB_ID:
                pinned = _resolve_revision(redirect.repo, None)
                digest.update(f"\nhub:{redirect.repo}@{pinned}:{redirect.config}".encode())
        return digest.hexdigest()
    for name in (n for n in names if config_available(str(root), n)):
        for path in _data_files(root, name):
            digest.update(f"{name}:{path.relative_to(root).as_posix()}\n".encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _features_for(config: str) -> datasets.Features:
    if config not in LOADABLE_CONFIGS:
        raise ConfigError(
            f"unknown CLEAR config {config!r}; expected one of {', '.join(LOADABLE_CONFIGS)}"
        )
    return LOADABLE_CONFIGS[config]


def _local_root(source: str) -> Path | None:
    """The directory ``source`` names, or None when it is a hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    # "data/clear" could be either; a first component that exists here means a missing local dir.
    looks_local = source.startswith(("/", ".", "~")) or Path(source.split("/")[0]).is_dir()
    if _HUB_ID.fullmatch(source) and not looks_local:
        return None
    raise ConfigError(
        f"data source {source!r} is neither a directory nor a hub id like therem/CLEAR"
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# --------------------------------------------------------------------------- hub


def _load_hub(
    source: str, config: str, features: datasets.Features, revision: str | None
) -> datasets.Dataset:
    redirect = HUB_REDIRECTS.get(config) if source == CLEAR_HUB_ID else None
    if redirect is not None:
        source, config, revision = redirect.repo, redirect.config, None
    try:
        dataset = datasets.load_dataset(source, config, split="train", revision=revision)
    except (OSError, ValueError) as error:  # not found, offline, unknown config on the hub
        raise ConfigError(f"cannot load {source} config {config!r}: {_one_line(error)}") from error
    for name, value in (redirect.fill if redirect else {}).items():
        dataset = dataset.add_column(name, [value] * len(dataset))
    missing = [name for name in features if name not in dataset.column_names]
    if missing:
        raise ConfigError(f"{source} config {config!r}: column {missing[0]!r} is missing")
    return dataset.select_columns(list(features)).cast(features)


def _resolve_revision(source: str, revision: str | None) -> str:
    """The commit sha a hub revision points to, so a moved branch changes the cache key."""
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision  # already a commit: nothing to ask the hub
    import huggingface_hub

    try:
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            raise ConnectionError("HF_HUB_OFFLINE is set")
        sha = huggingface_hub.HfApi().dataset_info(source, revision=revision).sha
    except Exception as error:  # offline or unreachable: the literal name is the best key left
        warnings.warn(
            f"cannot resolve {source}@{revision or 'main'} ({_one_line(error)}); "
            "the data fingerprint uses the revision name",
            stacklevel=3,
        )
        return revision or "main"
    return sha or revision or "main"


# --------------------------------------------------------------------------- local


def _readme_configs(root: Path) -> dict[str, dict]:
    """The ``configs:`` entries of README.md's YAML front matter, by config name."""
    readme = root / "README.md"
    if not readme.is_file():
        raise ConfigError(f"{root} has no README.md listing its configs (hub layout expected)")
    match = _FRONT_MATTER.match(readme.read_text(encoding="utf-8"))
    try:
        front = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError as error:
        raise ConfigError(f"{readme}: invalid YAML front matter: {_one_line(error)}") from error
    entries = front.get("configs") if isinstance(front, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{readme} has no `configs:` list in its YAML front matter")
    return {e["config_name"]: e for e in entries if isinstance(e, dict) and "config_name" in e}


def _train_patterns(data_files: object) -> list[str]:
    """Path patterns of the train split, from any form the hub accepts for ``data_files``."""
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        data_files = [{"split": k, "path": v} for k, v in data_files.items()]
    patterns: list[str] = []
    for entry in data_files if isinstance(data_files, list) else []:
        if isinstance(entry, str):
            patterns.append(entry)
        elif isinstance(entry, dict) and entry.get("split", "train") == "train":
            path = entry.get("path", [])
            patterns += [path] if isinstance(path, str) else list(path)
    return patterns


def _data_files(root: Path, config: str) -> list[Path]:
    configs = _readme_configs(root)
    if config not in configs and CONFIG_ALIASES.get(config) in configs:
        config = CONFIG_ALIASES[config]
    if config not in configs:
        available = ", ".join(configs) or "none"
        raise ConfigError(f"config {config!r} is not listed in {root}/README.md (has: {available})")
    patterns = _train_patterns(configs[config].get("data_files", []))
    files = sorted({path for pattern in patterns for path in root.glob(pattern) if path.is_file()})
    if not files:
        raise ConfigError(f"config {config!r}: no train files match {patterns} under {root}")
    return files


def _read_config_table(root: Path, config: str, features: datasets.Features) -> pa.Table:
    """The config's parquet files, columns checked, selected and cast to the contract."""
    tables = []
    for path in _data_files(root, config):
        where = path.relative_to(root).as_posix()
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as error:
            raise ConfigError(
                f"config {config!r}: cannot read {where}: {_one_line(error)}"
            ) from error
        missing = [name for name in features if name not in table.column_names]
        if missing:
            raise ConfigError(
                f"config {config!r}: column {missing[0]!r} is missing from {where} "
                f"(has: {', '.join(table.column_names)})"
            )
        tables.append(_cast_columns(table, features, config, where))
    return pa.concat_tables(tables)


def _cast_columns(
    table: pa.Table, features: datasets.Features, config: str, where: str
) -> pa.Table:
    arrays = []
    for name, feature in features.items():
        try:
            arrays.append(cast_array_to_feature(table.column(name), feature))
        except (TypeError, ValueError, pa.ArrowException) as error:
            raise ConfigError(
                f"config {config!r}: column {name!r} in {where} is not {feature}: "
                f"{_one_line(error)}"
            ) from error
    return pa.Table.from_arrays(arrays, schema=features.arrow_schema)


def _check_images(table: pa.Table, config: str, root: Path) -> None:
    """Every image must decode; only ``+tofu`` text rows may have none (CLEAR's layout)."""
    if "image" not in table.column_names:  # text-only configs
        return
    allow_missing = config.endswith("+tofu")
    for row, cell in enumerate(table.column("image").to_pylist()):
        data = cell and cell.get("bytes")
        if data is None and cell and cell.get("path"):
            path = root / cell["path"]
            data = path.read_bytes() if path.is_file() else None
        if data is None:
            if allow_missing:
                continue
            raise ConfigError(f"config {config!r}: row {row}: image is missing")
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()  # checks structure and checksums without a full decode
        except Exception as error:  # PIL raises many types for bad bytes
            raise ConfigError(
                f"config {config!r}: row {row}: image does not decode: {_one_line(error)}"
            ) from error


def _load_local(root: Path, config: str, features: datasets.Features) -> datasets.Dataset:
    table = _read_config_table(root, config, features)
    _check_images(table, config, root)
    return datasets.Dataset(
        datasets.table.InMemoryTable(table),
        info=datasets.DatasetInfo(features=features),
        split=datasets.Split.TRAIN,
        # Our own content hash: otherwise datasets pickles the whole table to fingerprint it.
        fingerprint=data_fingerprint(str(root), [config]),
    )


# --------------------------------------------------------------------------- TOFU


def tofu_perturbed_table(tofu_root: Path, forget_split: str) -> pa.Table:
    """TOFU's ``forgetNN_perturbed`` from a local copy of locuslab/TOFU, as CLEAR's
    ``forgetNN_tofu_perturbed`` (:data:`HUB_REDIRECTS`: the same rows, ``name`` empty).

    The hub repo keeps each config as one JSON-lines file named in its README's ``configs:``;
    parquet (a converted copy) and a JSON array are read too.
    """
    config = f"{forget_split}_tofu_perturbed"
    redirect = HUB_REDIRECTS[config]
    tables = []
    for path in _data_files(tofu_root, redirect.config):
        try:
            if path.suffix == ".parquet":
                table = pq.read_table(path)
            else:
                text = path.read_text(encoding="utf-8").strip()
                rows = (
                    json.loads(text)
                    if text.startswith("[")
                    else [json.loads(line) for line in text.splitlines() if line.strip()]
                )
                table = pa.Table.from_pylist(rows)
        except (ValueError, pa.ArrowException, OSError) as error:
            raise ConfigError(
                f"{tofu_root}: cannot read {path.name}: {_one_line(error)}"
            ) from error
        for name, value in redirect.fill.items():
            if name not in table.column_names:
                table = table.append_column(name, pa.array([value] * len(table), pa.string()))
        features = CONFIG_FEATURES[config]
        missing = [name for name in features if name not in table.column_names]
        if missing:
            raise ConfigError(
                f"{tofu_root}: {path.name} has no column {missing[0]!r} "
                f"(not TOFU's {redirect.config})"
            )
        tables.append(_cast_columns(table, features, config, path.name))
    return pa.concat_tables(tables)


def write_tofu_view(clear_root: Path, tofu_root: Path, out: Path) -> None:
    """A hub-layout directory that reads as ``clear_root`` plus TOFU's perturbed QA.

    Links to every data file of the CLEAR copy at its own relative path (so the data
    fingerprint of each CLEAR config, hence every cache key, is the copy's own), one parquet
    ``forgetNN_tofu_perturbed`` per forget split that ``tofu_root`` holds, and a README listing
    both. One source path then carries both datasets to every reader and node.
    """
    entries = list(_readme_configs(clear_root).values())
    for name in {e["config_name"] for e in entries}:
        for path in _data_files(clear_root, name):
            link = out / path.relative_to(clear_root)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path)
    for split in FORGET_SPLITS:
        if HUB_REDIRECTS[f"{split}_tofu_perturbed"].config not in _readme_configs(tofu_root):
            continue
        config = f"{split}_tofu_perturbed"
        target = out / config / "train-00000-of-00001.parquet"
        target.parent.mkdir(parents=True)
        pq.write_table(tofu_perturbed_table(tofu_root, split), target)
        entries.append(
            {"config_name": config, "data_files": [{"split": "train", "path": f"{config}/train-*"}]}
        )
    front = yaml.safe_dump({"configs": entries}, sort_keys=False)
    (out / "README.md").write_text(
        f"---\n{front}---\n\n# {clear_root.name} with TOFU's perturbed QA\n\n"
        f"The configs of {clear_root} (linked) and `forgetNN_tofu_perturbed` read from "
        f"{tofu_root}'s `forgetNN_perturbed`, written by clear_ray.\n",
        encoding="utf-8",
    )
