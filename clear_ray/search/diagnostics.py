"""How far a search's winner can be trusted: top-k mean, optimism, bests at a range's edge.

The best of many noisy trials overstates its configuration (the winner's curse). Three checks,
each pure in the trial table and the space:

- the mean objective of the k best feasible trials: a steadier estimate of what the search
  found than its single best (tuning studies report it instead of the max);
- optimism: the winner's objective on the selection fold (where it was picked) minus the same
  checkpoint's on the report fold; positive = the selection overstated it;
- edges: a searched dimension whose best value lies in the outer 10 % of its range (on the log
  scale for log dimensions) suggests the optimum is outside: widen the space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

EDGE_MARGIN = 0.1


def top_k_mean(objectives: Sequence[float], k: int) -> float:
    """Mean of the ``k`` largest finite values (fewer if fewer); NaN when there are none."""
    finite = sorted((value for value in objectives if math.isfinite(value)), reverse=True)
    return sum(finite[:k]) / len(finite[:k]) if finite else math.nan


def optimism(selection_objective: float, report_objective: float) -> float:
    """Selection-fold minus report-fold objective of the same checkpoint."""
    return selection_objective - report_objective


def edge_dimensions(
    params: dict[str, Any], space: dict[str, BaseDistribution], margin: float = EDGE_MARGIN
) -> dict[str, str]:
    """Numeric dimensions whose value in ``params`` lies within ``margin`` of the range's low or
    high end, as {path: "low" | "high"}; positions on a log dimension are taken in log space.
    Categorical dimensions have no order to be at the edge of and are skipped."""
    edges = {}
    for path, distribution in space.items():
        if not isinstance(distribution, FloatDistribution | IntDistribution) or path not in params:
            continue
        scale = math.log if distribution.log else float
        low, high = scale(distribution.low), scale(distribution.high)
        position = (scale(params[path]) - low) / (high - low)
        if position <= margin:
            edges[path] = "low"
        elif position >= 1 - margin:
            edges[path] = "high"
    return edges


def diagnostics_metrics(
    objectives: Sequence[float], k: int, winner_selection: float, winner_report: float
) -> dict[str, float]:
    """The parent run's ``diagnostics/*`` metrics."""
    return {
        f"diagnostics/top{k}_mean_objective": top_k_mean(objectives, k),
        "diagnostics/optimism": optimism(winner_selection, winner_report),
        "diagnostics/winner_selection_objective": winner_selection,
        "diagnostics/winner_report_objective": winner_report,
    }
