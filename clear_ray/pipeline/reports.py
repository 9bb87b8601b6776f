"""What a search reports on the console, in its folder and on its MLflow runs: the
references, each method's trials, diagnostics and best, and the leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from clear_ray.config import Config
from clear_ray.console import counted
from clear_ray.data.folds import PersonFolds
from clear_ray.pipeline.confirm import comparison_of
from clear_ray.pipeline.context import MethodSearch, Search
from clear_ray.search.diagnostics import FoldObjectives, diagnostics_metrics, edge_dimensions
from clear_ray.search.pareto import pareto_front
from clear_ray.search.session import SearchDirs

if TYPE_CHECKING:  # heavy (matplotlib, SciPy); imported where used
    from clear_ray.search.plots import TrialPoint
    from clear_ray.search.results import TrialMetrics, TrialRow
    from clear_ray.train.selection import Thresholds

# Per reference model: (its retain metric, its objective), the marks on the search's plots.
ReferenceMarks = dict[str, tuple[float, float]]


def reference_table(original: dict, gold: dict, thresholds: Thresholds) -> str:
    """Original's and Gold's main metrics, Original's per task, and the feasibility rule."""
    from clear_ray.search.results import task_summary  # lazy: SciPy, not loaded by --help

    keys = (
        "clear/forget_metric",
        thresholds.retain_metric,
        "clear/log_forget_quality",
        "log_forget_quality",
    )
    lines = [f"{'':10}" + "".join(f"{k:>26}" for k in keys)]
    for name, values in (("Original", original), ("Gold", gold)):
        lines.append(f"{name:10}" + "".join(f"{values.get(k, float('nan')):>26.4g}" for k in keys))
    lines.append(f"Original per task: {task_summary(original) or 'none compared'}")
    lines.append(f"feasible iff {thresholds.describe()}")
    return "\n".join(lines)


def report_search(run: MethodSearch, rows: list[TrialRow], run_ids: dict[str, str]) -> None:
    """A finished method search's trials (with Original and Gold marked) and its best trial
    on its run."""
    cfg, refs, thresholds = run.cfg, run.search.refs, run.search.thresholds
    references = {
        name: (
            evaluation.metrics.get(thresholds.retain_metric, math.nan),
            evaluation.metrics.get(cfg.search.objective, math.nan),
        )
        for name, evaluation in (("Original", refs.original), ("Gold", refs.gold))
    }
    report_trials(run, rows, references)
    summarise_parent(run, rows, run_ids)


def rewrite_optuna_csv(cfg: Config, dirs: SearchDirs, method: str, run_ids: dict) -> None:
    """optuna_trials.csv again, now with each trial's MLflow run id (the searcher wrote it
    after every trial without them: it does not know the runs)."""
    # lazy: Ray, not loaded by --help
    from clear_ray.search.constrained import write_trials_csv
    from clear_ray.search.strategy import objective_keys

    study = optuna.load_study(
        study_name=dirs.study_name(method),
        storage=dirs.optuna_storage(cfg.search.optuna_storage),
    )
    path = dirs.method(method) / "optuna_trials.csv"
    write_trials_csv(study, path, objective_keys(cfg.search), run_ids)


def summarise_parent(run: MethodSearch, rows: list[TrialRow], run_ids: dict[str, str]) -> None:
    """The best feasible trial on its search's run: ``best/*`` metrics, ``best.<path>``
    params and a Description that says how to open it."""
    # lazy: MLflow, not loaded by --help
    from clear_ray.tracking import best_metrics, search_description

    cfg, tracker, run_id = run.cfg, run.search.tracker, run.parent_id
    best = rows[0] if rows and rows[0].feasible else None
    params = {name: best.params[name] for name in sorted(run.space)} if best else {}
    if best:
        tracker.log_metrics(run_id, best_metrics(best.best, cfg.search.objective))
        tracker.log_params(run_id, {f"best.{name}": value for name, value in params.items()})
    text = search_description(
        cfg.method.name,
        cfg.search.objective,
        run.search.thresholds,
        best_trial=best.trial if best else None,
        best_run=run_ids.get(best.trial) if best else None,
        best_params=params,
    )
    tracker.describe(run_id, text)


