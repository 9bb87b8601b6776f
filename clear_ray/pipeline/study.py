"""The study: Ray and MLflow up, Original and Gold, one search per method, leaderboard and
report (``python -m clear_ray.tune`` after its checks)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clear_ray.cache import build_lock
from clear_ray.config import Config
from clear_ray.console import log
from clear_ray.data.folds import FOLDS_FILE, SELECTION
from clear_ray.eval.names import named_tasks, objective_tasks
from clear_ray.kernels import kernels_tag
from clear_ray.pipeline.context import Search, announce_folds, fold_tag, log_references, untuned
from clear_ray.pipeline.method import search_method
from clear_ray.pipeline.reports import reference_table, write_leaderboard_files
from clear_ray.robust.constraint import check_relearn_persons
from clear_ray.search.driver import FINISHED, STOPPED, Driver, close_orphans, resume_command
from clear_ray.search.outbox import OUTBOX_FILE
from clear_ray.search.session import FAILED, SearchDirs, SearchState, dashboard_command
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.selection import Thresholds

if TYPE_CHECKING:  # heavy (torch, mlflow); imported where used
    from clear_ray.references.prepare import References
    from clear_ray.tracking import SearchTracker

STOPPED_EXIT = 3  # stopped, resumable (a tracking outage past tracking.max_outage_s)


def drive(
    driver: Driver, cfg: Config, state: SearchState, dirs: SearchDirs, spaces: dict[str, dict]
) -> int:
    """``run``, with how it ended written for ``--list`` and the next search in the folder;
    a tracking outage past its limit ends in one line that says how to go on (exit 3)."""
    from clear_ray.tracking import TrackingOutage  # lazy: MLflow, not loaded by --help

    try:
        code = run(cfg, state, dirs, spaces)
    except TrackingOutage as outage:
        line = (
            f"{outage} (tracking.max_outage_s={cfg.tracking.max_outage_s:g}): search "
            f"{state.name} stopped; trial results and checkpoints are kept, and "
            f"{outage.pending} tracking call(s) wait in {dirs.root / OUTBOX_FILE}. Once the "
            f"server is back: {resume_command(dirs.output, state.name)}"
        )
        driver.end(STOPPED, line)
        print(line, file=sys.stderr, flush=True)
        return STOPPED_EXIT
    failures = [state.runs[m].failure for m in state.methods if state.runs[m].status == FAILED]
    driver.end(FAILED if code else FINISHED, "; ".join(failures))
    return code


def run(cfg: Config, state: SearchState, dirs: SearchDirs, spaces: dict[str, dict]) -> int:
    """Every method's search in turn (those done before a resume kept), then the leaderboard
    and report; 1 when a method failed, else 0."""
    started = time.time()
    cfg, tracker = start_services(cfg, state, dirs)
    search = open_search(cfg, state, dirs, tracker, spaces)
    for method in state.methods:
        if method in state.runs and state.runs[method].status == "done":
            log(f"{method}: done before the resume, kept")
            continue
        search_method(search, method, spaces[method])
    failures = [state.runs[m].failure for m in state.methods if state.runs[m].status == FAILED]
    if len(failures) == len(state.methods):  # no leaderboard of Original and Gold alone
        if state.top_parent_id:
            tracker.finish(state.top_parent_id, "FAILED", {"error": "; ".join(failures)})
        tracker.wait_delivered()
        for failure in failures:
            log(failure)
        return 1
    summarise_study(search, started)
    for failure in failures:
        log(failure)
    return 1 if failures else 0


def start_services(
    cfg: Config, state: SearchState, dirs: SearchDirs
) -> tuple[Config, SearchTracker]:
    """Ray (a trial shape the cluster can never run is refused before anything is written),
    the MLflow tracker and the Optuna storage; ``search.max_concurrent`` resolved."""
    # lazy: Ray and MLflow, not loaded by --help or bad input
    from clear_ray.runtime.cluster import check_cluster, concurrent_trials, init_ray
    from clear_ray.search.quiet import quiet_console
    from clear_ray.tracking import SearchTracker, where_to_look

    quiet_console()  # a failed trial prints its reason
    init_ray(cfg.search)
    check_cluster(cfg.search)
    cfg = cfg.replace({"search.max_concurrent": concurrent_trials(cfg.search)})
    log(f"search {state.name}: files in {dirs.root}")
    # Another search starting in this output directory creates the same MLflow store and
    # experiment: one at a time, or the second fails on tables or a name the first just made.
    with build_lock(Path(cfg.output_dir) / "mlflow.db", "MLflow store", 60.0):
        tracker = SearchTracker(cfg, dirs.root / OUTBOX_FILE)  # delivers what a stop left there
    log(f"MLflow: {where_to_look(tracker.uri, tracker.experiment_id)}")
    for line in close_orphans(dirs.output, tracker.client, tracker.tracks, state.name):
        log(line)
    optuna_storage = dirs.optuna_storage(cfg.search.optuna_storage)
    log(f"Optuna studies {state.name}/<method>, live: {dashboard_command(optuna_storage)}")
    return cfg, tracker


def open_search(
    cfg: Config,
    state: SearchState,
    dirs: SearchDirs,
    tracker: SearchTracker,
    spaces: dict[str, dict],
) -> Search:
    """Original and Gold with their evaluations, the thresholds they set and what every
    trial opens; several methods get the comparison's parent run."""
    # lazy: torch, transformers and Ray, not loaded by --help or bad input
    from clear_ray.references.prepare import prepare_references

    refs = prepare_references(cfg, log)
    check_relearn_persons(cfg.search, refs.folds.selection)  # before any trial runs
    announce_folds(refs.folds, dirs)
    thresholds = Thresholds.from_search(cfg.search, refs.original.metrics)
    print(reference_table(refs.original.metrics, refs.gold.metrics, thresholds), flush=True)
    inputs = TrialInputs(
        source=refs.staged_source,
        original_dir=refs.original_model,
        gold=refs.gold.reference,
        thresholds=thresholds,
        fold=refs.folds.fold(SELECTION),
        gold_dir=refs.gold_model,
        relearn_persons=refs.folds.selection,
    )
    tags = search_tags(cfg, state, refs)
    search = Search(cfg, state, dirs, refs, thresholds, tracker, tags, inputs)
    if len(state.methods) > 1:
        open_comparison(search, spaces)
    return search


