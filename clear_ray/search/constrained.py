"""OptunaSearch that tells Optuna about constraints.

Ray's ``OptunaSearch`` has no constraints argument and a sampler's ``constraints_func`` only
sees parameters, not results (see shared/STACK_NOTES.md). We set the trial's constraints from
its final result (each ``best_constraint/<name>`` ≤ 0 feasible) just before the value is told,
so TPE learns where the feasible region is. Infeasible trials stay COMPLETE but marked
infeasible. A trial stopped early (ASHA, retain collapse) is told its best epoch so far.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ray.tune.search.optuna import OptunaSearch

CONSTRAINT_PREFIX = "best_constraint/"
TRIALS_COLUMNS = ("number", "state", "values", "feasible", "constraints", "params")


class ConstrainedOptunaSearch(OptunaSearch):
    def __init__(self, *args, trials_csv: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Optuna's own record of the study, rewritten after every trial. It survives a
        # resume (this object is pickled with the experiment) and is what the parent run logs.
        self.trials_csv = trials_csv

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result:
            for key, value in result.items():
                if key.startswith(CONSTRAINT_PREFIX):
                    ot_trial.set_constraint(key.removeprefix(CONSTRAINT_PREFIX), float(value))
        super().on_trial_complete(trial_id, result, error)
        if self.trials_csv:
            write_trials_csv(self._ot_study, Path(self.trials_csv))


def write_trials_csv(study, path: Path) -> None:
    """Finished Optuna trials with their values and constraints, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    with scratch.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRIALS_COLUMNS)
        for trial in study.get_trials(deepcopy=False):
            if not trial.state.is_finished():
                continue
            constraints = trial.constraints or {}
            writer.writerow(
                [
                    trial.number,
                    trial.state.name,
                    trial.values,
                    all(value <= 0 for value in constraints.values()),
                    constraints,
                    trial.params,
                ]
            )
    os.replace(scratch, path)
