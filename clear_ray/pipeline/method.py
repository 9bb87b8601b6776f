"""One method's Tune search: its MLflow run, the trials (new, resumed or read back), their
reports, then the best trial's final phases (``pipeline.final``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from clear_ray.console import log
from clear_ray.data.folds import FOLDS_FILE
from clear_ray.methods import method_params
from clear_ray.pipeline.context import MethodSearch, Search, log_references, untuned
from clear_ray.pipeline.final import finalise
from clear_ray.pipeline.reports import report_search, rewrite_optuna_csv
from clear_ray.runtime.store import storage_filesystem
from clear_ray.search.session import FAILED, SEARCH, MethodRun
from clear_ray.search.space import describe

if TYPE_CHECKING:  # heavy (ray); imported where used
    from ray.tune import ResultGrid, Tuner

    from clear_ray.runtime.cleanup import TrainGroupReaper


def search_method(search: Search, method: str, space: dict) -> None:
    """One Tune search for ``method``: trials, reports, final evaluation, registered adapter."""
    # lazy: SciPy, not loaded by --help
    from clear_ray.search.results import LeaderboardRow, TrialMetrics, all_failed, trial_rows

    state, dirs, tracker = search.state, search.dirs, search.tracker
    resuming = method in state.runs
    run = MethodSearch(search, method, space, search.cfg.replace({"method.name": method}))
    run.parent_id = tracker.reopen(state.runs[method].parent_id) if resuming else start_run(run)
    log(f"{method}: MLflow run {tracker.run_page(run.parent_id)}")
    results, searched = tune_trials(run, resuming)
    rows = trial_rows(results, dirs.adapters(method), TrialMetrics.of(run.cfg.search))
    run_ids = tracker.child_ids()
    rewrite_optuna_csv(run.cfg, dirs, method, run_ids)
    failure = all_failed(method, rows)
    if failure:  # nothing to report, evaluate or rank: the search ends saying why (run)
        failure += (
            f"; tracebacks: error.txt in each trial's folder under {dirs.tune_experiment(method)}"
        )
        tracker.finish(run.parent_id, "FAILED", {"error": failure})
        state.runs[method].status, state.runs[method].failure = FAILED, failure
        dirs.save(state)
        return
    report_search(run, rows, run_ids)
    best = rows[0] if rows and rows[0].adapter else None
    outcome = LeaderboardRow(method, {}, "no", "none")
    if best is None:
        log(f"{method}: no trial produced an adapter")
    else:
        outcome = finalise(run, rows, best, searched)
    tracker.finish(run.parent_id, "FINISHED", {"best_trial": best.trial if best else "none"})
    state.runs[method].status = "done"
    state.runs[method].outcome = asdict(outcome)
    dirs.save(state)


def start_run(run: MethodSearch) -> str:
    """The method's MLflow run (nested under the comparison's, if any), recorded in the
    search's state: untuned params, the space, the thresholds and the tags."""
    from clear_ray.data.clear import data_fingerprint  # lazy: datasets, not loaded by --help

    search, method, cfg = run.search, run.method, run.cfg
    state, dirs, tracker, thresholds = search.state, search.dirs, search.tracker, search.thresholds
    parent_id = tracker.start_parent(
        f"{state.name}-{method}" if state.top_parent_id else state.name,
        params={
            **untuned(method_params(cfg.to_flat()), run.space),
            **{f"search_space.{k}": v for k, v in describe(run.space).items()},
            "search.min_retain_metric": thresholds.min_retain_metric,
            "search.min_model_utility": thresholds.min_model_utility,
            "search.retain_floor_metric": thresholds.retain_floor,
        },
        tags={
            **search.tags,
            "clear_ray.role": "search",
            "method": method,
            "modality": cfg.data.modality,
            "data_fingerprint": data_fingerprint(
                search.refs.source, [f"{cfg.data.forget_split}+tofu"]
            ),
            "search_space": state.space_origins[method],
        },
        parent_id=state.top_parent_id,
    )
    state.runs[method] = MethodRun(parent_id)
    dirs.save(state)
    if not state.top_parent_id:
        log_references(tracker, parent_id, search.refs)
    tracker.log_artifacts(parent_id, [dirs.root / FOLDS_FILE])
    return parent_id


