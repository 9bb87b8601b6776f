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

from clear_ray.errors import ConfigError
from clear_ray.robust.checks import ROBUST_CHECKS

FORGET_SPLITS = ("forget01", "forget05", "forget10")
ROLES = ("original", "gold")  # the reference models (model.original, model.gold)
MODALITIES = ("text", "visual", "both")  # what is forgotten: TOFU QA rows, image rows, or both
# What the console and leaderboard.md show (search/results.py); leaderboard_full.csv has all.
LEADERBOARD_VIEWS = ("compact", "full")

# Fields with a closed set of values, checked whenever a config is built or overridden.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.forget_split": FORGET_SPLITS,
    "data.modality": MODALITIES,
    "regularizer.l1_targets": ("ab", "b"),
    "train.precision": ("fp32", "bf16"),
    "finetune.precision": ("fp32", "bf16"),
    "finetune.decay": ("cosine", "linear"),
    "finetune.lora_targets": ("language_model", "all_linear"),
    # Maximised: log KS p-value vs Gold, 1 − JS (level-blind), or −W1 of log TRs vs Gold.
    "search.objective": ("log_forget_quality", "forget_quality_js", "neg_forget_distance"),
    "search.threshold_mode": ("relative", "absolute"),
    # The constraints' metrics: CLEAR's table columns (default) or the extended aggregates.
    "search.retain_metric": ("clear/retain_metric", "retain_metric"),
    "search.utility_metric": ("clear/model_utility", "model_utility"),
    "search.scheduler": ("asha", "none"),
    "search.sampler": ("tpe", "grid"),
    "report.leaderboard": LEADERBOARD_VIEWS,
}


