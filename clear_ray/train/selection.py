"""Feasibility and best-epoch bookkeeping: the search objective is a constrained one.

A trial's objective is forget quality *subject to* keeping retain performance (and optionally
model utility), each measured by the metric ``search.retain_metric``/``search.utility_metric``
names (CLEAR's table columns by default); constraint values follow Optuna's convention
(≤ 0 feasible) so they can be handed to the sampler as they are.

``search.constrain_relearn`` adds a trial-level constraint: the relearning attack's recovery on
the best epoch (robust/relearn.py), measured once at the trial's end, so it decides which
trial is feasible, not which epoch is best. A trial not measured (stopped early, or its best
epoch already infeasible) counts as if everything came back (recovery 1): unmeasured is never
feasible by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from clear_ray.config import SearchConfig
from clear_ray.errors import ConfigError
from clear_ray.eval.names import SUMMARY_METRICS
from clear_ray.train.keys import (
    BEST_CONSTRAINT,
    BEST_EPOCH,
    BEST_OBJECTIVE,
    BEST_SCORE,
    CONSTRAINT,
    CONSTRAINT_PREFIX,
    EPOCH_FEASIBLE,
    EPOCH_SCORE,
    FEASIBLE,
    best_key,
)

# Below any objective (a task's log p-value is ≥ −745, Fisher's combination of two ≥ −1410,
# −W1 a few nats) yet small enough that float64 still resolves
# retain violations of 1e-10, so the least infeasible epoch wins among infeasible ones.
INFEASIBLE_SCORE = -1e6
# Metrics of the best epoch that every report carries as best_<name> (when evaluated).
BEST_METRICS = SUMMARY_METRICS
RELEARN_CONSTRAINT = "max_relearn"  # Optuna's name of the relearn constraint


@dataclass(frozen=True)
class Thresholds:
    """What every trial is compared against, computed once by the driver (absolute values)."""

    objective: str  # metric to maximise, e.g. "log_forget_quality"
    min_retain_metric: float  # on retain_metric
    min_model_utility: float | None = None  # on utility_metric; None: no utility constraint
    retain_floor: float = -math.inf  # below it retain has collapsed: the trial is stopped
    retain_metric: str = SearchConfig.retain_metric  # the metric the retain bounds apply to
    utility_metric: str = SearchConfig.utility_metric
    max_relearn_recovery: float | None = None  # search.constrain_relearn; None: no constraint

    @classmethod
    def from_search(cls, search: SearchConfig, original: dict[str, float]) -> Thresholds:
        """Absolute thresholds; "relative" mode scales each by Original's own value."""

        def absolute(value: float, metric: str) -> float:
            if search.threshold_mode == "absolute":
                return value
            if metric not in original:
                raise ConfigError(f"Original has no {metric} (are its tasks in eval.tasks?)")
            return value * original[metric]

        retain, utility = search.retain_metric, search.utility_metric
        return cls(
            objective=search.objective,
            min_retain_metric=absolute(search.min_retain, retain),
            min_model_utility=absolute(search.min_utility, utility) if search.min_utility else None,
            retain_floor=absolute(search.retain_floor, retain),
            retain_metric=retain,
            utility_metric=utility,
            max_relearn_recovery=search.constrain_relearn,
        )

    def constraints(self, metrics: dict[str, float]) -> dict[str, float]:
        """Named shortfalls (≤ 0 when met): the values Optuna learns the feasible region from."""
        values = {"min_retain": self.min_retain_metric - metrics[self.retain_metric]}
        if self.min_model_utility is not None:
            values["min_utility"] = self.min_model_utility - metrics[self.utility_metric]
        return values

    def constraint(self, metrics: dict[str, float]) -> float:
        """≤ 0 when every constraint holds: the largest shortfall."""
        return max(self.constraints(metrics).values())

    def trial_constraints(
        self, metrics: dict[str, float], recovery: float | None
    ) -> dict[str, float]:
        """The best epoch's constraints and, when constrained, the trial's relearn shortfall
        (``recovery`` None = not measured: counted as recovery 1, everything came back)."""
        values = self.constraints(metrics)
        if self.max_relearn_recovery is not None:
            measured = 1.0 if recovery is None else recovery
            values[RELEARN_CONSTRAINT] = measured - self.max_relearn_recovery
        return values

    def collapsed(self, metrics: dict[str, float]) -> bool:
        return metrics[self.retain_metric] < self.retain_floor

    def describe(self) -> str:
        rules = [f"{self.retain_metric} >= {self.min_retain_metric:.4g}"]
        if self.min_model_utility is not None:
            rules.append(f"{self.utility_metric} >= {self.min_model_utility:.4g}")
        if self.max_relearn_recovery is not None:
            rules.append(f"relearn recovery <= {self.max_relearn_recovery:.4g} (at trial end)")
        return " and ".join(rules)


@dataclass
class BestEpoch:
    """Tracks the best epoch of a trial: feasible epochs first, then the highest objective."""

    thresholds: Thresholds
    epoch: int = -1
    metrics: dict[str, float] = field(default_factory=dict)
    relearn_recovery: float | None = None  # of the best epoch, measured at the trial's end

    def score(self, metrics: dict[str, float]) -> float:
        violation = self.thresholds.constraint(metrics)
        if violation > 0:
            return INFEASIBLE_SCORE - violation
        return metrics[self.thresholds.objective]

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record ``epoch`` if it beats the best so far; True when it does."""
        if self.epoch >= 0 and self.score(metrics) <= self.score(self.metrics):
            return False
        self.epoch, self.metrics = epoch, dict(metrics)
        return True

    def summary(self) -> dict[str, float]:
        """Flat values reported every epoch so Tune, Optuna and MLflow see the running best."""
        constraints = self.thresholds.trial_constraints(self.metrics, self.relearn_recovery)
        constraint = max(constraints.values())
        return {
            BEST_EPOCH: float(self.epoch),
            BEST_OBJECTIVE: self.metrics[self.thresholds.objective],
            BEST_SCORE: self.score(self.metrics),
            **{best_key(key): self.metrics[key] for key in BEST_METRICS if key in self.metrics},
            BEST_CONSTRAINT: constraint,
            **{f"{CONSTRAINT_PREFIX}{name}": value for name, value in constraints.items()},
            FEASIBLE: float(constraint <= 0),
        }

    def epoch_values(self, metrics: dict[str, float]) -> dict[str, float]:
        """This epoch's own feasibility and score (the score ranks its checkpoint)."""
        constraint = self.thresholds.constraint(metrics)
        return {
            CONSTRAINT: constraint,
            EPOCH_FEASIBLE: float(constraint <= 0),
            EPOCH_SCORE: self.score(metrics),
        }

    def state(self) -> dict:
        """What a resumed trial needs to go on choosing its best epoch."""
        return {"epoch": self.epoch, "metrics": self.metrics}

    def restore(self, state: dict) -> None:
        self.epoch, self.metrics = int(state["epoch"]), dict(state["metrics"])
