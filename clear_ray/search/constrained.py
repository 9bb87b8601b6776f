"""OptunaSearch that tells Optuna about constraints.

Ray's ``OptunaSearch`` has no constraints argument and a sampler's ``constraints_func`` only
sees parameters, not results (see shared/STACK_NOTES.md). We set the trial's constraint from
its final result (``best_constraint`` ≤ 0 feasible) just before the value is told, so TPE
learns where the feasible region is. Infeasible trials stay COMPLETE but marked infeasible.
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch

CONSTRAINT_KEY = "best_constraint"


class ConstrainedOptunaSearch(OptunaSearch):
    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result and CONSTRAINT_KEY in result:
            ot_trial.set_constraint("min_retain", float(result[CONSTRAINT_KEY]))
        super().on_trial_complete(trial_id, result, error)
