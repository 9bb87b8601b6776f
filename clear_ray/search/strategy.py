"""How trials are chosen and stopped: the Optuna sampler, ASHA, and the retain-collapse stop.

Metric keys live here so the searcher, the scheduler and the reports agree on them:
Optuna maximises a trial's best feasible objective (and model utility in a Pareto search);
ASHA compares trials by their running best *score*, in which an infeasible epoch ranks below
every feasible one (``clear_ray.train.selection``).

What Optuna learns from a stopped trial: the best epoch it reached before the stop (value and
constraints), told as COMPLETE. That is a lower bound on what it would have reached; ASHA
only stops trials below the median of their rung and a collapsed trial will not recover, so
the bound is what TPE should learn from them.
"""

from __future__ import annotations

import math

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, GridSampler, TPESampler
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.stopper import Stopper

from clear_ray.config import SearchConfig
from clear_ray.errors import ConfigError
from clear_ray.search.constrained import ConstrainedOptunaSearch
from clear_ray.train.keys import BEST_OBJECTIVE, BEST_SCORE, EPOCH, best_key
from clear_ray.train.selection import Thresholds


def utility_key(search: SearchConfig) -> str:
    """The best epoch's ``search.utility_metric``: the second objective of a Pareto search."""
    return best_key(search.utility_metric)


def objective_keys(search: SearchConfig) -> list[str]:
    """The reported metrics Optuna maximises: the objective (and utility in a Pareto search)."""
    return [BEST_OBJECTIVE, utility_key(search)] if search.multi_objective else [BEST_OBJECTIVE]


def grid_size(space: dict[str, BaseDistribution]) -> int:
    """Points of the full grid; every dimension must be categorical."""
    not_categorical = [p for p, d in space.items() if not isinstance(d, CategoricalDistribution)]
    if not_categorical:
        raise ConfigError(
            f"search.sampler=grid needs categorical choices; not categorical: "
            f"{', '.join(not_categorical)}"
        )
    return math.prod(len(dist.choices) for dist in space.values())


def build_sampler(search: SearchConfig, space: dict[str, BaseDistribution]) -> BaseSampler:
    if search.sampler == "grid":
        grid = {path: list(dist.choices) for path, dist in space.items()}
        return GridSampler(grid, seed=search.seed)
    return TPESampler(seed=search.seed, n_startup_trials=search.startup_trials)


def build_searcher(
    search: SearchConfig,
    space: dict[str, BaseDistribution],
    storage_url: str,
    study_name: str,
    trials_csv: str | None = None,
) -> Searcher:
    """Constrained Optuna search, its study stored at ``storage_url`` under ``study_name``;
    two objectives (Pareto) when ``search.multi_objective``."""
    metric: str | list[str] = BEST_OBJECTIVE
    mode: str | list[str] = "max"
    if search.multi_objective:
        metric = objective_keys(search)
        mode = ["max"] * len(metric)
    searcher = ConstrainedOptunaSearch(
        space=space,
        metric=metric,
        mode=mode,
        sampler=build_sampler(search, space),
        storage_url=storage_url,
        study_name=study_name,
        trials_csv=trials_csv,
    )
    # Without the limiter more than startup_trials random trials would start at once.
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)


def build_scheduler(search: SearchConfig, epochs: int) -> TrialScheduler:
    """ASHA on the running best score per epoch, or FIFO. A grace period of ``epochs`` or
    more is clamped to ``epochs``: its only rung is the last epoch, so no trial is stopped (the
    default grace 2 with ``--epochs 1`` runs every trial to its end)."""
    if search.scheduler == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=EPOCH,
        metric=BEST_SCORE,
        mode="max",
        max_t=epochs,
        grace_period=min(search.grace_period, epochs),
        reduction_factor=search.reduction_factor,
    )


def trial_count(search: SearchConfig, space: dict[str, BaseDistribution]) -> int:
    """``num_samples``, capped to the grid size for a grid search (no point runs twice)."""
    if search.sampler != "grid":
        return search.num_samples
    return min(search.num_samples, grid_size(space))


class RetainCollapseStopper(Stopper):
    """Stops a trial at once when its retain metric falls below the floor: it has collapsed."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.thresholds.retain_metric in result and self.thresholds.collapsed(result)

    def stop_all(self) -> bool:
        return False


# Why a trial ended, as its child run's ``stopped`` tag and its console line say.
COMPLETED, ASHA, RETAIN_COLLAPSE, ERROR = "completed", "asha", "retain_collapse", "error"


def stop_reason(last: dict, epochs: int, thresholds: Thresholds) -> str:
    """Why a trial that did not fail ended, from its last report: all epochs run, its retain
    metric under the floor (``RetainCollapseStopper``), or else ASHA stopped it at a rung
    (the only other thing that ends a trial early)."""
    if int(last.get(EPOCH, 0)) >= epochs:
        return COMPLETED
    if thresholds.retain_metric in last and thresholds.collapsed(last):
        return RETAIN_COLLAPSE
    return ASHA
