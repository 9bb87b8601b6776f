"""Pareto fronts, the running best, parameter importances and the search's PNG plots."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from clear_ray.search.pareto import pareto_front
from clear_ray.search.plots import (
    TrialPoint,
    forget_vs_retain,
    optimisation_history,
    param_importances,
    parameter_importances,
    pareto_plot,
    running_best,
    search_plots,
)

NAN = math.nan


def point(
    number: int,
    objective: float,
    feasible: bool = True,
    retain: float = 0.5,
    utility: float = 0.5,
    **params: float | int | str,
) -> TrialPoint:
    return TrialPoint(number, objective, retain, utility, feasible, params)


def synthetic(n: int = 40, seed: int = 0) -> list[TrialPoint]:
    """The objective depends on ``lr`` only; the other parameters are noise."""
    rng = random.Random(seed)
    points = []
    for number in range(n):
        lr = 10 ** rng.uniform(-6, -2)
        params = {
            "lr": lr,
            "beta": rng.uniform(0.0, 1.0),
            "epochs": rng.randint(1, 5),
            "method": rng.choice(["ga", "npo"]),
        }
        objective = -((math.log10(lr) + 4) ** 2)
        retain = rng.uniform(0.3, 0.9)
        points.append(point(number, objective, retain > 0.4, retain, rng.random(), **params))
    return points


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([], []),
        ([(1.0, 1.0)], [0]),
        ([(1.0, 2.0), (2.0, 1.0), (0.5, 0.5)], [1, 0]),
        ([(1.0, 1.0), (1.0, 2.0), (2.0, 1.0)], [2, 1]),  # (1, 1) is beaten by both
        ([(3.0, 1.0), (2.0, 2.0), (1.0, 3.0), (1.5, 1.5), (2.0, 0.5)], [0, 1, 2]),
        ([(1.0, 1.0), (1.0, 1.0), (0.0, 0.0)], [0, 1]),  # equal points tie
        ([(NAN, 5.0), (1.0, NAN), (0.0, 0.0)], [2]),  # NaN neither joins nor dominates
        ([(-1.0, -2.0), (-3.0, -1.0), (-3.0, -3.0)], [0, 1]),
    ],
)
def test_pareto_front_by_hand(points: list[tuple[float, float]], front: list[int]) -> None:
    assert pareto_front(points) == front


def test_running_best_ignores_infeasible_and_non_finite_trials() -> None:
    points = [
        point(3, -2.0),
        point(0, -5.0, feasible=False),
        point(1, -4.0),
        point(2, 10.0, feasible=False),  # higher, but not usable
        point(4, NAN),
        point(5, -3.0),
        point(6, math.inf),
    ]
    best = [None if math.isnan(value) else value for value in running_best(points)]
    assert best == [None, -4.0, -4.0, -2.0, -2.0, -2.0, -2.0]


def test_importances_single_out_the_parameter_the_objective_depends_on() -> None:
    importances = param_importances(synthetic())
    assert set(importances) == {"lr", "beta", "epochs", "method"}
    assert sum(importances.values()) == pytest.approx(1.0)
    assert max(importances, key=importances.get) == "lr"


def test_importances_leave_out_constant_parameters_and_infeasible_trials() -> None:
    points = [point(i, float(i), lr=10.0**-i, fixed=1) for i in range(1, 6)]
    points.append(point(6, 100.0, feasible=False, lr=1.0, other=3.0))
    assert set(param_importances(points)) == {"lr"}


@pytest.mark.parametrize(
    "points",
    [
        [],
        [point(0, 1.0, lr=1e-4)],
        [point(0, 1.0, lr=1e-4), point(1, 2.0, lr=1e-4)],  # nothing varies
        [point(0, 1.0, lr=1e-4), point(1, 2.0, feasible=False, lr=1e-3)],
        [point(0, NAN, lr=1e-4), point(1, 2.0, lr=1e-3)],
    ],
)
def test_importances_are_empty_without_two_comparable_feasible_trials(
    points: list[TrialPoint],
) -> None:
    assert param_importances(points) == {}


def assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5_000


def test_search_plots_write_every_png(tmp_path: Path) -> None:
    points = synthetic()
    points.append(point(40, NAN, feasible=False, retain=NAN, utility=NAN, lr=1e-3))  # errored
    paths = search_plots(points, tmp_path / "plots", "log_forget_quality", 0.4, True)
    names = [
        "optimisation_history.png",
        "forget_vs_retain.png",
        "parameter_importances.png",
        "pareto_front.png",
    ]
    assert paths == [tmp_path / "plots" / name for name in names]
    for path in paths:
        assert_png(path)


def test_pareto_plot_only_for_multi_objective_searches(tmp_path: Path) -> None:
    paths = search_plots(synthetic(), tmp_path, "log_forget_quality", 0.4, False)
    assert [p.name for p in paths] == [
        "optimisation_history.png",
        "forget_vs_retain.png",
        "parameter_importances.png",
    ]
    assert not (tmp_path / "pareto_front.png").exists()


@pytest.mark.parametrize(
    "points",
    [
        [],
        [point(0, NAN, feasible=False, retain=NAN, utility=NAN, lr=1e-4)],
        [point(0, -math.inf, lr=1e-4), point(1, NAN, utility=NAN, lr=1e-3)],
        [point(0, -3.0, lr=1e-4), point(1, -700.0, feasible=False, retain=0.1, lr=1e-3)],
    ],
)
@pytest.mark.parametrize("plot", [optimisation_history, parameter_importances, pareto_plot])
def test_plots_survive_missing_and_non_finite_values(
    tmp_path: Path, points: list[TrialPoint], plot
) -> None:
    assert_png(plot(points, tmp_path / "plot.png", "log_forget_quality"))


def test_forget_vs_retain_survives_non_finite_values(tmp_path: Path) -> None:
    points = [point(0, NAN, retain=0.5), point(1, -2.0, retain=math.inf), point(2, -1.0)]
    assert_png(forget_vs_retain(points, tmp_path / "plot.png", "log_forget_quality", 0.45))
    assert_png(forget_vs_retain([], tmp_path / "empty.png", "log_forget_quality", 0.45))


def test_original_and_gold_are_marked_where_they_land(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from clear_ray.search.plots import _reference_lines, _reference_points

    references = {"Original": (0.66, -11.0), "Gold": (0.60, 0.0), "Broken": (math.nan, 1.0)}
    axes = Figure().add_subplot()
    _reference_points(axes, references)
    _reference_lines(axes, references)
    labels = axes.get_legend_handles_labels()[1]
    assert labels == ["Original", "Gold", "Original = -11", "Gold = 0", "Broken = 1"]
    paths = search_plots(synthetic(), tmp_path, "log_forget_quality", 0.4, False, references)
    assert all(path.stat().st_size > 0 for path in paths)