def search_tags(cfg: Config, state: SearchState, refs: References) -> dict[str, str]:
    """The tags every run of the search carries: what was searched, on what, where."""
    from clear_ray.provenance import system_tags  # lazy: torch, not loaded by --help

    return {
        "clear_ray.search": state.name,
        "model": cfg.model.preset,
        "data": refs.source,
        # The forget-quality task(s) the objective combines (eval/suite.py with_objective).
        "objective_task": ",".join(objective_tasks(cfg.data.modality, named_tasks(cfg.eval.tasks))),
        **system_tags(
            cfg.search.workers_per_trial,
            cfg.train.zero_stage,
            cfg.search.seed,
            kernels_tag(cfg.search),
        ),
        "folds": fold_tag(refs.folds),
    }


def open_comparison(search: Search, spaces: dict[str, dict]) -> None:
    """The parent run of several methods' searches (reopened on a resume), with Original's
    and Gold's evaluations and the folds."""
    state, tracker = search.state, search.tracker
    if state.top_parent_id:
        tracker.reopen(state.top_parent_id)
    else:
        state.top_parent_id = tracker.start_parent(
            state.name,
            untuned(search.cfg.to_flat(), *spaces.values()),
            {**search.tags, "clear_ray.role": "comparison"},
        )
        log_references(tracker, state.top_parent_id, search.refs)
        tracker.log_artifacts(state.top_parent_id, [search.dirs.root / FOLDS_FILE])
    search.dirs.save(state)


def summarise_study(search: Search, started: float) -> None:
    """leaderboard.md and the report on the summary run, then where to look."""
    # lazy: matplotlib, Ray and MLflow, not loaded by --help or bad input
    from clear_ray.report.inputs import read_search
    from clear_ray.report.write import write_report
    from clear_ray.tracking import ui_command

    state, dirs, tracker = search.state, search.dirs, search.tracker
    table, written = write_leaderboard_files(search)
    summary_run = state.top_parent_id or state.runs[state.methods[0]].parent_id
    tracker.log_artifacts(summary_run, written)
    report = write_report(read_search(dirs.root))  # report.md, report.html (clear_ray/report)
    tracker.log_artifacts(summary_run, report)
    if state.top_parent_id:
        tracker.finish(state.top_parent_id)
    tracker.wait_delivered()
    print(f"\nLeaderboard:\n{table}\n")
    print(f"Report (Table 1, L1 question, plots): {report[1]}")
    print(f"Search {state.name} took {time.time() - started:.0f} s; files in {dirs.root}")
    page = tracker.run_page(summary_run)
    serve = "" if tracker.run_url(summary_run) else f"{ui_command(tracker.uri)}\n  then open "
    print(f"Open MLflow with:\n  {serve}{page}")
    optuna_storage = dirs.optuna_storage(search.cfg.search.optuna_storage)
    print(f"Open the Optuna studies with:\n  {dashboard_command(optuna_storage)}")
