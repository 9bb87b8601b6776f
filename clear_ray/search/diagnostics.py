"""How far a search's winner can be trusted: top-k mean, optimism, bests at a range's edge.

The best of many noisy trials overstates its configuration (the winner's curse). Three checks,
each pure in the trial table, the references and the space:

- the mean objective of the k best feasible trials: a steadier estimate of what the search
  found than its single best (tuning studies report it instead of the max). Each trial's value
  is its best epoch on the selection fold, itself a maximum over epochs;
- optimism: how much more of Original's distance to Gold the winner closes on the selection
  fold (where it was picked) than the same checkpoint on the report fold. The folds hold
  different persons and are not equally hard even for Original, so raw objectives are not
  compared: each is first turned into the share of its own fold's Original-to-Gold gap closed
  (:func:`gap_closed`); positive = selection flattered the winner;
- edges: a searched dimension whose best value lies in the outer 10 % of its range (on the log
  scale for log dimensions, by rank for numeric choices) suggests the optimum is outside: widen
  the space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

EDGE_MARGIN = 0.1
# An ordered dimension with fewer values has most of them at an edge (1..3: two of three), so
# a best there says nothing about the optimum lying outside.
MIN_EDGE_VALUES = 5


def top_k_mean(objectives: Sequence[float], k: int) -> float:
    """Mean of the ``k`` largest finite values (fewer if fewer); NaN when there are none."""
    finite = sorted((value for value in objectives if math.isfinite(value)), reverse=True)
    return sum(finite[:k]) / len(finite[:k]) if finite else math.nan


def expected_best(values: Sequence[float], k: int) -> float:
    """The mean, over every ``k``-subset of ``values``, of the subset's largest value.

    What the best of k trials drawn from ``values`` reads on average: two arms of different
    sizes compared at one k do not favour the larger (whose plain maximum, or top-k mean, is
    higher by construction). With v_(1) ≤ … ≤ v_(n), v_(i) is the subset's maximum in
    C(i − 1, k − 1) of the C(n, k) subsets. NaN when there are fewer than k values or k < 1.
    """
    ordered = sorted(values)
    n = len(ordered)
    if k < 1 or n < k:
        return math.nan
    total = sum(value * math.comb(i, k - 1) for i, value in enumerate(ordered))
    return total / math.comb(n, k)


@dataclass(frozen=True)
class FoldObjectives:
    """One fold's objective values of the winner and of the two references, on that fold."""

    winner: float
    original: float
    gold: float


def gap_closed(values: FoldObjectives) -> float:
    """The share of the fold's Original-to-Gold gap the winner closes:
    (x − x_Original)/(x_Gold − x_Original); 0 at Original, 1 at Gold, above 1 past Gold.

    For log FQ Gold's value is 0 (Gold against itself), so this is 1 − x/x_Original. NaN when
    Original and Gold do not differ on the fold (there is no gap to close).
    """
    gap = values.gold - values.original
    if not math.isfinite(gap) or gap == 0:
        return math.nan
    return (values.winner - values.original) / gap


def optimism(selection: FoldObjectives, report: FoldObjectives) -> float:
    """Share of the gap closed on the selection fold minus that on the report fold."""
    return gap_closed(selection) - gap_closed(report)


def edge_dimensions(
    params: dict[str, Any], space: dict[str, BaseDistribution], margin: float = EDGE_MARGIN
) -> dict[str, str]:
    """Ordered dimensions whose value in ``params`` lies within ``margin`` of the range's low or
    high end, as {path: "low" | "high"}.

    Positions on a log dimension are taken in log space; numeric choices (the L1 grid) are
    ordered by value and placed by rank. Integer dimensions and choices need
    :data:`MIN_EDGE_VALUES` distinct values to be flagged. A lowest choice of 0 is an "off"
    switch (no L1), not a range end to widen past, so it is never flagged low.
    """
    edges = {}
    for path, distribution in space.items():
        if path not in params:
            continue
        position = _position(params[path], distribution)
        if position is None:
            continue
        if position <= margin and not _off_switch(distribution):
            edges[path] = "low"
        elif position >= 1 - margin:
            edges[path] = "high"
    return edges


def _position(value: Any, distribution: BaseDistribution) -> float | None:
    """Where ``value`` lies in [0, 1] along the dimension; None when it has no usable order."""
    if isinstance(distribution, CategoricalDistribution):
        choices = distribution.choices
        numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)
        ordered = sorted(set(choices)) if numeric else []
        if len(ordered) < MIN_EDGE_VALUES or value not in ordered:
            return None
        return ordered.index(value) / (len(ordered) - 1)
    if isinstance(distribution, IntDistribution):
        if (distribution.high - distribution.low) // distribution.step + 1 < MIN_EDGE_VALUES:
            return None
    elif not isinstance(distribution, FloatDistribution):
        return None
    scale = math.log if distribution.log else float
    low, high = scale(distribution.low), scale(distribution.high)
    return (scale(value) - low) / (high - low)


def _off_switch(distribution: BaseDistribution) -> bool:
    return isinstance(distribution, CategoricalDistribution) and min(distribution.choices) == 0


def diagnostics_metrics(
    objectives: Sequence[float],
    k: int,
    selection: FoldObjectives,
    report: FoldObjectives,
    proxy: bool,
) -> dict[str, float]:
    """The parent run's ``diagnostics/*`` metrics.

    Without ``diagnostics/optimism`` when the per-epoch evaluation is a proxy (``proxy``): the
    selection value then comes from a subset of other items and sizes than the report's full
    evaluation, so even the shares of the gap closed are not on one footing.
    """
    values = {
        f"diagnostics/top{k}_mean_objective": top_k_mean(objectives, k),
        "diagnostics/winner_selection_objective": selection.winner,
        "diagnostics/winner_report_objective": report.winner,
        "diagnostics/winner_selection_gap_closed": gap_closed(selection),
        "diagnostics/winner_report_gap_closed": gap_closed(report),
    }
    if not proxy:
        values["diagnostics/optimism"] = optimism(selection, report)
    return values
