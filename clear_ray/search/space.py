"""Search spaces: ``search_spaces/<method>.yaml`` maps dotted config paths to distributions.

Example::

    train.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2, default: config,
               source: "config default (the preset's recipe)"}
    method.beta: {distribution: loguniform, low: 0.01, high: 1.0, default: 0.1,
                  source: "NPO paper, arXiv 2404.05868"}

``default`` is the method's published setting, the one a paper runs it at, and ``source`` says
where it is from; ``default: config`` (or no ``default``) means the config's value, which
follows the preset's recipe (the tiny preset's lr is not a paper's). The confirm runs train the
published setting as the "default" configuration (:func:`default_params`).

Every path must exist in :class:`clear_ray.config.Config`; a malformed file fails here, with
one line, before Ray or any model starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from clear_ray.config import Config, field_paths
from clear_ray.errors import ConfigError

SEARCH_SPACE_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
CONFIG_DEFAULT = "config"  # ``default: config``: the config's (recipe-aware) value


@dataclass(frozen=True)
class PublishedDefault:
    """A dimension's published setting: ``value`` None = the config's value."""

    value: Any
    source: str


def _float(spec: dict, key: str, where: str) -> float:
    if key not in spec:
        raise ConfigError(f"{where}: missing {key!r}")
    try:
        return float(spec[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} must be a number, got {spec[key]!r}") from None


def _range(spec: dict, where: str, log: bool) -> tuple[float, float]:
    low, high = _float(spec, "low", where), _float(spec, "high", where)
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got {low} and {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log distribution needs low > 0, got {low}")
    return low, high


SPEC_KEYS = {"distribution", "low", "high", "choices", "default", "source"}


def _distribution(spec: Any, where: str) -> BaseDistribution:
    if not isinstance(spec, dict) or "distribution" not in spec:
        raise ConfigError(f"{where}: expected a mapping with a 'distribution' key")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(SPEC_KEYS)}")
    kind = spec["distribution"]
    if kind in ("uniform", "loguniform"):
        low, high = _range(spec, where, log=kind == "loguniform")
        return FloatDistribution(low, high, log=kind == "loguniform")
    if kind == "int":
        low, high = _range(spec, where, log=False)
        if not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"{where}: int bounds must be whole numbers, got {low} and {high}")
        return IntDistribution(int(low), int(high))
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty 'choices' list")
        return CategoricalDistribution(choices)
    raise ConfigError(
        f"{where}: unknown distribution {kind!r}; use uniform, loguniform, int or categorical"
    )


def parse_space(raw: Any, origin: str) -> dict[str, BaseDistribution]:
    """Validate a loaded YAML mapping and turn it into Optuna distributions."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{origin}: expected a non-empty mapping of config paths")
    known = set(field_paths())
    space = {}
    for path, spec in raw.items():
        if path not in known:
            raise ConfigError(f"{origin}: unknown config path {path!r}")
        space[path] = _distribution(spec, f"{origin}: {path}")
        _check_types(path, space[path], origin)
    return space


def _check_types(path: str, distribution: BaseDistribution, origin: str) -> None:
    """Every value the distribution can produce must be accepted by the config field."""
    if isinstance(distribution, FloatDistribution) and type(Config().to_flat()[path]) is int:
        raise ConfigError(f"{origin}: {path} is an integer field; use distribution: int")
    samples = (
        distribution.choices
        if isinstance(distribution, CategoricalDistribution)
        else (distribution.low, distribution.high)
    )
    for value in samples:
        try:
            Config().replace({path: value})
        except ConfigError as error:
            raise ConfigError(f"{origin}: {error}") from None


