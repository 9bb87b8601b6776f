"""Confirm seeds: the selected and the default configuration, each trained with fresh seeds
and fully evaluated on the report fold, compared paired by seed (records in
``search/confirm.py``)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from clear_ray.config import Config
from clear_ray.console import counted, log
from clear_ray.data.folds import REPORT
from clear_ray.pipeline.context import MethodSearch, Search
from clear_ray.search.space import default_params, load_defaults

if TYPE_CHECKING:  # heavy (ray, mlflow); imported where used
    from clear_ray.paired import SeedComparison
    from clear_ray.search.confirm import Configuration
    from clear_ray.search.results import LeaderboardRow, TrialRow
    from clear_ray.train.selection import Thresholds


def confirm_method(
    run: MethodSearch, best: TrialRow, thresholds: Thresholds
) -> tuple[LeaderboardRow, LeaderboardRow]:
    """The selected and the default configuration, each trained with fresh seeds and fully
    evaluated on the report fold (search/confirm.py); writes confirm.json and returns the two
    leaderboard rows (mean ± sd). Resumed, it keeps what confirm.json or the seed records on
    disk hold and runs only what ``plan_confirm`` says is left."""
    # lazy: Ray and SciPy, not loaded by --help
    from clear_ray.search.confirm import (
        CONFIRM_FILE,
        DEFAULT,
        TUNED,
        Configuration,
        confirm_seeds,
        read_confirm,
        write_confirm,
    )

    search, method, cfg, space = run.search, run.method, run.cfg, run.space
    tracker = search.tracker
    origin = Path(search.state.space_origins[method])
    published = load_defaults(origin.stem, origin.parent)
    seeds = confirm_seeds(cfg.train.seed, cfg.search.confirm_seeds)
    path = run.dir / CONFIRM_FILE
    record = read_confirm(path, seeds)
    if record is not None:
        log(f"{method}: confirm runs done before the resume, kept ({path})")
        tracker.log_artifacts(tracker.parent_id, [path])
        log_comparison(search, method, record)
        return confirm_rows(method, record)
    configurations = {
        TUNED: Configuration(
            {p: best.params[p] for p in sorted(space)}, best.best_epoch, best.trial
        ),
        DEFAULT: Configuration(
            default_params(cfg.to_flat(), space, published), cfg.train.epochs, None
        ),
    }
    log(
        f"{method}: default configuration = the published setting: "
        + "; ".join(
            f"{path}={value:g} ({published[path].source})"
            if isinstance(value, float)
            else f"{path}={value} ({published[path].source})"
            for path, value in configurations[DEFAULT].params.items()
        )
    )
    confirm_configurations(search, method, configurations, seeds, thresholds)
    written = write_confirm(path, method, seeds, configurations)
    tracker.log_artifacts(tracker.parent_id, [path])
    log_comparison(search, method, written)
    return confirm_rows(method, written)


def comparison_of(search: Search, record: dict) -> SeedComparison:
    """Tuned − default of a confirm.json record on the objective, paired by seed, infeasible
    runs at Original's value on the report fold (search/confirm.py ``seed_comparison``)."""
    from clear_ray.search.confirm import seed_comparison  # lazy: Ray, not loaded by --help

    objective = search.cfg.search.objective
    original = search.refs.original_full.metrics.get(objective, math.nan)
    return seed_comparison(record, objective, original)


def log_comparison(search: Search, method: str, record: dict) -> None:
    """The paired difference on the method's run (``confirm/*``, tag ``confirm.verdict``) and
    the console."""
    from clear_ray.paired import comparison_metrics  # lazy: SciPy, not loaded by --help

    comparison, tracker = comparison_of(search, record), search.tracker
    tracker.log_metrics(tracker.parent_id, comparison_metrics(comparison))
    for seed, difference in zip(comparison.seeds, comparison.differences, strict=True):
        tracker.log_metrics(tracker.parent_id, {"confirm/difference": difference}, step=seed)
    tracker.set_tags(tracker.parent_id, {"confirm.verdict": comparison.verdict()})
    log(f"{method}: tuned − default on {search.cfg.search.objective}: {comparison.verdict()}")


