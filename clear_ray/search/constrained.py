"""OptunaSearch that tells Optuna about constraints and keeps its study in Optuna storage.

Ray's ``OptunaSearch`` has no constraints argument and a sampler's ``constraints_func`` only
sees parameters, not results. We set the trial's constraints from
its final result (each ``best_constraint/<name>`` ≤ 0 feasible) just before the value is told,
so TPE learns where the feasible region is. Infeasible trials stay COMPLETE but marked
infeasible. A trial stopped early (ASHA, retain collapse) is told its best epoch so far.

The study lives in the storage at ``storage_url`` (an SQLAlchemy URL: SQLite in the search
folder by default, see ``SearchDirs.optuna_storage``), not in Tune's pickle of this searcher:
the pickle keeps only the storage URL, the study name and which Tune trial is which Optuna
trial number, and a restored searcher reopens the stored study. So optuna-dashboard reads the
same study the search writes, and ``--resume`` continues it: trial numbers go on, nothing is
asked or told twice.
"""

from __future__ import annotations

import csv
import io
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from clear_ray.cache import write_atomic
from clear_ray.runtime.ray_compat import (
    mark_completed,
    optuna_metrics,
    optuna_study,
    optuna_trial,
    optuna_trial_numbers,
    reopen_searcher,
    searcher_state,
    stored_trial,
)
from clear_ray.train.keys import CONSTRAINT_PREFIX

TRIALS_COLUMNS = ("number", "tune_trial_id", "mlflow_run_id", "state")
TUNE_ID_ATTR = "tune_trial_id"  # user attribute: which Tune trial an Optuna trial is
FEASIBLE_ATTR = "feasible"  # user attribute: every constraint held


class ConstrainedOptunaSearch(OptunaSearch):
    def __init__(
        self,
        *args,
        storage_url: str,
        study_name: str,
        trials_csv: str | None = None,
        **kwargs,
    ) -> None:
        self.storage_url = storage_url
        storage = optuna.storages.get_storage(storage_url)
        super().__init__(*args, storage=storage, study_name=study_name, **kwargs)
        # Optuna's record of the study as a CSV, rewritten after every trial: what the
        # parent MLflow run logs.
        self.trials_csv = trials_csv

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        ot_trial = optuna_trial(self, trial_id)
        if ot_trial is not None and stored_trial(self, ot_trial.number).state.is_finished():
            # Told before the driver died, after Tune's last checkpoint: Tune ran the trial
            # again from its checkpoint. The study keeps the outcome it was told first.
            mark_completed(self, trial_id)
            return
        if ot_trial is not None:
            ot_trial.set_user_attr(TUNE_ID_ATTR, trial_id)
        if ot_trial is not None and result:
            shortfalls = {
                key.removeprefix(CONSTRAINT_PREFIX): float(value)
                for key, value in result.items()
                if key.startswith(CONSTRAINT_PREFIX)
            }
            for name, shortfall in shortfalls.items():
                ot_trial.set_constraint(name, shortfall)
            if shortfalls:
                # optuna-dashboard (0.21) reads Optuna 4's constraints attribute, not these
                # named ones, and would show no constraint at all: a user attribute it shows.
                feasible = all(shortfall <= 0 for shortfall in shortfalls.values())
                ot_trial.set_user_attr(FEASIBLE_ATTR, feasible)
        super().on_trial_complete(trial_id, result, error)
        if self.trials_csv:
            write_trials_csv(optuna_study(self), Path(self.trials_csv), self.objectives)

    @property
    def objectives(self) -> list[str]:
        """The reported metrics Optuna maximises: the CSV's value columns."""
        return optuna_metrics(self)

    def __getstate__(self) -> dict:
        return searcher_state(self)

    def __setstate__(self, state: dict) -> None:
        reopen_searcher(self, state, state["storage_url"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self, handle)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's checkpoint of this searcher, on the stored study.

        Trials asked after that checkpoint (the driver died before Tune saved them) are
        unknown to the restored Tune run and would stay RUNNING in the study for ever: they are
        marked FAIL, so the study holds each trial Tune runs exactly once.
        """
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle).__dict__)
        known = optuna_trial_numbers(self)
        study = optuna_study(self)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial.number not in known:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def trials_table(
    trials: list[optuna.trial.FrozenTrial],
    objectives: list[str],
    run_ids: dict[str, str] | None = None,
) -> tuple[list[str], list[list[Any]]]:
    """Finished trials as (header, rows): one column per objective, constraint and parameter,
    values as numbers (not Python reprs), with the Tune trial id and its MLflow run id."""
    finished = [trial for trial in trials if trial.state.is_finished()]
    constraints = sorted({name for trial in finished for name in (trial.constraints or {})})
    params = sorted({name for trial in finished for name in trial.params})
    header = [
        *TRIALS_COLUMNS,
        *objectives,
        "feasible",
        *(f"constraint/{name}" for name in constraints),
        *params,
    ]
    rows = []
    for trial in finished:
        tune_id = trial.user_attrs.get(TUNE_ID_ATTR, "")
        values = trial.values or [None] * len(objectives)
        shortfalls = trial.constraints or {}
        rows.append(
            [
                trial.number,
                tune_id,
                (run_ids or {}).get(tune_id, ""),
                trial.state.name,
                *_cells(values),
                bool(shortfalls) and all(value <= 0 for value in shortfalls.values()),
                *_cells(shortfalls.get(name) for name in constraints),
                *_cells(trial.params.get(name) for name in params),
            ]
        )
    return header, rows


def _cells(values: Iterable[Any]) -> list[Any]:
    return ["" if value is None else value for value in values]


def write_trials_csv(
    study: optuna.Study,
    path: Path,
    objectives: list[str],
    run_ids: dict[str, str] | None = None,
) -> None:
    """``trials_table`` of the study, written atomically (the parent run logs this file)."""
    header, rows = trials_table(study.get_trials(deepcopy=False), objectives, run_ids)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, text.getvalue())