def parse_defaults(raw: dict, origin: str) -> dict[str, PublishedDefault]:
    """Each dimension's published setting (checked to lie in its own range) and its source."""
    space = parse_space(raw, origin)
    defaults = {}
    for path, spec in raw.items():
        value = spec.get("default", CONFIG_DEFAULT)
        source = str(spec.get("source", "config default"))
        where = f"{origin}: {path}: default {value!r}"
        if value == CONFIG_DEFAULT:
            defaults[path] = PublishedDefault(None, source)
            continue
        if not contains(space[path], value):
            raise ConfigError(f"{where} lies outside the dimension's own range")
        try:
            Config().replace({path: value})
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        defaults[path] = PublishedDefault(value, source)
    return defaults


def default_params(
    config: Mapping[str, Any], paths: Iterable[str], published: Mapping[str, PublishedDefault]
) -> dict[str, Any]:
    """The method's published setting of each of ``paths`` (``search_spaces/<method>.yaml``
    ``default:``), else the config's value (``Config.to_flat()``, preset recipe applied), by
    path: the settings of its default configuration."""
    chosen = {}
    for path in sorted(paths):
        value = published[path].value if path in published else None
        chosen[path] = config[path] if value is None else value
    return chosen


def contains(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(distribution, IntDistribution) and value != int(value):
        return False
    return distribution.low <= value <= distribution.high


def _read(method: str, directory: Path) -> tuple[Any, Path]:
    path = directory / f"{method}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in directory.glob("*.yaml"))
        raise ConfigError(f"no search space {path}; available: {', '.join(available)}")
    try:
        return yaml.safe_load(path.read_text()), path
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None


def load_space(method: str, directory: Path = SEARCH_SPACE_DIR) -> dict[str, BaseDistribution]:
    raw, path = _read(method, directory)
    return parse_space(raw, str(path))


def load_defaults(method: str, directory: Path = SEARCH_SPACE_DIR) -> dict[str, PublishedDefault]:
    """The published settings of ``<directory>/<method>.yaml``'s dimensions."""
    raw, path = _read(method, directory)
    return parse_defaults(raw, str(path))


def scale_lr(space: dict[str, BaseDistribution], scale: float) -> dict[str, BaseDistribution]:
    """The space with its ``train.lr`` bounds times ``scale`` (``search.lr_scale``).

    The shipped spaces are written at the tiny preset's scale; a 7B preset's recipe moves
    them to CLEAR's (1e-4..1e-2 × 0.01 = 1e-6..1e-4) without a second copy of every file.
    """
    if not scale > 0:
        raise ConfigError(f"search.lr_scale must be positive, got {scale}")
    lr = space.get("train.lr")
    if lr is None or scale == 1.0:
        return space

    def times(value: float) -> float:
        return float(f"{value * scale:.12g}")  # 1e-4 × 0.01 is 1e-6, not 1.0000000000000002e-6

    if isinstance(lr, CategoricalDistribution):
        scaled: BaseDistribution = CategoricalDistribution([times(c) for c in lr.choices])
    else:
        scaled = FloatDistribution(times(lr.low), times(lr.high), log=lr.log)
    return {**space, "train.lr": scaled}


def space_lines(space: dict[str, BaseDistribution]) -> list[str]:
    """``path: {distribution: ..., low: ..., high: ...}`` (or choices): the YAML file's form."""
    lines = []
    for path, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            spec: dict[str, Any] = {"distribution": "categorical", "choices": list(dist.choices)}
        elif isinstance(dist, IntDistribution):
            spec = {"distribution": "int", "low": dist.low, "high": dist.high}
        else:
            kind = "loguniform" if dist.log else "uniform"
            spec = {"distribution": kind, "low": dist.low, "high": dist.high}
        flow = yaml.safe_dump(spec, default_flow_style=True, sort_keys=False, width=1000)
        lines.append(f"{path}: {flow.strip()}")
    return lines


def describe(space: dict[str, BaseDistribution]) -> dict[str, str]:
    """Human-readable form for MLflow params and the printed summary."""
    out = {}
    for path, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            out[path] = f"categorical{list(dist.choices)}"
        else:
            kind = "loguniform" if getattr(dist, "log", False) else type(dist).__name__
            out[path] = f"{kind}[{dist.low}, {dist.high}]"
    return out
