"""One line per trial event on the console, instead of Tune's full result tables."""

from __future__ import annotations

import sys

from ray.tune import Callback


class ProgressPrinter(Callback):
    def __init__(self, objective: str, num_samples: int, retain_metric: str) -> None:
        self.objective = objective
        self.num_samples = num_samples
        self.retain_metric = retain_metric  # the retain constraint's metric
        self.finished = 0

    def _print(self, trial_id: str, message: str) -> None:
        print(f"[trial {trial_id}] {message}", file=sys.stderr, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.config.items()
        )
        self._print(trial.trial_id, f"started ({len(trials)}/{self.num_samples}): {params}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        feasible = "feasible" if result.get("epoch_feasible") else "infeasible"
        self._print(
            trial.trial_id,
            f"epoch {int(result.get('epoch', 0))}: {self.objective}="
            f"{result.get(self.objective, float('nan')):.4g} "
            f"forget_metric={result.get('forget_metric', float('nan')):.3f} "
            f"{self.retain_metric}={result.get(self.retain_metric, float('nan')):.3f} "
            f"({feasible})",
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.finished += 1
        last = trial.last_result or {}
        self._print(
            trial.trial_id,
            f"done ({self.finished}/{self.num_samples}): "
            f"best epoch {int(last.get('best_epoch', -1))}, "
            f"{self.objective}={last.get('best_objective', float('nan')):.4g}, "
            f"{'feasible' if last.get('feasible') else 'infeasible'}",
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        from clear_ray.tracking import error_reason

        self.finished += 1
        self._print(
            trial.trial_id,
            f"FAILED: {error_reason(trial)} (traceback in {trial.local_path}/error.txt)",
        )