def confirm_configurations(
    search: Search,
    method: str,
    configurations: dict[str, Configuration],
    seeds: list[int],
    thresholds: Thresholds,
) -> None:
    """Fixed configurations (label -> Configuration) trained once per seed, together (child
    runs tagged ``configuration: label``), and fully evaluated on the report fold; sets each
    ``configuration.runs``. Resumed, it keeps the seeds whose records are complete and trains
    or evaluates only the rest."""
    # lazy: Ray and SciPy, not loaded by --help
    from clear_ray.search.confirm import (
        confirm_children,
        confirm_dir,
        plan_confirm,
        read_seed_records,
        train_fixed,
    )

    cfg = search.cfg.replace({"method.name": method})
    tracker = search.tracker
    outs = {label: confirm_dir(search.dirs, method, label) for label in configurations}
    every_child = tracker.children()  # one MLflow query for all configurations
    plans = {}
    for label, configuration in configurations.items():
        children = confirm_children(every_child, label)
        plan = plan_confirm(configuration, seeds, read_seed_records(outs[label]), children)
        if plan.keep or plan.evaluate or plan.discard:
            log(
                f"{method}: {label} configuration resumed: seeds {sorted(plan.keep)} kept, "
                f"{sorted(plan.evaluate)} to evaluate, {plan.train} to train; "
                f"{len(plan.discard)} unfinished MLflow run(s) deleted"
            )
        tracker.delete_runs(plan.discard)
        plans[label] = plan
    runs = {
        label: (configurations[label], plan.train) for label, plan in plans.items() if plan.train
    }
    for label, (configuration, train) in runs.items():
        log(
            f"{method}: confirming the {label} configuration "
            f"({counted(configuration.epochs, 'epoch')}) with seeds {train}"
        )
    trained = {}
    if runs:
        trained = train_fixed(
            cfg, search.inputs, search.dirs, method, runs, tracker, search.tags,
            lambda line: log(f"{method}: {line}"),
        )  # fmt: skip
    pending = {
        outs[label]: {**plan.evaluate, **trained.get(label, {})} for label, plan in plans.items()
    }
    evaluated = evaluate_confirm_runs(search, cfg, pending, thresholds)
    for label, configuration in configurations.items():
        done = {**plans[label].keep, **evaluated[outs[label]]}
        configuration.runs = [done[seed].run() for seed in sorted(done)]


def evaluate_confirm_runs(
    search: Search, cfg: Config, trained: dict[Path, dict], thresholds: Thresholds
) -> dict[Path, dict]:
    """Full evaluation of trained confirm runs (by configuration folder, by seed) on the report
    fold, as Ray tasks all at once: per seed, its evaluation folder, ``final/*`` and the
    adapter on its child run, and its seed record completed (so that a resumed search keeps
    it)."""
    # lazy: torch, transformers and Ray, not loaded by --help
    from clear_ray.eval.final import evaluate_adapter, full_eval_config, read_adapter
    from clear_ray.eval.outputs import write_outputs
    from clear_ray.runtime.driver_tasks import each_result, trial_task
    from clear_ray.search.confirm import write_seed_record

    refs, tracker = search.refs, search.tracker
    task = trial_task(evaluate_adapter, cfg.search)
    pending = {
        (out, seed): task.remote(
            search.inputs.original_dir,
            read_adapter(Path(record.adapter)),
            search.inputs.source,
            cfg.data.forget_split,
            full_eval_config(cfg.eval),
            refs.gold_full.reference,
            cfg.data.modality,
            cfg.train.precision,
            refs.folds.fold(REPORT),
        )
        for out, records in trained.items()
        for seed, record in records.items()
    }
    run_ids = tracker.child_ids()
    evaluated: dict[Path, dict] = {out: {} for out in trained}
    for (out, seed), result in each_result(pending, "the confirm evaluations", cfg.search):
        record = trained[out][seed]
        write_outputs(out / f"seed-{seed}-evaluation", {"metrics": result.metrics}, result.tasks)
        run_id = run_ids.get(record.trial, "")
        if run_id:
            tracker.log_metrics(run_id, result.metrics, prefix="final/")
            tracker.log_artifacts(run_id, [Path(record.adapter)], "adapter")
        feasible = thresholds.constraint(result.metrics) <= 0
        done = replace(record, run_id=run_id, metrics=result.metrics, feasible=feasible)
        evaluated[out][seed] = done
        write_seed_record(out, done)
    return evaluated


def confirm_rows(method: str, record: dict) -> tuple[LeaderboardRow, LeaderboardRow]:
    """The tuned and the default leaderboard rows (mean ± sd over seeds) of a confirm.json."""
    # lazy: Ray and SciPy, not loaded by --help
    from clear_ray.search.confirm import DEFAULT, TUNED
    from clear_ray.search.results import LeaderboardRow

    rows = []
    for label in (TUNED, DEFAULT):
        summary = record["configurations"][label]
        runs = summary["runs"]
        rows.append(
            LeaderboardRow(
                f"{method} ({label}, {counted(len(runs), 'seed')})",
                summary["mean"],
                f"{sum(run['feasible'] for run in runs)}/{len(runs)}",
                summary["trial"] or "defaults",
                summary["sd"],
            )
        )
    return rows[0], rows[1]