@dataclass(frozen=True)
class Range:
    """Valid values of a numeric field: ``low``/``high`` (None = unbounded), each in or out."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __contains__(self, value: float) -> bool:
        if value != value:  # NaN is in no range
            return False
        if self.low is not None and (
            value < self.low or (value == self.low and not self.low_inclusive)
        ):
            return False
        return self.high is None or not (
            value > self.high or (value == self.high and not self.high_inclusive)
        )

    def __str__(self) -> str:
        low = "(-inf" if self.low is None else f"{'[' if self.low_inclusive else '('}{self.low:g}"
        high = (
            "inf)" if self.high is None else f"{self.high:g}{']' if self.high_inclusive else ')'}"
        )
        return f"{low}, {high}"


AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_inclusive=False)
FRACTION = Range(0, 1)

# Numeric fields with a valid range, checked whenever a config is built or overridden, and
# against search-space bounds (search/space.py). Fields not listed take any value of their type.
RANGES: dict[str, Range] = {
    "data.synthetic_persons": AT_LEAST_1,
    "lora.r": AT_LEAST_1,
    "lora.alpha": POSITIVE,
    "lora.dropout": Range(0, 1, high_inclusive=False),
    "method.beta": POSITIVE,  # DPO/NPO inverse temperature: the loss divides by it
    "method.alpha": NON_NEGATIVE,
    "method.gamma": NON_NEGATIVE,
    "method.delta": NON_NEGATIVE,
    "method.steering_coeff": POSITIVE,
    "method.layer_fraction": FRACTION,
    "method.scrub_max_epochs": NON_NEGATIVE,  # 0 = no max pass (min-steps only)
    "method.kl_temperature": POSITIVE,
    "regularizer.l1": NON_NEGATIVE,
    "train.lr": POSITIVE,
    "train.epochs": AT_LEAST_1,
    "train.batch_size": AT_LEAST_1,
    "train.grad_accum": AT_LEAST_1,
    "train.warmup_epochs": NON_NEGATIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.zero_stage": Range(0, 3),
    "finetune.lr": POSITIVE,
    "finetune.epochs": AT_LEAST_1,
    "finetune.batch_size": AT_LEAST_1,
    "finetune.grad_accum": AT_LEAST_1,
    "finetune.warmup_epochs": NON_NEGATIVE,
    "finetune.weight_decay": NON_NEGATIVE,
    "pretrain.epochs": NON_NEGATIVE,  # 0 = no pretraining: Original/Gold start from the base
    "pretrain.lr": POSITIVE,
    "pretrain.batch_size": AT_LEAST_1,
    "pretrain.scene_images": NON_NEGATIVE,
    "eval.batch_size": AT_LEAST_1,
    "eval.max_new_tokens": AT_LEAST_1,
    "eval.proxy_items": NON_NEGATIVE,
    "eval.clear_rows": NON_NEGATIVE,  # 0 = every row
    "search.num_samples": AT_LEAST_1,
    "search.max_concurrent": NON_NEGATIVE,  # 0 = as many as the cluster holds
    "search.min_retain": NON_NEGATIVE,  # upper bound depends on the mode (check_thresholds)
    "search.min_utility": NON_NEGATIVE,
    "search.retain_floor": NON_NEGATIVE,
    "search.grace_period": AT_LEAST_1,
    "search.reduction_factor": Range(1, low_inclusive=False),
    "search.max_failures": NON_NEGATIVE,
    "search.workers_per_trial": AT_LEAST_1,
    "search.cpus_per_worker": POSITIVE,
    "search.gpus_per_trial": NON_NEGATIVE,
    "search.startup_trials": NON_NEGATIVE,
    "search.worker_start_timeout_s": POSITIVE,
    "search.reference_wait_s": POSITIVE,
    "search.lr_scale": POSITIVE,
    "robust.relearn_steps": AT_LEAST_1,
    "robust.relearn_batch_size": AT_LEAST_1,
    "search.report_fraction": Range(0, 1, high_inclusive=False),  # 0 = no folds
    "search.confirm_seeds": NON_NEGATIVE,  # 0 = no confirm runs
    "search.top_k": AT_LEAST_1,
    "search.constrain_relearn": FRACTION,  # a recovery: 0 = nothing came back, 1 = all
    "tracking.max_outage_s": POSITIVE,
}
# Relative thresholds are fractions of Original's value; above 1.5 nothing can be feasible.
RELATIVE_THRESHOLD = Range(0, 1.5, low_inclusive=False)
THRESHOLDS = ("search.min_retain", "search.min_utility", "search.retain_floor")
OFF_AT_ZERO = ("search.min_utility", "search.retain_floor")  # 0 turns these checks off


def check_value(path: str, value: Any) -> None:
    """Raises :class:`ConfigError` naming the field and its valid values."""
    if value is None:  # an optional field turned off
        return
    if path in CHOICES and value not in CHOICES[path]:
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(CHOICES[path])}")
    if path in RANGES and value not in RANGES[path]:
        raise ConfigError(f"{path}: {value!r} is outside {RANGES[path]}")


@dataclass
class DataConfig:
    source: str = ""  # hub id (therem/CLEAR) or a local hub-layout dir; "" = synthetic
    forget_split: str = "forget10"  # forget01 | forget05 | forget10
    modality: str = "both"  # one of MODALITIES
    synthetic_persons: int = 80  # forget10: 8 persons, two folds of 4 (data/synthetic.py)
    # A local copy of locuslab/TOFU (hub layout) for a local copy of therem/CLEAR, which has
    # no forgetNN_tofu_perturbed: TOFU's forgetNN_perturbed fills it (data/source.py). "" =
    # such a copy is searched without the text forget-quality task.
    tofu_source: str = ""
    synthetic_seed: int = 0


@dataclass
class ModelConfig:
    preset: str = "tiny-llava"
    # Bring-your-own references: a checkpoint dir or hub id (id@revision) of the preset's
    # architecture; "" = finetune it from the preset's base model (clear_ray/references/).
    original: str = ""
    gold: str = ""


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
    # RMU: steered decoder layer as a fraction of the depth; round(0.225·31) = layer 7 of 32,
    # the paper's (models/introspection.py layer_index)
    layer_fraction: float = 0.225
    scrub_max_epochs: int = 1  # SCRUB's msteps: leading epochs with a max pass over the forget set
    kl_temperature: float = 4.0  # SCRUB: temperature of its KL terms (T² scaled, as SCRUB)


# The hyperparameters a method may declare it reads (clear_ray/methods/base.py Method.reads).
METHOD_FIELDS = tuple(
    f"method.{f.name}" for f in dataclasses.fields(MethodConfig) if f.name != "name"
)


@dataclass
class RegularizerConfig:
    l1: float = 0.0  # λ of CLEAR's λ·Σ|w| over the LoRA weights (un-normalised; paper: 0.01)
    l1_targets: str = "ab"  # "ab": LoRA A and B matrices; "b": B only


@dataclass
class TrainConfig:
    """Unlearning recipe. Defaults suit the tiny CPU preset; a model preset's recipe
    (``clear_ray.models.presets``) sets its own, e.g. CLEAR's lr 1e-5 in bf16 for LLaVA-7B."""

    lr: float = 1e-3
    epochs: int = 3
    batch_size: int = 4  # per worker, forget items per step (each paired with a retain item)
    grad_accum: int = 1
    # LR: linear warm-up over this many epochs, then linear decay to 0 at the end of the run
    # (CLEAR mm/forget.py and open-unlearning: one epoch of warm-up). SCRUB with max passes
    # gets none, as its own code (train/schedule.py trial_warmup_epochs).
    warmup_epochs: float = 1.0
    weight_decay: float = 0.01
    zero_stage: int = 2
    # fp32 | bf16: DeepSpeed's precision, and the dtype in which Original is loaded for the
    # trials and Gold/Original are loaded for their reference evaluations (same dtype for both).
    precision: str = "fp32"
    seed: int = 0