def report_trials(run: MethodSearch, rows: list[TrialRow], references: ReferenceMarks) -> None:
    """Trial table, Optuna's own record, plots with Original and Gold marked (and the Pareto
    front): printed and logged."""
    # lazy: matplotlib and SciPy, not loaded by --help
    from clear_ray.search.plots import search_plots
    from clear_ray.search.results import TrialMetrics, markdown_table, write_csv

    cfg, method_dir, param_names = run.cfg, run.dir, sorted(run.space)
    shown = TrialMetrics.of(cfg.search)
    method_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, param_names, shown)
    files = [method_dir / "trials.md", method_dir / "trials.csv"]
    files[0].write_text(table + "\n")
    write_csv(rows, param_names, files[1], shown)
    if (method_dir / "optuna_trials.csv").is_file():
        files.append(method_dir / "optuna_trials.csv")
    print(f"\n{cfg.method.name}: trials (objective = {cfg.search.objective}, feasible first):")
    print(table, flush=True)
    if cfg.search.multi_objective:
        files.append(report_pareto_front(run, rows, shown))
    plots = search_plots(
        trial_points(rows),
        method_dir / "plots",
        objective=cfg.search.objective,
        min_retain=run.search.thresholds.min_retain_metric,
        multi_objective=cfg.search.multi_objective,
        references=references,
    )
    run.search.tracker.log_artifacts(run.parent_id, files)
    run.search.tracker.log_artifacts(run.parent_id, plots, "plots")
    best = rows[0] if rows else None
    if best and best.feasible:
        params = ", ".join(f"{name}={best.params[name]:.4g}" for name in param_names)
        print(f"Best feasible trial {best.trial} (epoch {best.best_epoch}): {params}")
    else:
        print("No trial met the thresholds; lower --min-retain or widen the space.")


def report_pareto_front(run: MethodSearch, rows: list[TrialRow], shown: TrialMetrics) -> Path:
    """The feasible trials' Pareto front of the objective vs utility: printed and written."""
    from clear_ray.search.results import markdown_table  # lazy: SciPy, not loaded by --help

    feasible = [row for row in rows if row.feasible]
    front = [
        feasible[i]
        for i in pareto_front([(r.best_objective, r.best_model_utility) for r in feasible])
    ]
    pareto = markdown_table(front, sorted(run.space), shown)
    path = run.dir / "pareto_front.md"
    path.write_text(pareto + "\n")
    print(f"\nPareto front ({run.cfg.search.objective} vs {shown.utility}, feasible trials):")
    print(pareto, flush=True)
    return path


def trial_points(rows: list[TrialRow]) -> list[TrialPoint]:
    """The trials as the search's plots draw them, in creation order."""
    from clear_ray.search.plots import TrialPoint  # lazy: matplotlib, not loaded by --help

    return [
        TrialPoint(
            number=row.number,
            objective=row.best_objective,
            retain=row.best_retain_metric,
            utility=row.best_model_utility,
            feasible=row.feasible,
            params=row.params,
        )
        for row in sorted(rows, key=lambda row: row.number)
    ]


