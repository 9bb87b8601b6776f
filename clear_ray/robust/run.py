"""Each check (robust/checks.py) as a cached Ray task, and what the driver writes.

Each check runs as a Ray task with a trial worker's resources (runtime/driver_tasks.py), like
the reference evaluations, and is cached on its node by a key of its inputs' content:
Original's and Gold's checkpoint fingerprints, the adapter's bytes, the data, the persons
and the config fields it reads. A second search (or a resumed one) over the same adapter
reads the result instead of attacking again.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clear_ray.cache import cache_key, cached_dir
from clear_ray.config import Config
from clear_ray.robust.checks import CHECKS
from clear_ray.robust.context import CheckContext, CheckResult
from clear_ray.runtime.staging import DriverDir, on_this_node

RESULT_FILE = "result.json"
CACHE_FORMAT = 4  # part of the key: a change of what result.json holds is a new entry
# 2: relearn recovery clipped to [0, 1], a removal under MIN_GAP counts as none
# 3: the relearning attack's LoRA seeded (before, its values varied from run to run)
# 4: relearn net of attacked Gold over a learning-rate sweep; NF4 in plain torch; Gold and
#    Original rounded and prompted alike; worst_normalised per check
ROBUSTNESS_FILE = "robustness.json"
BEST = "best"  # the label of the best trial in robustness.json


@dataclass(frozen=True)
class CheckOutcome:
    result: CheckResult
    seconds: float  # the check's own time when it ran (a cached result keeps its first cost)
    ran_at: dict[str, Any]


def adapter_digest(adapter: dict[str, bytes] | None) -> str | None:
    if adapter is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(adapter):
        digest.update(name.encode() + b"\0" + adapter[name])
    return digest.hexdigest()


def check_key(name: str, ctx: CheckContext) -> str:
    from clear_ray.data.clear import data_fingerprint
    from clear_ray.references.checkpoints import checkpoint_fingerprint
    from clear_ray.robust.context import forget_configs

    cfg = ctx.cfg
    return cache_key(
        {
            "check": name,
            "format": CACHE_FORMAT,
            "original": checkpoint_fingerprint(ctx.original),
            "gold": checkpoint_fingerprint(ctx.gold),
            "adapter": adapter_digest(ctx.adapter),
            "data": data_fingerprint(ctx.source, sorted(forget_configs(cfg.data.forget_split))),
            "split": cfg.data.forget_split,
            "modality": cfg.data.modality,
            "persons": sorted(ctx.persons),
            "eval": asdict(cfg.eval),
            "precision": cfg.train.precision,
            "finetune_precision": cfg.finetune.precision,
            "lora": asdict(cfg.lora),
            "robust": {k: v for k, v in asdict(cfg.robust).items() if k != "checks"},
        }
    )


def cached_check(
    name: str,
    cfg: Config,
    original: str | DriverDir,
    gold: str | DriverDir,
    adapter: dict[str, bytes] | None,
    source: str | DriverDir,
    persons: tuple[str, ...],
) -> tuple[CheckResult, float]:
    """One check in this process, from this node's cache when it ran before on the same
    content: its result and its own time when it ran. Also the trial-end attack of
    ``search.constrain_relearn`` (robust/constraint.py), inside a trial's worker."""
    cache = Path(cfg.output_dir) / "cache" / "robust"
    ctx = CheckContext(
        cfg, on_this_node(original), on_this_node(gold), adapter, on_this_node(source),
        tuple(persons), cache,
    )  # fmt: skip

    def build(directory: Path) -> None:
        started = time.perf_counter()
        result = CHECKS[name](ctx)
        record = {**asdict(result), "seconds": time.perf_counter() - started}
        (directory / RESULT_FILE).write_text(json.dumps(record, default=float))

    directory = cached_dir(cache / f"{name}-{check_key(name, ctx)}", build)
    record = json.loads((directory / RESULT_FILE).read_text())
    result = CheckResult(record["metrics"], record["items"], tuple(record["notes"]))
    return result, record["seconds"]