@dataclass
class FinetuneConfig:
    """Recipe that produces Original (full+tofu) and Gold (retainNN+tofu).

    Defaults suit the tiny random-init preset on CPU; a model preset's recipe sets its own
    (LLaVA-7B: CLEAR's ``config/mm/finetune.yaml`` and ``mm/finetune.py``).
    """

    lr: float = 3e-3
    epochs: int = 10  # 15 photos and 15 facts per person: 150 caption passes per person
    batch_size: int = 16  # rows per forward pass; an optimiser step sees batch_size × grad_accum
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0  # linear warm-up from ~0, then `decay` to 0 at the last step
    decay: str = "cosine"  # cosine | linear (HF Trainer's default, which CLEAR used)
    precision: str = "fp32"  # bf16: autocast on GPU (frozen LoRA base in bf16); CPU stays fp32
    # Where Original/Gold's LoRA goes for pretrained presets: the preset's language-model
    # projections, or every nn.Linear but lm_head (vision tower and projector too), as CLEAR's
    # utils.py find_all_linear_names. Unused by presets that train every weight.
    lora_targets: str = "language_model"
    seed: int = 0


@dataclass
class PretrainConfig:
    """World knowledge a random-init base gets before Original/Gold are finetuned from it.

    LLaVA knew CLEAR's real_faces celebrities and real_world answers before CLEAR finetuned it;
    the tiny preset's random base learns the real_faces and real_world sets plus
    ``scene_images`` captioned scenes without persons (clear_ray/references/recipes.py), so the Real
    column measures knowledge older than the finetune. Presets with pretrained weights skip it.
    The rest of the recipe (schedule, weight decay, precision, seed) is ``finetune``'s.
    """

    epochs: int = 30
    lr: float = 3e-3
    # Smaller than the finetune's: the same examples in more optimiser steps, so the small corpus
    # is learnt as firmly as the finetune later overwrites it, for about the same CPU time.
    batch_size: int = 4
    scene_images: int = 60
    # Original's and Gold's finetunes see the knowledge corpus again (replay): a 7B model's world
    # knowledge survives CLEAR's small finetune, while the tiny model would overwrite it in the
    # finetune's steps (Real fell from ~0.35 to ~0.26 with 40 persons). Unlearning never replays,
    # so a collapsed trial still shows Real dropping.
    replay: bool = True


@dataclass
class EvalConfig:
    batch_size: int = 32
    # Greedy generation for ROUGE in a full evaluation: TOFU/open-unlearning's 200 new tokens
    # (CLEAR used 300), so long captions and answers can reach full ROUGE-L recall.
    max_new_tokens: int = 200
    generate: bool = True  # greedy generation for ROUGE; off = ROUGE excluded from aggregates
    tasks: str = "all"  # comma-separated task names (clear_ray.eval.names.TASKS) or "all"
    # Each task's first N rows only (0 = all): CLEAR's `ds_size: 300` for paper-comparable tables.
    clear_rows: int = 0
    # Proxy evaluation: a fixed seeded subset of each task's rows (of its first clear_rows, when
    # set), scoring only (no generation, so no ROUGE in aggregates); metric eval/proxy = 1.0 marks
    # it. 0 = full evaluation.
    proxy_items: int = 0
    proxy_seed: int = 0