def report_diagnostics(
    run: MethodSearch, rows: list[TrialRow], best: TrialRow, final: dict[str, float]
) -> None:
    """Top-k mean, the winner's optimism and bests at a range's edge: console and parent run.

    Optimism compares the winner's share of the Original-to-Gold gap closed on each fold, with
    Original's and Gold's values on that fold: the per-epoch references (``refs.original``,
    ``refs.gold``) on the selection fold, the full ones on the report fold.
    """

    cfg, refs = run.cfg, run.search.refs
    objective, k = cfg.search.objective, cfg.search.top_k
    feasible = [row.best_objective for row in rows if row.feasible]
    selection = FoldObjectives(
        best.best_objective,
        refs.original.metrics.get(objective, math.nan),
        refs.gold.metrics.get(objective, math.nan),
    )
    report = FoldObjectives(
        final.get(objective, math.nan),
        refs.original_full.metrics.get(objective, math.nan),
        refs.gold_full.metrics.get(objective, math.nan),
    )
    proxy = cfg.eval.proxy_items > 0
    values = diagnostics_metrics(feasible, k, selection, report, proxy)
    run.search.tracker.log_metrics(run.parent_id, values)
    edges = edge_dimensions(best.params, run.space)
    run.search.tracker.set_tags(
        run.parent_id, {"diagnostics.edge_params": ",".join(edges) or "none"}
    )
    optimism = (
        f"optimism {values['diagnostics/optimism']:+.3g}"
        if not proxy
        else f"no optimism: the per-epoch evaluation is a proxy of {cfg.eval.proxy_items} items "
        "per task, not comparable with the report's full evaluation"
    )
    print(
        f"{cfg.method.name}: mean {objective} of the top {min(k, len(feasible))} feasible "
        f"trial(s) {values[f'diagnostics/top{k}_mean_objective']:.4g} (each its best epoch on "
        f"the selection fold); winner {selection.winner:.4g} on selection, {report.winner:.4g} "
        f"on report, closing {values['diagnostics/winner_selection_gap_closed']:.0%} and "
        f"{values['diagnostics/winner_report_gap_closed']:.0%} of each fold's Original-to-Gold "
        f"gap ({optimism})",
        flush=True,
    )
    for path, side in edges.items():
        print(
            f"WARNING {cfg.method.name}: best {path}={best.params[path]:.4g} is in the outer "
            f"10% of its range ({side} end): widen the space",
            flush=True,
        )


def write_leaderboard_files(search: Search) -> tuple[str, list[Path]]:
    """leaderboard.md (Original, Gold, each method's tuned and default rows, in the configured
    view, then the paired tuned − default section) and leaderboard_full.csv; returns the
    markdown, for the console, and the files written."""
    # lazy: Ray and SciPy, not loaded by --help
    from clear_ray.search.confirm import CONFIRM_FILE
    from clear_ray.search.results import (
        LEADERBOARD_CSV,
        LEADERBOARD_FILE,
        Leaderboard,
        LeaderboardRow,
        method_rows,
        paired_section,
        write_leaderboard,
    )

    state, refs, cfg, dirs = search.state, search.refs, search.cfg, search.dirs
    comparisons = {
        method: comparison_of(search, json.loads(path.read_text()))
        for method in state.methods
        if (path := dirs.method(method) / CONFIRM_FILE).is_file()
    }
    rows = [
        LeaderboardRow("Original", refs.original_full.metrics, ""),
        LeaderboardRow("Gold", refs.gold_full.metrics, ""),
        *(
            row
            for method in state.methods
            for row in method_rows(
                state.runs[method].outcome,
                state.runs[method].default_outcome,
                comparisons.get(method),
            )
        ),
    ]
    heading = leaderboard_heading(refs.folds, cfg.search.confirm_seeds, search.thresholds)
    board = Leaderboard(rows, heading, cfg.search.objective, cfg.data.modality)
    section = paired_section(comparisons, cfg.search.objective)
    table = write_leaderboard(dirs.root, board, cfg.report.leaderboard, section)
    return table, [dirs.root / LEADERBOARD_FILE, dirs.root / LEADERBOARD_CSV]


def leaderboard_heading(
    folds: PersonFolds, confirm_seeds: int, thresholds: Thresholds | None = None
) -> str:
    """What the leaderboard's numbers are: on which fold, over which seeds, selected how."""
    where = (
        f"report fold ({', '.join(folds.report)}), selected on the selection fold "
        f"({', '.join(folds.selection)}); feasibility out of sample, on the report fold's "
        f"{len(folds.retain_report)} retain persons"
        if folds.active
        else "NO FOLDS (--report-fraction 0): selected and reported on the same forget persons"
    )
    seeds = (
        f"tuned and default rows: mean ± sd over {counted(confirm_seeds, 'confirm seed')}"
        if confirm_seeds
        else "each method: its best trial's checkpoint (no confirm seeds)"
    )
    selected = ""
    if thresholds is not None and thresholds.max_relearn_recovery is not None:
        selected = (
            f" Trials selected feasible only with relearn recovery <= "
            f"{thresholds.max_relearn_recovery:g} at their end, on the selection fold."
        )
    return f"Full evaluations on the {where}; {seeds}.{selected}"
