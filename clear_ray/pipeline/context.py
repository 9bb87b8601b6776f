"""What a study's phases share: the search's inputs, one method's search, folds and runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clear_ray.config import Config
from clear_ray.console import log
from clear_ray.data.folds import FOLDS_FILE, REPORT, SELECTION, PersonFolds
from clear_ray.search.session import SearchDirs, SearchState

if TYPE_CHECKING:  # heavy (torch, mlflow); imported where used, after argument parsing
    from clear_ray.references.prepare import References
    from clear_ray.tracking import SearchTracker
    from clear_ray.train.inputs import TrialInputs
    from clear_ray.train.selection import Thresholds


@dataclass
class Search:
    """What every method's search shares: config, saved state, references, tracker, inputs."""

    cfg: Config
    state: SearchState
    dirs: SearchDirs
    refs: References
    thresholds: Thresholds
    tracker: SearchTracker
    tags: dict[str, str]
    inputs: TrialInputs  # data and Original as trials on any node open them


@dataclass
class MethodSearch:
    """One method's search within the study: its config (``method.name`` set), its space and
    its MLflow run."""

    search: Search
    method: str
    space: dict
    cfg: Config
    parent_id: str = ""

    @property
    def dir(self) -> Path:
        """The method's folder in the search: trials, plots, final evaluation, confirm runs."""
        return self.search.dirs.method(self.method)


def log_references(tracker: SearchTracker, run_id: str, refs: References) -> None:
    """Original/Gold metrics and Gold's per-item values, once per search."""
    for name in ("original", "gold"):
        evaluation, full = getattr(refs, name), getattr(refs, f"{name}_full")
        tracker.log_metrics(run_id, evaluation.metrics, prefix=f"{name}/")
        tracker.log_artifacts(run_id, [Path(evaluation.directory)], f"reference/{name}")
        if Path(full.directory) != Path(evaluation.directory):  # else the same evaluation
            tracker.log_metrics(run_id, full.metrics, prefix=f"{name}_full/")
            tracker.log_artifacts(run_id, [Path(full.directory)], f"reference/{name}_full")


def untuned(params: dict, *spaces: dict) -> dict:
    """Config params without the searched ones: their defaults were never used (each trial's
    value is its child run's param; the space is the parent's ``search_space.*``)."""
    return {key: value for key, value in params.items() if not any(key in s for s in spaces)}


def announce_folds(folds: PersonFolds, dirs: SearchDirs) -> None:
    """Say which forget persons the search selects on and reports on; write folds.json."""
    folds.save(dirs.root / FOLDS_FILE)
    if folds.active:
        log(f"selects on the {folds.describe(SELECTION)}")
        log(f"reports on the {folds.describe(REPORT)}")
        log(folds.describe_unassigned())
    else:
        log(f"{folds.describe(SELECTION)}: reported numbers are optimistic (winner's curse)")


def fold_tag(folds: PersonFolds) -> str:
    """The runs' ``folds`` tag: how selection and report are separated."""
    if not folds.active:
        return "none (report_fraction 0: selection and report on the same persons)"
    return f"selection {len(folds.selection)} / report {len(folds.report)} persons"
