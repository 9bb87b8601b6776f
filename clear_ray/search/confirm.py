"""Confirm runs: the selected configuration, and the method's default one, with fresh seeds.

One seed's winner is one draw; the winner of a search is the luckiest of many. So after a
search the selected configuration (its params, at its selected epoch count) is trained again
with ``search.confirm_seeds`` fresh training seeds (``train.seed + 1..N``; Optuna's sampler seed
``search.seed`` is another field), and so is the method's default configuration (the config
defaults of the searched dimensions, at ``train.epochs``: what papers run). Each run is fully
evaluated on the report fold; the leaderboard shows mean ± sd over the seeds.

No new training path: each configuration is one Ray Tune run of the search's own trainable
(search/trainable.py) with a fixed config and a grid over ``train.seed``, so the runs get the
trials' resources and workers and are child runs of the method's MLflow run (tags ``confirm``,
``configuration``). The last epoch's checkpoint is the run's adapter (the epoch count is the
selected one, so there is no best epoch to pick again).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

CONFIRM_FILE = "confirm.json"
TUNED, DEFAULT = "tuned", "default"


def confirm_seeds(train_seed: int, count: int) -> list[int]:
    """Fresh training seeds: none is the search's own ``train.seed``."""
    return [train_seed + offset for offset in range(1, count + 1)]


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample sd (n − 1) of a configuration's values over its seeds; sd None with
    fewer than two values, mean nan with none. The one definition: confirm.json, the report
    (report/tables.py) and bench/study.py all spread seeds with it."""
    values = [float(value) for value in values]
    if not values:
        return math.nan, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def default_params(config: dict[str, Any], space: dict) -> dict[str, Any]:
    """The config defaults (``Config.to_flat()``, preset recipe applied) of the searched paths."""
    return {path: config[path] for path in sorted(space)}


@dataclass
class ConfirmRun:
    seed: int
    run_id: str
    adapter: str
    metrics: dict[str, float]
    feasible: bool


@dataclass
class Configuration:
    params: dict[str, Any]
    epochs: int
    trial: str | None
    runs: list[ConfirmRun] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The contract's record: params, epochs, trial, runs, mean, sd, feasible_fraction.

        sd is the sample standard deviation (n − 1); None with fewer than two runs.
        """
        shared = [key for key in (self.runs[0].metrics if self.runs else {})]
        shared = [key for key in shared if all(key in run.metrics for run in self.runs)]
        mean, sd = {}, {}
        for key in shared:
            mean[key], sd[key] = mean_sd([run.metrics[key] for run in self.runs])
        return {
            "params": self.params,
            "epochs": self.epochs,
            "trial": self.trial,
            "runs": [vars(run) for run in self.runs],
            "mean": mean,
            "sd": sd,
            "feasible_fraction": (
                sum(run.feasible for run in self.runs) / len(self.runs) if self.runs else math.nan
            ),
        }


def write_confirm(
    path: Path, method: str, seeds: list[int], configurations: dict[str, Configuration]
) -> dict[str, Any]:
    """``<method_dir>/confirm.json`` (shared CONTRACTS.md); returns what it wrote."""
    record = {
        "method": method,
        "fold": "report",
        "seeds": seeds,
        "configurations": {name: c.summary() for name, c in configurations.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    return record


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def train_fixed(
    cfg,
    inputs,
    dirs,
    method: str,
    label: str,
    params: dict[str, Any],
    epochs: int,
    seeds: list[int],
    tracker,
    tags: dict[str, str],
) -> list[tuple[int, str, Path]]:
    """Train one fixed configuration once per seed through the search's trainable.

    Returns (seed, Tune trial id, local copy of its last epoch's adapter) per finished run.
    """
    from ray import tune
    from ray.train import Checkpoint

    from clear_ray.search.cleanup import TrainGroupReaper
    from clear_ray.search.session import storage_filesystem
    from clear_ray.search.trainable import DRIVER_CPUS, make_trainable
    from clear_ray.tracking import TrialLogger

    out = dirs.method(method) / "confirm" / label
    # Confirm runs are measured, not selected: the robustness checks attack them on the report
    # fold (robust/run.py), so the trial-end attack of search.constrain_relearn is not run.
    inputs = replace(inputs, thresholds=replace(inputs.thresholds, max_relearn_recovery=None))
    filesystem = storage_filesystem(dirs.storage)[0]
    reaper = TrainGroupReaper()
    logger = TrialLogger(
        tracker,
        cfg.to_flat(),
        out / "best_epoch_adapters",
        inputs.thresholds,
        epochs,
        {**tags, "confirm": "true", "configuration": label},
        filesystem,
    )
    tuner = tune.Tuner(
        tune.with_resources(make_trainable(cfg, inputs, dirs.ray_train), {"cpu": DRIVER_CPUS}),
        param_space={**params, "train.epochs": epochs, "train.seed": tune.grid_search(seeds)},
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.search.max_concurrent),
        run_config=tune.RunConfig(
            name=f"{method}-confirm-{label}",
            storage_path=dirs.ray_results,
            callbacks=[logger, reaper],
            verbose=0,
        ),
    )
    results = tuner.fit()
    reaper.reap(wait_s=60)
    finished = []
    for result in results:
        path = (result.metrics or {}).get("checkpoint_path")
        if result.error or not path:
            continue
        trial = result.metrics["trial_id"]
        adapter = out / f"seed-{result.config['train.seed']}"
        Checkpoint(path, filesystem).to_directory(str(adapter))
        finished.append((int(result.config["train.seed"]), trial, adapter))
    return sorted(finished)
