"""Feasibility and best-epoch bookkeeping: the search objective is a constrained one.

A trial's objective is forget quality *subject to* keeping retain performance; the constraint
value follows Optuna's convention (≤ 0 feasible) so it can be handed to the sampler as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Below any objective (log p-values are ≥ −745) yet small enough that float64 still resolves
# retain violations of 1e-10, so the least infeasible epoch wins among infeasible ones.
INFEASIBLE_SCORE = -1e6


@dataclass(frozen=True)
class Thresholds:
    """What every trial is compared against, computed once by the driver."""

    objective: str  # metric to maximise, e.g. "log_forget_quality"
    min_retain_metric: float  # absolute: min_retain × Original's retain_metric

    def constraint(self, metrics: dict[str, float]) -> float:
        """≤ 0 when feasible: how far retain_metric falls short of the threshold."""
        return self.min_retain_metric - metrics["retain_metric"]


@dataclass
class BestEpoch:
    """Tracks the best epoch of a trial: feasible epochs first, then the highest objective."""

    thresholds: Thresholds
    epoch: int = -1
    metrics: dict[str, float] = field(default_factory=dict)

    def score(self, metrics: dict[str, float]) -> float:
        if self.thresholds.constraint(metrics) > 0:
            return INFEASIBLE_SCORE - self.thresholds.constraint(metrics)
        return metrics[self.thresholds.objective]

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record ``epoch`` if it beats the best so far; True when it does."""
        if self.epoch >= 0 and self.score(metrics) <= self.score(self.metrics):
            return False
        self.epoch, self.metrics = epoch, dict(metrics)
        return True

    def summary(self) -> dict[str, float]:
        """Flat values reported every epoch so Tune, Optuna and MLflow see the running best."""
        constraint = self.thresholds.constraint(self.metrics)
        return {
            "best_epoch": float(self.epoch),
            "best_objective": self.metrics[self.thresholds.objective],
            "best_retain_metric": self.metrics["retain_metric"],
            "best_forget_metric": self.metrics["forget_metric"],
            "best_constraint": constraint,
            "feasible": float(constraint <= 0),
        }

    def epoch_values(self, metrics: dict[str, float]) -> dict[str, float]:
        """This epoch's own feasibility and score (the score ranks its checkpoint)."""
        constraint = self.thresholds.constraint(metrics)
        return {
            "constraint": constraint,
            "epoch_feasible": float(constraint <= 0),
            "epoch_score": self.score(metrics),
        }