@dataclass
class SearchConfig:
    num_samples: int = 8
    # Trials at once; 0 = as many as the cluster's nodes hold (runtime/cluster.py
    # concurrent_trials: one per core on a CPU machine, one per GPU with --gpus-per-trial 1).
    max_concurrent: int = 0
    # Maximised: log_forget_quality (log KS p-value vs Gold), neg_forget_distance (−W1 between
    # log truth ratios of model and Gold: continuous, not on the KS lattice) or
    # forget_quality_js (CLEAR's 1 − JS: level-blind, a TR profile Gold's times c scores 1).
    objective: str = "log_forget_quality"
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
    # ASHA: epochs every trial runs before it can be stopped; at least train.epochs stops none
    # (clamped). 2, not 1: replayed on the grids' curves, grace 1 stops dpo's best trial, which
    # sits at Original's value after epoch 1 (bench/RESULTS.md, search efficiency).
    grace_period: int = 2
    reduction_factor: float = 2.0  # ASHA: 1/reduction_factor of trials go on at each rung
    sampler: str = "tpe"  # tpe | grid (every combination of categorical choices)
    # Worker crashes (Train) and lost trial drivers (Tune) retried per trial, each from the
    # last epoch checkpoint.
    max_failures: int = 2
    # Where Ray Tune results and Ray Train checkpoints go: "" = the search folder (one node);
    # on a cluster, storage every node reaches (s3://bucket/prefix, gs://..., a shared mount).
    storage_path: str = ""
    # The Optuna study's storage (SQLAlchemy URL): "" = sqlite optuna.db in the search folder;
    # or a server, e.g. postgresql://optuna@head:5432/optuna (password in PGPASSWORD: the URL is
    # logged to MLflow). Only the Tune driver writes it.
    optuna_storage: str = ""
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_trial: float = 0.0
    seed: int = 0
    startup_trials: int = 4  # random trials before TPE models the space (Optuna default: 10)
    # A trial whose workers have not started after this long fails with the reason (resources
    # asked for and free), instead of Ray Train retrying the start for ever; so does the
    # search when its own tasks (reference builds, final and confirm evaluations, robustness
    # checks) wait this long to start with none of them running, naming what holds the CPUs.
    worker_start_timeout_s: float = 300.0
    # A search that finds another one in its output directory building a reference (pretrained
    # base, Original, Gold, an evaluation) waits this long for it, then reuses it.
    reference_wait_s: float = 7200.0
    # Start Ray's dashboard with the local Ray a search starts when it finds no running Ray (a
    # cluster from `ray up` keeps its own). Its ~12 processes cost ~2 s of CPU to start and
    # ~1/30 of a core while idle, and with Train's metrics ~3.8 s of CPU per trial
    # (bench/run_overhead.py), taken from the trials on a small machine; nothing here needs
    # it (trials are watched in MLflow).
    ray_dashboard: bool = False
    # Pin the CPU kernels (ATen's instruction set, oneDNN's, MKL's reproducibility mode, thread
    # counts) in the driver and every Ray process of a CPU search, so that a search gives the
    # same numbers on any x86-64 CPU with AVX2 (clear_ray/kernels.py says what each pins).
    # GPU searches are not pinned.
    pin_cpu_kernels: bool = True
    # Multiplies the train.lr bounds of every search space: the shipped spaces are written at
    # the tiny preset's scale (1e-4..1e-2); a preset's recipe rescales them (7B: 0.01).
    lr_scale: float = 1.0
    # Forget persons of the split in a report fold (final evaluation, leaderboard) and a
    # selection fold (everything that selects): data/folds.py. 0 = no folds, both see everyone.
    report_fraction: float = 0.5
    fold_seed: int = 0
    # The selected configuration (and the default one) re-trained with this many fresh
    # train.seed values (train.seed + 1..N), each evaluated on the report fold; 0 = off.
    confirm_seeds: int = 3
    top_k: int = 3  # diagnostics: the mean objective of the k best feasible trials
    # Feasible only if the relearning attack (robust/relearn.py, robust.relearn_* budget) on
    # the trial's best epoch, at the trial's end, recovers at most this on the selection fold
    # (net_recovery, worst over robust.relearn_lrs); None = off. Costs an attack of
    # robust.relearn_steps per learning rate per completed feasible trial (Gold's are cached).
    constrain_relearn: float | None = None


