"""The Pareto front of two maximised metrics (e.g. model utility against forget quality).

A multi-objective search has no single best trial: the front is the set of trade-offs worth
looking at, everything else is beaten on both metrics by some trial on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` is at least as good on both coordinates and better on one (equal points tie)."""
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (both coordinates maximised), first coordinate
    descending; points with a NaN coordinate take no part (they neither join nor dominate)."""
    valid = [i for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]
    front = [i for i in valid if not any(_dominates(points[j], points[i]) for j in valid)]
    return sorted(front, key=lambda i: (-points[i][0], i))
