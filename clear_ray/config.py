"""One typed configuration: the single source of truth for every default.

CLI flags, YAML search spaces and MLflow params all address the same dotted paths
(``train.lr``, ``method.beta``, ``regularizer.l1``), so a value sampled by Optuna, logged
to MLflow and passed on the command line is the same thing under the same name.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A user-facing configuration mistake; CLIs print it as one line and exit 2."""


FORGET_SPLITS = ("forget01", "forget05", "forget10")
MODALITIES = ("text", "visual", "both")  # what is forgotten: TOFU QA rows, image rows, or both

# Fields with a closed set of values, checked whenever a config is built or overridden.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.forget_split": FORGET_SPLITS,
    "data.modality": MODALITIES,
    "regularizer.l1_targets": ("ab", "b"),
    "train.precision": ("fp32", "bf16"),
    "search.objective": ("log_forget_quality", "forget_quality_js"),
    "search.threshold_mode": ("relative", "absolute"),
    # The constraints' metrics: CLEAR's table columns (default) or the extended aggregates.
    "search.retain_metric": ("clear/retain_metric", "retain_metric"),
    "search.utility_metric": ("clear/model_utility", "model_utility"),
    "search.scheduler": ("asha", "none"),
    "search.sampler": ("tpe", "grid"),
}


@dataclass
class DataConfig:
    source: str = ""  # hub id (therem/CLEAR) or a local hub-layout dir; "" = synthetic
    forget_split: str = "forget10"  # forget01 | forget05 | forget10
    modality: str = "both"  # one of MODALITIES
    synthetic_persons: int = 20
    synthetic_seed: int = 0


@dataclass
class ModelConfig:
    preset: str = "tiny-llava"


@dataclass
class LoraConfig:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.0


@dataclass
class MethodConfig:
    name: str = "dpo"
    beta: float = 0.1  # DPO/NPO inverse temperature
    alpha: float = 1.0  # weight of the retain term
    gamma: float = 1.0  # weight of the forget term
    delta: float = 0.0  # SimNPO margin on the mean forget NLL (the paper's γ/β)
    steering_coeff: float = 6.5  # RMU: c, the norm of the random target for forget activations
    layer_fraction: float = 0.25  # RMU: steered decoder layer as a fraction of the depth
    max_steps_ratio: float = 0.5  # SCRUB: fraction of steps that also take a max-step


@dataclass
class RegularizerConfig:
    l1: float = 0.0  # strength of the per-parameter-normalised L1 norm of LoRA weights
    l1_targets: str = "ab"  # "ab": LoRA A and B matrices; "b": B only


@dataclass
class TrainConfig:
    """Unlearning recipe. Defaults suit the tiny CPU preset; the paper used lr 1e-5 on 7B."""

    lr: float = 1e-3
    epochs: int = 3
    batch_size: int = 4  # per worker, forget items per step (each paired with a retain item)
    grad_accum: int = 1
    warmup_epochs: float = 0.0
    weight_decay: float = 0.01
    zero_stage: int = 2
    precision: str = "fp32"  # fp32 | bf16 (GPU)
    seed: int = 0


@dataclass
class FinetuneConfig:
    """Recipe that produces Original (full+tofu) and Gold (retainNN+tofu)."""

    lr: float = 3e-3
    epochs: int = 20
    batch_size: int = 16
    weight_decay: float = 0.01
    seed: int = 0


@dataclass
class EvalConfig:
    batch_size: int = 32
    max_new_tokens: int = 40
    generate: bool = True  # greedy generation for ROUGE; off = ROUGE excluded from aggregates
    tasks: str = "all"  # comma-separated task names (clear_ray.eval.tasks.TASKS) or "all"
    # Proxy evaluation: a fixed seeded subset of each task's rows, scoring only (no generation,
    # so no ROUGE in aggregates); metric eval/proxy = 1.0 marks it. 0 = full evaluation.
    proxy_items: int = 0
    proxy_seed: int = 0