def check_task(
    name: str,
    cfg: Config,
    original: str | DriverDir,
    gold: str | DriverDir,
    adapter: dict[str, bytes] | None,
    source: str | DriverDir,
    persons: tuple[str, ...],
) -> CheckOutcome:
    """``cached_check`` as a Ray task's body: with where it ran."""
    from clear_ray.runtime.cluster import where

    result, seconds = cached_check(name, cfg, original, gold, adapter, source, persons)
    return CheckOutcome(result, seconds, where())


def report_persons(search_root: Path, source: str, forget_split: str) -> tuple[str, ...]:
    """The persons the checks look at: the report fold of ``folds.json`` (data/folds.py) when
    the search has folds, else every forget person."""
    folds = search_root / "folds.json"
    if folds.is_file():
        values = json.loads(folds.read_text())
        if values.get("report_fraction", 0) > 0 and values.get("report"):
            return tuple(sorted(values["report"]))
    from clear_ray.data.clear import load_clear

    names = load_clear(source, f"{forget_split}_perturbed").select_columns(["name"])["name"]
    return tuple(sorted(set(names) - {""}))


def confirm_adapters(method_dir: Path) -> dict[str, Path]:
    """The tuned configuration's confirm-seed runs (confirm.json), by label ``tuned/seed<N>``."""
    path = method_dir / "confirm.json"
    if not path.is_file():
        return {}
    tuned = json.loads(path.read_text()).get("configurations", {}).get("tuned", {})
    return {
        f"tuned/seed{run['seed']}": Path(run["adapter"])
        for run in tuned.get("runs", [])
        if run.get("adapter") and Path(run["adapter"]).is_dir()
    }


def run_checks(
    cfg: Config,
    names: tuple[str, ...],
    adapters: dict[str, Path],
    original: str | DriverDir,
    gold: str | DriverDir,
    source: str | DriverDir,
    persons: tuple[str, ...],
) -> dict[str, dict[str, CheckOutcome]]:
    """Every check on every labelled adapter, as Ray tasks at once: ``{label: {check: ...}}``."""
    from clear_ray.eval.final import read_adapter
    from clear_ray.runtime.driver_tasks import each_result, trial_task

    task = trial_task(check_task, cfg.search)
    pending = {
        (label, name): task.remote(
            name, cfg, original, gold, read_adapter(adapter), source, persons
        )
        for label, adapter in adapters.items()
        for name in names
    }
    outcomes: dict[str, dict[str, CheckOutcome]] = {label: {} for label in adapters}
    for (label, name), outcome in each_result(pending, "the robustness checks", cfg.search):
        outcomes[label][name] = outcome
    return outcomes


def merged_metrics(outcomes: dict[str, CheckOutcome]) -> dict[str, float]:
    return {key: value for o in outcomes.values() for key, value in o.result.metrics.items()}


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per metric, the mean over the rows that have it (a check may skip a model)."""
    keys = dict.fromkeys(key for row in rows for key in row)
    return {key: statistics.fmean(row[key] for row in rows if key in row) for key in keys}


def write_robustness(method_dir: Path, outcomes: dict[str, dict[str, CheckOutcome]]) -> list[Path]:
    """``robustness.json`` (``{label: {robust/...: value}}``) and, per label and check, its
    per-item values, notes and cost under ``robustness/``; returns both paths (for MLflow)."""
    summary = method_dir / ROBUSTNESS_FILE
    summary.write_text(
        json.dumps({label: merged_metrics(checks) for label, checks in outcomes.items()}, indent=2)
    )
    details = method_dir / "robustness"
    for label, checks in outcomes.items():
        folder = details / label.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        for name, outcome in checks.items():
            detail = {**asdict(outcome.result), "seconds": outcome.seconds}
            (folder / f"{name}.json").write_text(json.dumps(detail, default=float))
    return [summary, details]
