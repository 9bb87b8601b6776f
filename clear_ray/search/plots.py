"""PNG plots of a finished search for its MLflow parent run, from plain per-trial records.

Drawn on ``Figure`` + ``FigureCanvasAgg`` so the global matplotlib backend is never touched
(the driver may run where pyplot would pick an interactive one). Non-finite values (errored
trials) are left out of each plot instead of failing it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import optuna
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

from clear_ray.search.pareto import pareto_front

DPI = 120
FEASIBLE = {"color": "tab:blue", "marker": "o", "label": "feasible"}
INFEASIBLE = {"color": "tab:red", "marker": "x", "label": "infeasible"}
# Original and Gold: the start and the target of unlearning, as (retain, objective).
References = Mapping[str, tuple[float, float]]
NO_REFERENCES: References = MappingProxyType({})
REFERENCE_STYLE = {"Original": ("black", "*"), "Gold": ("goldenrod", "P")}
FILE_NAMES = {
    "history": "optimisation_history.png",
    "retain": "forget_vs_retain.png",
    "importances": "parameter_importances.png",
    "pareto": "pareto_front.png",
}


@dataclass(frozen=True)
class TrialPoint:
    """One trial as the plots need it: values of its best epoch, not Ray objects."""

    number: int  # order of completion
    objective: float  # the trial's own best objective (not the infeasibility score)
    retain: float  # retain_metric at the best epoch
    utility: float  # model utility at the best epoch (NaN when not evaluated)
    feasible: bool
    params: dict[str, float | int | str]


def running_best(points: Sequence[TrialPoint]) -> list[float]:
    """Best feasible objective so far after each trial in completion order (NaN before the
    first feasible one): infeasible trials may score higher but are not usable results."""
    best, values = math.nan, []
    for point in sorted(points, key=lambda p: p.number):
        usable = point.feasible and math.isfinite(point.objective)
        if usable and (math.isnan(best) or point.objective > best):
            best = point.objective
        values.append(best)
    return values


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _distribution(values: list[float | int | str]) -> BaseDistribution:
    """The widest plausible search distribution: log scale once values span over a decade."""
    if not all(_numeric(v) for v in values):
        return CategoricalDistribution(sorted(set(values), key=str))
    low, high = min(values), max(values)
    log = low > 0 and high > 10 * low
    if all(isinstance(v, int) for v in values):
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def param_importances(points: Sequence[TrialPoint]) -> dict[str, float]:
    """PED-ANOVA importances (summing to 1, largest first) of the parameters that vary over the
    feasible trials; {} when there is nothing to compare. PED-ANOVA needs no scikit-learn,
    unlike fANOVA; the study is rebuilt in memory so no Ray or Optuna storage is needed."""
    trials = [p for p in points if p.feasible and math.isfinite(p.objective)]
    params = [{name: v if _numeric(v) else str(v) for name, v in p.params.items()} for p in trials]
    values: dict[str, list[float | int | str]] = {}
    for trial_params in params:
        for name, value in trial_params.items():
            values.setdefault(name, []).append(value)
    varying = {name: _distribution(v) for name, v in values.items() if len(set(v)) > 1}
    if not varying:
        return {}
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={k: v for k, v in trial_params.items() if k in varying},
                distributions={k: d for k, d in varying.items() if k in trial_params},
                value=point.objective,
            )
            for point, trial_params in zip(trials, params, strict=True)
        ]
    )
    # A top set of one trial makes its Parzen estimate a single kernel: keep at least two.
    quantile = min(0.5, max(0.1, 2 / len(trials)))
    evaluator = PedAnovaImportanceEvaluator(target_quantile=quantile)
    return get_param_importances(study, evaluator=evaluator)


def _axes(title: str, height: float = 4.8) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(6.4, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    return figure, axes


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def _note(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()


def _legend(axes: Axes) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize="small")


def _scatter_by_feasibility(
    axes: Axes, points: Sequence[TrialPoint], x: list[float], y: list[float]
) -> None:
    for style, feasible in ((FEASIBLE, True), (INFEASIBLE, False)):
        chosen = [i for i, p in enumerate(points) if p.feasible == feasible]
        if chosen:
            axes.scatter([x[i] for i in chosen], [y[i] for i in chosen], alpha=0.8, **style)


def _reference_lines(axes: Axes, references: References) -> None:
    """Original's and Gold's objective as horizontal lines: where trials start and aim."""
    for name, (_, value) in references.items():
        if math.isfinite(value):
            color, _ = REFERENCE_STYLE.get(name, ("gray", "s"))
            axes.axhline(value, linestyle=":", color=color, label=f"{name} = {value:.4g}")


def _reference_points(axes: Axes, references: References) -> None:
    for name, (retain, value) in references.items():
        if math.isfinite(retain) and math.isfinite(value):
            color, marker = REFERENCE_STYLE.get(name, ("gray", "s"))
            axes.scatter([retain], [value], color=color, marker=marker, s=120, label=name)


def optimisation_history(
    points: Sequence[TrialPoint], path: Path, objective: str, references: References = NO_REFERENCES
) -> Path:
    """Objective per trial in completion order with the running best feasible objective."""
    figure, axes = _axes(f"Optimisation history: {objective}")
    ordered = sorted(points, key=lambda p: p.number)
    shown = [p for p in ordered if math.isfinite(p.objective)]
    if not shown:
        _note(axes, "no trial with a finite objective")
        return _save(figure, path)
    numbers = [p.number for p in shown]
    _scatter_by_feasibility(axes, shown, numbers, [p.objective for p in shown])
    best = running_best(ordered)
    if any(math.isfinite(b) for b in best):
        numbers = [p.number for p in ordered]
        axes.step(numbers, best, where="post", color="tab:green", label="best feasible")
    _reference_lines(axes, references)
    axes.set_xlabel("trial (completion order)")
    axes.set_ylabel(objective)
    _legend(axes)
    return _save(figure, path)


def forget_vs_retain(
    points: Sequence[TrialPoint],
    path: Path,
    objective: str,
    min_retain: float,
    references: References = NO_REFERENCES,
) -> Path:
    """Where each trial lands against the retain constraint: the trade-off the search walks."""
    figure, axes = _axes(f"{objective} vs retain")
    shown = [p for p in points if math.isfinite(p.objective) and math.isfinite(p.retain)]
    if not shown:
        _note(axes, "no trial with finite retain and objective")
        return _save(figure, path)
    _scatter_by_feasibility(axes, shown, [p.retain for p in shown], [p.objective for p in shown])
    if math.isfinite(min_retain):
        axes.axvline(
            min_retain, linestyle="--", color="gray", label=f"min retain = {min_retain:.4g}"
        )
    _reference_points(axes, references)
    axes.set_xlabel("retain metric of the constraint (best epoch)")
    axes.set_ylabel(objective)
    _legend(axes)
    return _save(figure, path)


def parameter_importances(points: Sequence[TrialPoint], path: Path, objective: str) -> Path:
    """Horizontal bars of :func:`param_importances`, largest on top."""
    importances = param_importances(points)
    feasible = sum(p.feasible and math.isfinite(p.objective) for p in points)
    figure, axes = _axes(
        f"Parameter importances for {objective} ({feasible} feasible trials)",
        height=max(3.0, 1.0 + 0.4 * len(importances)),
    )
    if not importances:
        _note(axes, "not enough trials:\nneed 2 feasible trials with a varying parameter")
        return _save(figure, path)
    names = list(importances)[::-1]
    axes.barh(names, [importances[name] for name in names], color="tab:blue")
    axes.set_xlabel("importance (PED-ANOVA, normalised)")
    return _save(figure, path)


def pareto_plot(points: Sequence[TrialPoint], path: Path, objective: str) -> Path:
    """Utility against the objective over feasible trials, the non-dominated ones joined."""
    figure, axes = _axes(f"Pareto front: model utility vs {objective}")
    shown = [
        p for p in points if p.feasible and math.isfinite(p.objective) and math.isfinite(p.utility)
    ]
    if not shown:
        _note(axes, "no feasible trial with finite utility and objective")
        return _save(figure, path)
    front = [shown[i] for i in pareto_front([(p.utility, p.objective) for p in shown])]
    axes.scatter(
        [p.utility for p in shown],
        [p.objective for p in shown],
        color="tab:gray",
        alpha=0.6,
        label="feasible",
    )
    front_x, front_y = [p.utility for p in front][::-1], [p.objective for p in front][::-1]
    axes.step(front_x, front_y, where="pre", color="tab:orange")
    axes.scatter(front_x, front_y, color="tab:orange", zorder=3, label="Pareto front")
    for p in front:
        axes.annotate(
            str(p.number),
            (p.utility, p.objective),
            fontsize="small",
            xytext=(3, 3),
            textcoords="offset points",
        )
    axes.set_xlabel("model utility of the constraint (best epoch)")
    axes.set_ylabel(objective)
    _legend(axes)
    return _save(figure, path)


def search_plots(
    points: Sequence[TrialPoint],
    out_dir: Path,
    objective: str,
    min_retain: float,
    multi_objective: bool,
    references: References = NO_REFERENCES,
) -> list[Path]:
    """Every plot of a search under ``out_dir``; the Pareto front only when it is a goal.
    ``references`` (Original, Gold) are marked where they land."""
    paths = [
        optimisation_history(points, out_dir / FILE_NAMES["history"], objective, references),
        forget_vs_retain(points, out_dir / FILE_NAMES["retain"], objective, min_retain, references),
        parameter_importances(points, out_dir / FILE_NAMES["importances"], objective),
    ]
    if multi_objective:
        paths.append(pareto_plot(points, out_dir / FILE_NAMES["pareto"], objective))
    return paths