@dataclass
class SearchConfig:
    num_samples: int = 8
    max_concurrent: int = 1
    objective: str = "log_forget_quality"  # or forget_quality_js (smoother on few items)
    multi_objective: bool = False  # Pareto search: objective vs model_utility
    # Constraints (feasible iff all hold) on retain_metric and utility_metric. "relative": a
    # fraction of Original's value of that metric; "absolute": the value itself.
    # min_utility 0 = no utility constraint.
    threshold_mode: str = "relative"
    retain_metric: str = "clear/retain_metric"  # CLEAR's Retain column, or the extended one
    utility_metric: str = "clear/model_utility"  # CLEAR's model utility, or the extended one
    min_retain: float = 0.9
    min_utility: float = 0.0
    # Hard stop: a trial whose retain metric falls below this (same mode) has collapsed.
    retain_floor: float = 0.5
    scheduler: str = "asha"  # asha | none: early stopping on the per-epoch score
    grace_period: int = 1  # ASHA: epochs every trial runs before it can be stopped
    reduction_factor: float = 2.0  # ASHA: 1/reduction_factor of trials go on at each rung
    sampler: str = "tpe"  # tpe | grid (every combination of categorical choices)
    max_failures: int = 2  # worker crashes retried per trial, from the last epoch checkpoint
    # Where Ray Tune results and Ray Train checkpoints go: "" = the search folder (one node);
    # on a cluster, storage every node reaches (s3://bucket/prefix, gs://..., a shared mount).
    storage_path: str = ""
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_trial: float = 0.0
    seed: int = 0
    startup_trials: int = 4  # random trials before TPE models the space (Optuna default: 10)


@dataclass
class TrackingConfig:
    tracking_uri: str = ""  # "" = sqlite database under the output dir
    experiment: str = "clear_ray"


@dataclass
class Config:
    output_dir: str = "clear_ray_runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_flat(self) -> dict[str, Any]:
        """Every leaf as ``{"section.field": value}`` (MLflow params, Ray configs)."""
        return _flatten(self)

    def replace(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted-path overrides applied, values coerced to the field's type."""
        new = copy.deepcopy(self)
        for path, value in overrides.items():
            parent, name = _resolve(new, path)
            value = _coerce(value, _field_type(parent, name), path)
            if path in CHOICES and value not in CHOICES[path]:
                raise ConfigError(f"{path}: {value!r} is not one of {', '.join(CHOICES[path])}")
            setattr(parent, name, value)
        return new

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_flat`; unknown paths raise :class:`ConfigError`."""
        return cls().replace(flat)


def field_paths() -> list[str]:
    """All dotted paths a search space or override may address."""
    return list(Config().to_flat())


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            flat.update(_flatten(value, f"{prefix}{f.name}."))
        else:
            flat[f"{prefix}{f.name}"] = value
    return flat


def _resolve(root: Any, path: str) -> tuple[Any, str]:
    *sections, name = path.split(".")
    node = root
    for section in sections:
        node = getattr(node, section, None)
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"unknown config path {path!r}")
    if dataclasses.is_dataclass(getattr(node, name, None)) or name not in {
        f.name for f in dataclasses.fields(node)
    }:
        raise ConfigError(f"unknown config path {path!r}")
    return node, name


def _field_type(node: Any, name: str) -> type:
    hints = typing.get_type_hints(type(node))
    hint = hints[name]
    if isinstance(hint, types.UnionType):  # "X | None": coerce to X
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _coerce(value: Any, target: type, path: str) -> Any:
    if isinstance(value, target) and not (target is int and isinstance(value, bool)):
        return value
    try:
        if target is bool:
            if isinstance(value, str):
                if value.lower() in {"1", "true", "yes", "on"}:
                    return True
                if value.lower() in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if target is int:
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError(value)
            return int(as_float)
        return target(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: expected {target.__name__}, got {value!r}") from None