@dataclass
class RobustConfig:
    """Checks that the forgetting holds, run on each method's best trial after its
    final evaluation. Defaults suit the tiny CPU preset; the relearning attack is a short LoRA
    finetune, so a 7B recipe sets learning rates at its own scale (models/presets.py)."""

    # Comma-separated names of ROBUST_CHECKS (robust/checks.py), "all" or "none". All by
    # default: on the tiny preset together < 1 min per best trial (docs/robustness.md gives
    # each one's cost).
    checks: str = "all"
    relearn_steps: int = 20  # optimiser steps of the relearning attack (robust/relearn.py)
    # Comma-separated learning rates of the attack, each a separate attack (of the unlearned
    # model and of Gold); the worst case is reported. Around the tiny preset's unlearning lr
    # (1e-3), ×3 apart, as Deeb & Roger sweep their attack's (arXiv 2410.08827).
    relearn_lrs: str = "3e-4,1e-3,3e-3"
    relearn_batch_size: int = 4
    seed: int = 0  # the split of the report persons into attacked and held-out halves

    def names(self) -> tuple[str, ...]:
        """The checks to run, in registry order; raises ConfigError for an unknown name."""
        spec = self.checks.strip()
        if spec in ("", "none"):
            return ()
        if spec == "all":
            return ROBUST_CHECKS
        names = {name.strip() for name in spec.split(",") if name.strip()}
        unknown = sorted(names - set(ROBUST_CHECKS))
        if unknown:
            raise ConfigError(
                f"robust.checks: unknown check {unknown[0]!r}; expected all, none or a "
                f"comma-separated list of {', '.join(ROBUST_CHECKS)}"
            )
        return tuple(name for name in ROBUST_CHECKS if name in names)

    def lrs(self) -> tuple[float, ...]:
        """The attack's learning rates, ascending; raises ConfigError unless each is a
        positive number and there is at least one."""
        values = []
        for text in self.relearn_lrs.split(","):
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not value > 0:
                raise ConfigError(
                    f"robust.relearn_lrs: {text.strip()!r} is not a positive learning rate "
                    f"(expected a comma-separated list such as 3e-4,1e-3,3e-3)"
                )
            values.append(value)
        return tuple(sorted(set(values)))


@dataclass
class TrackingConfig:
    tracking_uri: str = ""  # "" = sqlite database under the output dir
    experiment: str = "clear_ray"
    # How long a search trains on while its MLflow server is away (its tracking calls kept in
    # the search folder, clear_ray/search/outbox.py) before it stops, resumable with --resume.
    max_outage_s: float = 600.0


@dataclass
class ReportConfig:
    # compact: CLEAR's five columns, the objective with its D and n, tuned − default, net
    # relearn recovery and feasibility; full: every column (search/results.py). Either way
    # leaderboard_full.csv in the search folder holds every column at full precision.
    leaderboard: str = "compact"


@dataclass
class Config:
    output_dir: str = "clear_ray_runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_flat(self) -> dict[str, Any]:
        """Every leaf as ``{"section.field": value}`` (MLflow params, Ray configs)."""
        return _flatten(self)

    def replace(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted-path overrides applied, values coerced to the field's type."""
        new = copy.deepcopy(self)
        for path, value in overrides.items():
            parent, name = _resolve(new, path)
            if not (value is None and _optional(parent, name)):
                value = _coerce(value, _field_type(parent, name), path)
            check_value(path, value)
            setattr(parent, name, value)
        return new

    def validate(self) -> Config:
        """Checks across fields, once every override is applied; returns ``self``."""
        search = self.search
        if search.threshold_mode == "relative":
            flat = self.to_flat()
            for path in THRESHOLDS:
                value = flat[path]
                if not (path in OFF_AT_ZERO and value == 0) and value not in RELATIVE_THRESHOLD:
                    raise ConfigError(
                        f"{path}: {value!r} is outside {RELATIVE_THRESHOLD} "
                        "(a fraction of Original's value in relative mode)"
                    )
        self.robust.names()  # an unknown check fails here, before anything runs
        self.robust.lrs()
        if search.constrain_relearn is not None and search.workers_per_trial > 1:
            # The attack trains a second DeepSpeed engine in the trial's worker; with more
            # ranks its collectives would wait for ranks that are not attacking.
            raise ConfigError(
                f"search.constrain_relearn needs --workers-per-trial 1, got "
                f"{search.workers_per_trial}"
            )
        return self

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_flat`; unknown paths raise :class:`ConfigError`."""
        return cls().replace(flat)


def resolve_config(overrides: dict[str, Any]) -> Config:
    """Dataclass defaults, then the model preset's recipe, then ``overrides`` (the user wins).

    The preset is the one ``overrides`` names (or the default), so ``--model llava-1.5-7b``
    alone brings CLEAR's 7B recipe and ``--set finetune.lr=...`` still changes it.
    """
    from clear_ray.models.presets import get_preset  # presets import this module

    preset = Config().replace({k: v for k, v in overrides.items() if k == "model.preset"})
    return preset.replace(get_preset(preset.model.preset).recipe).replace(overrides)


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


def _optional(node: Any, name: str) -> bool:
    """Whether the field is ``X | None`` (None = off)."""
    return type(None) in typing.get_args(typing.get_type_hints(type(node))[name])


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