def tune_trials(run: MethodSearch, resuming: bool) -> tuple[ResultGrid, bool]:
    """The trials' results and whether the search had finished before a resume (then they
    are read back, not run); a restored experiment goes on where it stopped. Stopped
    trials' Train groups are reaped; a tracking outage ends the search here."""
    # lazy: Ray, not loaded by --help
    from ray import tune

    from clear_ray.runtime.cleanup import TrainGroupReaper, reap
    from clear_ray.search.strategy import trial_count
    from clear_ray.search.trainable import trial_trainable

    search, method = run.search, run.method
    num_samples = trial_count(run.cfg.search, run.space)
    trainable = trial_trainable(run.cfg, search.inputs, search.dirs.ray_train)
    experiment = search.dirs.tune_experiment(method)
    reaper = TrainGroupReaper()  # frees what a stopped trial's Train run held (cleanup.py)
    callbacks = method_callbacks(run, num_samples, reaper)
    restorable = resuming and tune.Tuner.can_restore(experiment)
    searched = restorable and search.state.runs[method].stage != SEARCH
    if restorable:
        log(
            f"{method}: the search finished before the resume; reading its results from "
            f"{experiment}"
            if searched
            else f"{method}: resuming the Tune experiment in {experiment}"
        )
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=False)
        use_callbacks(tuner, callbacks)
    else:
        tuner = new_tuner(run, trainable, num_samples, callbacks)
    results = tuner.get_results() if searched else tuner.fit()
    reap()  # the last trials' groups: the final evaluation needs their CPUs
    if search.tracker.outage:  # Tune stopped (its state saved) because MLflow stayed away
        raise search.tracker.outage
    return results, searched


def method_callbacks(run: MethodSearch, num_samples: int, reaper: TrainGroupReaper) -> list:
    """The Tune callbacks of a method's search: MLflow child runs, the console, the reaper."""
    # lazy: Ray and MLflow, not loaded by --help
    from clear_ray.search.progress import ProgressPrinter
    from clear_ray.search.trial_logger import TrialLogger

    cfg, search = run.cfg, run.search
    return [
        TrialLogger(
            tracker=search.tracker,
            base_params=cfg.to_flat(),
            adapters_dir=search.dirs.adapters(run.method),
            thresholds=search.thresholds,
            epochs=cfg.train.epochs,
            tags=search.tags,
            train_runs=search.dirs.ray_train,
            storage_filesystem=storage_filesystem(search.dirs.storage)[0],
        ),
        ProgressPrinter(
            objective=cfg.search.objective,
            num_samples=num_samples,
            thresholds=search.thresholds,
            epochs=cfg.train.epochs,
            concurrency=cfg.search.max_concurrent,
        ),
        reaper,
    ]


def new_tuner(run: MethodSearch, trainable: Any, num_samples: int, callbacks: list) -> Tuner:
    """A fresh Tune experiment: the constrained Optuna searcher, the scheduler and stopper."""
    # lazy: Ray, not loaded by --help
    from ray import tune

    from clear_ray.search.strategy import RetainCollapseStopper, build_scheduler, build_searcher

    cfg, dirs, method = run.cfg, run.search.dirs, run.method
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(
                cfg.search,
                run.space,
                dirs.optuna_storage(cfg.search.optuna_storage),
                dirs.study_name(method),
                str(run.dir / "optuna_trials.csv"),
            ),
            scheduler=build_scheduler(cfg.search, cfg.train.epochs),
            num_samples=num_samples,
        ),
        run_config=tune.RunConfig(
            name=method,
            storage_path=dirs.ray_results,
            # A trial whose driver died with its node starts again (from its last epoch
            # checkpoint); errors the driver raises are not retried (trainable.FinalError).
            failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures),
            stop=RetainCollapseStopper(run.search.thresholds),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def use_callbacks(tuner: Tuner, callbacks: list) -> None:
    """A restored Tuner calls these callbacks, not the copies Tune pickled when the search
    first started: those hold that process's tracker (its outage state, which this driver
    reads after ``fit``), reaper and clock. ``Tuner.restore`` takes no callbacks, so they are
    set on its run config (``Tuner._local_tuner``, private Ray API; the slow resume tests
    exercise it)."""
    tuner._local_tuner.get_run_config().callbacks = callbacks
